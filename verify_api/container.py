"""The service container: everything a request or a CLI command needs, built once per process."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
import threading
from typing import Any, Callable, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from directory.db import make_engine, make_session_factory
from directory.pii import HolderCodeCipher
from license_core.clock import Clock, SystemClock
from license_core.errors import ConfigurationError

from .settings import Settings

__all__ = ["Container", "build_container", "load_or_create_secret"]

T = TypeVar("T")
_SINGLETON_LOCK = threading.RLock()


@dataclass
class Container:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    cipher: HolderCodeCipher
    cache: dict[str, Any] = field(default_factory=dict)

    def session(self) -> Session:
        return self.sessions()

    def singleton(self, name: str, build: Callable[[], T]) -> T:
        """The process-wide instance ``name`` of this container, built once on first use
        (double-checked under a lock, so concurrent requests never build two)."""
        found = self.cache.get(name)
        if found is None:
            with _SINGLETON_LOCK:
                found = self.cache.get(name)
                if found is None:
                    found = build()
                    self.cache[name] = found
        return found

    def on_dispose(self, close: Callable[[], None]) -> None:
        """Register a per-process resource to release in :meth:`dispose` (worker pools)."""
        self.cache.setdefault("_closers", []).append(close)

    def dispose(self) -> None:
        for close in reversed(self.cache.pop("_closers", [])):
            close()
        self.engine.dispose()


def load_or_create_secret(settings: Settings) -> bytes:
    """The data-protection secret: from settings, or (outside production) a file in the home."""
    if settings.secret_key:
        return settings.secret_key.encode()
    if settings.is_production:
        raise ConfigurationError("ELICENSE_SECRET_KEY is required in production")
    path = Path(settings.home) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(48).encode())
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    return path.read_bytes().strip()


def build_container(settings: Settings, *, clock: Clock | None = None,
                    engine: Engine | None = None) -> Container:
    settings.check_production()
    Path(settings.home).mkdir(parents=True, exist_ok=True)
    engine = engine or make_engine(settings.resolved_database_url)
    return Container(settings=settings, engine=engine, sessions=make_session_factory(engine),
                     clock=clock or SystemClock(),
                     cipher=HolderCodeCipher(load_or_create_secret(settings)))
