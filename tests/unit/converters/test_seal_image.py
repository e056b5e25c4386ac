"""The pre-rendered department seal image."""

from __future__ import annotations

import pytest

from converters.seal_image import SEAL_RED, render_seal_image
from license_core.errors import ValidationFailed


@pytest.mark.parametrize("name", ["某某局", "北京市朝阳区市场监督管理局",
                                  "国家市场监督管理总局行政审批专用章测试长名称单位"])
def test_seal_is_red_round_and_transparent(name):
    img = render_seal_image(name, size_px=300)
    assert img.mode == "RGBA" and img.size == (300, 300)
    # Corners are outside the circle: fully transparent.
    for xy in ((0, 0), (299, 0), (0, 299), (299, 299)):
        assert img.getpixel(xy)[3] == 0
    # The ring: opaque red on the left edge's middle, a few pixels in.
    ring = [img.getpixel((x, 150)) for x in range(3, 20)]
    assert any(p[3] > 200 and p[0] > 180 and p[1] < 80 and p[2] < 80 for p in ring)
    # The star at the centre.
    r, g, b, a = img.getpixel((150, 152))
    assert a > 200 and (r, g, b) == SEAL_RED[:3] or (a > 200 and r > 180 and g < 80)
    # Only red ink: every visible pixel is reddish.
    for pixel in img.getdata():
        if pixel[3] > 128:
            assert pixel[0] > 150 and pixel[1] < 110 and pixel[2] < 110


def test_text_is_drawn_on_the_upper_arc():
    with_caption = render_seal_image("某某局", size_px=200)
    without = render_seal_image("某某局", size_px=200, caption=None)
    upper = lambda im: sum(1 for y in range(15, 60) for x in range(40, 160)  # noqa: E731
                           if im.getpixel((x, y))[3] > 128)
    lower = lambda im: sum(1 for y in range(130, 160) for x in range(50, 150)  # noqa: E731
                           if im.getpixel((x, y))[3] > 128)
    assert upper(without) > 100
    assert lower(with_caption) > lower(without) + 50


@pytest.mark.parametrize("name, size", [("", 300), ("  ", 300), ("某" * 41, 300), ("某局", 32)])
def test_bad_input_rejected(name, size):
    with pytest.raises(ValidationFailed):
        render_seal_image(name, size_px=size)
