"""一证通用 login: challenge → sign the nonce → cert-login → holder token → GET /v1/me."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from directory.models import AuthChallenge, Event
from verify_api.platform.pki import platform_pki
from verify_api.services.certs import issue_holder_certificate

PERSON = "11010519491231002X"
ENTERPRISE = "91110000600037341L"


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _sign(key, nonce: str) -> str:  # type: ignore[no-untyped-def]
    data = nonce.encode("utf-8")
    if isinstance(key, rsa.RSAPrivateKey):
        from cryptography.hazmat.primitives.asymmetric import padding
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(sig).decode()


def _challenge(client) -> str:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/auth/challenge")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert len(base64.urlsafe_b64decode(body["nonce"] + "=")) == 32 and body["expires_at"]
    return body["nonce"]


def _login(client, cert, key, nonce: str | None = None):  # type: ignore[no-untyped-def]
    nonce = nonce or _challenge(client)
    return client.post("/v1/auth/cert-login", json={"certificate": _pem(cert), "nonce": nonce,
                                                     "signature_b64": _sign(key, nonce)})


@pytest.fixture(scope="module")
def person(container):  # type: ignore[no-untyped-def]
    return issue_holder_certificate(container, holder_code=PERSON, name="张三", password=b"pw")


def _problem(resp, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == code, resp.text


def test_full_login_flow(client, container, person) -> None:  # type: ignore[no-untyped-def]
    nonce = _challenge(client)
    resp = _login(client, person.certificate, person.private_key, nonce)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_at"]
    assert body["holder"]["code"] == "1101************2X" and body["holder"]["name"] == "张三"
    assert body["holder"]["code_type"] == "111" and PERSON not in resp.text
    token = body["token"]
    assert not token.startswith("elk_")

    me = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["holder"] == {"id": body["holder"]["id"], "code_type": "111",
                                   "code": "1101************2X", "name": "张三"}
    assert PERSON not in me.text

    # The login was recorded against the holder's surrogate id, never the raw code.
    with container.session() as session:
        events = session.scalars(select(Event).where(Event.action == "holder.login",
                                                     Event.subject == body["holder"]["id"])).all()
        assert events and all(PERSON not in json.dumps(e.detail) for e in events)
        assert session.get(AuthChallenge, nonce).used_at is not None

    # Replaying the same nonce and signature fails.
    replay = client.post("/v1/auth/cert-login", json={
        "certificate": _pem(person.certificate), "nonce": nonce,
        "signature_b64": _sign(person.private_key, nonce)})
    _problem(replay, 401, "challenge_failed")

    # The same holder logging in again gets the same holder id.
    again = _login(client, person.certificate, person.private_key)
    assert again.status_code == 200 and again.json()["holder"]["id"] == body["holder"]["id"]


def test_holder_token_is_not_an_admin_key(client, person, key_factory) -> None:  # type: ignore[no-untyped-def]
    token = _login(client, person.certificate, person.private_key).json()["token"]
    resp = client.post("/v1/issuers", headers={"Authorization": f"Bearer {token}"},
                       json={"code": "11100000000013127D", "name": "x", "area_code": "110000"})
    _problem(resp, 403, "forbidden")
    admin = key_factory("admin")
    _problem(client.get("/v1/me", headers={"Authorization": f"Bearer {admin}"}), 403, "forbidden")


@pytest.mark.parametrize("mutate", ["payload", "mac", "truncate", "garbage", "empty"])
def test_tampered_token(client, person, mutate: str) -> None:  # type: ignore[no-untyped-def]
    token = _login(client, person.certificate, person.private_key).json()["token"]
    prefix, payload, mac = token.split(".")
    if mutate == "payload":
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["sub"] = "00000000-0000-0000-0000-000000000000"
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        bad = f"{prefix}.{forged}.{mac}"
    elif mutate == "mac":
        bad = f"{prefix}.{payload}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}"
    elif mutate == "truncate":
        bad = f"{prefix}.{payload}"
    elif mutate == "garbage":
        bad = "eht1.%%%.!!!"
    else:
        bad = "x"
    _problem(client.get("/v1/me", headers={"Authorization": f"Bearer {bad}"}), 401,
             "unauthorized")
    _problem(client.get("/v1/me"), 401, "unauthorized")


def test_wrong_key_does_not_consume_the_nonce(client, container, person) -> None:  # type: ignore[no-untyped-def]
    nonce = _challenge(client)
    other = ec.generate_private_key(ec.SECP256R1())
    resp = client.post("/v1/auth/cert-login", json={
        "certificate": _pem(person.certificate), "nonce": nonce,
        "signature_b64": _sign(other, nonce)})
    _problem(resp, 401, "challenge_failed")
    # A signature over something else than the nonce fails too.
    resp = client.post("/v1/auth/cert-login", json={
        "certificate": _pem(person.certificate), "nonce": nonce,
        "signature_b64": _sign(person.private_key, nonce + "x")})
    _problem(resp, 401, "challenge_failed")
    with container.session() as session:
        assert session.get(AuthChallenge, nonce).used_at is None  # nothing written on failure
    assert _login(client, person.certificate, person.private_key, nonce).status_code == 200


def test_unknown_nonce_and_bad_inputs(client, person) -> None:  # type: ignore[no-untyped-def]
    _problem(_login(client, person.certificate, person.private_key, "A" * 43), 401,
             "challenge_failed")
    nonce = _challenge(client)
    _problem(client.post("/v1/auth/cert-login", json={
        "certificate": "garbage", "nonce": nonce, "signature_b64": "AAAA"}), 422,
        "invalid_certificate")
    _problem(client.post("/v1/auth/cert-login", json={
        "certificate": _pem(person.certificate), "nonce": nonce, "signature_b64": "!!"}), 422,
        "validation_error")
    _problem(client.post("/v1/auth/cert-login", json={"nonce": nonce}), 422, "validation_error")


def test_revoked_certificate_is_refused(client, container) -> None:  # type: ignore[no-untyped-def]
    issued = issue_holder_certificate(container, holder_code=PERSON, name="张三", password=b"pw")
    platform_pki(container).ca.revoke(issued.certificate.serial_number, "key_compromise")
    nonce = _challenge(client)
    resp = _login(client, issued.certificate, issued.private_key, nonce)
    _problem(resp, 401, "certificate_rejected")
    assert resp.json()["reason"] == "revoked"
    with container.session() as session:
        assert session.get(AuthChallenge, nonce).used_at is None


def test_revoking_the_certificate_ends_its_tokens(client, container) -> None:  # type: ignore[no-untyped-def]
    issued = issue_holder_certificate(container, holder_code=PERSON, name="张三", password=b"pw")
    token = _login(client, issued.certificate, issued.private_key).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/me", headers=headers).status_code == 200
    platform_pki(container).ca.revoke(issued.certificate.serial_number, "key_compromise")
    _problem(client.get("/v1/me", headers=headers), 401, "unauthorized")


def test_department_seal_certificate_is_not_a_holder(client, container) -> None:  # type: ignore[no-untyped-def]
    from directory import catalog
    with container.session() as session:
        issuer = catalog.list_issuers(session)[0].code
    seal = platform_pki(container).seal_for(issuer)
    _problem(_login(client, seal.certificate, seal.private_key), 403, "not_holder_certificate")


def test_foreign_ca_certificate_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime, timezone
    ca_key = ec.generate_private_key(ec.SECP256R1())
    # Same issuer name as the platform's issuing CA, different key.
    ca_name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "elicense Dev"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "elicense Dev Issuing CA")])
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    from license_core.oids import POLICY_OIDS, CertificateRole
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, f"111-{PERSON}"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, "张三")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.CertificatePolicies([x509.PolicyInformation(
                x509.ObjectIdentifier(POLICY_OIDS[CertificateRole.HOLDER]), None)]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    resp = _login(client, cert, key)
    _problem(resp, 401, "certificate_rejected")
    assert resp.json()["reason"] == "untrusted" and PERSON not in resp.text


def test_rsa_enterprise_and_raw_ecdsa_signatures(client, container) -> None:  # type: ignore[no-untyped-def]
    pki = platform_pki(container)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = pki.ca.issue_holder_certificate(rsa_key.public_key(), holder_code_type="001",
                                           holder_code=ENTERPRISE, name="北京某某科技有限公司")
    resp = _login(client, cert, rsa_key)
    assert resp.status_code == 200, resp.text
    assert resp.json()["holder"]["code_type"] == "001"

    person = issue_holder_certificate(container, holder_code=PERSON, name="张三", password=b"pw")
    nonce = _challenge(client)
    r, s = decode_dss_signature(person.private_key.sign(nonce.encode(), ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # WebCrypto's IEEE P1363 form
    resp = client.post("/v1/auth/cert-login", json={
        "certificate": _pem(person.certificate), "nonce": nonce,
        "signature_b64": base64.urlsafe_b64encode(raw).decode().rstrip("=")})
    assert resp.status_code == 200, resp.text


def test_expiry_of_nonce_and_token(fresh_container, clock) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from verify_api.app import create_app
    container = fresh_container()
    issued = issue_holder_certificate(container, holder_code=PERSON, name="张三", password=b"pw")
    with TestClient(create_app(container=container, install=False)) as client:
        stale = _challenge(client)
        clock.advance(timedelta(minutes=5, seconds=1))
        _problem(_login(client, issued.certificate, issued.private_key, stale), 401,
                 "challenge_failed")
        login = _login(client, issued.certificate, issued.private_key)
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        assert client.get("/v1/me", headers=headers).status_code == 200
        clock.advance(timedelta(minutes=59))
        assert client.get("/v1/me", headers=headers).status_code == 200
        clock.advance(timedelta(minutes=2))
        _problem(client.get("/v1/me", headers=headers), 401, "unauthorized")
        # An expired certificate cannot log in.
        clock.advance(issued.certificate.not_valid_after_utc - clock.now() + timedelta(days=1))
        resp = _login(client, issued.certificate, issued.private_key)
        _problem(resp, 401, "certificate_rejected")
        assert resp.json()["reason"] == "expired"


def test_token_from_another_installation_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    from verify_api.services.holder_auth import HolderTokens
    other = HolderTokens(b"k" * 32)
    from datetime import datetime, timezone
    token, _ = other.issue(holder_id="x", name="y", code_type="111",
                           at=datetime.now(timezone.utc))
    _problem(client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}), 401,
             "unauthorized")


def test_holder_codes_never_stored_in_clear_in_the_certificate_table(container) -> None:  # type: ignore[no-untyped-def]
    """A 一证通用 certificate names its holder's code: the store masks and encrypts it."""
    from cryptography.hazmat.primitives.asymmetric import ec as _ec
    from sqlalchemy import select as _select

    from directory.models import Certificate as _Certificate
    from verify_api.platform.pki import platform_pki as _pki

    code = "11010519491231002X"
    pki = _pki(container)
    cert = pki.ca.issue_holder_certificate(_ec.generate_private_key(_ec.SECP256R1()).public_key(),
                                           holder_code_type="111", holder_code=code, name="张三")
    with container.session() as session:
        row = session.scalars(_select(_Certificate).where(
            _Certificate.serial == format(cert.serial_number, "x"))).one()
        assert code not in row.subject and code.encode() not in row.der
    from signing.ca import issuer_key as _issuer_key
    record = pki.store.find_certificate(cert.serial_number, _issuer_key(cert.issuer))
    assert record is not None and record.certificate == cert
