"""Verification QR codes: ECC M, version ≤ 13, decodable."""

from __future__ import annotations

import io

import pytest
import zxingcpp
from PIL import Image

from converters.qr import MAX_QR_VERSION, qr_matrix, qr_matrix_version, qr_png
from license_core.errors import ValidationFailed

URL = "http://127.0.0.1:8000/v/" + ("eJzLSM3JyVcozy_KSQEAGgQEXQ-_" * 4)[:110]


def test_realistic_url_version_within_limit():
    assert len(URL) == 134
    version = qr_matrix_version(URL)
    assert version <= MAX_QR_VERSION
    assert version == 8  # 134 bytes at ECC M: version 7 holds 122, version 8 holds 152


def test_png_decodes_and_reports_version():
    out = qr_png(URL, box_size=4)
    assert out.version == qr_matrix_version(URL)
    image = Image.open(io.BytesIO(out.png))
    assert image.format == "PNG"
    assert out.width_px == image.size[0] == (17 + 4 * out.version + 8) * 4
    results = zxingcpp.read_barcodes(image)
    assert [r.text for r in results] == [URL]
    assert results[0].ec_level == "M"


def test_matrix_shape():
    m = qr_matrix(URL)
    assert m.size == 17 + 4 * m.version
    assert all(len(row) == m.size for row in m.rows)
    assert m.rows[0][:7] == (True,) * 7  # finder pattern


@pytest.mark.parametrize("payload", ["", "x" * 3000], ids=["empty", "3000-chars"])
def test_empty_or_oversized_payload_rejected(payload):
    with pytest.raises(ValidationFailed):
        qr_png(payload)


def test_version_above_limit_rejected():
    long_url = "http://127.0.0.1:8000/v/" + "A1b2" * 100  # needs ~version 15
    assert qr_matrix_version(long_url) > MAX_QR_VERSION
    with pytest.raises(ValidationFailed, match="keep the token lean"):
        qr_matrix(long_url)
