"""A document's PDF (fpdf2, the Noto Sans CJK font the project's setup installs): a certificate and a
letter render with their text extractable (a Chinese company name, the verification code), the same
bytes every time; the font is found in one place, and its absence is said clearly."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from pypdf import PdfReader

from rewards_service import fonts
from rewards_service.domain.documents import Fields, Figure, Template, filled, new_code
from rewards_service.rendering import render

COMPANY = "上海华强电子有限公司"
ISSUED_AT = datetime(2027, 1, 1, 9, 30, tzinfo=UTC)
FIELDS = Fields(
    member="Wang Wei 王伟",
    company=COMPANY,
    achievement="Rank 1 of the top 3 by net spend",
    period="2026",
    figures=(Figure("Net spend", "1,250,000.00 EUR"), Figure("Orders", "42")),
    program="Key accounts 2026",
    date="2027-01-01",
)
CERTIFICATE = Template(
    "certificate",
    "Key account of the year",
    "Key account of the year {period}",
    "In recognition of {achievement}.\n\nThank you, {member}, for your trust in {program}.",
    "Anna Schmidt, Head of Key Accounts",
)
LETTER = Template(
    "letter",
    "Thanks",
    "Thank you, {company}",
    "Dear {member},\n\nthank you for {period}: {figures}. Спасибо, ΕΥΧΑΡΙΣΤΟΥΜΕ.",
    "Anna Schmidt",
    "With gratitude,",
)


def text_of(pdf: bytes) -> str:
    """The PDF's text without whitespace (and without the NULs pypdf reads into two-byte codes)."""
    pages = PdfReader(io.BytesIO(pdf)).pages
    return "".join("".join(page.extract_text() for page in pages).replace("\x00", "").split())


def test_a_certificate_renders_its_text_in_any_script_and_the_same_bytes_every_time() -> None:
    code = new_code(bytes(range(10)))
    pdf = render(filled(CERTIFICATE, FIELDS), code=code, issued_at=ISSUED_AT)
    assert pdf.startswith(b"%PDF-") and len(pdf) < 40_000
    assert render(filled(CERTIFICATE, FIELDS), code=code, issued_at=ISSUED_AT) == pdf
    text = text_of(pdf)
    for expected in (COMPANY, "WangWei王伟", code, f"/v1/certificates/{code}", "Keyaccountoftheyear2026"):
        assert expected in text, (expected, text)
    assert len(PdfReader(io.BytesIO(pdf)).pages) == 1
    with pytest.raises(ValueError, match="verification code"):
        render(filled(CERTIFICATE, FIELDS), code=None, issued_at=ISSUED_AT)


def test_a_letter_reads_as_a_letter() -> None:
    pdf = render(filled(LETTER, FIELDS), code=None, issued_at=ISSUED_AT)
    text = text_of(pdf)
    for expected in (f"Thankyou,{COMPANY}", "DearWangWei王伟", "Спасибо", "ΕΥΧΑΡΙΣΤΟΥΜΕ", "Withgratitude"):
        assert expected in text, (expected, text)
    assert "/v1/certificates/" not in text


def test_the_font_is_looked_for_in_one_place_and_its_absence_said(monkeypatch: pytest.MonkeyPatch) -> None:
    found = fonts.document_font()  # the project's setup (./loyalty) installs it
    assert found.path.name == fonts.FILE_NAME and found.face == fonts.SIMPLIFIED_CHINESE
    assert fonts.unsupported(f"{COMPANY} Ёж Δ é") == []
    assert fonts.unsupported("ACME 🎉 شركة") == ["ة", "ر", "ش", "ك", "🎉"]
    assert fonts.unsupported("Ευχαριστούμε") == ["ύ"]  # Noto Sans CJK lacks Greek with tonos: refused
    monkeypatch.setenv(fonts.FONT_ENV, "/nonexistent/font.ttc")
    assert fonts.candidates() == [fonts.Path("/nonexistent/font.ttc")]  # configured: only there
    with pytest.raises(fonts.FontUnavailable, match=r"/nonexistent/font\.ttc.*LOYALTY_FONT_CJK"):
        fonts.document_font()
    assert fonts.unsupported("🎉") == []  # nothing to check against: rendering says so
    with pytest.raises(fonts.FontUnavailable):
        render(filled(LETTER, FIELDS), code=None, issued_at=ISSUED_AT)
    monkeypatch.delenv(fonts.FONT_ENV)
    assert fonts.candidates() == [fonts.SYSTEM_PATH, fonts.CACHE_PATH]
