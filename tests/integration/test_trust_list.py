"""The signed trust list (SPEC §7): verifies against the platform root, and lets a verifier
check a printed QR offline, without the server."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from keys_dev.pki import DepartmentSpec, DevPKI
from license_core.offline import TrustListPayload, verify_qr_offline
from license_core.qr_token import kid_to_text
from signing.trust_list import (InvalidTrustList, TrustListExpired, UntrustedTrustList,
                                trust_list_header, verify_trust_list)
from verify_api.platform.pki import platform_pki
from verify_api.platform.qr_keys import qr_keyring

from .test_qr import license_pdf, mint, printed_qr


@pytest.fixture(scope="module")
def jws(client) -> str:  # type: ignore[no-untyped-def]
    resp = client.get("/v1/trust-list")
    assert resp.status_code == 200
    assert resp.headers["content-type"].split(";")[0] in ("application/jose", "application/jwt")
    return resp.text


def test_trust_list_verifies_against_the_root(container, jws: str) -> None:  # type: ignore[no-untyped-def]
    pki = platform_pki(container)
    now = datetime.now(timezone.utc)
    payload = verify_trust_list(jws, root=pki.root, at=now)
    assert payload.issued_at <= now < payload.expires_at
    assert payload.expires_at - payload.issued_at == timedelta(hours=24)
    assert [ca.name for ca in payload.cas] == ["root", "issuing"]
    assert payload.cas[0].certificate == pki.root and payload.cas[1].certificate == pki.issuing
    active = qr_keyring(container).active()
    keys = {key.kid: key for key in payload.qr_keys}
    assert keys[active.kid].status.value == "active"
    assert keys[active.kid].not_after == active.certificate.not_valid_after_utc
    header = trust_list_header(jws)
    assert header["alg"] == "ES256"
    x5c = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]
    assert x5c == [pki.certificate("trust_list"), pki.issuing]


def test_json_format_is_the_signed_payload(client, jws: str) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/v1/trust-list", params={"format": "json"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    signed = jws.split(".")[1]
    assert body == json.loads(base64.urlsafe_b64decode(signed + "=" * (-len(signed) % 4)))
    assert set(body) == {"issued_at", "expires_at", "cas", "qr_keys"}
    key = body["qr_keys"][0]
    assert set(key) == {"kid", "alg", "public_key", "not_before", "not_after", "status"}
    assert key["alg"] == "ES256" and key["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert all(ca["certificate"].startswith("-----BEGIN CERTIFICATE-----") for ca in body["cas"])
    TrustListPayload.from_json(body)  # well formed
    assert client.get("/v1/trust-list", params={"format": "xml"}).status_code == 422


def test_trust_list_is_cached(client, jws: str) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/v1/trust-list").text == jws


def test_printed_qr_verifies_offline_with_the_trust_list(container, jws: str) -> None:  # type: ignore[no-untyped-def]
    view, _ = mint(container)
    url = printed_qr(license_pdf(container, view["id"]))
    root = platform_pki(container).root
    now = datetime.now(timezone.utc)
    # From here on only the trust list, the root and the scanned text: no server, no database.
    trust = verify_trust_list(jws, root=root, at=now)
    result = verify_qr_offline(url, trust, at=now)
    assert result.valid_offline and result.signature_ok and result.trust_list_current
    assert result.claims is not None and result.claims.license_id == view["id"]
    assert result.key_id == kid_to_text(qr_keyring(container).active().kid)

    tampered = url[:-6] + ("A" if url[-6] != "A" else "B") + url[-5:]
    assert not verify_qr_offline(tampered, trust, at=now).valid_offline
    assert not verify_qr_offline("garbage", trust, at=now).well_formed
    later = now + timedelta(days=2)  # a stale trust list is reported, not trusted
    assert not verify_qr_offline(url, trust, at=later).trust_list_current


def test_forged_or_foreign_trust_lists_are_refused(container, jws: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = platform_pki(container).root
    now = datetime.now(timezone.utc)
    head, body, sig = jws.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["qr_keys"][0]["status"] = "retired"
    forged_body = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidTrustList):
        verify_trust_list(f"{head}.{forged_body}.{sig}", root=root, at=now)
    other = DevPKI.build(tmp_path / "other", now=now, base_url="http://x",
                         departments=[DepartmentSpec("11440300MB2C928159", "某局")])
    with pytest.raises(UntrustedTrustList):
        verify_trust_list(jws, root=other.root.certificate, at=now)
    with pytest.raises(TrustListExpired):
        verify_trust_list(jws, root=root, at=now + timedelta(days=2))
    assert isinstance(platform_pki(container).private_key("trust_list"), ec.EllipticCurvePrivateKey)
