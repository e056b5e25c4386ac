"""Rendering an e-license: text, fonts, QR, embedded data, XMP, timing."""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import time
from datetime import date

import pikepdf
import pypdfium2 as pdfium
import pytest
import zxingcpp

from converters.render import (ELIC_NS, LICENSE_JSON_NAME, SEAL_BOX, LicenseRenderSpec,
                               RenderField, extract_embedded_license_json, license_record,
                               render_license_pdf)
from license_core.canonical import canonical_json, data_digest
from license_core.errors import InvalidIdentifier, MalformedDocument, ValidationFailed
from license_core.holder_codes import mask_name
from license_core.schema import FieldSpec, FieldType
from tests.conftest import require_tool

IDENT = "1.2.156.3005.2.11100000000013338W011.11110000000021135M.20230329701.003.Y"
# ~134 characters, like $BASE_URL/v/<token> with a lean token (110 base64url characters).
URL = "http://127.0.0.1:8000/v/" + ("aB3_-x9ZqK" * 11)
SECRET = "内部备注绝密XYZ987"

FIELDS = [
    FieldSpec("name", "名称", FieldType.STRING, public=True),
    ("legal_rep", "法定代表人", "string", True),
    ("founded", "成立日期", "date", True),
    ("listed", "上市公司", "boolean", True),
    ("capital", "注册资本（万元）", "number", True),
    ("scope", "经营范围", "text", True),
    ("secret_note", "内部备注", "string", False),
]
DATA = {"name": "北京示例科技有限公司", "legal_rep": "张三丰", "founded": "2015-03-18",
        "listed": False, "capital": 1000, "scope": "技术开发、技术推广；软件开发。",
        "secret_note": SECRET}


def make_spec(**overrides) -> LicenseRenderSpec:
    base = dict(type_name="营业执照", type_name_en="Business License", fields=FIELDS, data=DATA,
                holder_name="北京示例科技有限公司", holder_code_display="9111**********0X",
                holder_code_type="001", license_number="110105012345678",
                issuer_name="北京市朝阳区市场监督管理局", issuer_code="11110000000021135M",
                valid_from=date(2023, 3, 29), valid_to=None, issued_on=date(2023, 3, 29),
                identifier=IDENT, verification_url=URL,
                co_holders=[{"name": "李四", "role": "监护人", "id": "1101**********12"}])
    base.update(overrides)
    return LicenseRenderSpec(**base)


@pytest.fixture(scope="module")
def rendered():
    return render_license_pdf(make_spec())


def page_text(pdf: bytes, first: int = 1, last: int = 1) -> str:
    tool = require_tool("pdftotext")
    out = subprocess.run([tool, "-f", str(first), "-l", str(last), "-", "-"], input=pdf,
                         capture_output=True, check=True)
    return out.stdout.decode("utf-8")


def test_page_text_has_chinese_holder_type_and_fields(rendered):
    text = page_text(rendered.pdf_bytes)
    for expected in ("营业执照", "北京示例科技有限公司", "持证主体", "证照编号", "110105012345678",
                     "发证机关", "北京市朝阳区市场监督管理局", "有效期限", "长期", "签发日期",
                     "2023年3月29日", "扫码核验", "张三丰", "2015年3月18日", "否", "李四",
                     "统一社会信用代码", "9111**********0X"):
        assert expected in text, expected


def test_non_public_values_are_not_printed_but_embedded(rendered):
    text = page_text(rendered.pdf_bytes)
    assert SECRET not in text and "内部备注" not in text
    embedded = json.loads(extract_embedded_license_json(rendered.pdf_bytes))
    assert embedded["data"]["secret_note"] == SECRET


def test_fonts_are_embedded_subsets(rendered):
    tool = require_tool("pdffonts")
    out = subprocess.run([tool, "-"], input=rendered.pdf_bytes, capture_output=True,
                         check=True).stdout.decode()
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    assert rows
    for row in rows:
        assert "+WenQuanYiMicroHei" in row[0]
        # columns: name type encoding emb sub uni object ID
        assert row[-5:-2] == ["yes", "yes", "yes"], row


def test_fonts_embedded_per_pikepdf(rendered):
    with pikepdf.open(io.BytesIO(rendered.pdf_bytes)) as pdf:
        fonts = pdf.pages[0].Resources.Font
        assert len(fonts) >= 1
        for _, font in fonts.items():
            assert "/FontFile2" in font.FontDescriptor


def _decode_qr(pdf: bytes, dpi: int = 150) -> list[str]:
    doc = pdfium.PdfDocument(pdf)
    try:
        image = doc[0].render(scale=dpi / 72).to_pil()
    finally:
        doc.close()
    return [r.text for r in zxingcpp.read_barcodes(image)
            if r.format == zxingcpp.BarcodeFormat.QRCode]


def test_qr_decodes_from_150_dpi_render(rendered):
    assert _decode_qr(rendered.pdf_bytes) == [URL]
    assert 1 <= rendered.qr_version <= 13


def test_qr_version_for_realistic_url(rendered):
    assert len(URL) >= 130
    assert rendered.qr_version <= 10  # byte mode, ECC M: 134 bytes fit version 8


def test_embedded_json_round_trips(rendered):
    raw = extract_embedded_license_json(rendered.pdf_bytes)
    assert raw == rendered.license_json
    record = json.loads(raw)
    assert canonical_json(record) == raw       # canonical form survives the round trip
    assert record == license_record(make_spec())
    assert record["id"] == IDENT and record["version"] == "003"
    assert record["holder"]["id"] == "9111**********0X"
    assert record["valid_to"] is None


def test_attachment_is_json_with_data_relationship(rendered):
    with pikepdf.open(io.BytesIO(rendered.pdf_bytes)) as pdf:
        spec = pdf.attachments[LICENSE_JSON_NAME]
        assert spec.obj.AFRelationship == pikepdf.Name.Data
        assert str(spec.obj.EF.F.Subtype) == "/application/json"
        assert pdf.Root.AF[0].objgen == spec.obj.objgen


def test_custom_record_is_embedded_verbatim():
    record = {"id": IDENT, "data": {"a": 1}, "status": "valid"}
    out = render_license_pdf(make_spec(record=record))
    assert extract_embedded_license_json(out.pdf_bytes) == canonical_json(record)


def test_xmp_and_docinfo_mirror_the_record(rendered):
    with pikepdf.open(io.BytesIO(rendered.pdf_bytes)) as pdf:
        meta = pdf.open_metadata()
        assert meta["dc:title"] == "营业执照"
        assert meta["pdf:Producer"] == "elicense"
        assert meta[f"{{{ELIC_NS}}}identifier"] == IDENT
        assert meta[f"{{{ELIC_NS}}}type_code"] == "11100000000013338W011"
        assert meta[f"{{{ELIC_NS}}}issuer_code"] == "11110000000021135M"
        assert meta[f"{{{ELIC_NS}}}holder_name"] == mask_name("北京示例科技有限公司")
        assert meta[f"{{{ELIC_NS}}}valid_from"] == "2023-03-29"
        assert meta[f"{{{ELIC_NS}}}valid_to"] == "长期"
        assert meta[f"{{{ELIC_NS}}}version"] == "003"
        assert meta[f"{{{ELIC_NS}}}data_digest"] == data_digest(DATA).hex()
        info = pdf.docinfo
        assert str(info.LicenseIdentifier) == IDENT
        assert str(info.IssuerName) == "北京市朝阳区市场监督管理局"
        assert str(info.HolderName) == mask_name("北京示例科技有限公司")
        assert "北京示例科技有限公司" not in str(meta)
    assert b"urn:elicense:xmp:1.0/" in pikepdf.open(io.BytesIO(rendered.pdf_bytes)) \
        .Root.Metadata.read_bytes()


def test_render_is_reproducible_and_reports_seal_box(rendered):
    again = render_license_pdf(make_spec())
    assert again.pdf_bytes == rendered.pdf_bytes
    assert rendered.seal_box == SEAL_BOX
    x1, y1, x2, y2 = SEAL_BOX
    assert 0 < x1 < x2 < 595 and 0 < y1 < y2 < 842
    with pikepdf.open(io.BytesIO(rendered.pdf_bytes)) as pdf:
        assert len(pdf.pages) == 1
        assert [round(float(v)) for v in pdf.pages[0].MediaBox] == [0, 0, 595, 842]


def test_valid_to_date_printed_and_long_text_truncated_on_page_only():
    long_scope = "技术开发、技术推广、技术转让、技术咨询、技术服务；" * 160  # ~4000 chars
    spec = make_spec(valid_to=date(2028, 3, 28), data={**DATA, "scope": long_scope})
    out = render_license_pdf(spec)
    text = page_text(out.pdf_bytes)
    assert "2028年3月28日" in text
    assert "全文见电子证照内嵌数据" in text.replace("\n", "")
    assert json.loads(out.license_json)["data"]["scope"] == long_scope


def test_field_shapes_are_coerced():
    spec = make_spec()
    assert all(isinstance(f, RenderField) for f in spec.fields)
    assert spec.fields[0] == RenderField("name", "名称", "string", True)
    assert spec.type_code == "11100000000013338W011"


@pytest.mark.parametrize("overrides, error", [
    ({"identifier": "1.2.156.3005.2.bad"}, InvalidIdentifier),
    ({"holder_name": " "}, ValidationFailed),
    ({"valid_to": date(2020, 1, 1)}, ValidationFailed),
    ({"fields": [("a", "b")]}, ValidationFailed),
])
def test_bad_specs_rejected(overrides, error):
    with pytest.raises(error):
        make_spec(**overrides)


def test_oversized_qr_payload_rejected():
    with pytest.raises(ValidationFailed):
        render_license_pdf(make_spec(verification_url="http://x/v/" + "é" * 400))


def test_extract_from_garbage_and_plain_pdf():
    with pytest.raises(MalformedDocument):
        extract_embedded_license_json(b"not a pdf")
    pdf = pikepdf.new()
    pdf.add_blank_page()
    buf = io.BytesIO()
    pdf.save(buf)
    assert extract_embedded_license_json(buf.getvalue()) is None


def test_render_timing_median_of_20(capsys):
    spec = make_spec()
    render_license_pdf(spec)  # warm: font registration
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        render_license_pdf(spec)
        times.append(time.perf_counter() - t0)
    median_ms = statistics.median(times) * 1000
    with capsys.disabled():
        print(f"\nrender_license_pdf median of 20: {median_ms:.1f} ms")
    assert median_ms < 2000  # measured, not a benchmark: only catch pathological regressions


def test_largest_allowed_qr_still_decodes_at_150_dpi():
    url = "http://127.0.0.1:8000/v/" + ("Zx9-_aB3kQ" * 31)[:300]  # 324 bytes: version 13
    out = render_license_pdf(make_spec(verification_url=url))
    assert out.qr_version == 13
    assert _decode_qr(out.pdf_bytes) == [url]
