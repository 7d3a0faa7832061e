"""A document's PDF, laid out with fpdf2: an honour certificate (A4 landscape, framed) or a
thank-you letter (A4 portrait, as a letter).

fpdf2 because it is pure Python (no system libraries to install) and embeds OpenType fonts with CFF
outlines — Noto Sans CJK's — as subsets with a ToUnicode map, so a name in Chinese prints and
extracts as text (ReportLab embeds TrueType outlines only). Each document embeds only the glyphs
of its own characters (``unicode_range``): it stays near 10 KB, and rendering takes about half the
time of embedding the whole font's metrics.

Deterministic: the same text, code and issue time give the same bytes (the PDF's dates are the issue
time), so a document rendered again is the document issued.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import datetime

from fpdf import FPDF
from fpdf.enums import Align, WrapMode, XPos, YPos

from rewards_service.domain.documents import Figure, Filled
from rewards_service.fonts import Font, document_font

FAMILY = "noto"
INK = (33, 37, 41)
MUTED = (108, 117, 125)
ACCENT = (138, 106, 38)  # a dark gold
NAVY = (26, 54, 93)
VERIFY_PATH = "/v1/certificates/"

# Every fixed label a layout prints (their characters are embedded too).
LABELS = (
    "HONOUR CERTIFICATE",
    "THANK YOU",
    "is awarded to",
    "Period",
    "Issued on",
    "Verification code",
    "Verify at",
    "Page",
    "·:/-–",
)


def render(document: Filled, *, code: str | None, issued_at: datetime, font: Font | None = None) -> bytes:
    """The PDF of ``document`` (a certificate needs its verification ``code``). FontUnavailable when
    no font is installed."""
    font = font or document_font()
    if document.kind == "certificate":
        if code is None:
            raise ValueError("a certificate carries its verification code")
        pdf = _new(font, issued_at, _characters(document, code), landscape=True)
        _certificate(pdf, document, code)
    else:
        pdf = _new(font, issued_at, _characters(document, None), landscape=False)
        _letter(pdf, document)
    return bytes(pdf.output())


def _characters(document: Filled, code: str | None) -> list[int]:
    texts: list[str] = [
        document.title,
        document.recipient,
        document.member or "",
        *document.body,
        document.signature,
        document.closing or "",
        document.date,
        *(f.label + f.value for f in document.figures),
        code or "",
        VERIFY_PATH,
        *LABELS,
        "0123456789",
    ]
    return sorted({ord(c) for text in texts for c in text} | {ord(c) for c in " ".join(LABELS).upper()})


def _new(font: Font, issued_at: datetime, characters: Iterable[int], *, landscape: bool) -> FPDF:
    pdf = FPDF(orientation="L" if landscape else "P", unit="mm", format="A4")
    pdf.set_creation_date(issued_at)
    pdf.set_creator("loyalty rewards service")
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_font(
        FAMILY, fname=str(font.path), collection_font_number=font.face, unicode_range=list(characters)
    )
    pdf.set_font(FAMILY, size=11)
    pdf.add_page()
    return pdf


def _wrap(text: str) -> WrapMode:
    """Words wrap at spaces; a text in a script without them (Chinese, Japanese) at any character."""
    wide = sum(unicodedata.east_asian_width(c) in "WF" for c in text)
    return WrapMode.CHAR if wide > len(text) // 4 else WrapMode.WORD


def _fit(pdf: FPDF, text: str, width: float, size: float, smallest: float = 12) -> float:
    """The largest size up to ``size`` at which ``text`` fits ``width`` on one line."""
    while size > smallest:
        pdf.set_font_size(size)
        if pdf.get_string_width(text) <= width:
            break
        size -= 1
    pdf.set_font_size(size)
    return size


def _color(pdf: FPDF, rgb: tuple[int, int, int]) -> None:
    pdf.set_text_color(*rgb)


def _centred(pdf: FPDF, text: str, size: float, rgb: tuple[int, int, int], height: float) -> None:
    pdf.set_font_size(size)
    _color(pdf, rgb)
    pdf.multi_cell(0, height, text, align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT, wrapmode=_wrap(text))


def _figures(pdf: FPDF, figures: tuple[Figure, ...], width: float, centred: bool) -> None:
    """The figures in a row of boxes: the value large, the label under it."""
    if not figures:
        return
    box = min(60.0, (width - 6 * (len(figures) - 1)) / len(figures))
    total = box * len(figures) + 6 * (len(figures) - 1)
    x0 = pdf.l_margin + ((width - total) / 2 if centred else 0)
    y = pdf.get_y()
    for index, figure in enumerate(figures):
        x = x0 + index * (box + 6)
        pdf.set_draw_color(*ACCENT)
        pdf.set_line_width(0.3)
        pdf.rect(x, y, box, 16)
        pdf.set_xy(x, y + 2)
        _color(pdf, NAVY)
        _fit(pdf, figure.value, box - 4, 13, 7)
        pdf.cell(box, 7, figure.value, align=Align.C)
        pdf.set_xy(x, y + 9)
        _color(pdf, MUTED)
        _fit(pdf, figure.label, box - 4, 8, 6)
        pdf.cell(box, 5, figure.label, align=Align.C)
    pdf.set_xy(pdf.l_margin, y + 20)
    pdf.set_font_size(11)
    _color(pdf, INK)


def _certificate(pdf: FPDF, document: Filled, code: str) -> None:
    width, height = pdf.w, pdf.h
    pdf.set_margins(28, 22, 28)
    inner = width - 56
    # a double frame, and corner marks
    pdf.set_draw_color(*ACCENT)
    pdf.set_line_width(1.4)
    pdf.rect(10, 10, width - 20, height - 20)
    pdf.set_line_width(0.4)
    pdf.rect(14, 14, width - 28, height - 28)
    for x, y in ((14, 14), (width - 14, 14), (14, height - 14), (width - 14, height - 14)):
        pdf.set_fill_color(*ACCENT)
        pdf.rect(x - 2, y - 2, 4, 4, style="F")

    pdf.set_xy(28, 24)
    pdf.set_char_spacing(2)
    _centred(pdf, "HONOUR CERTIFICATE", 11, ACCENT, 6)
    pdf.set_char_spacing(0)
    pdf.ln(3)
    _centred(pdf, document.title, 28, NAVY, 12)
    pdf.ln(2)
    _centred(pdf, "is awarded to", 11, MUTED, 6)
    pdf.ln(2)
    _color(pdf, INK)
    size = _fit(pdf, document.recipient, inner, 34, 16)
    pdf.cell(inner, size * 0.5, document.recipient, align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_draw_color(*ACCENT)
    pdf.set_line_width(0.3)
    pdf.line(width / 2 - 60, pdf.get_y() + 1, width / 2 + 60, pdf.get_y() + 1)
    pdf.ln(3)
    if document.member:
        _centred(pdf, document.member, 13, MUTED, 7)
    pdf.ln(2)
    for paragraph in document.body:
        _centred(pdf, paragraph, 12, INK, 6.5)
        pdf.ln(1.5)
    pdf.ln(2)
    _figures(pdf, document.figures, inner, centred=True)

    # the foot: date and signature left, verification right
    foot = height - 42
    pdf.set_xy(28, foot)
    _color(pdf, MUTED)
    pdf.set_font_size(9)
    pdf.cell(110, 5, f"Issued on {document.date}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_draw_color(*INK)
    pdf.set_line_width(0.2)
    pdf.line(28, foot + 14, 118, foot + 14)
    pdf.set_xy(28, foot + 15)
    _color(pdf, INK)
    _fit(pdf, document.signature, 110, 10, 7)
    pdf.multi_cell(110, 5, document.signature, wrapmode=_wrap(document.signature))

    pdf.set_xy(width - 28 - 110, foot)
    _color(pdf, MUTED)
    pdf.set_font_size(9)
    pdf.cell(110, 5, "Verification code", align=Align.R, new_x=XPos.LEFT, new_y=YPos.NEXT)
    _color(pdf, NAVY)
    pdf.set_font_size(14)
    pdf.cell(110, 8, code, align=Align.R, new_x=XPos.LEFT, new_y=YPos.NEXT)
    _color(pdf, MUTED)
    pdf.set_font_size(8)
    pdf.cell(110, 5, f"Verify at {VERIFY_PATH}{code}", align=Align.R)


def _letter(pdf: FPDF, document: Filled) -> None:
    pdf.set_margins(25, 22, 25)
    width = pdf.w - 50
    # letterhead: a rule in the accent colour, the word of thanks
    pdf.set_fill_color(*NAVY)
    pdf.rect(0, 0, pdf.w, 6, style="F")
    pdf.set_xy(25, 16)
    pdf.set_char_spacing(2)
    _color(pdf, ACCENT)
    pdf.set_font_size(10)
    pdf.cell(width / 2, 6, "THANK YOU")
    pdf.set_char_spacing(0)
    _color(pdf, MUTED)
    pdf.cell(width / 2, 6, document.date, align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(12)
    # the addressee
    _color(pdf, INK)
    pdf.set_font_size(12)
    pdf.multi_cell(width * 0.6, 6, document.recipient, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if document.member:
        pdf.set_font_size(11)
        pdf.multi_cell(width * 0.6, 6, document.member, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(10)
    _color(pdf, NAVY)
    pdf.set_font_size(17)
    pdf.multi_cell(
        width, 8, document.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT, wrapmode=_wrap(document.title)
    )
    pdf.ln(5)
    _color(pdf, INK)
    pdf.set_font_size(11)
    for paragraph in document.body:
        pdf.multi_cell(
            width, 6, paragraph, align=Align.J, new_x=XPos.LMARGIN, new_y=YPos.NEXT, wrapmode=_wrap(paragraph)
        )
        pdf.ln(3)
    if document.figures:
        pdf.ln(2)
        _figures(pdf, document.figures, width, centred=False)
    pdf.ln(6)
    if document.closing:
        pdf.multi_cell(width, 6, document.closing, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(12)
    pdf.multi_cell(width, 6, document.signature, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
