"""Build ``converters/assets/wqy-microhei-gb2312.ttf``, the CJK font shipped with elicense.

Why: reportlab can only embed fonts with TrueType outlines (Noto CJK is CFF), and the service
must render licenses without system packages (SPEC §2). WenQuanYi Micro Hei has TrueType outlines
and a licence that allows redistribution and embedding; the full ``.ttc`` is ~5 MB with glyphs
nobody prints on a license, so we ship a subset (~1.2 MB):

- ASCII and Latin-1 (U+0020–U+007E, U+00A0–U+00FF), general punctuation (U+2010–U+2027,
  U+2030–U+205E), letterlike and number forms (№, ℃, Ⅰ–Ⅻ, ①–⑳), geometric shapes (★ ○ ● □ ■);
- CJK symbols and punctuation (U+3000–U+303F), fullwidth forms (U+FF01–U+FF5E, U+FFE0–U+FFE6);
- every Hanzi of GB 2312 (6763, from decoding the byte pairs 0xB0A1–0xF7FE), plus a few common
  extras (〇 · ‧ and name characters outside GB 2312 such as 喆 堃 淼 玥 昊).

The result is a committed asset, not built at run time. Rebuild (needs Debian ``fonts-wqy-microhei``
and fontTools)::

    python converters/tools/make_font_subset.py \
        [--source /usr/share/fonts/truetype/wqy/wqy-microhei.ttc] [--output PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

__all__ = ["gb2312_hanzi", "subset_codepoints", "build_subset"]

DEFAULT_SOURCE = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "assets" / "wqy-microhei-gb2312.ttf"

# Characters seen in names, addresses and license data that GB 2312 lacks.
_EXTRAS = "〇·‧•—–…‘’“”《》〈〉【】〔〕「」『』￥№℃×÷±≤≥≈≠√∞°′″‰§※→←↑↓" \
          "喆堃淼犇焱垚鑫玥琦瑄珺昊晟頔彧祎禤燊赟甦瓅翀" "㎡㎏㎎㎝㎞"


def gb2312_hanzi() -> str:
    """All 6763 Hanzi of GB 2312 (rows 0xB0–0xF7, cells 0xA1–0xFE; 0xD7FA–0xD7FE are unassigned)."""
    chars = []
    for hi in range(0xB0, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.append(bytes((hi, lo)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return "".join(chars)


def subset_codepoints() -> set[int]:
    """The code points kept in the shipped subset."""
    ranges = [(0x20, 0x7E), (0xA0, 0xFF), (0x2010, 0x2027), (0x2030, 0x205E), (0x2100, 0x218F),
              (0x2460, 0x24FF), (0x25A0, 0x25FF), (0x2605, 0x2606), (0x3000, 0x303F),
              (0xFF01, 0xFF5E), (0xFFE0, 0xFFE6)]
    cps = {cp for lo, hi in ranges for cp in range(lo, hi + 1)}
    cps.update(ord(c) for c in gb2312_hanzi())
    cps.update(ord(c) for c in _EXTRAS)
    return cps


def build_subset(source: Path = DEFAULT_SOURCE, output: Path = DEFAULT_OUTPUT) -> Path:
    """Subset subfont 0 of *source* to :func:`subset_codepoints` and write a ``.ttf`` to *output*.

    Glyph outlines and hinting-free metrics are kept; code points missing from the source font are
    silently skipped by fontTools.
    """
    font = TTFont(str(source), fontNumber=0, lazy=False)
    options = subset.Options()
    options.layout_features = ["*"]
    options.name_IDs = ["*"]          # keep copyright / licence names
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.hinting = False           # reportlab ignores hinting; saves ~30 %
    options.drop_tables += ["FFTM"]  # FontForge timestamps: useless, and fontTools can't subset it
    subsetter = subset.Subsetter(options=options)
    subsetter.populate(unicodes=sorted(subset_codepoints()))
    subsetter.subset(font)
    output.parent.mkdir(parents=True, exist_ok=True)
    font.recalcTimestamp = False  # reproducible: rebuilding gives the same bytes
    font.save(str(output))
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    out = build_subset(args.source, args.output)
    glyphs = len(TTFont(str(out)).getGlyphOrder())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {glyphs} glyphs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
