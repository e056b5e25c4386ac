"""The operator's CLI on a fresh data directory: init, clients, directory, audit."""

import json
import subprocess
import sys
from pathlib import Path


from tests.conftest import run_cli as run
from sqlalchemy import text

from directory.db import make_engine


def test_init_clients_directory_and_audit(cli_env: dict[str, str], tmp_path: Path) -> None:
    first = run(cli_env, "init", "--json")
    assert first.returncode == 0, first.stderr
    assert "demo catalog" in json.loads(first.stdout)["created"]
    again = run(cli_env, "init", "--json")
    assert again.returncode == 0 and "demo catalog" not in json.loads(again.stdout)["created"]

    made = run(cli_env, "clients", "create", "--role", "admin", "--name", "ops", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["api_key"].startswith("elk_")
    bad = run(cli_env, "clients", "create", "--role", "issuer", "--name", "x", "--issuer",
              "11440300MB2C928150", "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["code"] == "unknown_issuer"

    listed = json.loads(run(cli_env, "directory", "list", "--json").stdout)
    assert listed["count"] >= 8
    export = tmp_path / "catalog.json"
    assert run(cli_env, "directory", "export", str(export)).returncode == 0
    assert run(cli_env, "directory", "import", str(export)).returncode == 0
    broken = tmp_path / "broken.json"
    doc = json.loads(export.read_text())
    doc["license_types"][0]["code"] = "bogus"
    broken.write_text(json.dumps(doc))
    refused = run(cli_env, "directory", "import", str(broken), "--json")
    assert refused.returncode == 1 and json.loads(refused.stdout)["code"] == "invalid_catalog"
    assert json.loads(run(cli_env, "directory", "list", "--json").stdout)["count"] == listed["count"]

    ok = run(cli_env, "audit", "verify", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    engine = make_engine(cli_env["ELICENSE_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE events SET actor = 'mallory' WHERE seq = 2"))
    engine.dispose()
    broken_chain = run(cli_env, "audit", "verify", "--json")
    assert broken_chain.returncode == 1
    report = json.loads(broken_chain.stdout)
    assert report["ok"] is False and report["broken_at"] == 2


def test_concurrent_init_makes_one_catalog(cli_env: dict[str, str]) -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "verify_api", "init", "--json"], env=cli_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    created = [json.loads(out)["created"] for out, _ in outputs]
    assert sum("demo catalog" in c for c in created) == 1
    engine = make_engine(cli_env["ELICENSE_DATABASE_URL"])
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM events WHERE action = 'catalog.import'")).scalar()
    engine.dispose()
    assert n == 1
