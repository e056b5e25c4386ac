"""The CJK font shipped with elicense, registered once per process.

``assets/wqy-microhei-gb2312.ttf`` is a subset of WenQuanYi Micro Hei (TrueType outlines: reportlab
rejects CFF fonts such as Noto CJK; see ``assets/FONT-LICENSE.txt`` and
``tools/make_font_subset.py``). Parsing it costs ~60 ms, so both the reportlab registration and the
PIL fonts are cached for the life of the process and never re-parsed per render.
"""

from __future__ import annotations

import functools
import threading
from importlib import resources
from pathlib import Path

from PIL import ImageFont
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

from license_core.errors import ConfigurationError

__all__ = ["FONT_NAME", "FONT_FILE", "font_path", "register_reportlab_font", "pil_font"]

FONT_NAME = "WQYMicroHei"
"""The name under which the font is registered with reportlab."""

FONT_FILE = "wqy-microhei-gb2312.ttf"

_lock = threading.Lock()
_registered = False


def font_path() -> Path:
    """Path of the shipped font file.

    Raises:
        ConfigurationError: the package was installed without its ``assets``.
    """
    path = Path(str(resources.files("converters").joinpath("assets", FONT_FILE)))
    if not path.is_file():
        raise ConfigurationError(f"shipped font {FONT_FILE} is missing from converters/assets")
    return path


def register_reportlab_font() -> str:
    """Register the shipped font with reportlab (once per process); return its name.

    Raises:
        ConfigurationError: the font file is missing or unreadable.
    """
    global _registered
    if _registered:
        return FONT_NAME
    with _lock:
        if not _registered:
            try:
                pdfmetrics.registerFont(TTFont(FONT_NAME, str(font_path())))
            except ConfigurationError:
                raise
            except Exception as exc:  # reportlab raises TTFError and plain Exceptions
                raise ConfigurationError(f"cannot load shipped font: {exc}") from exc
            _registered = True
    return FONT_NAME


@functools.lru_cache(maxsize=32)
def pil_font(size: int) -> ImageFont.FreeTypeFont:
    """The shipped font for PIL drawing at ``size`` pixels (cached per size).

    Raises:
        ConfigurationError: the font file is missing or unreadable.
    """
    try:
        return ImageFont.truetype(str(font_path()), size=size)
    except OSError as exc:
        raise ConfigurationError(f"cannot load shipped font: {exc}") from exc
