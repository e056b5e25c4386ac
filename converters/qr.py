"""Verification QR codes (SPEC §7): error correction M, the smallest version that fits.

The printed symbol must be version ≤ 13 and decodable from a 150 dpi render, so the functions
here refuse a payload that would need a larger symbol instead of printing an unscannable one.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import qrcode
from qrcode.constants import ERROR_CORRECT_M

from license_core.errors import ValidationFailed

__all__ = ["MAX_QR_VERSION", "QrPng", "QrMatrix", "qr_matrix", "qr_matrix_version", "qr_png"]

MAX_QR_VERSION = 13


@dataclass(frozen=True, slots=True)
class QrMatrix:
    """The modules of a QR symbol, without quiet zone: ``rows[y][x]`` is True for dark."""

    version: int
    rows: tuple[tuple[bool, ...], ...]

    @property
    def size(self) -> int:
        """Modules per side (``17 + 4 * version``)."""
        return len(self.rows)


@dataclass(frozen=True, slots=True)
class QrPng:
    """A rendered QR symbol as PNG bytes, with the version used."""

    png: bytes
    version: int
    width_px: int


def _build(payload: str, *, max_version: int, box_size: int = 1, border: int = 0) -> qrcode.QRCode:
    if not isinstance(payload, str) or not payload:
        raise ValidationFailed("QR payload must be non-empty text", field="qr")
    qr = qrcode.QRCode(version=None, error_correction=ERROR_CORRECT_M, box_size=box_size,
                       border=border)
    qr.add_data(payload.encode("utf-8"))
    try:
        qr.make(fit=True)
    except (qrcode.exceptions.DataOverflowError, ValueError) as exc:  # ValueError: > version 40
        raise ValidationFailed(f"QR payload of {len(payload)} characters does not fit any QR "
                               "version", field="qr") from exc
    if qr.version > max_version:
        raise ValidationFailed(f"QR payload of {len(payload)} characters needs version "
                               f"{qr.version} > {max_version}: keep the token lean", field="qr")
    return qr


def qr_matrix(payload: str, *, max_version: int = MAX_QR_VERSION) -> QrMatrix:
    """Encode ``payload`` (UTF-8, byte mode, ECC M) and return its module matrix.

    Raises:
        ValidationFailed: empty payload, or it needs a version above ``max_version``.
    """
    qr = _build(payload, max_version=max_version)
    rows = tuple(tuple(bool(m) for m in row) for row in qr.get_matrix())
    return QrMatrix(version=qr.version, rows=rows)


def qr_matrix_version(payload: str, *, max_version: int = 40) -> int:
    """The QR version (1–40) that ``payload`` needs at error correction M.

    Raises:
        ValidationFailed: empty payload, or it needs a version above ``max_version``.
    """
    return _build(payload, max_version=max_version).version


def qr_png(payload: str, *, box_size: int = 8, border: int = 4,
           max_version: int = MAX_QR_VERSION) -> QrPng:
    """Render ``payload`` as a black-on-white PNG QR code (ECC M), ``box_size`` px per module.

    Raises:
        ValidationFailed: empty payload, bad sizes, or a version above ``max_version``.
    """
    if box_size < 1 or border < 0:
        raise ValidationFailed("box_size must be ≥ 1 and border ≥ 0", field="qr")
    qr = _build(payload, max_version=max_version, box_size=box_size, border=border)
    image = qr.make_image(fill_color="black", back_color="white").get_image()
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return QrPng(png=buf.getvalue(), version=qr.version, width_px=image.size[0])
