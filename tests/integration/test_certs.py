"""一证通用 certificates: CLI issue/verify, POST /v1/certs/verify, POST /v1/verify/cms."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from directory.models import Event
from verify_api.platform.pki import platform_pki
from verify_api.services.certs import issue_holder_certificate

PERSON = "11010519491231002X"
ENTERPRISE = "91110000600037341L"


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def person(container):  # type: ignore[no-untyped-def]
    return issue_holder_certificate(container, holder_code=PERSON, name="张三",
                                    password=b"pw", actor="test")


def test_issue_service_writes_event_without_raw_code(container, person) -> None:  # type: ignore[no-untyped-def]
    p12 = pkcs12.load_pkcs12(person.pkcs12, b"pw")
    assert p12.cert.certificate == person.certificate and p12.key is not None
    assert [c.certificate for c in p12.additional_certs] == list(platform_pki(container).chain)
    with container.session() as session:
        event = session.scalars(select(Event).where(
            Event.subject == f"cert:{person.serial}")).one()
    assert event.action == "cert.issue" and event.detail["holder"] == person.holder_id
    assert PERSON not in json.dumps(event.detail) + event.subject


def test_verify_endpoint_masks_holder_code(client, person) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/certs/verify", json={"certificate": _pem(person.certificate)})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["valid"] is True and body["trusted"] is True and body["status"] == "good"
    assert body["role"] == "holder"
    assert body["holder"] == {"code_type": "111", "code": "1101************2X", "name": "张*",
                              "code_valid": True}
    assert len(body["chain"]) == 3 and "111-1101************2X" in body["subject"]
    assert body["not_before"] and body["not_after"]
    assert PERSON not in resp.text and "张三" not in resp.text


def test_verify_endpoint_enterprise_and_seal(client, container) -> None:  # type: ignore[no-untyped-def]
    org = issue_holder_certificate(container, holder_code=ENTERPRISE, name="北京某某科技有限公司",
                                   password=b"pw")
    body = client.post("/v1/certs/verify", json={"certificate": _pem(org.certificate)}).json()
    assert body["valid"] and body["holder"]["code_type"] == "001"
    assert body["holder"]["name"] == "北京某某科技有限公司"
    assert ENTERPRISE not in json.dumps(body)
    seal = platform_pki(container).seal_for(_first_issuer(container))
    body = client.post("/v1/certs/verify", json={"certificate": _pem(seal.certificate)}).json()
    assert body["role"] == "department_seal" and body["holder"] is None and body["valid"]
    assert body["issuer_code"] == seal.issuer_code


def _first_issuer(container) -> str:  # type: ignore[no-untyped-def]
    from directory import catalog
    with container.session() as session:
        return catalog.list_issuers(session)[0].code


def test_verify_endpoint_revoked_and_foreign(client, container) -> None:  # type: ignore[no-untyped-def]
    issued = issue_holder_certificate(container, holder_code=PERSON, name="张三", password=b"pw")
    platform_pki(container).ca.revoke(issued.certificate.serial_number, "key_compromise")
    body = client.post("/v1/certs/verify", json={"certificate": _pem(issued.certificate)}).json()
    assert body["valid"] is False and body["trusted"] is True and body["status"] == "revoked"
    assert body["revocation_reason"] == "key_compromise"

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, f"111-{PERSON}"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "张三")])
    now = platform_pki(container).ca.clock.now()
    foreign = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
               .sign(key, hashes.SHA256()))
    resp = client.post("/v1/certs/verify", json={"certificate": _pem(foreign)})
    body = resp.json()
    assert resp.status_code == 200 and body["trusted"] is False and body["valid"] is False
    assert body["status"] == "unknown" and PERSON not in resp.text


@pytest.mark.parametrize("certificate", ["", "garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n"
                                         "-----END CERTIFICATE-----", "MIIB" * 10, "x" * 70_000])
def test_verify_endpoint_garbage_is_422(client, certificate: str) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/certs/verify", json={"certificate": certificate})
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == "invalid_certificate"


def test_verify_endpoint_schema_errors(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/v1/certs/verify", json={}).status_code == 422
    assert client.post("/v1/certs/verify", content=b"\xff\x00", headers={
        "content-type": "application/json"}).status_code == 422


# -- CMS ---------------------------------------------------------------------------------------


def _cms(issued, content: bytes) -> bytes:  # type: ignore[no-untyped-def]
    return (pkcs7.PKCS7SignatureBuilder().set_data(content)
            .add_signer(issued.certificate, issued.private_key, hashes.SHA256())
            .sign(serialization.Encoding.DER,
                  [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_cms_valid_tampered_and_garbage(client, person) -> None:  # type: ignore[no-untyped-def]
    content = "我同意以上申请内容 / I agree".encode()
    signature = _cms(person, content)
    resp = client.post("/v1/verify/cms", json={"content_b64": _b64(content),
                                               "signature_b64": _b64(signature)})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["valid"] and body["intact"] and body["trusted"] and body["signing_time"]
    assert body["signer"]["role"] == "holder"
    assert body["signer"]["holder"]["code"] == "1101************2X"
    assert PERSON not in resp.text and "张三" not in resp.text

    flipped = bytearray(content)
    flipped[3] ^= 0x20
    body = client.post("/v1/verify/cms", json={"content_b64": _b64(bytes(flipped)),
                                               "signature_b64": _b64(signature)}).json()
    assert body["valid"] is False and body["intact"] is False and body["trusted"] is True

    for bad in (_b64(b"garbage"), _b64(signature[:-9]), "not base64 !!", ""):
        resp = client.post("/v1/verify/cms", json={"content_b64": _b64(content),
                                                   "signature_b64": bad})
        assert resp.status_code == 422, (bad, resp.text)
        assert resp.json()["code"] in ("malformed_signature", "validation_error")
    resp = client.post("/v1/verify/cms", json={"content_b64": "%%%", "signature_b64": _b64(signature)})
    assert resp.status_code == 422 and resp.json()["field"] == "content_b64"


def test_cms_size_limits(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/verify/cms", json={"content_b64": "AAAA",
                                               "signature_b64": "A" * (800 * 1024)})
    assert resp.status_code == 413 and resp.json()["code"] == "upload_too_large"


# -- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, db_url_factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = dict(os.environ)
    env.update(ELICENSE_HOME=str(tmp_path / "home"), ELICENSE_DATABASE_URL=db_url_factory(),
               ELICENSE_ENVIRONMENT="test")
    env.pop("ELICENSE_SECRET_KEY", None)
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "verify_api", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_issue_and_verify(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "zhang.p12"
    made = run(cli_env, "certs", "issue", "--holder-id", PERSON.lower(), "--name", "张三",
               "--out", str(out), "--password", "s3cret", "--json")
    assert made.returncode == 0, made.stderr
    issued = json.loads(made.stdout)
    assert issued["code_type"] == "111" and f"111-{PERSON}" in issued["subject"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    report = run(cli_env, "certs", "verify", str(out), "--password", "s3cret", "--json")
    assert report.returncode == 0, report.stdout + report.stderr
    data = json.loads(report.stdout)
    assert data["valid"] and data["status"] == "good" and data["role"] == "holder"
    assert data["holder"] == {"code_type": "111", "code": PERSON, "name": "张三",
                              "code_valid": True}  # the operator sees the code in full

    p12 = pkcs12.load_pkcs12(out.read_bytes(), b"s3cret")
    pem = tmp_path / "zhang.pem"
    pem.write_bytes(p12.cert.certificate.public_bytes(serialization.Encoding.PEM))
    der = tmp_path / "zhang.der"
    der.write_bytes(p12.cert.certificate.public_bytes(serialization.Encoding.DER))
    human = run(cli_env, "certs", "verify", str(pem))
    assert human.returncode == 0 and "VALID" in human.stdout, human.stderr
    assert run(cli_env, "certs", "verify", str(der), "--json").returncode == 0

    # Revoke it through the platform CA of the same installation: exit 1, status revoked.
    from verify_api.container import build_container
    from verify_api.settings import Settings
    from verify_api.wiring import wire
    container = wire(build_container(Settings(home=Path(cli_env["ELICENSE_HOME"]),
                                              database_url=cli_env["ELICENSE_DATABASE_URL"],
                                              environment="test")))
    try:
        platform_pki(container).ca.revoke(int(issued["serial"], 16), "key_compromise")
    finally:
        container.dispose()
    revoked = run(cli_env, "certs", "verify", str(pem), "--json")
    assert revoked.returncode == 1 and json.loads(revoked.stdout)["status"] == "revoked"

    # A self-signed certificate: not trusted, exit 3.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(p12.cert.certificate.not_valid_before_utc)
            .not_valid_after(p12.cert.certificate.not_valid_after_utc)
            .sign(key, hashes.SHA256()))
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    untrusted = run(cli_env, "certs", "verify", str(stranger), "--json")
    assert untrusted.returncode == 3 and json.loads(untrusted.stdout)["trusted"] is False


def test_cli_refuses_bad_input(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "x.p12"
    bad = run(cli_env, "certs", "issue", "--holder-id", "110105194912310021", "--name", "张三",
              "--out", str(out), "--password", "pw", "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["code"] == "invalid_holder_code"
    assert not out.exists()
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a certificate")
    refused = run(cli_env, "certs", "verify", str(garbage), "--json")
    assert refused.returncode == 1 and json.loads(refused.stdout)["code"] == "invalid_certificate"
    usage = run(cli_env, "certs", "issue", "--name", "x")
    assert usage.returncode == 2
