"""Fixtures for the CA / TSA / OCSP tests: a dev PKI, a seeded store, a CA, the openssl CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from keys_dev import DepartmentSpec, DevPKI
from license_core.clock import FixedClock
from signing.ca import CertificateAuthority, InMemoryCertificateStore, issuer_key

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
BASE_URL = "http://127.0.0.1:8000"
DEPARTMENTS = [DepartmentSpec("91110000600037341L", "北京市市场监督管理局"),
               DepartmentSpec("11100000000013127D", "国家市场监督管理总局")]


@pytest.fixture(scope="session")
def openssl_bin() -> str:
    path = shutil.which("openssl") or ("/usr/bin/openssl" if Path("/usr/bin/openssl").exists()
                                       else None)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the openssl CLI is required under CI=true")
        pytest.skip("the openssl CLI is not installed (needed to check against a real client)")
    return path


@pytest.fixture
def run_openssl(openssl_bin: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([openssl_bin, *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=30)
        if check and proc.returncode != 0:
            raise AssertionError(f"openssl {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc
    return run


@pytest.fixture(scope="session")
def signing_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    return DevPKI.build(tmp_path_factory.mktemp("signing_pki"), now=NOW, base_url=BASE_URL,
                        departments=DEPARTMENTS)


@pytest.fixture
def pki_clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def cert_store(signing_pki: DevPKI) -> InMemoryCertificateStore:
    """A store that knows every dev PKI certificate and its initial revocations."""
    s = InMemoryCertificateStore()
    for e in signing_pki.entities:
        s.record_certificate(e.certificate, role=e.role, label=e.label, issuer_code=e.issuer_code)
    for r in signing_pki.initial_revocations:
        s.revoke(r.serial, issuer_key(r.issuer), at=r.revoked_at, reason=r.reason)
    return s


@pytest.fixture
def dev_ca(signing_pki: DevPKI, cert_store: InMemoryCertificateStore,
           pki_clock: FixedClock) -> CertificateAuthority:
    issuing = signing_pki.issuing_ca
    return CertificateAuthority(issuing.certificate, issuing.private_key,
                                store=cert_store, clock=pki_clock, base_url=BASE_URL)


@pytest.fixture
def chain_file(signing_pki: DevPKI, tmp_path: Path) -> Path:
    path = tmp_path / "chain.pem"
    path.write_bytes(signing_pki.chain_pem())
    return path
