"""Where the font documents are rendered with is found: the one place that knows.

Documents are set in Noto Sans CJK (SC face): one OpenType font covering Latin, Greek, Cyrillic,
Chinese, Japanese and Korean. It is ``LOYALTY_FONT_CJK`` (a path) when that is set; else the
system's (Debian's ``fonts-noto-cjk``), else the project cache's (``<repo>/.cache/fonts/``, which
``./loyalty`` fills from Debian's package when neither is there).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FONT_ENV = "LOYALTY_FONT_CJK"
FILE_NAME = "NotoSansCJK-Regular.ttc"
SYSTEM_PATH = Path("/usr/share/fonts/opentype/noto") / FILE_NAME
CACHE_PATH = Path(__file__).resolve().parents[4] / ".cache" / "fonts" / FILE_NAME
SIMPLIFIED_CHINESE = 2  # the face of the collection: 0 JP, 1 KR, 2 SC, 3 TC, 4 HK


class FontUnavailable(RuntimeError):
    """No font to render documents with: where it was looked for, and how to install it."""


@dataclass(frozen=True)
class Font:
    path: Path
    face: int  # the face of a collection (.ttc)


def candidates() -> list[Path]:
    """Where the font is looked for, in order: only there when ``LOYALTY_FONT_CJK`` is set (a font
    configured and missing is an error to see, not one to paper over with another font)."""
    configured = os.environ.get(FONT_ENV)
    return [Path(configured)] if configured else [SYSTEM_PATH, CACHE_PATH]


def document_font() -> Font:
    """The font documents are set in (FontUnavailable when there is none)."""
    for path in candidates():
        if path.is_file():
            return Font(path, SIMPLIFIED_CHINESE)
    where = ", ".join(str(p) for p in candidates())
    raise FontUnavailable(
        f"no font to render documents with (looked at {where}): run ./loyalty once, which fetches "
        f"Debian's fonts-noto-cjk, install that package, or set {FONT_ENV} to a NotoSansCJK .ttc"
    )


@functools.cache
def _coverage(path: Path, face: int) -> frozenset[int]:
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]  # no stubs; parsed once: ~0.1 s

    with TTFont(path, fontNumber=face, lazy=True) as font:
        return frozenset(font.getBestCmap())


def unsupported(text: str) -> list[str]:
    """The characters of ``text`` the document font has no glyph for (none when the font is not
    installed: rendering says so then). Whitespace always renders."""
    try:
        font = document_font()
    except FontUnavailable:
        return []
    covered = _coverage(font.path, font.face)
    return sorted({c for c in text if not c.isspace() and ord(c) not in covered})
