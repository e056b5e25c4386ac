"""QR codes (SPEC §7): the printed QR decodes and verifies; registry status shows live;
tampered, foreign-key and expired tokens fail; presentations (亮证); key rotation; the CLI."""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pypdfium2
import pytest
import zxingcpp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from converters.qr import qr_matrix_version
from directory import licenses as license_q
from license_core.canonical import data_digest
from license_core.holder_codes import mask_name, uscc_check_character
from license_core.identifiers import LicenseIdentifier
from license_core.lifecycle import Action
from license_core.qr_token import (QrClaims, decode_token, encode_token, kid_to_text, qr_url,
                                   token_from_payload)
from verify_api.deps import Principal
from verify_api.platform.qr_keys import qr_keyring
from verify_api.services.licenses import MintRequest, license_service
from verify_api.services.qr import qr_service

BUSINESS_LICENSE = "11100000MB03271699001"
MARKET_REGULATOR = "11440300MB2C928159"
NURSE_LICENSE = "11100000MB1A153849005"  # person; id_number is a non-public field
HEALTH_COMMISSION = "114403000075420753"
ISSUER = Principal(kind="client", role="issuer", subject="qr-test", issuer_code=MARKET_REGULATOR)
NURSE_ISSUER = Principal(kind="client", role="issuer", subject="qr-test",
                         issuer_code=HEALTH_COMMISSION)
COMPANY = "深圳市前海示例科技有限公司"


def uscc(n: int) -> str:
    """A valid USCC, distinct per ``n`` (and per test process, to share one database)."""
    body = f"91440300MA{(os.getpid() % 1000):03d}{n:04d}"[:17]
    return body + uscc_check_character(body)


def resident_id(serial: int) -> str:
    body = f"44030519900101{serial % 1000:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]


def mint(container, *, holder: str | None = None, **extra):  # type: ignore[no-untyped-def]
    """Mint a business licence (营业执照); returns ``(license view, holder code)``."""
    code = holder or uscc(secrets.randbelow(10_000))
    body = {"type_code": BUSINESS_LICENSE, "holder": {"id": code, "name": COMPANY},
            "data": {"name": COMPANY, "entity_type": "有限责任公司",
                     "legal_representative": "张三", "registered_capital": "100万元人民币",
                     "established_on": "2020-05-01", "address": "深圳市南山区",
                     "business_scope": "软件开发"}, **extra}
    result = license_service(container).mint(MintRequest.from_body(body),
                                              issuer_code=MARKET_REGULATOR, actor="test")
    return result.license, code


def license_pdf(container, license_id: str, principal: Principal = ISSUER) -> bytes:  # type: ignore[no-untyped-def]
    return license_service(container).pdf(license_id, principal=principal)


def printed_qr(pdf: bytes, dpi: int = 150) -> str:
    """Decode the QR printed on page 1 of an e-license PDF rendered at ``dpi``."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        image = document[0].render(scale=dpi / 72).to_pil()
    finally:
        document.close()
    texts = [r.text for r in zxingcpp.read_barcodes(image)
             if r.format == zxingcpp.BarcodeFormat.QRCode]
    assert len(texts) == 1, f"expected one QR on page 1, found {len(texts)}"
    return texts[0]


def verify(client, payload: str):  # type: ignore[no-untyped-def]
    resp = client.post("/v1/verify/qr", json={"payload": payload})
    assert resp.status_code == 200, resp.text
    return resp.json()


def signed(container, claims: QrClaims, *, key=None, kid: bytes | None = None) -> str:  # type: ignore[no-untyped-def]
    if key is None:
        active = qr_keyring(container).active()
        key, kid = active.private_key, active.kid
    return qr_url(container.settings.base_url, encode_token(claims, private_key=key,
                                                            kid=kid or b"\x00" * 8))


def claims_for(container, license_id: str, **changes) -> QrClaims:  # type: ignore[no-untyped-def]
    with container.session() as session:
        row = license_q.get_license(session, license_id=license_id)
        fields = dict(license_id=row.id, issued_at=int(datetime.now(timezone.utc).timestamp()),
                      valid_to_day=None, holder_name_masked=mask_name(row.holder_name),
                      data_digest=data_digest(dict(row.data)))
    fields.update(changes)
    return QrClaims(**fields)


# -- the printed QR ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def printed(container):  # type: ignore[no-untyped-def]
    view, code = mint(container)
    url = printed_qr(license_pdf(container, view["id"]))
    return view, code, url


def test_printed_qr_decodes_from_150_dpi_and_verifies(client, container, printed) -> None:  # type: ignore[no-untyped-def]
    view, code, url = printed
    assert url.startswith(container.settings.base_url + "/v/")
    version = qr_matrix_version(url)
    print(f"\nprinted QR: {len(url)} characters, QR version {version} (ECC M)")
    assert version <= 13
    token = decode_token(token_from_payload(url))
    assert token.claims.license_id == view["id"]
    assert token.key_id == qr_keyring(container).active().kid

    answer = verify(client, url)
    assert answer["valid"] is True
    assert answer["indication"] == "TOTAL_PASSED" and answer["sub_indication"] is None
    assert answer["offline"] == {**answer["offline"], "signature_ok": True, "expired": False,
                                 "key_id": kid_to_text(token.key_id)}
    assert answer["status"] == "valid" and answer["presentation"] is None
    lic = answer["license"]
    assert lic["id"] == view["id"] and lic["version"] == "001"
    assert lic["type_code"] == BUSINESS_LICENSE and lic["type_name"] == "营业执照"
    assert lic["issuer_code"] == MARKET_REGULATOR and lic["issuer_name"] == "深圳市市场监督管理局"
    assert lic["holder_name"] == mask_name(COMPANY) != COMPANY
    assert lic["holder"]["id"].startswith(code[:4]) and "*" in lic["holder"]["id"]
    assert lic["data"]["legal_representative"] == "张三"
    assert lic["valid_from"] == view["valid_from"] and lic["license_number"]
    # the bare token answers the same
    assert verify(client, token_from_payload(url))["valid"] is True


def test_answers_never_show_the_unmasked_holder_code(client, printed) -> None:  # type: ignore[no-untyped-def]
    _view, code, url = printed
    for resp in (client.post("/v1/verify/qr", json={"payload": url}),
                 client.get("/v/" + token_from_payload(url))):
        assert resp.status_code == 200
        assert code not in resp.text, resp.text


def test_non_public_fields_are_not_shown(client, container) -> None:  # type: ignore[no-untyped-def]
    person = resident_id(secrets.randbelow(1000))
    body = {"type_code": NURSE_LICENSE, "holder": {"id": person, "name": "李小红"},
            "data": {"name": "李小红", "gender": "女", "nationality": "中国", "id_number": person,
                     "practice_location": "深圳市人民医院"}}
    view = license_service(container).mint(MintRequest.from_body(body),
                                           issuer_code=HEALTH_COMMISSION, actor="test").license
    url = printed_qr(license_pdf(container, view["id"], NURSE_ISSUER))
    resp = client.post("/v1/verify/qr", json={"payload": url})
    answer = resp.json()
    assert answer["valid"] is True, answer
    assert "id_number" not in answer["license"]["data"]
    assert answer["license"]["data"]["practice_location"] == "深圳市人民医院"
    assert answer["license"]["holder_name"] == "李**"
    assert answer["license"]["data"]["name"] == "李**"  # a public field repeating the name
    assert person not in resp.text and "李小红" not in resp.text
    page = client.get(url.removeprefix(container.settings.base_url))
    assert page.status_code == 200 and person not in page.text and "李小红" not in page.text


# -- registry status, read live ------------------------------------------------------------------


def test_revocation_shows_at_once(client, container) -> None:  # type: ignore[no-untyped-def]
    view, _ = mint(container)
    url = printed_qr(license_pdf(container, view["id"]))
    assert verify(client, url)["valid"] is True
    license_service(container).transition(view["id"], Action.REVOKE, reason="revoked", note=None,
                                          principal=ISSUER)
    answer = verify(client, url)
    assert answer["valid"] is False
    assert (answer["indication"], answer["sub_indication"]) == ("TOTAL_FAILED", "LICENSE_REVOKED")
    assert answer["offline"]["signature_ok"] is True and answer["status"] == "revoked"
    page = client.get(url.removeprefix(container.settings.base_url))
    assert page.status_code == 200 and "已吊销" in page.text


def test_cancelled_license_page_says_cancelled(client, container) -> None:  # type: ignore[no-untyped-def]
    view, _ = mint(container)
    url = printed_qr(license_pdf(container, view["id"]))
    license_service(container).transition(view["id"], Action.REVOKE, reason="cancelled",
                                          note=None, principal=ISSUER)
    assert verify(client, url)["sub_indication"] == "LICENSE_REVOKED"
    assert "已注销" in client.get(url.removeprefix(container.settings.base_url)).text


def test_suspended_then_resumed(client, container) -> None:  # type: ignore[no-untyped-def]
    view, _ = mint(container)
    url = printed_qr(license_pdf(container, view["id"]))
    license_service(container).transition(view["id"], Action.SUSPEND, reason="investigation",
                                          note=None, principal=ISSUER)
    answer = verify(client, url)
    assert answer["valid"] is False and answer["offline"]["signature_ok"] is True
    assert (answer["indication"], answer["sub_indication"]) == ("INDETERMINATE",
                                                                "LICENSE_SUSPENDED")
    assert answer["status"] == "suspended"
    assert "已暂停" in client.get(url.removeprefix(container.settings.base_url)).text
    license_service(container).transition(view["id"], Action.RESUME, reason="other", note=None,
                                          principal=ISSUER)
    assert verify(client, url)["valid"] is True


def test_superseded_version_and_its_successor(client, container) -> None:  # type: ignore[no-untyped-def]
    view, _ = mint(container)
    old_url = printed_qr(license_pdf(container, view["id"]))
    new = license_service(container).amend(view["id"], changes={"address": "深圳市福田区"},
                                           reason="change", note=None, principal=ISSUER)
    answer = verify(client, old_url)
    assert answer["valid"] is False and answer["offline"]["signature_ok"] is True
    assert answer["sub_indication"] == "LICENSE_SUPERSEDED" and answer["status"] == "superseded"
    assert answer["license"]["successor_id"] == new["id"]
    assert "已被新版本替代" in client.get(old_url.removeprefix(container.settings.base_url)).text
    new_answer = verify(client, printed_qr(license_pdf(container, new["id"])))
    assert new_answer["valid"] is True and new_answer["license"]["version"] == "002"
    assert new_answer["license"]["data"]["address"] == "深圳市福田区"


def test_expired_license(client, container) -> None:  # type: ignore[no-untyped-def]
    view, _ = mint(container, valid_from="2020-01-01", valid_to="2021-12-31")
    answer = verify(client, printed_qr(license_pdf(container, view["id"])))
    assert answer["valid"] is False and answer["offline"]["signature_ok"] is True
    assert (answer["indication"], answer["sub_indication"]) == ("TOTAL_FAILED",
                                                                "LICENSE_EXPIRED")
    assert answer["status"] == "expired" and answer["license"]["valid_to"] == "2021-12-31"


def test_data_digest_mismatch_and_unknown_license(client, container, printed) -> None:  # type: ignore[no-untyped-def]
    view = printed[0]
    forged = signed(container, claims_for(container, view["id"], data_digest=b"\x01" * 16))
    answer = verify(client, forged)
    assert answer["valid"] is False and answer["offline"]["signature_ok"] is True
    assert answer["sub_indication"] == "LICENSE_DATA_MISMATCH"
    assert answer["data_matches_registry"] is False

    ident = LicenseIdentifier.parse(view["id"])
    ghost = str(LicenseIdentifier(ident.type_code, ident.issuer_code, "9" * len(ident.serial), 1))
    unknown = signed(container, QrClaims(license_id=ghost, issued_at=int(datetime.now(
        timezone.utc).timestamp()), valid_to_day=None, holder_name_masked="某*",
        data_digest=b"\x02" * 16))
    answer = verify(client, unknown)
    assert answer["valid"] is False and answer["sub_indication"] == "LICENSE_UNKNOWN"
    assert answer["license"] is None and answer["status"] is None


# -- forged and broken tokens --------------------------------------------------------------------


def test_tampered_tokens_fail(client, printed) -> None:  # type: ignore[no-untyped-def]
    url = printed[2]
    token = token_from_payload(url)
    outcomes = set()
    for position in range(5, len(token) - 1, max(1, len(token) // 25)):
        flipped = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1:]
        resp = client.post("/v1/verify/qr", json={"payload": flipped})
        if resp.status_code == 422:
            assert resp.json()["code"] == "invalid_token"
            outcomes.add("422")
        else:
            assert resp.status_code == 200, resp.text
            answer = resp.json()
            assert answer["valid"] is False, (position, answer)
            assert answer["license"] is None or answer["offline"]["signature_ok"] is False
            outcomes.add(answer["sub_indication"])
    assert outcomes  # every flip was caught, either as garbage or as a failed signature


def test_signature_flip_is_sig_crypto_failure(client, container, printed) -> None:  # type: ignore[no-untyped-def]
    import zlib

    import cbor2
    token = token_from_payload(printed[2])
    raw = zlib.decompress(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    message = cbor2.loads(raw)
    protected, unprotected, payload, signature = message.value
    bad = bytes([signature[0] ^ 1]) + signature[1:]
    forged = base64.urlsafe_b64encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(
        18, [protected, dict(unprotected), payload, bad])))).rstrip(b"=").decode()
    answer = verify(client, forged)
    assert answer["valid"] is False and answer["offline"]["signature_ok"] is False
    assert (answer["indication"], answer["sub_indication"]) == ("TOTAL_FAILED",
                                                                "SIG_CRYPTO_FAILURE")
    assert answer["license"] is None and answer["status"] is None


def test_unknown_key_is_indeterminate(client, container, printed) -> None:  # type: ignore[no-untyped-def]
    rogue = ec.generate_private_key(ec.SECP256R1())
    forged = signed(container, claims_for(container, printed[0]["id"]), key=rogue,
                    kid=secrets.token_bytes(8))
    answer = verify(client, forged)
    assert answer["valid"] is False and answer["offline"]["signature_ok"] is False
    assert (answer["indication"], answer["sub_indication"]) == ("INDETERMINATE",
                                                                "NO_CERTIFICATE_CHAIN_FOUND")
    assert answer["license"] is None
    # the real kid with a rogue key is a crypto failure, not an unknown key
    real_kid = qr_keyring(container).active().kid
    forged = signed(container, claims_for(container, printed[0]["id"]), key=rogue, kid=real_kid)
    assert verify(client, forged)["sub_indication"] == "SIG_CRYPTO_FAILURE"


@pytest.mark.parametrize("payload", ["", "hello", "http://x/v/", "!!!!", "http://x/other/abc",
                                     "A" * 3000, "eJwLycgsVgCi5Py8lNRUBQA"])
def test_garbage_is_a_422_problem(client, payload: str) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/verify/qr", json={"payload": payload})
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] in ("invalid_token", "validation_error")


def test_missing_payload_is_422(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/v1/verify/qr", json={})
    assert resp.status_code == 422 and resp.json()["field"] == "payload"
    assert client.post("/v1/verify/qr", content=b"not json",
                       headers={"content-type": "application/json"}).status_code == 422


# -- the citizen's page (markup; the real browser test is in test_verify_page_browser.py) --------


def test_page_markup(client, container, printed) -> None:  # type: ignore[no-untyped-def]
    view, _, url = printed
    resp = client.get(url.removeprefix(container.settings.base_url))
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert '<html lang="zh-CN">' in page and 'name="viewport"' in page
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert "✓" in page and "有效" in page and "营业执照" in page and view["id"] in page
    assert "深圳市市场监督管理局" in page and mask_name(COMPANY) in page
    assert "北京时间" in page and view["license_number"] in page
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["referrer-policy"] == "no-referrer"


def test_invalid_token_page_is_a_friendly_400(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/v/not-a-token")
    assert resp.status_code == 400 and resp.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in resp.text and "无法识别" in resp.text
    resp = client.get("/v/" + "<script>alert(1)</script>")
    assert resp.status_code in (400, 404) and "<script>alert" not in resp.text


def test_page_escapes_registry_values(client, container) -> None:  # type: ignore[no-untyped-def]
    view, _ = mint(container, data={"name": "<b>x</b>", "entity_type": "有限责任公司",
                                    "legal_representative": "<script>alert(1)</script>",
                                    "established_on": "2020-05-01", "address": "\"'&",
                                    "business_scope": "软件开发"})
    url = printed_qr(license_pdf(container, view["id"]))
    page = client.get(url.removeprefix(container.settings.base_url)).text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" \
        in page


# -- presentations (亮证) -------------------------------------------------------------------------


def _holder_login(client, container, code: str, name: str) -> str:  # type: ignore[no-untyped-def]
    from verify_api.services.certs import issue_holder_certificate
    issued = issue_holder_certificate(container, holder_code=code, name=name, password=b"pw")
    nonce = client.post("/v1/auth/challenge").json()["nonce"]
    signature = issued.private_key.sign(nonce.encode(), ec.ECDSA(hashes.SHA256()))
    resp = client.post("/v1/auth/cert-login", json={
        "certificate": issued.certificate.public_bytes(serialization.Encoding.PEM).decode(),
        "nonce": nonce, "signature_b64": base64.b64encode(signature).decode()})
    assert resp.status_code == 200, resp.text
    return resp.json()["token"]


def test_presentation_flow(client, container, key_factory) -> None:  # type: ignore[no-untyped-def]
    view, code = mint(container)
    token = _holder_login(client, container, code, COMPANY)
    auth = {"Authorization": f"Bearer {token}"}
    path = f"/v1/me/licenses/{view['id']}/presentations"
    resp = client.post(path, headers=auth)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert set(body) >= {"payload", "png_b64", "expires_at"}
    expires = datetime.fromisoformat(body["expires_at"])
    left = expires - datetime.now(timezone.utc)
    assert timedelta(minutes=4) < left <= timedelta(minutes=5, seconds=1)
    image = Image.open(io.BytesIO(base64.b64decode(body["png_b64"])))
    decoded = [r.text for r in zxingcpp.read_barcodes(image)]
    assert decoded == [body["payload"]]
    claims = decode_token(token_from_payload(body["payload"])).claims
    assert claims.is_presentation and claims.nonce is not None and len(claims.nonce) == 8
    print(f"\npresentation QR: {len(body['payload'])} characters, QR version "
          f"{qr_matrix_version(body['payload'])}")

    answer = verify(client, body["payload"])
    assert answer["valid"] is True and answer["presentation"]["expired"] is False
    assert code not in json.dumps(answer, ensure_ascii=False)
    # two presentations differ (fresh nonce)
    again = client.post(path, headers=auth, json={"lifetime_seconds": 60}).json()
    assert again["payload"] != body["payload"]
    assert datetime.fromisoformat(again["expires_at"]) - datetime.now(timezone.utc) \
        <= timedelta(seconds=61)

    # someone else's license, no credentials, an API key, a bad lifetime
    other, _ = mint(container)
    assert client.post(f"/v1/me/licenses/{other['id']}/presentations",
                       headers=auth).status_code == 403
    assert client.post(path).status_code == 401
    issuer_key = key_factory("issuer", MARKET_REGULATOR)
    assert client.post(path, headers={"Authorization": f"Bearer {issuer_key}"}).status_code \
        == 403
    assert client.post(path, headers=auth, json={"lifetime_seconds": 5}).status_code == 422
    assert client.post("/v1/me/licenses/1.2.3/presentations", headers=auth).status_code == 404

    # a revoked license is not presented
    license_service(container).transition(view["id"], Action.REVOKE, reason="revoked",
                                          note=None, principal=ISSUER)
    refused = client.post(path, headers=auth)
    assert refused.status_code == 409 and refused.json()["code"] == "license_not_valid"


def test_expired_presentation(fresh_container, clock) -> None:  # type: ignore[no-untyped-def]
    container = fresh_container()
    view, _ = mint(container)
    with container.session() as session:
        holder_id = license_q.get_license(session, license_id=view["id"]).holder_id
    holder = Principal(kind="holder", role="holder", subject=holder_id)
    service = qr_service(container)
    made = service.present(view["id"], principal=holder)
    assert service.verify(made["payload"]).valid
    clock.advance(timedelta(minutes=4, seconds=59))
    assert service.verify(made["payload"]).valid
    clock.advance(timedelta(seconds=1))
    report = service.verify(made["payload"])
    assert not report.valid and report.token.signature_ok and report.token.expired
    assert report.sub_indication.value == "EXPIRED"
    from verify_api.routers.qr import render_verify_page
    assert "二维码已过期" in render_verify_page(report)
    # the printed (non-presentation) QR of the same license does not expire
    printed_url = printed_qr(license_pdf(container, view["id"]))
    assert service.verify(printed_url).valid


# -- QR key rotation -----------------------------------------------------------------------------


def test_rotation_keeps_printed_licenses_valid(fresh_container) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from signing.trust_list import verify_trust_list
    from verify_api.app import create_app
    from verify_api.platform.pki import platform_pki

    container = fresh_container()
    keyring = qr_keyring(container)
    old_kid = keyring.active().kid
    old_view, _ = mint(container)
    old_url = printed_qr(license_pdf(container, old_view["id"]))

    with TestClient(create_app(container=container, install=False)) as client:
        before = verify_trust_list(client.get("/v1/trust-list").text,
                                   root=platform_pki(container).root,
                                   at=container.clock.now())
        assert [k.kid for k in before.qr_keys] == [old_kid]

        new_key, retired = keyring.rotate()
        assert retired and new_key.kid != old_kid
        assert keyring.active().kid == new_key.kid

        new_view, _ = mint(container)
        new_url = printed_qr(license_pdf(container, new_view["id"]))
        assert decode_token(token_from_payload(new_url)).key_id == new_key.kid

        old_answer = verify(client, old_url)
        assert old_answer["valid"] is True and old_answer["offline"]["key_status"] == "retired"
        assert old_answer["offline"]["key_id"] == kid_to_text(old_kid)
        new_answer = verify(client, new_url)
        assert new_answer["valid"] is True and new_answer["offline"]["key_status"] == "active"

        # the trust list follows the keyring at once (no stale cache)
        after = verify_trust_list(client.get("/v1/trust-list").text,
                                  root=platform_pki(container).root, at=container.clock.now())
        statuses = {k.kid: k.status.value for k in after.qr_keys}
        assert statuses == {old_kid: "retired", new_key.kid: "active"}
        cert = new_key.certificate
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        assert any(p.policy_identifier.dotted_string.endswith(".1.8") for p in policies)


# -- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, db_url_factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = dict(os.environ)
    env.update(ELICENSE_HOME=str(tmp_path / "home"), ELICENSE_DATABASE_URL=db_url_factory(),
               ELICENSE_ENVIRONMENT="test", ELICENSE_SECRET_KEY="cli-secret-" + "q" * 32,
               ELICENSE_BASE_URL="http://127.0.0.1:8000")
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "verify_api", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_verify_qr_and_rotate(cli_env: dict[str, str], tmp_path: Path) -> None:
    from verify_api.container import build_container
    from verify_api.services.installation import ensure_installed
    from verify_api.settings import Settings
    from verify_api.wiring import wire

    assert run(cli_env, "init").returncode == 0
    container = wire(build_container(Settings(
        home=Path(cli_env["ELICENSE_HOME"]), database_url=cli_env["ELICENSE_DATABASE_URL"],
        environment="test", secret_key=cli_env["ELICENSE_SECRET_KEY"],
        base_url=cli_env["ELICENSE_BASE_URL"])))
    try:
        ensure_installed(container)
        view, code = mint(container)
        pdf = license_pdf(container, view["id"])
    finally:
        container.dispose()
    pdf_path = tmp_path / "license.pdf"
    pdf_path.write_bytes(pdf)
    url = printed_qr(pdf)

    by_pdf = run(cli_env, "verify-qr", "--image", str(pdf_path), "--json")
    assert by_pdf.returncode == 0, by_pdf.stderr
    answer = json.loads(by_pdf.stdout)
    assert answer["valid"] is True and answer["license"]["id"] == view["id"]
    assert code not in by_pdf.stdout

    png = tmp_path / "qr.png"
    document = pypdfium2.PdfDocument(pdf)
    document[0].render(scale=150 / 72).to_pil().save(png)
    document.close()
    human = run(cli_env, "verify-qr", "--image", str(png))
    assert human.returncode == 0 and human.stdout.startswith("VALID"), human.stdout

    assert run(cli_env, "verify-qr", url).returncode == 0
    garbage = run(cli_env, "verify-qr", "garbage!", "--json")
    assert garbage.returncode == 1 and json.loads(garbage.stdout)["code"] == "invalid_token"
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(blank)
    none = run(cli_env, "verify-qr", "--image", str(blank), "--json")
    assert none.returncode == 1 and json.loads(none.stdout)["code"] == "no_qr_found"
    assert run(cli_env, "verify-qr").returncode == 2

    rotated = run(cli_env, "keys", "rotate-qr", "--json")
    assert rotated.returncode == 0, rotated.stderr
    data = json.loads(rotated.stdout)
    assert data["retired"] and data["kid"] != kid_to_text(decode_token(
        token_from_payload(url)).key_id)
    after = run(cli_env, "verify-qr", url, "--json")
    assert after.returncode == 0, after.stdout
    assert json.loads(after.stdout)["offline"]["key_status"] == "retired"

    # unknown key: exit 3 (indeterminate); revoked: exit 1
    rogue = ec.generate_private_key(ec.SECP256R1())
    claims = decode_token(token_from_payload(url)).claims
    foreign = qr_url("http://x", encode_token(claims, private_key=rogue,
                                             kid=secrets.token_bytes(8)))
    assert run(cli_env, "verify-qr", foreign).returncode == 3
    revoked = run(cli_env, "revoke", view["id"], "--reason", "revoked")
    if revoked.returncode == 0:  # the lifecycle CLI belongs to another module; use it if present
        assert run(cli_env, "verify-qr", url).returncode == 1


def test_holder_sees_own_licenses_and_usage_records(client, container) -> None:  # type: ignore[no-untyped-def]
    """SPEC §8: every verification that names a holder writes a usage record the holder sees."""
    view, code = mint(container)
    token = _holder_login(client, container, code, COMPANY)
    auth = {"Authorization": f"Bearer {token}"}
    mine = client.get("/v1/me/licenses", headers=auth).json()
    assert [item["id"] for item in mine["data"]] == [view["id"]]
    assert mine["data"][0]["holder"]["id"] == code  # the holder's own code, unmasked
    assert client.get("/v1/me/usage", headers=auth).json()["count"] == 0

    payload = printed_qr(license_pdf(container, view["id"]))
    assert verify(client, payload)["valid"] is True
    assert client.get(f"/v/{token_from_payload(payload)}").status_code == 200
    usage = client.get("/v1/me/usage", headers=auth).json()
    assert usage["count"] == 2
    assert {r["purpose"] for r in usage["data"]} == {"verify_qr", "verify_qr_page"}
    assert all(r["license_id"] == view["id"] and r["used_by"] == "public" and
               r["outcome"] == "TOTAL_PASSED" for r in usage["data"])
    # an API key is not a holder token
    assert client.get("/v1/me/usage").status_code == 401
