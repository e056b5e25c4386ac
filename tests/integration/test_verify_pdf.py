"""PDF verification end to end (SPEC §6): API, CLI, e-licenses, tampering, lifecycle, trust.

Tampering after sealing is done the honest way — pyHanko's ``IncrementalPdfFileWriter`` appends
a revision, as a PDF editor would — plus byte-level damage and one full rewrite by pikepdf.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name, pdf_string
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from license_core.holder_codes import uscc_check_character
from license_core.lifecycle import Action
from tests.conftest import require_tool
from verify_api.deps import Principal

SAMR = "11440300MB2C928159"  # 深圳市市场监督管理局: issues 营业执照
HEALTH = "114403000075420753"  # 深圳市卫生健康委员会
BUSINESS_LICENSE = "11100000MB03271699001"

_holder_numbers = itertools.count(int.from_bytes(os.urandom(2), "big") * 10)


def new_uscc() -> str:
    first17 = f"91440300MA5{next(_holder_numbers) % 1000000:06d}"
    return first17 + uscc_check_character(first17)


def business_license_body(**extra: Any) -> dict[str, Any]:
    return {"type_code": BUSINESS_LICENSE,
            "holder": {"id": new_uscc(), "name": "深圳市核验测试科技有限公司"},
            "data": {"name": "深圳市核验测试科技有限公司", "entity_type": "有限责任公司",
                     "legal_representative": "张三", "registered_capital": "100万元",
                     "established_on": "2020-01-01", "operating_period": "长期",
                     "address": "深圳市南山区科技园", "business_scope": "软件开发；信息技术咨询"},
            **extra}


def issuer(code: str = SAMR) -> Principal:
    return Principal(kind="client", role="issuer", subject="test", issuer_code=code)


def mint(container, **extra: Any) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    from verify_api.services.licenses import MintRequest, license_service
    service = license_service(container)
    result = service.mint(MintRequest.from_body(business_license_body(**extra)),
                          issuer_code=SAMR, actor="test")
    license_id = result.license["id"]
    return license_id, service.pdf(license_id, principal=issuer())


def unsealed_license(container, monkeypatch) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Mint a license and return what was handed to the sealer: the rendered, not yet sealed
    PDF (``pdf``) and the seal ``box``."""
    from verify_api.platform.sealing import sealing_service
    sealing = sealing_service(container)
    original = sealing.seal_license
    captured: dict[str, Any] = {}

    def capture(pdf: bytes, **kwargs: Any) -> bytes:
        captured.update(pdf=pdf, **kwargs)
        return original(pdf, **kwargs)

    monkeypatch.setattr(sealing, "seal_license", capture)
    mint(container)
    monkeypatch.undo()
    return captured


def verify(container, pdf: bytes, **kwargs: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from verify_api.services.verification import pdf_verifier
    return pdf_verifier(container).verify_pdf(pdf, **kwargs).to_dict()


def api_verify(client, pdf: bytes) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = client.post("/v1/verify/pdf", content=pdf,
                           headers={"content-type": "application/pdf"})
    assert response.status_code == 200, response.text
    return response.json()


def outcome(report: dict[str, Any]) -> tuple[str, str | None]:
    return report["indication"], report["sub_indication"]


def seal_of(report: dict[str, Any]) -> dict[str, Any]:
    seals = [s for s in report["signatures"] if s["kind"] == "seal"]
    assert len(seals) == 1, report["signatures"]
    return seals[0]


def plain_pdf(*, with_text_field: bool = False) -> bytes:
    """A small unsigned PDF (an e-official document), optionally with a form text field."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas
    buf = io.BytesIO()
    canvas = Canvas(buf, pagesize=A4)
    canvas.drawString(72, 760, "Official document 2026-001: approved.")
    if with_text_field:
        canvas.acroForm.textfield(name="remark", x=72, y=600, width=300, height=20, value="")
    canvas.showPage()
    canvas.save()
    return buf.getvalue()


# --- tampering ------------------------------------------------------------------------------------


def incremental(pdf: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    """Append one revision made by ``change(writer)`` (how a PDF editor saves)."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    change(writer)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _first_page(writer):  # type: ignore[no-untyped-def]
    ref = writer.root["/Pages"]["/Kids"][0]
    return ref, ref.get_object()


def _content_refs(page) -> list:  # type: ignore[no-untyped-def]
    contents = page.raw_get("/Contents")
    if isinstance(contents, generic.IndirectObject) and isinstance(
            contents.get_object(), generic.ArrayObject):
        return list(contents.get_object())
    if isinstance(contents, generic.ArrayObject):
        return list(contents)
    return [contents]


def change_page_content(pdf: bytes) -> bytes:
    """(a) a printed field value changed: the page's content stream object is replaced (same
    object number) by a copy in which the license number's last digit differs."""
    def change(writer) -> None:  # type: ignore[no-untyped-def]
        _, page = _first_page(writer)
        ref = _content_refs(page)[0]
        data = ref.get_object().data
        edited, n = re.subn(rb"(\d{9,})(\d)\) Tj",
                            lambda m: m.group(1) + (b"8" if m.group(2) == b"9" else b"9")
                            + b") Tj", data, count=1)
        assert n == 1 and edited != data
        writer.objects[(ref.generation, ref.idnum)] = generic.StreamObject(stream_data=edited)
    return incremental(pdf, change)


def add_freetext_annotation(pdf: bytes) -> bytes:
    """(b) a FreeText annotation added on page 1."""
    def change(writer) -> None:  # type: ignore[no-untyped-def]
        page_ref, page = _first_page(writer)
        annot = generic.DictionaryObject({
            pdf_name("/Type"): pdf_name("/Annot"), pdf_name("/Subtype"): pdf_name("/FreeText"),
            pdf_name("/Rect"): generic.ArrayObject(map(generic.FloatObject, (100, 500, 400, 540))),
            pdf_name("/Contents"): pdf_string("有效期延长至2099年"),
            pdf_name("/DA"): pdf_string("/Helv 12 Tf 0 g"), pdf_name("/P"): page_ref})
        annot_ref = writer.add_object(annot)
        annots = page.get("/Annots", generic.ArrayObject())
        page[pdf_name("/Annots")] = generic.ArrayObject(list(annots) + [annot_ref])
        writer.update_container(page)
    return incremental(pdf, change)


def add_page(pdf: bytes) -> bytes:
    """(c) a new blank page appended."""
    def change(writer) -> None:  # type: ignore[no-untyped-def]
        stream_ref = writer.add_object(generic.StreamObject(
            stream_data=b"BT /F1 24 Tf 72 700 Td (appended page) Tj ET"))
        page = generic.DictionaryObject({
            pdf_name("/Type"): pdf_name("/Page"),
            pdf_name("/MediaBox"): generic.ArrayObject(map(generic.NumberObject, (0, 0, 595, 842))),
            pdf_name("/Resources"): generic.DictionaryObject(),
            pdf_name("/Contents"): stream_ref})
        writer.insert_page(page)
    return incremental(pdf, change)


def overlay_text(pdf: bytes) -> bytes:
    """(d) a content stream appended to page 1 that paints over it (white box + new text)."""
    def change(writer) -> None:  # type: ignore[no-untyped-def]
        _, page = _first_page(writer)
        overlay = writer.add_object(generic.StreamObject(
            stream_data=b"q 1 1 1 rg 150 600 250 30 re f Q BT /Helv 14 Tf 150 610 Td "
                        b"(CHANGED) Tj ET"))
        page[pdf_name("/Contents")] = generic.ArrayObject(_content_refs(page) + [overlay])
        writer.update_container(page)
    return incremental(pdf, change)


def replace_license_json(pdf: bytes) -> bytes:
    """(e) the embedded license.json replaced by different (well-formed) data."""
    def change(writer) -> None:  # type: ignore[no-untyped-def]
        spec_ref = writer.root["/Names"]["/EmbeddedFiles"]["/Names"][1]
        ef = spec_ref.get_object()["/EF"]
        key = "/UF" if "/UF" in ef else "/F"
        ref = ef.raw_get(key)
        record = json.loads(ref.get_object().data)
        record["data"]["registered_capital"] = "1亿元"
        raw = json.dumps(record, ensure_ascii=False, sort_keys=True,
                         separators=(",", ":")).encode()
        new_ref = writer.add_object(generic.StreamObject(
            generic.DictionaryObject({pdf_name("/Type"): pdf_name("/EmbeddedFile")}),
            stream_data=raw))
        ef[pdf_name(key)] = new_ref
        if "/F" in ef:
            ef[pdf_name("/F")] = new_ref
        writer.update_container(spec_ref.get_object())
    return incremental(pdf, change)


def append_junk(pdf: bytes) -> bytes:
    """(f) bytes after %%EOF."""
    return pdf + b"\n% evil appendix\n1 0 obj (x) endobj\n"


def flip_signed_byte(pdf: bytes) -> bytes:
    """(g1) one byte flipped inside the seal's signed range (in the first revision's body)."""
    pos = pdf.index(b"/ByteRange")
    target = pos // 2  # well inside the first signed block
    return pdf[:target] + bytes([pdf[target] ^ 0x01]) + pdf[target + 1:]


def flip_page_content_byte(pdf: bytes) -> bytes:
    """(g2) one byte flipped inside the page's (compressed) content stream."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    reader = PdfFileReader(io.BytesIO(pdf))
    page = reader.root["/Pages"]["/Kids"][0].get_object()
    ref = _content_refs(page)[0]
    obj_start = re.search(rb"(?m)^%d 0 obj" % ref.idnum, pdf)
    assert obj_start is not None, "content stream not at top level"
    body = pdf.index(b"stream", obj_start.end()) + len(b"stream\n") + 10
    return pdf[:body] + bytes([pdf[body] ^ 0x01]) + pdf[body + 1:]


def truncate(pdf: bytes) -> bytes:
    """(h) the last third cut off."""
    return pdf[: len(pdf) * 2 // 3]


def pikepdf_rewrite(pdf: bytes) -> bytes:
    """A full rewrite by qpdf (PITFALLS: this breaks every signature)."""
    import pikepdf
    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        doc.save(out)
    return out.getvalue()


def fill_text_field(pdf: bytes) -> bytes:
    """Form filling after signing: set the value of the text field ``remark``."""
    def change(writer) -> None:  # type: ignore[no-untyped-def]
        for ref in writer.root["/AcroForm"]["/Fields"]:
            field = ref.get_object()
            if str(field.get("/T")) == "remark":
                field[pdf_name("/V")] = pdf_string("rejected")
                writer.update_container(field)
    return incremental(pdf, change)


def sign_with(container, identity, pdf: bytes, *, field: str = "Forged") -> bytes:  # type: ignore[no-untyped-def]
    """An approval signature made with ``identity`` (``.private_key``, ``.certificate``,
    ``.chain``) directly through pyHanko, bypassing our signer's checks: PAdES B-T with the
    platform TSA, no revocation data embedded."""
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import serialization
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    from signing.tsa import InProcessTimeStamper
    from verify_api.platform.pki import platform_pki

    def asn1(cert):  # type: ignore[no-untyped-def]
        return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))

    key_der = identity.private_key.private_bytes(
        Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    signer = signers.SimpleSigner(
        signing_cert=asn1(identity.certificate),
        signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
        cert_registry=SimpleCertificateStore.from_certs([asn1(c) for c in identity.chain]))
    meta = signers.PdfSignatureMetadata(field_name=field, subfilter=SigSeedSubFilter.PADES)
    timestamper = InProcessTimeStamper(platform_pki(container).tsa)
    out = signers.PdfSigner(meta, signer=signer, timestamper=timestamper).sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(pdf)))
    return out.getvalue()


CITIZEN_ID = "11010519491231002X"


def citizen_certificate(container):  # type: ignore[no-untyped-def]
    from verify_api.services.certs import issue_holder_certificate
    return issue_holder_certificate(container, holder_code=CITIZEN_ID, name="王小明",
                                    password=b"pw", actor="test")


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minted(container) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    return mint(container)


# --- the honest e-license -----------------------------------------------------------------------


def test_fresh_elicense_passes_via_api(client, minted) -> None:  # type: ignore[no-untyped-def]
    license_id, pdf = minted
    report = api_verify(client, pdf)
    assert outcome(report) == ("TOTAL_PASSED", None), report["checks"]
    for key in ("indication", "sub_indication", "signatures", "license", "checks",
                "verified_at"):
        assert key in report
    seal = seal_of(report)
    assert seal["pades_level"] == "B-LTA"
    assert seal["docmdp_ok"] is True
    assert seal["signer"]["issuer_code"] == SAMR
    assert seal["coverage"] == "ENTIRE_REVISION"
    assert seal["modification_level"] == "LTA_UPDATES"
    for key in ("field", "signer", "intact", "valid", "trusted", "coverage",
                "modification_level", "docmdp_ok", "signing_time", "timestamp", "revocation",
                "pades_level", "indication", "sub_indication"):
        assert key in seal
    assert [s["kind"] for s in report["signatures"]].count("doc_timestamp") == 1
    assert report["license"] == {"id": license_id, "type_code": BUSINESS_LICENSE,
                                 "version": "001", "registry_status": "valid",
                                 "data_matches_registry": True}
    assert all(c["passed"] for c in report["checks"])


def test_multipart_upload(client, minted) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/verify/pdf",
                           files={"file": ("license.pdf", minted[1], "application/pdf")})
    assert response.status_code == 200
    assert response.json()["indication"] == "TOTAL_PASSED"


# --- tampering after sealing --------------------------------------------------------------------

TAMPER_CASES = [
    ("a_page_content_changed", change_page_content, "TOTAL_FAILED", "MODIFIED_AFTER_SEAL"),
    ("b_freetext_annotation", add_freetext_annotation, "TOTAL_FAILED", "MODIFIED_AFTER_SEAL"),
    ("c_page_added", add_page, "TOTAL_FAILED", "MODIFIED_AFTER_SEAL"),
    ("d_text_overlay", overlay_text, "TOTAL_FAILED", "MODIFIED_AFTER_SEAL"),
    ("e_license_json_replaced", replace_license_json, "TOTAL_FAILED", "MODIFIED_AFTER_SEAL"),
    ("f_junk_after_eof", append_junk, "TOTAL_FAILED", "TRAILING_DATA"),
    ("g1_signed_byte_flipped", flip_signed_byte, "TOTAL_FAILED", "HASH_FAILURE"),
    ("g2_content_byte_flipped", flip_page_content_byte, "TOTAL_FAILED", "HASH_FAILURE"),
    ("h_truncated", truncate, "TOTAL_FAILED", "FORMAT_FAILURE"),
    ("i_garbage", lambda pdf: os.urandom(4096), "TOTAL_FAILED", "FORMAT_FAILURE"),
    ("j_pikepdf_rewrite", pikepdf_rewrite, "TOTAL_FAILED", "HASH_FAILURE"),
]


@pytest.mark.parametrize("tamper,indication,sub",
                         [pytest.param(t, i, s, id=name) for name, t, i, s in TAMPER_CASES])
def test_tampered_elicense_fails(client, minted, tamper, indication, sub) -> None:  # type: ignore[no-untyped-def]
    report = api_verify(client, tamper(minted[1]))
    assert outcome(report) == (indication, sub), json.dumps(
        [report["checks"]] + [s["checks"] for s in report["signatures"]], ensure_ascii=False)


# --- lifecycle and registry ---------------------------------------------------------------------


@pytest.mark.parametrize("action,reason,status,sub", [
    (Action.REVOKE, "revoked", "revoked", "LICENSE_REVOKED"),
    (Action.SUSPEND, "investigation", "suspended", "LICENSE_SUSPENDED"),
])
def test_revoked_or_suspended_license_fails(client, container, action, reason, status,
                                            sub) -> None:  # type: ignore[no-untyped-def]
    from verify_api.services.licenses import license_service
    license_id, pdf = mint(container)
    license_service(container).transition(license_id, action, reason=reason, note=None,
                                          principal=issuer())
    report = api_verify(client, pdf)
    assert outcome(report) == ("TOTAL_FAILED", sub)
    assert seal_of(report)["indication"] == "TOTAL_PASSED"  # the seal itself is fine
    assert report["license"]["registry_status"] == status
    assert report["license"]["data_matches_registry"] is True


def test_superseded_version_fails_and_successor_passes(client, container) -> None:  # type: ignore[no-untyped-def]
    from verify_api.services.licenses import license_service
    service = license_service(container)
    license_id, old_pdf = mint(container)
    amended = service.amend(license_id, changes={"address": "深圳市福田区新地址"},
                            reason="change", note=None, principal=issuer())
    report = api_verify(client, old_pdf)
    assert outcome(report) == ("TOTAL_FAILED", "LICENSE_SUPERSEDED")
    assert report["license"]["registry_status"] == "superseded"
    new_report = api_verify(client, service.pdf(amended["id"], principal=issuer()))
    assert outcome(new_report) == ("TOTAL_PASSED", None)
    assert new_report["license"]["version"] == "002"


def test_expired_license_fails(client, container) -> None:  # type: ignore[no-untyped-def]
    _, pdf = mint(container, valid_from="2020-01-01", valid_to="2021-01-01")
    report = api_verify(client, pdf)
    assert outcome(report) == ("TOTAL_FAILED", "LICENSE_EXPIRED")
    assert report["license"]["registry_status"] == "expired"
    assert seal_of(report)["indication"] == "TOTAL_PASSED"


def test_registry_data_differs_from_pdf(client, container) -> None:  # type: ignore[no-untyped-def]
    """A correctly sealed PDF whose registry record changed since (e.g. a database edit)."""
    from directory.models import License
    license_id, pdf = mint(container)
    with container.session() as session, session.begin():
        row = session.get(License, license_id)
        row.data = {**row.data, "registered_capital": "200万元"}
    report = api_verify(client, pdf)
    assert outcome(report) == ("TOTAL_FAILED", "LICENSE_DATA_MISMATCH")
    assert report["license"]["data_matches_registry"] is False
    assert report["license"]["registry_status"] == "valid"


# --- trust --------------------------------------------------------------------------------------


def test_unknown_root_is_indeterminate_and_trust_adds_it(fresh_container) -> None:  # type: ignore[no-untyped-def]
    from verify_api.platform.pki import platform_pki
    from verify_api.services.documents import sign_document
    city_a, city_b = fresh_container(), fresh_container()
    root_a = platform_pki(city_a).root.public_bytes(Encoding.DER)
    _, license_pdf = mint(city_a)
    assert outcome(verify(city_a, license_pdf)) == ("TOTAL_PASSED", None)

    report = verify(city_b, license_pdf)
    assert outcome(report) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    assert seal_of(report)["trusted"] is False
    # trusted through --trust, but city B's registry does not know city A's license
    trusted = verify(city_b, license_pdf, extra_anchors=(root_a,))
    assert seal_of(trusted)["indication"] == "TOTAL_PASSED"
    assert outcome(trusted) == ("TOTAL_FAILED", "LICENSE_UNKNOWN")

    document = sign_document(city_a, plain_pdf(), issuer_code=SAMR, actor="test")
    assert outcome(verify(city_b, document)) == ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
    assert outcome(verify(city_b, document, extra_anchors=(root_a,))) == ("TOTAL_PASSED", None)


def test_elicense_sealed_by_another_department(client, container, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The rendered e-license of SAMR sealed by the health commission's (valid) seal."""
    from verify_api.platform.sealing import sealing_service
    sealing = sealing_service(container)
    captured = unsealed_license(container, monkeypatch)
    forged = sealing.seal_license(captured["pdf"], issuer_code=HEALTH, box=captured["box"])
    report = api_verify(client, forged)
    assert outcome(report) == ("TOTAL_FAILED", "ISSUER_MISMATCH")
    assert seal_of(report)["signer"]["issuer_code"] == HEALTH
    assert seal_of(report)["trusted"] is True

    # an approval signature (not a no-changes certification) is not an e-license seal either
    from verify_api.services.documents import sign_document
    approved = sign_document(container, captured["pdf"], issuer_code=SAMR, actor="test")
    report = api_verify(client, approved)
    assert outcome(report) == ("TOTAL_FAILED", "SIG_CONSTRAINTS_FAILURE")

    # nor is a citizen's 一证通用 certificate, however valid
    citizen = citizen_certificate(container)
    report = api_verify(client, sign_with(container, citizen, captured["pdf"]))
    assert outcome(report) == ("TOTAL_FAILED", "WRONG_SIGNER")


# --- e-official documents -----------------------------------------------------------------------


def test_countersigned_document_passes_and_later_edits_fail(client, container) -> None:  # type: ignore[no-untyped-def]
    from verify_api.services.documents import sign_document
    signed = sign_document(container, plain_pdf(with_text_field=True), issuer_code=SAMR,
                           actor="test")
    countersigned = sign_document(container, signed, issuer_code=HEALTH, actor="test")
    report = api_verify(client, countersigned)
    assert outcome(report) == ("TOTAL_PASSED", None), report["checks"]
    approvals = [s for s in report["signatures"] if s["kind"] == "signature"]
    assert {s["signer"]["issuer_code"] for s in approvals} == {SAMR, HEALTH}
    assert report["license"] is None and report["judged_as_elicense"] is False

    filled = api_verify(client, fill_text_field(countersigned))
    assert outcome(filled) == ("TOTAL_FAILED", "MODIFIED_AFTER_SIGNING")
    annotated = api_verify(client, add_freetext_annotation(countersigned))
    assert outcome(annotated) == ("TOTAL_FAILED", "MODIFIED_AFTER_SIGNING")


# --- seal key revocation ------------------------------------------------------------------------


def test_seal_revoked_after_sealing_keeps_old_licenses_valid(fresh_container, clock) -> None:  # type: ignore[no-untyped-def]
    from license_core.errors import SealKeyRevoked
    from verify_api.services.keys import revoke_seal, rotate_seal
    from verify_api.platform.pki import platform_pki
    city = fresh_container()
    _, pdf = mint(city)
    stolen = platform_pki(city).seal_for(SAMR)  # the key a thief copied before revocation
    clock.advance(timedelta(hours=1))
    revoke_seal(city, issuer_code=SAMR, reason="key_compromise", actor="test")
    with pytest.raises(SealKeyRevoked):
        mint(city)
    report = verify(city, pdf)
    assert outcome(report) == ("TOTAL_PASSED", None), report["checks"]
    seal = seal_of(report)
    assert seal["revocation"]["revoked"] is False and seal["timestamp"] < report["verified_at"]

    # the thief seals a document after the revocation, with a genuine platform timestamp and
    # no revocation data: the verifier's own current CRL catches it
    clock.advance(timedelta(minutes=10))
    forged = sign_with(city, stolen, plain_pdf())
    forged_report = verify(city, forged)
    assert outcome(forged_report) == ("TOTAL_FAILED", "REVOKED")
    assert forged_report["signatures"][0]["revocation"]["revoked"] is True
    rotate_seal(city, issuer_code=SAMR, actor="test")
    clock.advance(timedelta(minutes=5))
    _, new_pdf = mint(city)
    assert outcome(verify(city, new_pdf)) == ("TOTAL_PASSED", None)
    assert outcome(verify(city, pdf)) == ("TOTAL_PASSED", None)


# --- poppler ------------------------------------------------------------------------------------


def test_pdfsig_accepts_the_seal(live_service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """poppler's pdfsig (NSS) validates the seal with the root as the only trust anchor; NSS
    asks the live OCSP responder named in the certificates' AIA (GET, ``%2F`` in the path)."""
    pdfsig = require_tool("pdfsig")
    certutil = require_tool("certutil")
    from verify_api.platform.pki import platform_pki
    city, _server = live_service
    _, pdf = mint(city)
    license_pdf = tmp_path / "license.pdf"
    license_pdf.write_bytes(pdf)
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(platform_pki(city).root.public_bytes(Encoding.PEM))
    nss = tmp_path / "nss"
    nss.mkdir()
    subprocess.run([certutil, "-N", "-d", f"sql:{nss}", "--empty-password"], check=True,
                   capture_output=True, timeout=60)
    subprocess.run([certutil, "-A", "-d", f"sql:{nss}", "-n", "elicense-root", "-t", "CT,C,C",
                    "-i", str(root_pem)], check=True, capture_output=True, timeout=60)
    result = subprocess.run([pdfsig, "-nssdir", f"sql:{nss}", str(license_pdf)],
                            capture_output=True, text=True, timeout=120)
    text = result.stdout + result.stderr
    first = text.split("Signature #2")[0]
    assert "Signature #1" in first, text
    assert "Signature Validation: Signature is Valid." in first, text
    assert "Certificate Validation: Certificate is Trusted." in first, text


# --- hostile input and privacy over HTTP --------------------------------------------------------


@pytest.mark.parametrize("body", [
    pytest.param(b"\x00" * 10, id="zeros"),
    pytest.param(b"%PDF-1.7\n" + bytes(range(256)) * 40, id="pdf-header-then-garbage"),
    pytest.param(b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << "
                 b"/Root 1 0 R /Size 99999999999 >>\nstartxref\n-5\n%%EOF", id="broken-xref"),
    pytest.param(b"<html>not a pdf</html>", id="html"),
])
def test_hostile_input_gets_a_report(client, body: bytes) -> None:  # type: ignore[no-untyped-def]
    report = api_verify(client, body)
    assert outcome(report) == ("TOTAL_FAILED", "FORMAT_FAILURE")
    assert report["license"] is None and report["signatures"] == []


def test_upload_problems(client) -> None:  # type: ignore[no-untyped-def]
    empty = client.post("/v1/verify/pdf", content=b"",
                        headers={"content-type": "application/pdf"})
    assert empty.status_code == 422 and empty.json()["field"] == "file"
    wrong_field = client.post("/v1/verify/pdf", files={"document": ("x.pdf", b"%PDF-1.7")})
    assert wrong_field.status_code == 422 and wrong_field.json()["field"] == "file"
    too_large = client.post("/v1/verify/pdf", content=b"%PDF-1.7\n" + b"0" * (25 * 1024 * 1024),
                            headers={"content-type": "application/pdf"})
    assert too_large.status_code == 413
    assert too_large.headers["content-type"].startswith("application/problem+json")
    assert too_large.json()["code"] == "upload_too_large"


def test_public_report_masks_holder_codes(client, container) -> None:  # type: ignore[no-untyped-def]
    """A form signed with a citizen's 一证通用 certificate (serialNumber 111-<resident ID>)."""
    citizen = citizen_certificate(container)
    signed = sign_with(container, citizen, plain_pdf(), field="Citizen")
    response = client.post("/v1/verify/pdf", content=signed,
                           headers={"content-type": "application/pdf"})
    assert response.status_code == 200
    assert CITIZEN_ID not in response.text
    subject = response.json()["signatures"][0]["signer"]["subject"]
    assert "111-1101************2X" in subject, subject
    assert response.json()["signatures"][0]["trusted"] is True
    # the operator's own report (CLI) is not a public answer
    assert CITIZEN_ID in json.dumps(verify(container, signed), ensure_ascii=False)


# --- the command line ---------------------------------------------------------------------------


def cli_env(container) -> dict[str, str]:  # type: ignore[no-untyped-def]
    settings = container.settings
    env = dict(os.environ)
    env.update(ELICENSE_HOME=str(settings.home), ELICENSE_DATABASE_URL=settings.database_url,
               ELICENSE_SECRET_KEY=settings.secret_key, ELICENSE_ENVIRONMENT="test",
               ELICENSE_BASE_URL=settings.base_url)
    return env


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "verify_api", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_verify_exit_codes(fresh_container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from verify_api.platform.pki import platform_pki
    from verify_api.services.documents import sign_document
    city, other_city = fresh_container(), fresh_container()
    env = cli_env(city)
    _, pdf = mint(city)
    good = tmp_path / "good.pdf"
    good.write_bytes(pdf)
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(append_junk(pdf))
    foreign = tmp_path / "foreign.pdf"
    foreign.write_bytes(sign_document(other_city, plain_pdf(), issuer_code=SAMR, actor="test"))
    foreign_root = tmp_path / "other-root.pem"
    foreign_root.write_bytes(platform_pki(other_city).root.public_bytes(Encoding.PEM))

    passed = run_cli(env, "verify", str(good), "--json")
    assert passed.returncode == 0, passed.stderr
    report = json.loads(passed.stdout)
    assert outcome(report) == ("TOTAL_PASSED", None)
    assert report["license"]["registry_status"] == "valid"

    human = run_cli(env, "verify", str(junk))
    assert human.returncode == 1, human.stderr
    assert "TOTAL_FAILED / TRAILING_DATA" in human.stdout
    assert "FAILED no_trailing_data" in human.stdout

    untrusted = run_cli(env, "verify", str(foreign), "--json")
    assert untrusted.returncode == 3, untrusted.stderr
    assert outcome(json.loads(untrusted.stdout)) == ("INDETERMINATE",
                                                     "NO_CERTIFICATE_CHAIN_FOUND")
    trusted = run_cli(env, "verify", str(foreign), "--json", "--trust", str(foreign_root))
    assert trusted.returncode == 0, trusted.stdout
    assert outcome(json.loads(trusted.stdout)) == ("TOTAL_PASSED", None)

    missing = run_cli(env, "verify", str(tmp_path / "missing.pdf"))
    assert missing.returncode == 2


def test_pdf_verification_writes_a_usage_record(client, container) -> None:  # type: ignore[no-untyped-def]
    """SPEC §8: a verification that names a holder's license is recorded for that holder."""
    from sqlalchemy import func, select

    from directory.models import UsageRecord
    license_id, pdf = mint(container)
    with container.session() as session:
        before = session.scalar(select(func.count()).select_from(UsageRecord)
                                .where(UsageRecord.license_id == license_id))
    r = client.post("/v1/verify/pdf", content=pdf, headers={"Content-Type": "application/pdf"})
    assert r.json()["indication"] == "TOTAL_PASSED"
    with container.session() as session:
        rows = session.scalars(select(UsageRecord).where(UsageRecord.license_id == license_id)
                               .order_by(UsageRecord.at)).all()
    assert len(rows) == before + 1
    assert rows[-1].purpose == "verify_pdf" and rows[-1].actor == "public"


def test_a_copied_elicense_qr_makes_a_document_an_elicense(client, container,  # type: ignore[no-untyped-def]
                                                           monkeypatch) -> None:
    """SPEC §6: a PDF carrying an e-license QR is judged as an e-license whatever else it
    claims. Strip the embedded data (license.json, XMP) from a rendered e-license so only the
    printed page and its QR remain, sign it with a valid department approval signature: as an
    ordinary document that would pass; as an e-license it must fail."""
    import io

    import pikepdf

    from verify_api.services.documents import sign_document
    captured = unsealed_license(container, monkeypatch)
    with pikepdf.open(io.BytesIO(captured["pdf"])) as document:
        for key in ("/Names", "/AF", "/Metadata"):
            if key in document.Root:
                del document.Root[key]
        buffer = io.BytesIO()
        document.save(buffer)  # unsigned at this point: a full rewrite is fine
    stripped = buffer.getvalue()
    assert b"license.json" not in stripped
    approved = sign_document(container, stripped, issuer_code=SAMR, actor="test")
    report = api_verify(client, approved)
    assert report["indication"] == "TOTAL_FAILED", report
    assert report["sub_indication"] in ("SIG_CONSTRAINTS_FAILURE", "LICENSE_DATA_MISMATCH")
    # the same page without the QR is an ordinary e-official document and passes
    assert api_verify(client, sign_document(container, plain_pdf(), issuer_code=SAMR,
                                            actor="test"))["indication"] == "TOTAL_PASSED"
