"""The visible image of a department's round seal (红色圆形印章), drawn with PIL.

A red ring, the department name along the upper arc (characters upright relative to the centre),
a five-pointed star in the middle and an optional line below it (``电子证照专用章``), on a
transparent background. Drawing costs tens of milliseconds: callers render once per department
and cache the image (pyHanko stamps it as an image, see PITFALLS "Fonts and rendering").
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from license_core.errors import ValidationFailed

from .fonts import pil_font

__all__ = ["SEAL_RED", "DEFAULT_SEAL_CAPTION", "render_seal_image"]

SEAL_RED = (218, 22, 28, 255)
DEFAULT_SEAL_CAPTION = "电子证照专用章"
_SUPERSAMPLE = 2  # draw at 2x and downsample: smooth edges without per-primitive antialiasing


def render_seal_image(department_name: str, *, size_px: int = 480,
                      caption: str | None = DEFAULT_SEAL_CAPTION,
                      color: tuple[int, int, int, int] = SEAL_RED) -> Image.Image:
    """Draw the round seal of ``department_name`` as a ``size_px`` square RGBA image.

    Raises:
        ValidationFailed: an empty or over-long (> 40 characters) name, or ``size_px`` < 64.
    """
    name = (department_name or "").strip()
    if not name:
        raise ValidationFailed("department name must not be empty", field="department_name")
    if len(name) > 40:
        raise ValidationFailed("department name longer than 40 characters", field="department_name")
    if size_px < 64:
        raise ValidationFailed("seal image must be at least 64 px", field="size_px")

    s = size_px * _SUPERSAMPLE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    c = s / 2
    ring = max(2, round(s * 0.035))
    outer = s / 2 - ring / 2 - s * 0.01
    draw.ellipse((c - outer - ring / 2, c - outer - ring / 2, c + outer + ring / 2,
                  c + outer + ring / 2), outline=color, width=ring)

    _draw_star(draw, c, c + s * 0.01, s * 0.15, color)
    _draw_arc_text(img, name, c, outer - ring / 2, s, color)
    if caption:
        cap = caption.strip()
        size = min(round(s * 0.072), round(s * 0.5 / len(cap)))
        font = pil_font(max(8, size))
        w = draw.textlength(cap, font=font)
        draw.text((c - w / 2, c + s * 0.205), cap, font=font, fill=color)
    return img.resize((size_px, size_px), Image.LANCZOS)


def _draw_star(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float,
               color: tuple[int, int, int, int]) -> None:
    inner = r * math.sin(math.radians(18)) / math.sin(math.radians(126))
    points = []
    for i in range(10):
        radius = r if i % 2 == 0 else inner
        angle = math.radians(-90 + 36 * i)
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    draw.polygon(points, fill=color)


def _draw_arc_text(img: Image.Image, text: str, c: float, ring_inner: float, s: int,
                   color: tuple[int, int, int, int]) -> None:
    n = len(text)
    size = round(s * 0.115)
    font = pil_font(size)
    radius = ring_inner - size * 0.62 - s * 0.012
    natural = math.degrees(size * 1.08 / radius)      # one character plus a little air
    max_span = 230.0
    # Short names are spread out (up to 1.6x natural spacing), long ones squeezed into 230°.
    step = min(natural * 1.6, max_span / n) if n > 1 else 0.0
    # Long names: narrow characters (as engravers do) rather than overlapping ones.
    squeeze = max(0.5, min(1.0, step / natural * 1.05)) if n > 1 else 1.0
    span = step * (n - 1)
    start = -90 - span / 2
    cell = int(size * 1.5)
    for i, ch in enumerate(text):
        angle = start + i * step
        glyph = Image.new("RGBA", (cell, cell), (0, 0, 0, 0))
        gdraw = ImageDraw.Draw(glyph)
        bbox = gdraw.textbbox((0, 0), ch, font=font)
        gw, gh = bbox[2] - bbox[0], bbox[3] - bbox[1]
        gdraw.text(((cell - gw) / 2 - bbox[0], (cell - gh) / 2 - bbox[1]), ch, font=font,
                   fill=color)
        if squeeze < 1.0:
            narrow = glyph.resize((max(1, round(cell * squeeze)), cell), Image.LANCZOS)
            glyph = Image.new("RGBA", (cell, cell), (0, 0, 0, 0))
            glyph.alpha_composite(narrow, ((cell - narrow.size[0]) // 2, 0))
        # Top of each character points away from the centre.
        rotated = glyph.rotate(-(angle + 90), resample=Image.BICUBIC, expand=False)
        x = c + radius * math.cos(math.radians(angle)) - cell / 2
        y = c + radius * math.sin(math.radians(angle)) - cell / 2
        img.alpha_composite(rotated, (round(x), round(y)))
