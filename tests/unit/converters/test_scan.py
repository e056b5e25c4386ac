"""Appending the paper scan to a rendered e-license."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pikepdf
import pytest
from PIL import Image

from converters.render import add_scan_pages, extract_embedded_license_json, render_license_pdf
from license_core.errors import MalformedDocument, UploadTooLarge
from tests.unit.converters.test_render import make_spec, page_text


@pytest.fixture(scope="module")
def license_pdf() -> bytes:
    return render_license_pdf(make_spec()).pdf_bytes


def _image(fmt: str, size=(600, 850), mode="RGB", **save) -> bytes:
    img = Image.new(mode, size, "white" if mode != "RGBA" else (255, 255, 255, 0))
    for x in range(50, 550, 7):  # something that is not blank
        for y in range(100, 140):
            img.putpixel((x, y), (20, 20, 20) if mode == "RGB" else
                         ((20, 20, 20, 255) if mode == "RGBA" else 20))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def _pdf(pages: int, **save) -> bytes:
    pdf = pikepdf.new()
    for _ in range(pages):
        pdf.add_blank_page(page_size=(595, 842))
    buf = io.BytesIO()
    pdf.save(buf, **save)
    return buf.getvalue()


def _pages(pdf: bytes) -> list[tuple[float, float]]:
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        return [(float(p.MediaBox[2]), float(p.MediaBox[3])) for p in doc.pages]


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"),
                                       ("PNG", "RGBA"), ("PNG", "L")])
def test_image_scan_adds_one_page_with_its_aspect(license_pdf, fmt, mode):
    out = add_scan_pages(license_pdf, _image(fmt, mode=mode))
    pages = _pages(out)
    assert len(pages) == 2
    w, h = pages[1]
    assert abs(w / h - 600 / 850) < 0.01
    assert w <= 595.3 and h <= 841.9 and (abs(h - 841.89) < 0.5 or abs(w - 595.28) < 0.5)
    # The license page and its data survive.
    assert "营业执照" in page_text(out)
    assert json.loads(extract_embedded_license_json(out))["id"] == make_spec().identifier


def test_landscape_scan_fits_landscape_a4(license_pdf):
    w, h = _pages(add_scan_pages(license_pdf, _image("PNG", size=(1200, 800))))[1]
    assert w > h and abs(w - 841.89) < 0.5


def test_jpeg_is_embedded_unchanged(license_pdf):
    jpeg = _image("JPEG", quality=80)
    with pikepdf.open(io.BytesIO(add_scan_pages(license_pdf, jpeg))) as pdf:
        image = pdf.pages[1].Resources.XObject.Scan
        assert image.Filter == pikepdf.Name.DCTDecode
        assert image.read_raw_bytes() == jpeg


def test_exif_rotated_jpeg_is_turned_upright(license_pdf):
    img = Image.new("RGB", (800, 400), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    w, h = _pages(add_scan_pages(license_pdf, buf.getvalue()))[1]
    assert h > w


def test_pdf_scan_pages_appended_without_annotations(license_pdf):
    scan = pikepdf.new()
    for _ in range(3):
        page = scan.add_blank_page()
        page.Annots = scan.make_indirect(pikepdf.Array([pikepdf.Dictionary(
            Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Link, Rect=[0, 0, 10, 10])]))
    buf = io.BytesIO()
    scan.save(buf)
    out = add_scan_pages(license_pdf, buf.getvalue())
    with pikepdf.open(io.BytesIO(out)) as pdf:
        assert len(pdf.pages) == 1 + 3
        assert all("/Annots" not in p.obj for p in pdf.pages)
    assert extract_embedded_license_json(out) is not None


@pytest.mark.parametrize("garbage", [b"hello world", b"\x00" * 100, b"GIF89a" + b"\x00" * 50,
                                     b"\xff\xd8\xff\xe0" + b"\x00" * 40,
                                     b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
                                     b"%PDF-1.7\n garbage"],
                         ids=["text", "zeros", "gif", "jpeg-header", "png-header", "pdf-header"])
def test_garbage_scans_rejected(license_pdf, garbage):
    with pytest.raises(MalformedDocument):
        add_scan_pages(license_pdf, garbage)


def test_truncated_jpeg_rejected(license_pdf):
    jpeg = _image("JPEG", size=(1200, 1600))
    with pytest.raises(MalformedDocument):
        add_scan_pages(license_pdf, jpeg[: len(jpeg) // 2])


def test_empty_scan_rejected(license_pdf):
    with pytest.raises(MalformedDocument):
        add_scan_pages(license_pdf, b"")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with a tiny (bogus) data stream."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("w, h", [(100_000, 100_000), (20_000, 20_000), (7000, 7000)])
def test_huge_dimension_png_rejected_without_decoding(license_pdf, w, h):
    with pytest.raises(UploadTooLarge, match="pixels"):
        add_scan_pages(license_pdf, _png_header_only(w, h))


def test_pixel_limit_is_configurable(license_pdf):
    with pytest.raises(UploadTooLarge):
        add_scan_pages(license_pdf, _image("PNG"), max_pixels=1000)


def test_byte_limit(license_pdf):
    with pytest.raises(UploadTooLarge):
        add_scan_pages(license_pdf, _image("PNG"), max_bytes=100)


def test_too_many_pdf_pages(license_pdf):
    with pytest.raises(UploadTooLarge):
        add_scan_pages(license_pdf, _pdf(5), max_pages=4)


def test_encrypted_pdf_rejected(license_pdf):
    user_pw = _pdf(1, encryption=pikepdf.Encryption(owner="o", user="u"))
    owner_only = _pdf(1, encryption=pikepdf.Encryption(owner="o", user=""))
    for scan in (user_pw, owner_only):
        with pytest.raises(MalformedDocument, match="encrypted"):
            add_scan_pages(license_pdf, scan)


def test_png_with_broken_data_rejected(license_pdf):
    with pytest.raises(MalformedDocument):
        add_scan_pages(license_pdf, _png_header_only(100, 100))


def test_scan_rendered_page_decodes_at_150_dpi(license_pdf):
    import pypdfium2 as pdfium
    out = add_scan_pages(license_pdf, _image("JPEG"))
    doc = pdfium.PdfDocument(out)
    try:
        assert len(doc) == 2
        scan = doc[1].render(scale=150 / 72).to_pil().convert("L")
    finally:
        doc.close()
    assert scan.getextrema()[0] < 60  # the dark strokes of the scan are visible
