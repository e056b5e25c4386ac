"""Render an e-license as a one-page A4 PDF, with its data embedded, and append paper scans.

The page is what a person reads; the embedded ``license.json`` (canonical JSON, SPEC §6) is the
authoritative copy of the data and XMP mirrors it for PDF readers. Non-public fields are never
printed but are embedded. The department seal is *not* drawn here: the signer later places its
visible signature into :data:`SEAL_BOX` on page 1. Everything done with pikepdf happens before
sealing (PITFALLS: qpdf must never rewrite a signed PDF); :func:`extract_embedded_license_json`
only reads.
"""

from __future__ import annotations

import functools
import io
import math
import zlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Mapping, Sequence

import pikepdf
from pikepdf import Name
from pikepdf.models.metadata import PdfMetadata
from PIL import Image, ImageOps, UnidentifiedImageError
from reportlab.lib.colors import Color, HexColor
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab import rl_config
from reportlab.pdfgen.canvas import Canvas
from reportlab.pdfgen.pathobject import PDFPathObject

from license_core.verification import ELICENSE_EMBEDDED_FILENAME, ELICENSE_XMP_NAMESPACE
from license_core.canonical import canonical_json, data_digest
from license_core.errors import MalformedDocument, UploadTooLarge, ValidationFailed
from license_core.holder_codes import mask_name
from license_core.identifiers import LicenseIdentifier

from .fonts import register_reportlab_font
from .qr import MAX_QR_VERSION, qr_matrix

__all__ = [
    "ELIC_NS", "ELIC_PREFIX", "LICENSE_JSON_NAME", "SEAL_BOX", "PAGE_SIZE",
    "RenderField", "CoHolder", "LicenseRenderSpec", "RenderedLicense",
    "license_record", "render_license_pdf", "add_scan_pages", "extract_embedded_license_json",
]

ELIC_NS = ELICENSE_XMP_NAMESPACE  # the verifier recognises e-licenses by it
ELIC_PREFIX = "elic"
LICENSE_JSON_NAME = ELICENSE_EMBEDDED_FILENAME
PAGE_SIZE: tuple[float, float] = A4
SEAL_BOX: tuple[float, float, float, float] = (300.0, 92.0, 420.0, 212.0)
"""Where the department seal's visible signature goes on page 1 (PDF points, x1 y1 x2 y2):
42 mm square, centred on the issuer name and issue date, as a paper seal would be."""

_W, _H = PAGE_SIZE
_RED = HexColor("#9E1B20")
_GOLD = HexColor("#B8955A")
_INK = HexColor("#1F1F1F")
_GREY = HexColor("#6B6B6B")
_LABEL_FILL = HexColor("#F6F0E4")
_ROSETTE = HexColor("#F1E4D3")
_QR_BOX = (445.0, 74.0, 535.0, 164.0)       # including the 4-module quiet zone
_TABLE_X = (60.0, 535.0)
_LABEL_W = 118.0
_TABLE_TOP = 688.0
_TABLE_BOTTOM = 232.0
_TRUNCATED = "…（全文见电子证照内嵌数据）"
_CODE_LABELS = {"111": "公民身份号码", "001": "统一社会信用代码"}
_MAX_TITLE = 60
_NO_LINE_START = frozenset("，。；：、！？）》」』】〕”’,.;:!?)]%")

PdfMetadata.register_xml_namespace(ELIC_NS, ELIC_PREFIX)
# ASCII85 stream encoding (reportlab's default, pure Python here) only makes files bigger and
# costs ~30 ms per render; pikepdf rewrites the streams as Flate anyway.
rl_config.useA85 = 0


def _type_text(kind: Any) -> str:
    return str(getattr(kind, "value", kind))


@dataclass(frozen=True, slots=True)
class RenderField:
    """One field of the license type's schema, as far as rendering cares."""

    key: str
    label: str
    type: str = "string"
    public: bool = True

    @classmethod
    def coerce(cls, item: Any) -> "RenderField":
        """Accept a ``RenderField``, a ``license_core.schema.FieldSpec``, a mapping or a
        ``(key, label, type, public)`` tuple.

        Raises:
            ValidationFailed: none of those shapes.
        """
        if isinstance(item, RenderField):
            return item
        if isinstance(item, Mapping):
            get = item.get
        elif isinstance(item, tuple):
            if len(item) != 4:
                raise ValidationFailed("a field is (key, label, type, public)", field="fields")
            return cls(str(item[0]), str(item[1]), _type_text(item[2]), bool(item[3]))
        else:
            def get(name: str, default: Any = None) -> Any:
                return getattr(item, name, default)
        key, label = get("key"), get("label")
        if not isinstance(key, str) or not isinstance(label, str):
            raise ValidationFailed("a field needs a text key and label", field="fields")
        return cls(key, label, _type_text(get("type", "string")), bool(get("public", True)))


@dataclass(frozen=True, slots=True)
class CoHolder:
    """A co-holder (co-owner, guardian) printed under the holder; ``code_display`` is masked."""

    name: str
    role: str = ""
    code_display: str = ""
    code_type: str | None = None

    @classmethod
    def coerce(cls, item: Any) -> "CoHolder":
        """Accept a ``CoHolder`` or a mapping ``{name, role?, id?, code_type?}`` (``id`` is printed
        as given: pass it masked)."""
        if isinstance(item, CoHolder):
            return item
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            return cls(item["name"], str(item.get("role") or ""),
                       str(item.get("code_display") or item.get("id") or ""),
                       item.get("code_type"))
        raise ValidationFailed("a co-holder needs a name", field="co_holders")


@dataclass(frozen=True)
class LicenseRenderSpec:
    """Everything printed on (and embedded in) one e-license.

    ``fields`` is the type's schema in display order (any shape :meth:`RenderField.coerce`
    accepts); only fields with ``public=True`` are printed, ``data`` is embedded whole.
    ``holder_code_display`` is printed as given: the caller masks it. ``valid_to=None`` prints
    长期. ``record`` is the license record to embed as ``license.json``; by default
    :func:`license_record` builds it from the other fields. Raises ``InvalidIdentifier`` for a
    malformed ``identifier`` and ``ValidationFailed`` for other bad input.
    """

    type_name: str
    fields: Sequence[Any]
    data: Mapping[str, Any]
    holder_name: str
    holder_code_display: str
    license_number: str
    issuer_name: str
    issuer_code: str
    valid_from: date
    valid_to: date | None
    issued_on: date
    identifier: str
    verification_url: str
    type_name_en: str | None = None
    holder_code_type: str | None = None
    co_holders: Sequence[Any] = ()
    record: Mapping[str, Any] | None = None
    _parsed: LicenseIdentifier = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(RenderField.coerce(f) for f in self.fields))
        object.__setattr__(self, "co_holders", tuple(CoHolder.coerce(c) for c in self.co_holders))
        object.__setattr__(self, "_parsed", LicenseIdentifier.parse(self.identifier))
        for name in ("type_name", "holder_name", "license_number", "issuer_name",
                     "verification_url"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValidationFailed(f"{name} must be non-empty text", field=name)
        if len(self.type_name) > _MAX_TITLE:
            raise ValidationFailed(f"type_name longer than {_MAX_TITLE} characters",
                                   field="type_name")
        if not isinstance(self.data, Mapping):
            raise ValidationFailed("license data must be an object", field="data")
        for name in ("valid_from", "issued_on"):
            if not isinstance(getattr(self, name), date):
                raise ValidationFailed(f"{name} must be a date", field=name)
        if self.valid_to is not None:
            if not isinstance(self.valid_to, date):
                raise ValidationFailed("valid_to must be a date or None", field="valid_to")
            if self.valid_to < self.valid_from:
                raise ValidationFailed("valid_to is before valid_from", field="valid_to")

    @property
    def type_code(self) -> str:
        return self._parsed.type_code

    @property
    def version(self) -> str:
        """The three-digit version of the identifier (``"001"``)."""
        return self._parsed.version_text


@dataclass(frozen=True, slots=True)
class RenderedLicense:
    """A rendered, not yet sealed e-license."""

    pdf_bytes: bytes
    qr_version: int
    seal_box: tuple[float, float, float, float]
    license_json: bytes
    """The canonical JSON embedded as ``license.json``."""


def license_record(spec: LicenseRenderSpec) -> dict[str, Any]:
    """The default license record embedded in the PDF (JSON-native values only)."""
    return {
        "id": spec.identifier,
        "version": spec.version,
        "type_code": spec.type_code,
        "type_name": spec.type_name,
        "issuer_code": spec.issuer_code,
        "issuer_name": spec.issuer_name,
        "holder": {"id": spec.holder_code_display, "name": spec.holder_name,
                   "code_type": spec.holder_code_type},
        "co_holders": [{"id": c.code_display, "name": c.name, "code_type": c.code_type,
                        "role": c.role} for c in spec.co_holders],
        "license_number": spec.license_number,
        "data": dict(spec.data),
        "valid_from": spec.valid_from.isoformat(),
        "valid_to": spec.valid_to.isoformat() if spec.valid_to else None,
        "issued_on": spec.issued_on.isoformat(),
    }


# --------------------------------------------------------------------------- rendering

def render_license_pdf(spec: LicenseRenderSpec) -> RenderedLicense:
    """Render ``spec`` as a one-page A4 PDF with ``license.json``, XMP and document info.

    Raises:
        ValidationFailed: the verification URL needs a QR version above 13, or the record or
            data is not representable as canonical JSON.
        ConfigurationError: the shipped font is missing.
    """
    record = dict(spec.record) if spec.record is not None else license_record(spec)
    license_json = canonical_json(record)
    digest = data_digest(dict(spec.data)).hex()
    matrix = qr_matrix(spec.verification_url, max_version=MAX_QR_VERSION)

    font = register_reportlab_font()
    buf = io.BytesIO()
    # invariant: no wall-clock date or random id in the output, so a render is reproducible.
    c = Canvas(buf, pagesize=PAGE_SIZE, invariant=1, pageCompression=1,
               initialFontName=font, initialFontSize=10)
    _draw_frame(c)
    _draw_title(c, font, spec)
    _draw_table(c, font, _table_rows(spec))
    _draw_footer(c, font, spec)
    _draw_qr(c, font, matrix.rows)
    c.showPage()
    c.save()

    pdf_bytes = _embed(buf.getvalue(), spec, license_json, digest)
    return RenderedLicense(pdf_bytes=pdf_bytes, qr_version=matrix.version, seal_box=SEAL_BOX,
                           license_json=license_json)


def _rgb(color: Color, op: str) -> str:
    return f"{color.red:.3f} {color.green:.3f} {color.blue:.3f} {op}"


@functools.lru_cache(maxsize=1)
def _frame_ops() -> str:
    """The static frame as PDF operators, built once: formatting its ~3000 path points with
    reportlab per render cost ~5 ms."""
    ops = ["q", _rgb(_RED, "RG"), "1.6 w", f"22 22 {_W - 44:.2f} {_H - 44:.2f} re S",
           "0.5 w", f"36 36 {_W - 72:.2f} {_H - 72:.2f} re S", _rgb(_GOLD, "RG"), "0.45 w"]
    # A guilloche band of two interlaced waves between the rules.
    mid, amp = 29.0, 3.6
    for phase in (0.0, math.pi):
        for (x0, y0, x1, y1) in ((mid, mid, _W - mid, mid), (mid, _H - mid, _W - mid, _H - mid),
                                 (mid, mid, mid, _H - mid), (_W - mid, mid, _W - mid, _H - mid)):
            length = math.hypot(x1 - x0, y1 - y0)
            ux, uy = (x1 - x0) / length, (y1 - y0) / length
            steps = int(length / 2.0)
            pts = []
            for i in range(steps + 1):
                t = length * i / steps
                off = amp * math.sin(2 * math.pi * t / 14.0 + phase)
                pts.append(f"{x0 + ux * t - uy * off:.2f} {y0 + uy * t + ux * off:.2f} "
                           + ("m" if i == 0 else "l"))
            ops.append(" ".join(pts) + " S")
    # Corner ornaments: a white square with a red lozenge.
    ops += [_rgb(_RED, "RG"), _rgb(_RED, "rg"), "0.8 w"]
    for cx, cy in ((mid, mid), (_W - mid, mid), (mid, _H - mid), (_W - mid, _H - mid)):
        ops.append(f"1 1 1 rg {cx - 6.5:.2f} {cy - 6.5:.2f} 13 13 re B")
        ops.append(_rgb(_RED, "rg") + f" {cx:.2f} {cy - 4.5:.2f} m {cx + 4.5:.2f} {cy:.2f} l "
                   f"{cx:.2f} {cy + 4.5:.2f} l {cx - 4.5:.2f} {cy:.2f} l h f")
    # A faint rosette behind the table, the way printed certificates deter copying.
    ops += [_rgb(_ROSETTE, "RG"), "0.35 w"]
    cx, cy = _W / 2, 460.0
    ellipse = PDFPathObject()
    ellipse.ellipse(-150, -48, 300, 96)
    circle = PDFPathObject()
    circle.circle(0, 0, 150)
    for k in range(36):
        a = math.radians(k * 5)
        ops.append(f"q {math.cos(a):.5f} {math.sin(a):.5f} {-math.sin(a):.5f} {math.cos(a):.5f} "
                   f"{cx:.2f} {cy:.2f} cm {ellipse.getCode()} S Q")
    ops.append(f"q 1 0 0 1 {cx:.2f} {cy:.2f} cm {circle.getCode()} S Q")
    ops.append("Q")
    return "\n".join(ops)


def _draw_frame(c: Canvas) -> None:
    # Wrapped in q/Q so reportlab's idea of the graphics state stays right.
    c.addLiteral(_frame_ops())


def _text_with_spacing(c: Canvas, font: str, text: str, size: float, x: float, y: float,
                       space: float, color: Color | None = None) -> None:
    t = c.beginText()
    t.setTextOrigin(x, y)
    t.setFont(font, size)
    t.setCharSpace(space)
    if color is not None:
        t.setFillColor(color)
    t.textOut(text)
    c.saveState()  # Tc (char spacing) is graphics state: keep it local
    c.drawText(t)
    c.restoreState()


def _spaced(c: Canvas, font: str, text: str, size: float, y: float, space: float,
            color: Color) -> None:
    width = stringWidth(text, font, size) + space * (len(text) - 1)
    _text_with_spacing(c, font, text, size, (_W - width) / 2, y, space, color)


def _draw_title(c: Canvas, font: str, spec: LicenseRenderSpec) -> None:
    title = spec.type_name.strip()
    size, space = 28.0, 8.0
    while size > 14 and stringWidth(title, font, size) + space * (len(title) - 1) > 440:
        size -= 1
        space = max(0.0, space - 1)
    _spaced(c, font, title, size, 752, space, _RED)
    y = 736.0
    if spec.type_name_en:
        en = spec.type_name_en.strip().upper()
        en_size = 9.5
        while en_size > 6 and stringWidth(en, font, en_size) + 1.2 * len(en) > 440:
            en_size -= 0.5
        _spaced(c, font, en, en_size, y, 1.2, _GREY)
        y -= 10
    # Ornamental rule with a lozenge.
    c.setStrokeColor(_GOLD)
    c.setLineWidth(0.8)
    c.line(150, y - 4, _W / 2 - 8, y - 4)
    c.line(_W / 2 + 8, y - 4, _W - 150, y - 4)
    c.setFillColor(_RED)
    p = c.beginPath()
    p.moveTo(_W / 2, y - 8)
    p.lineTo(_W / 2 + 4, y - 4)
    p.lineTo(_W / 2, y)
    p.lineTo(_W / 2 - 4, y - 4)
    p.close()
    c.drawPath(p, stroke=0, fill=1)
    c.setFillColor(_INK)
    c.setFont(font, 10.5)
    c.drawRightString(_TABLE_X[1], 700, f"证照编号：{spec.license_number}")


def _cn_date(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def _format_value(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "boolean" or isinstance(value, bool):
        return "是" if value else "否"
    if kind == "date":
        if isinstance(value, date):
            return _cn_date(value)
        if isinstance(value, str):
            try:
                return _cn_date(date.fromisoformat(value))
            except ValueError:
                return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "、".join(str(v) for v in value)
    return str(value)


def _table_rows(spec: LicenseRenderSpec) -> list[tuple[str, str]]:
    rows = [("持证主体", spec.holder_name.strip()),
            (_CODE_LABELS.get(spec.holder_code_type or "", "持证主体代码"),
             spec.holder_code_display)]
    if spec.co_holders:
        rows.append(("共同持证人", "；".join(
            c.name + (f"（{c.role}）" if c.role else "") + (f" {c.code_display}" if c.code_display
                                                         else "") for c in spec.co_holders)))
    for f in spec.fields:
        if f.public and f.key in spec.data:
            text = _format_value(f.type, spec.data[f.key])
            if text != "":
                rows.append((f.label, text))
    valid_to = _cn_date(spec.valid_to) if spec.valid_to else "长期"
    rows.append(("有效期限", f"{_cn_date(spec.valid_from)} 至 {valid_to}"))
    rows.append(("发证机关", spec.issuer_name.strip()))
    rows.append(("签发日期", _cn_date(spec.issued_on)))
    return rows


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    lines: list[str] = []
    for para in text.replace("\r\n", "\n").split("\n"):
        line = ""
        for ch in para:
            if stringWidth(line + ch, font, size) <= width:
                line += ch
                continue
            if ch in _NO_LINE_START and line:   # kinsoku: no closing punctuation at line start
                line += ch
                continue
            cut = line.rfind(" ") if ch.isascii() and ch.isalnum() else -1
            if cut > 0 and line[cut + 1:].isascii():   # keep a Latin word together
                lines.append(line[:cut])
                line = line[cut + 1:] + ch
            else:
                lines.append(line)
                line = ch
        lines.append(line)
    return lines


def _layout(rows: list[tuple[str, str]],
            font: str) -> tuple[float, list[list[str]], list[list[str]]]:
    value_w = _TABLE_X[1] - _TABLE_X[0] - _LABEL_W - 16
    avail = _TABLE_TOP - _TABLE_BOTTOM
    for size in (12.0, 11.5, 11.0, 10.5, 10.0, 9.5, 9.0, 8.5, 8.0):
        labels = [_wrap(k, font, size, _LABEL_W - 16) for k, _ in rows]
        values = [_wrap(v, font, size, value_w) for _, v in rows]
        if _table_height(labels, values, size) <= avail:
            return size, labels, values
    # Still too tall at 8 pt: shorten the longest values; the embedded JSON keeps the full text.
    while _table_height(labels, values, size) > avail:
        i = max(range(len(values)), key=lambda j: len(values[j]))
        if len(values[i]) <= 1:
            break
        keep = values[i][:-2]
        last = keep[-1] if keep else ""
        while last and stringWidth(last + _TRUNCATED, font, size) > value_w:
            last = last[:-1]
        values[i] = keep[:-1] + [last + _TRUNCATED] if keep else [_TRUNCATED]
    return size, labels, values


def _table_height(labels: list[list[str]], values: list[list[str]], size: float) -> float:
    lead = size * 1.45
    return sum(max(len(a), len(b)) * lead + size * 0.9 for a, b in zip(labels, values))


def _draw_table(c: Canvas, font: str, rows: list[tuple[str, str]]) -> None:
    size, labels, values = _layout(rows, font)
    lead = size * 1.45
    pad = size * 0.45
    x0, x1 = _TABLE_X
    y = _TABLE_TOP
    tops = []
    for lab, val in zip(labels, values):
        h = max(len(lab), len(val)) * lead + 2 * pad
        tops.append((y, h))
        c.setFillColor(_LABEL_FILL)
        c.rect(x0, y - h, _LABEL_W, h, stroke=0, fill=1)
        c.setFillColor(_INK)
        c.setFont(font, size)
        label_y = y - pad - size * 1.0 - (h - 2 * pad - len(lab) * lead) / 2
        for line in lab:
            # Labels are distributed across the cell, as on printed certificates.
            _justify(c, font, line, size, x0 + 8, _LABEL_W - 16, label_y)
            label_y -= lead
        vy = y - pad - size * 1.0
        for line in val:
            c.drawString(x0 + _LABEL_W + 8, vy, line)
            vy -= lead
        y -= h
    c.setStrokeColor(_GOLD)
    c.setLineWidth(0.6)
    for top, _ in tops[1:]:
        c.line(x0, top, x1, top)
    c.line(x0 + _LABEL_W, _TABLE_TOP, x0 + _LABEL_W, y)
    c.setLineWidth(1.1)
    c.rect(x0, y, x1 - x0, _TABLE_TOP - y)


def _justify(c: Canvas, font: str, text: str, size: float, x: float, width: float,
             y: float) -> None:
    n = len(text)
    natural = stringWidth(text, font, size)
    if n < 2 or n > 6 or not all(ord(ch) > 0x2E80 for ch in text):
        c.drawString(x, y, text)
        return
    # Capped so that text extraction still reads a label as one word.
    space = min((width - natural) / (n - 1), size * 0.3)
    _text_with_spacing(c, font, text, size, x + (width - natural - space * (n - 1)) / 2, y,
                       space)


def _draw_footer(c: Canvas, font: str, spec: LicenseRenderSpec) -> None:
    sx1, sy1, sx2, sy2 = SEAL_BOX
    cx = (sx1 + sx2) / 2
    name = spec.issuer_name.strip()
    size = 12.0
    while size > 7 and stringWidth(name, font, size) > 180:
        size -= 0.5
    c.setFillColor(_INK)
    c.setFont(font, size)
    c.drawCentredString(cx, 172, name)   # above the seal's star
    c.setFont(font, 11)
    c.drawCentredString(cx, 121, _cn_date(spec.issued_on))   # below it

    note = ("本证照为电子证照，由发证机关加盖电子印章，与纸质证照具有同等法律效力。"
            "扫描右下角二维码或将本文件提交核验服务，可验证其真伪与当前状态。")
    c.setFillColor(_GREY)
    c.setFont(font, 7.5)
    y = 186.0
    for line in _wrap(note, font, 7.5, 196):
        c.drawString(60, y, line)
        y -= 11
    c.setFont(font, 6.6)
    ident = f"证照标识：{spec.identifier}"
    while stringWidth(ident, font, 6.6) > _W - 90 and len(ident) > 10:
        ident = ident[:-2] + "…"
    c.drawCentredString(_W / 2, 46, ident)


def _draw_qr(c: Canvas, font: str, rows: tuple[tuple[bool, ...], ...]) -> None:
    x0, y0, x1, y1 = _QR_BOX
    n = len(rows)
    module = (x1 - x0) / (n + 8)
    ops = ["q 1 g", f"{x0:.2f} {y0:.2f} {x1 - x0:.2f} {y1 - y0:.2f} re f", "0 g"]
    # One rectangle per horizontal run of dark modules, slightly overlapping to avoid hairlines.
    for r, row in enumerate(rows):
        y = y1 - (r + 5) * module
        col = 0
        while col < n:
            if row[col]:
                start = col
                while col < n and row[col]:
                    col += 1
                ops.append(f"{x0 + (start + 4) * module:.3f} {y:.3f} "
                           f"{(col - start) * module + 0.01:.3f} {module + 0.01:.3f} re")
            else:
                col += 1
    ops += ["f", "Q"]
    c.addLiteral("\n".join(ops))
    c.setFillColor(_INK)
    _spaced_at(c, font, "扫码核验", 8.5, (x0 + x1) / 2, y0 - 8, 2.0)


def _spaced_at(c: Canvas, font: str, text: str, size: float, cx: float, y: float,
               space: float) -> None:
    width = stringWidth(text, font, size) + space * (len(text) - 1)
    t = c.beginText()
    t.setTextOrigin(cx - width / 2, y)
    t.setFont(font, size)
    t.setCharSpace(space)
    t.textOut(text)
    c.saveState()  # Tc (char spacing) is graphics state: keep it local
    c.drawText(t)
    c.restoreState()


# --------------------------------------------------------------------------- metadata

def _pdf_date(d: date) -> str:
    return f"D:{d.year:04d}{d.month:02d}{d.day:02d}000000+08'00'"


def _embed(pdf_bytes: bytes, spec: LicenseRenderSpec, license_json: bytes, digest: str) -> bytes:
    holder_masked = mask_name(spec.holder_name.strip())
    valid_to = spec.valid_to.isoformat() if spec.valid_to else "长期"
    with pikepdf.open(io.BytesIO(pdf_bytes)) as pdf:
        created = _pdf_date(spec.issued_on)
        fs = pikepdf.AttachedFileSpec(
            pdf, license_json, description="电子证照数据（权威副本，规范化 JSON）",
            filename=LICENSE_JSON_NAME, mime_type="application/json",
            creation_date=created, mod_date=created, relationship=Name.Data)
        pdf.attachments[LICENSE_JSON_NAME] = fs
        pdf.Root.AF = pikepdf.Array([fs.obj])
        # Document info in the spirit of GB/T 36903 (电子证照 元数据规范); holder data masked.
        info = {
            "/Title": spec.type_name, "/Subject": f"电子证照 {spec.type_name}",
            "/Author": spec.issuer_name, "/Creator": "elicense", "/Producer": "elicense",
            "/Keywords": f"电子证照; {spec.type_name}; {spec.license_number}",
            "/CreationDate": created, "/ModDate": created,
            "/LicenseIdentifier": spec.identifier, "/LicenseTypeName": spec.type_name,
            "/LicenseTypeCode": spec.type_code, "/LicenseNumber": spec.license_number,
            "/LicenseVersion": spec.version, "/HolderName": holder_masked,
            "/HolderCode": spec.holder_code_display,
            "/HolderCodeType": spec.holder_code_type or "",
            "/IssuerName": spec.issuer_name, "/IssuerCode": spec.issuer_code,
            "/IssueDate": spec.issued_on.isoformat(),
            "/ValidFrom": spec.valid_from.isoformat(), "/ValidTo": valid_to,
            "/DataDigest": digest,
        }
        pdf.docinfo = pdf.make_indirect(pikepdf.Dictionary(
            {k: pikepdf.String(v) for k, v in info.items()}))
        with pdf.open_metadata(set_pikepdf_as_editor=False) as meta:
            meta["dc:title"] = spec.type_name
            meta["dc:creator"] = [spec.issuer_name]
            meta["dc:description"] = f"电子证照 {spec.type_name} {spec.license_number}"
            meta["pdf:Producer"] = "elicense"
            meta["xmp:CreatorTool"] = "elicense"
            for key, value in (("identifier", spec.identifier), ("type_code", spec.type_code),
                               ("type_name", spec.type_name), ("issuer_code", spec.issuer_code),
                               ("license_number", spec.license_number),
                               ("holder_name", holder_masked), ("valid_from",
                                                                spec.valid_from.isoformat()),
                               ("valid_to", valid_to), ("version", spec.version),
                               ("data_digest", digest), ("embedded_file", LICENSE_JSON_NAME)):
                meta[f"{{{ELIC_NS}}}{key}"] = value
        out = io.BytesIO()
        pdf.save(out, deterministic_id=True,
                 object_stream_mode=pikepdf.ObjectStreamMode.generate)
    return out.getvalue()


def extract_embedded_license_json(pdf_bytes: bytes, *, max_bytes: int = 1 << 20) -> bytes | None:
    """Return the ``license.json`` attachment of a PDF, or None when it has none (read-only).

    Raises:
        MalformedDocument: not a readable PDF, or the attachment decodes to more than
            ``max_bytes`` (a decompression bomb) or cannot be decoded.
    """
    try:
        with pikepdf.open(io.BytesIO(pdf_bytes)) as pdf:
            if LICENSE_JSON_NAME not in pdf.attachments:
                return None
            stream = pdf.attachments[LICENSE_JSON_NAME].obj.EF.F
            filters = stream.get("/Filter")
            if filters is None:
                data = stream.read_raw_bytes()
            elif filters == Name.FlateDecode and "/DecodeParms" not in stream:
                # Decode incrementally so a bomb is stopped at max_bytes, not after inflating.
                d = zlib.decompressobj()
                data = d.decompress(stream.read_raw_bytes(), max_bytes + 1)
            else:
                data = stream.read_bytes()
    except (pikepdf.PdfError, zlib.error, AttributeError, KeyError, ValueError, TypeError) as exc:
        raise MalformedDocument(f"cannot read the embedded {LICENSE_JSON_NAME}: {exc}") from exc
    if len(data) > max_bytes:
        raise MalformedDocument(f"embedded {LICENSE_JSON_NAME} is larger than {max_bytes} bytes")
    return bytes(data)


# --------------------------------------------------------------------------- scans

_A4_PORTRAIT = PAGE_SIZE
_A4_LANDSCAPE = (PAGE_SIZE[1], PAGE_SIZE[0])


def add_scan_pages(pdf_bytes: bytes, scan_bytes: bytes, *, max_pixels: int = 40_000_000,
                   max_bytes: int = 25 * 1024 * 1024, max_pages: int = 50) -> bytes:
    """Append the original paper scan after the rendered license page(s).

    A JPEG or PNG becomes one page with the image's aspect ratio, fitted on A4 (landscape for a
    landscape image); a JPEG is embedded as is unless it must be rotated (EXIF) or converted.
    A PDF's pages are appended without their annotations and actions. Call before sealing.

    Raises:
        UploadTooLarge: more than ``max_bytes``, an image of more than ``max_pixels`` pixels
            (checked from the header, before decoding), or a PDF of more than ``max_pages`` pages.
        MalformedDocument: not a readable JPEG, PNG or PDF; an encrypted PDF; or ``pdf_bytes``
            is not a readable PDF.
    """
    if not isinstance(scan_bytes, (bytes, bytearray)) or not scan_bytes:
        raise MalformedDocument("scan is empty", field="scan")
    if len(scan_bytes) > max_bytes:
        raise UploadTooLarge(f"scan is {len(scan_bytes)} bytes, more than {max_bytes}",
                             field="scan")
    head = bytes(scan_bytes[:1024])
    try:
        pdf = pikepdf.open(io.BytesIO(pdf_bytes))
    except pikepdf.PdfError as exc:
        raise MalformedDocument(f"rendered license is not a readable PDF: {exc}") from exc
    with pdf:
        if b"%PDF-" in head:
            _append_pdf(pdf, bytes(scan_bytes), max_pages)
        elif head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n"):
            _append_image(pdf, bytes(scan_bytes), max_pixels)
        else:
            raise MalformedDocument("scan is not a readable JPEG, PNG or PDF", field="scan")
        out = io.BytesIO()
        pdf.save(out, deterministic_id=True,
                 object_stream_mode=pikepdf.ObjectStreamMode.generate)
    return out.getvalue()


def _append_pdf(pdf: pikepdf.Pdf, scan_bytes: bytes, max_pages: int) -> None:
    try:
        scan = pikepdf.open(io.BytesIO(scan_bytes))
    except pikepdf.PasswordError as exc:
        raise MalformedDocument("scan PDF is encrypted; upload an unprotected copy",
                                field="scan") from exc
    except pikepdf.PdfError as exc:
        raise MalformedDocument("scan is not a readable JPEG, PNG or PDF (broken PDF)",
                                field="scan") from exc
    with scan:
        if scan.is_encrypted:
            raise MalformedDocument("scan PDF is encrypted; upload an unprotected copy",
                                    field="scan")
        try:
            count = len(scan.pages)
            if count == 0:
                raise MalformedDocument("scan PDF has no pages", field="scan")
            if count > max_pages:
                raise UploadTooLarge(f"scan PDF has {count} pages, more than {max_pages}",
                                     field="scan")
            for page in scan.pages:
                # Links, widgets and actions of a foreign file have no place in an e-license.
                for key in ("/Annots", "/AA"):
                    if key in page.obj:
                        del page.obj[key]
                pdf.pages.append(page)
        except pikepdf.PdfError as exc:
            raise MalformedDocument(f"scan PDF is damaged: {exc}", field="scan") from exc


def _append_image(pdf: pikepdf.Pdf, scan_bytes: bytes, max_pixels: int) -> None:
    try:
        img = Image.open(io.BytesIO(scan_bytes))  # parses the header only
    except Image.DecompressionBombError as exc:
        raise UploadTooLarge(f"scan image has too many pixels: {exc}", field="scan") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MalformedDocument("scan is not a readable JPEG, PNG or PDF", field="scan") from exc
    w, h = img.size
    if w < 1 or h < 1:
        raise MalformedDocument("scan image has no pixels", field="scan")
    if w * h > max_pixels:
        raise UploadTooLarge(f"scan image is {w}x{h} pixels, more than {max_pixels}",
                             field="scan")
    try:
        if img.format == "JPEG":
            stream_args, (w, h) = _jpeg_stream(img, scan_bytes)
        elif img.format == "PNG":
            stream_args, (w, h) = _flate_stream(img)
        else:
            raise MalformedDocument("scan is not a readable JPEG, PNG or PDF", field="scan")
    except Image.DecompressionBombError as exc:
        raise UploadTooLarge(f"scan image has too many pixels: {exc}", field="scan") from exc
    except (OSError, ValueError, SyntaxError, EOFError, zlib.error) as exc:
        raise MalformedDocument(f"scan image is damaged: {exc}", field="scan") from exc

    data, extra = stream_args
    image = pikepdf.Stream(pdf, data)
    image.Type, image.Subtype = Name.XObject, Name.Image
    image.Width, image.Height, image.BitsPerComponent = w, h, 8
    for key, value in extra.items():
        image[key] = value
    box_w, box_h = _A4_LANDSCAPE if w > h else _A4_PORTRAIT
    scale = min(box_w / w, box_h / h)
    page_w, page_h = round(w * scale, 2), round(h * scale, 2)
    page = pdf.add_blank_page(page_size=(page_w, page_h))
    page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Scan=image))
    page.Contents = pikepdf.Stream(pdf, f"q {page_w} 0 0 {page_h} 0 0 cm /Scan Do Q".encode())


def _jpeg_stream(img: Image.Image, raw: bytes) -> tuple[tuple[bytes, dict], tuple[int, int]]:
    orientation = img.getexif().get(0x0112, 1)
    mode = img.mode
    if mode in ("L", "RGB") and orientation in (1, None):
        # Check that the whole file decodes (cheaply, at 1/8 scale) before embedding it as is.
        probe = Image.open(io.BytesIO(raw))
        probe.draft(mode, (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
        probe.load()
        space = Name.DeviceGray if mode == "L" else Name.DeviceRGB
        return (raw, {"/Filter": Name.DCTDecode, "/ColorSpace": space}), img.size
    img.load()
    fixed = ImageOps.exif_transpose(img).convert("L" if mode == "L" else "RGB")
    buf = io.BytesIO()
    fixed.save(buf, format="JPEG", quality=90)
    space = Name.DeviceGray if fixed.mode == "L" else Name.DeviceRGB
    return (buf.getvalue(), {"/Filter": Name.DCTDecode, "/ColorSpace": space}), fixed.size


def _flate_stream(img: Image.Image) -> tuple[tuple[bytes, dict], tuple[int, int]]:
    img.load()
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        img = flat
    elif img.mode in ("1", "L", "I", "I;16", "F"):
        img = img.convert("L")
    else:
        img = img.convert("RGB")
    space = Name.DeviceGray if img.mode == "L" else Name.DeviceRGB
    data = zlib.compress(img.tobytes(), 6)
    return (data, {"/Filter": Name.FlateDecode, "/ColorSpace": space}), img.size
