"""Shared fixtures: databases (SQLite by default, PostgreSQL when ELICENSE_TEST_DATABASE_URL is
set), containers, apps and clients. Tests that use a database are marked ``db`` automatically, so
the PostgreSQL run of ``.ci/run`` can select just them."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from directory.db import make_engine
from directory.migrate import upgrade_to_head
from license_core.clock import FixedClock

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("ELICENSE_TEST_DATABASE_URL")
DB_FIXTURES = {"db_url_factory", "db_engine", "db_session", "container", "app", "client",
               "fresh_container", "admin_key", "key_factory", "live_service", "cli_env"}


def require_tool(name: str) -> str:
    """The tool's path; skips the test when missing, except under CI=true where it fails."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"required system tool {name!r} is missing (CI installs it in .ci/run)")
        pytest.skip(f"system tool {name!r} is not installed")
    return path


def run_cli(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    """Run ``elicense`` (as ``python -m verify_api``) in a subprocess with ``env``."""
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "verify_api", *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def cli_env(tmp_path: Path, db_url_factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Environment for CLI subprocesses: a home and a fresh database of their own."""
    env = dict(os.environ)
    env.update(ELICENSE_HOME=str(tmp_path / "home"), ELICENSE_DATABASE_URL=db_url_factory(),
               ELICENSE_ENVIRONMENT="test")
    return env


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if DB_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "db: uses the database (runs on SQLite and PostgreSQL)")


@pytest.fixture(scope="session")
def db_url_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """Makes fresh, empty databases of the backend under test; drops them at the end."""
    created: list[str] = []
    admin = None
    if PG_URL:
        admin = create_engine(make_url(PG_URL).set(database="postgres"),
                              isolation_level="AUTOCOMMIT")

    def make() -> str:
        if PG_URL:
            name = f"elicense_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:  # type: ignore[union-attr]
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            created.append(name)
            return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        path = tmp_path_factory.mktemp("db") / "elicense.db"
        return f"sqlite:///{path}"

    yield make
    if admin is not None:
        with admin.connect() as conn:
            for name in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def db_engine(db_url_factory: Callable[[], str]):  # type: ignore[no-untyped-def]
    engine = make_engine(db_url_factory())
    upgrade_to_head(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def db_session(db_engine) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    """A session whose work is rolled back after the test."""
    connection = db_engine.connect()
    transaction = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    try:
        yield session
    finally:
        session.close()
        transaction.rollback()
        connection.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc))


@pytest.fixture
def fresh_container(db_url_factory, tmp_path: Path, clock: FixedClock):  # type: ignore[no-untyped-def]
    """A wired, installed container on a database of its own (for tests that need a clean one)."""
    from verify_api.container import build_container
    from verify_api.services.installation import ensure_installed
    from verify_api.settings import Settings
    from verify_api.wiring import wire

    made = []

    def make():  # type: ignore[no-untyped-def]
        home = tmp_path / f"home{len(made)}"
        settings = Settings(home=home, database_url=db_url_factory(),
                            base_url="http://127.0.0.1:8000", environment="test",
                            secret_key="test-secret-" + "x" * 32)
        container = wire(build_container(settings, clock=clock))
        ensure_installed(container)
        made.append(container)
        return container

    yield make
    for container in made:
        container.dispose()


@pytest.fixture(scope="session")
def container(db_url_factory, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One installed container shared by the API tests of a run (tests use their own data)."""
    from verify_api.container import build_container
    from verify_api.services.installation import ensure_installed
    from verify_api.settings import Settings
    from verify_api.wiring import wire

    settings = Settings(home=tmp_path_factory.mktemp("home"), database_url=db_url_factory(),
                        base_url="http://127.0.0.1:8000", environment="test",
                        secret_key="test-secret-" + "y" * 32)
    built = wire(build_container(settings))
    ensure_installed(built)
    yield built
    built.dispose()


@pytest.fixture(scope="session")
def app(container):  # type: ignore[no-untyped-def]
    from verify_api.app import create_app
    return create_app(container=container, install=False)


@pytest.fixture(scope="session")
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient
    with TestClient(app) as test_client:
        yield test_client


def _make_key(container, role: str, issuer_code: str | None = None) -> str:  # type: ignore[no-untyped-def]
    from directory.clients import create_client
    with container.session() as session, session.begin():
        return create_client(session, name=f"test {role}", role=role, issuer_code=issuer_code,
                             at=datetime.now(timezone.utc)).api_key


@pytest.fixture(scope="session")
def admin_key(container) -> str:  # type: ignore[no-untyped-def]
    return _make_key(container, "admin")


@pytest.fixture(scope="session")
def key_factory(container):  # type: ignore[no-untyped-def]
    return lambda role, issuer_code=None: _make_key(container, role, issuer_code)


class LiveServer:
    """The app served by uvicorn in a background thread on 127.0.0.1 (for real clients:
    openssl, pdfsig, Chromium)."""

    def __init__(self, app, port: int) -> None:  # type: ignore[no-untyped-def]
        import threading

        import uvicorn
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> "LiveServer":
        import time
        import urllib.request
        self.thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("live server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_service(db_url_factory, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A fresh installed service whose ELICENSE_BASE_URL is where it really listens, so the
    OCSP/CRL/TSA URLs inside its certificates answer (pdfsig, openssl)."""
    from verify_api.app import create_app
    from verify_api.container import build_container
    from verify_api.services.installation import ensure_installed
    from verify_api.settings import Settings
    from verify_api.wiring import wire

    port = free_port()
    settings = Settings(home=tmp_path / "live-home", database_url=db_url_factory(),
                        base_url=f"http://127.0.0.1:{port}", environment="test",
                        secret_key="live-secret-" + "z" * 32)
    built = wire(build_container(settings))
    ensure_installed(built)
    server = LiveServer(create_app(container=built, install=False), port).start()
    yield built, server
    server.stop()
    built.dispose()
