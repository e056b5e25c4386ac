"""Issuance and lifecycle over HTTP against the real database."""

from __future__ import annotations

import io
import itertools
import subprocess

import pytest
from PIL import Image
from sqlalchemy import func, select

from directory.events import verify_chain
from directory.models import Blob, Event, Holder, License
from license_core.holder_codes import uscc_check_character
from tests.conftest import require_tool

ISSUER = "11440300MB2C928159"  # 深圳市市场监督管理局
OTHER_ISSUER = "114403000075420753"  # 深圳市卫生健康委员会
BUSINESS_LICENSE = "11100000MB03271699001"  # 营业执照
_serials = itertools.count(10000)


def new_uscc() -> str:
    body = f"91440300MA5F{next(_serials):05d}"
    return body + uscc_check_character(body)


def business_body(**overrides):  # type: ignore[no-untyped-def]
    holder = new_uscc()
    body = {"type_code": BUSINESS_LICENSE,
            "holder": {"id": holder, "name": "深圳市前海示例科技有限公司"},
            "data": {"name": "深圳市前海示例科技有限公司", "entity_type": "有限责任公司",
                     "legal_representative": "张三", "registered_capital": "100万元人民币",
                     "established_on": "2020-05-01", "address": "深圳市南山区粤海街道",
                     "business_scope": "软件开发；信息技术咨询服务"}}
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def issuer_headers(key_factory):  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {key_factory('issuer', ISSUER)}"}


@pytest.fixture(scope="module")
def other_headers(key_factory):  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {key_factory('issuer', OTHER_ISSUER)}"}


def _counts(container):  # type: ignore[no-untyped-def]
    with container.session() as session:
        return (session.scalar(select(func.count()).select_from(License)),
                session.scalar(select(func.count()).select_from(Event)),
                session.scalar(select(func.count()).select_from(Blob)),
                session.scalar(select(func.count()).select_from(Holder)))


def test_mint_read_pdf_and_text(client, container, issuer_headers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    body = business_body()
    r = client.post("/v1/licenses", json=body, headers=issuer_headers)
    assert r.status_code == 201, r.text
    lic = r.json()
    assert lic["status"] == "valid" and lic["version"] == "001"
    assert lic["holder"] == {"id": body["holder"]["id"], "name": body["holder"]["name"],
                             "code_type": "001"}
    assert lic["id"].startswith(f"1.2.156.3005.2.{BUSINESS_LICENSE}.{ISSUER}.")
    assert client.get(f"/v1/licenses/{lic['id']}", headers=issuer_headers).json() == lic
    pdf = client.get(f"/v1/licenses/{lic['id']}/pdf", headers=issuer_headers)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    require_tool("pdftotext")
    path = tmp_path / "lic.pdf"
    path.write_bytes(pdf.content)
    text = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(path), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "深圳市前海示例科技有限公司" in text and "营业执照" in text
    assert body["holder"]["id"] not in text  # the code is printed masked


def test_holder_codes_are_encrypted_at_rest_and_absent_from_events(client, container,  # type: ignore[no-untyped-def]
                                                                   issuer_headers) -> None:
    body = business_body()
    lic = client.post("/v1/licenses", json=body, headers=issuer_headers).json()
    code = body["holder"]["id"]
    with container.session() as session:
        holder_rows = session.scalars(select(Holder)).all()
        assert all(code.encode() not in h.code_enc for h in holder_rows)
        events = session.scalars(select(Event).where(Event.subject == lic["id"])).all()
        assert events and all(code not in str(e.detail) + e.subject for e in events)
        assert verify_chain(session).ok


@pytest.mark.parametrize("mutate, status, code, field", [
    (lambda b: b["holder"].update(id=b["holder"]["id"][:-1] + ("0" if b["holder"]["id"][-1] != "0" else "1")),
     422, "invalid_holder_code", "holder.id"),
    (lambda b: b["data"].update(established_on="2020-02-30"), 422, "validation_error",
     "data.established_on"),
    (lambda b: b["data"].update(entity_type="合资"), 422, "validation_error", "data.entity_type"),
    (lambda b: b["data"].pop("name"), 422, "validation_error", "data.name"),
    (lambda b: b["data"].update(shoe_size=42), 422, "validation_error", "data.shoe_size"),
    (lambda b: b.update(type_code="11100000MB03271699999"), 404, "unknown_license_type",
     "type_code"),
    (lambda b: b.update(type_code="11100000MB1A153849003"), 403, "forbidden", "type_code"),
    (lambda b: b.update(valid_from="2026-01-02", valid_to="2025-01-01"), 422, "validation_error",
     "valid_to"),
    (lambda b: b["holder"].update(id="11010519491231002X"), 422, "invalid_holder_code",
     "holder.id"),  # a person's ID for an organization's license
])
def test_bad_requests_are_problems_and_write_nothing(client, container, issuer_headers,  # type: ignore[no-untyped-def]
                                                     mutate, status, code, field) -> None:
    body = business_body()
    mutate(body)
    before = _counts(container)
    r = client.post("/v1/licenses", json=body, headers=issuer_headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code and r.json().get("field") == field
    assert _counts(container) == before


def test_department_isolation(client, issuer_headers, other_headers, key_factory) -> None:  # type: ignore[no-untyped-def]
    lic = client.post("/v1/licenses", json=business_body(), headers=issuer_headers).json()
    for method, path, payload in [
            ("get", f"/v1/licenses/{lic['id']}", None),
            ("get", f"/v1/licenses/{lic['id']}/pdf", None),
            ("post", f"/v1/licenses/{lic['id']}/revoke", {"reason": "revoked"}),
            ("post", f"/v1/licenses/{lic['id']}/amend", {"data": {"address": "x"},
                                                           "reason": "change"})]:
        r = getattr(client, method)(path, json=payload, headers=other_headers) if payload else \
            getattr(client, method)(path, headers=other_headers)
        assert r.status_code == 403 and r.json()["code"] == "forbidden", (path, r.text)
    listed = client.get("/v1/licenses", headers=other_headers).json()
    assert lic["id"] not in {item["id"] for item in listed["data"]}
    verifier = {"Authorization": f"Bearer {key_factory('verifier')}"}
    assert client.post("/v1/licenses", json=business_body(), headers=verifier).status_code == 403
    assert client.post("/v1/licenses", json=business_body()).status_code == 401


def test_idempotency_key(client, container, issuer_headers, other_headers) -> None:  # type: ignore[no-untyped-def]
    body = business_body()
    headers = {**issuer_headers, "Idempotency-Key": "order-4711"}
    first = client.post("/v1/licenses", json=body, headers=headers)
    assert first.status_code == 201
    before = _counts(container)
    again = client.post("/v1/licenses", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert _counts(container) == before
    changed = business_body()
    conflict = client.post("/v1/licenses", json=changed, headers=headers)
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_key_reused"
    # keys are scoped per client: the other department's same key is independent
    other_body = business_body(type_code="11100000MB1A153849003")  # 医师执业证书 (卫健委)
    r = client.post("/v1/licenses", json=other_body,
                    headers={**other_headers, "Idempotency-Key": "order-4711"})
    assert r.status_code != 409


def test_license_number_unique_per_type_and_issuer(client, issuer_headers) -> None:  # type: ignore[no-untyped-def]
    number = f"SZ-TEST-{next(_serials)}"
    assert client.post("/v1/licenses", json=business_body(license_number=number),
                       headers=issuer_headers).status_code == 201
    r = client.post("/v1/licenses", json=business_body(license_number=number),
                    headers=issuer_headers)
    assert r.status_code == 409 and r.json()["code"] == "duplicate_license_number"


def test_lifecycle_and_amend(client, container, issuer_headers) -> None:  # type: ignore[no-untyped-def]
    lic = client.post("/v1/licenses", json=business_body(), headers=issuer_headers).json()
    lid = lic["id"]

    def act(verb, **body):  # type: ignore[no-untyped-def]
        return client.post(f"/v1/licenses/{lid}/{verb}", json=body, headers=issuer_headers)

    assert act("suspend", reason="investigation").json()["status"] == "suspended"
    assert act("amend", data={"address": "x"}, reason="change").json()["code"] == \
        "invalid_transition"
    assert act("resume", reason="investigation_closed").json()["status"] == "valid"
    assert act("suspend", reason="cancelled").json()["code"] == "validation_error"
    amended = act("amend", data={"address": "深圳市福田区"}, reason="change", note="迁址")
    assert amended.status_code == 201, amended.text
    new = amended.json()
    assert new["version"] == "002" and new["predecessor_id"] == lid
    assert new["data"]["address"] == "深圳市福田区" and new["license_number"] == lic["license_number"]
    old = client.get(f"/v1/licenses/{lid}", headers=issuer_headers).json()
    assert old["status"] == "superseded" and old["successor_id"] == new["id"]
    assert act("amend", data={"address": "y"}, reason="change").status_code == 409
    bad = client.post(f"/v1/licenses/{new['id']}/amend", json={"data": {"established_on": "x"},
                                                                "reason": "change"},
                      headers=issuer_headers)
    assert bad.status_code == 422 and bad.json()["field"] == "data.established_on"
    revoked = client.post(f"/v1/licenses/{new['id']}/revoke",
                          json={"reason": "issued_in_error"}, headers=issuer_headers)
    assert revoked.json()["status"] == "revoked"
    with container.session() as session:
        actions = [e.action for e in session.scalars(
            select(Event).where(Event.subject.in_([lid, new["id"]])).order_by(Event.seq))]
        assert verify_chain(session).ok
    assert actions == ["license.issue", "license.suspend", "license.resume", "license.amend",
                       "license.revoke"]


def test_expiry_is_computed(client, issuer_headers) -> None:  # type: ignore[no-untyped-def]
    body = business_body(valid_from="2020-01-01", valid_to="2021-12-31")
    lic = client.post("/v1/licenses", json=body, headers=issuer_headers).json()
    assert lic["status"] == "expired"
    listed = client.get("/v1/licenses", params={"status": "expired"}, headers=issuer_headers)
    assert lic["id"] in {item["id"] for item in listed.json()["data"]}


def _png() -> bytes:
    image = Image.new("RGB", (800, 560), "white")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_convert_scan_over_http(client, container, issuer_headers) -> None:  # type: ignore[no-untyped-def]
    import json as jsonlib

    import pikepdf
    r = client.post("/v1/licenses/convert", headers=issuer_headers,
                    files={"scan": ("paper.png", _png(), "image/png")},
                    data={"meta": jsonlib.dumps(business_body(), ensure_ascii=False)})
    assert r.status_code == 201, r.text
    pdf = client.get(f"/v1/licenses/{r.json()['id']}/pdf", headers=issuer_headers).content
    assert len(pikepdf.open(io.BytesIO(pdf)).pages) == 2  # rendered page + the scan
    before = _counts(container)
    bad = client.post("/v1/licenses/convert", headers=issuer_headers,
                      files={"scan": ("paper.png", b"not an image", "image/png")},
                      data={"meta": jsonlib.dumps(business_body(), ensure_ascii=False)})
    assert bad.status_code == 422 and bad.json()["code"] == "malformed_document"
    assert _counts(container) == before


def test_oversized_upload_is_413(client, issuer_headers) -> None:  # type: ignore[no-untyped-def]
    limit = client.app.state.container.settings.max_upload_bytes
    r = client.post("/v1/licenses/convert", headers=issuer_headers,
                    files={"scan": ("big.png", b"\0" * (limit + 1024), "image/png")},
                    data={"meta": "{}"})
    assert r.status_code == 413 and r.json()["code"] == "upload_too_large"


def test_slow_mint_still_seals(fresh_container) -> None:  # type: ignore[no-untyped-def]
    """A license's time is taken before rendering; sealing starts later (a busy machine, a
    worker waiting for the SQLite write lock), after fresh revocation data was made. The
    embedded CRL/OCSP must never be "too recent" for the seal's signing time."""
    from dataclasses import dataclass
    from datetime import datetime, timedelta

    from verify_api.services.licenses import MintRequest, license_service

    @dataclass
    class TickingClock:  # every reading is 5 s after the previous one
        at: datetime

        def now(self) -> datetime:
            self.at += timedelta(seconds=5)
            return self.at

    container = fresh_container()
    container.clock = TickingClock(container.clock.now())
    lic = license_service(container).mint(MintRequest.from_body(business_body()),
                                          issuer_code=ISSUER, actor="test").license
    assert lic["status"] == "valid"


def test_listing_filters_on_computed_status_with_true_counts(client, issuer_headers) -> None:  # type: ignore[no-untyped-def]
    expired = client.post("/v1/licenses", json=business_body(valid_from="2019-01-01",
                                                               valid_to="2020-12-31"),
                          headers=issuer_headers).json()
    current = client.post("/v1/licenses", json=business_body(), headers=issuer_headers).json()

    def listed(status):  # type: ignore[no-untyped-def]
        body = client.get("/v1/licenses", params={"status": status}, headers=issuer_headers)
        assert body.status_code == 200, body.text
        return body.json()

    only_expired = listed("expired")
    assert {item["status"] for item in only_expired["data"]} == {"expired"}
    assert expired["id"] in {item["id"] for item in only_expired["data"]}
    assert only_expired["count"] == len(only_expired["data"])  # fewer than one page here
    only_valid = listed("valid")
    assert {item["status"] for item in only_valid["data"]} == {"valid"}
    assert current["id"] in {item["id"] for item in only_valid["data"]}
    assert expired["id"] not in {item["id"] for item in only_valid["data"]}
    bad = client.get("/v1/licenses", params={"status": "nope"}, headers=issuer_headers)
    assert bad.status_code == 422 and bad.json()["field"] == "status"
