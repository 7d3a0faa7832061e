"""Honour certificates and thank-you letters: their templates, the placeholders a template fills, the
verification code a certificate carries, the program rules that issue them, and their lifecycle.

A template is versioned text (a title, a body, a signature; a letter also a closing) with
placeholders in braces — ``{member}``, ``{company}``, ``{achievement}``, ``{period}``,
``{figures}``, ``{program}``, ``{date}`` — and ``{{``/``}}`` for a literal brace. A document is a
template version plus the values of its fields, fixed when it is issued: what it says (and its PDF)
is decided by those alone, so it can be rendered again at any time and reads the same.

A certificate's verification code is 75 random bits and a check character (Luhn mod 32) in four
groups of four base32 characters, ``K3JD-QX7A-PL2M-Z9VB``: a typo is caught before a lookup, and
the codes cannot be enumerated. Letters carry none.

Lifecycle: issued → revoked (final). Documents cost a program's budget nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from loyalty_shared.dates import add_months, require_aware

DocumentKind = Literal["certificate", "letter"]
DOCUMENT_KINDS: tuple[DocumentKind, ...] = ("certificate", "letter")
DocumentStatus = Literal["issued", "revoked"]
DOCUMENT_STATUSES: tuple[DocumentStatus, ...] = ("issued", "revoked")

PLACEHOLDERS = ("member", "company", "achievement", "period", "figures", "program", "date")
MAX_TITLE = 200
MAX_BODY = 4000
MAX_SIGNATURE = 200
MAX_FIELD = 300
MAX_FIGURES = 8


# --- templates -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One version of a document template. ``closing`` is a letter's ("With gratitude,")."""

    kind: DocumentKind
    name: str  # what the CRM calls it ("Key account of the year")
    title: str
    body: str
    signature: str
    closing: str | None = None


_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def placeholders(text: str) -> list[str]:
    """The placeholders ``text`` uses, in order of first use (ValueError for a malformed one: an
    unknown name, an unclosed or a stray brace)."""
    found: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None:
            at = match.start() + 1
            raise ValueError(f"a stray {token!r} at character {at}: write {token * 2} for a brace")
        if name not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}}: the placeholders are {_listed()}")
        if name not in found:
            found.append(name)
    return found


def _listed() -> str:
    return ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with its placeholders replaced by ``values`` (KeyError for one without a value)."""
    placeholders(text)  # malformed text is refused before anything is filled

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return values[match.group(1)]

    return _TOKEN.sub(replace, text)


def template_problems(template: Template) -> list[str]:
    """Every problem with a candidate template; empty when it is valid."""
    problems: list[str] = []
    if template.kind not in DOCUMENT_KINDS:
        problems.append(f"kind must be one of {', '.join(DOCUMENT_KINDS)}, got {template.kind!r}")
    texts = {
        "name": (template.name, MAX_TITLE),
        "title": (template.title, MAX_TITLE),
        "body": (template.body, MAX_BODY),
        "signature": (template.signature, MAX_SIGNATURE),
    }
    if template.closing is not None:
        texts["closing"] = (template.closing, MAX_SIGNATURE)
    for field_name, (text, limit) in texts.items():
        if not text.strip() or len(text) > limit:
            problems.append(f"{field_name} must be text of 1 to {limit} characters")
            continue
        if field_name == "name":
            continue
        try:
            placeholders(text)
        except ValueError as exc:
            problems.append(f"{field_name}: {exc}")
    if template.kind == "certificate" and template.closing is not None:
        problems.append("closing is a letter's: a certificate has none")
    return problems


def template_placeholders(template: Template) -> list[str]:
    """Every placeholder the template uses (title, body, closing, signature), in order."""
    found: list[str] = []
    for text in (template.title, template.body, template.closing or "", template.signature):
        found += [p for p in placeholders(text) if p not in found]
    return found


# --- a document's fields ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One figure a document states: ``Figure("Net spend", "1,250,000.00 EUR")``."""

    label: str
    value: str


@dataclass(frozen=True)
class Fields:
    """What a document says about its recipient, fixed at issue. ``date`` is the issue date as the
    document prints it (ISO 8601, ``2026-10-01``)."""

    member: str | None = None  # the member's (a person's) name
    company: str | None = None
    achievement: str | None = None
    period: str | None = None
    figures: tuple[Figure, ...] = ()
    program: str | None = None
    date: str = ""

    def values(self) -> dict[str, str]:
        """The placeholders' values (only those with one)."""
        values = {
            "member": self.member,
            "company": self.company,
            "achievement": self.achievement,
            "period": self.period,
            "figures": figures_text(self.figures) or None,
            "program": self.program,
            "date": self.date or None,
        }
        return {k: v for k, v in values.items() if v}

    @property
    def recipient(self) -> str:
        """The name the document is made out to, printed large: the company, else the member."""
        return self.company or self.member or ""


def fields_document(fields: Fields) -> dict[str, Any]:
    """``fields`` as JSON (kept with the document, served over REST)."""
    return {
        "member": fields.member,
        "company": fields.company,
        "achievement": fields.achievement,
        "period": fields.period,
        "figures": [{"label": f.label, "value": f.value} for f in fields.figures],
        "program": fields.program,
        "date": fields.date,
    }


def fields_from_document(document: Mapping[str, Any]) -> Fields:
    return Fields(
        member=document.get("member"),
        company=document.get("company"),
        achievement=document.get("achievement"),
        period=document.get("period"),
        figures=tuple(Figure(f["label"], f["value"]) for f in document.get("figures", ())),
        program=document.get("program"),
        date=document.get("date", ""),
    )


def figures_text(figures: Sequence[Figure]) -> str:
    return " · ".join(f"{f.label}: {f.value}" for f in figures)


def missing_fields(template: Template, fields: Fields) -> list[str]:
    """The placeholders the template uses that ``fields`` give no value for (in order); a document
    needs a recipient (a member's or a company's name) too."""
    values = fields.values()
    missing = [p for p in template_placeholders(template) if p not in values]
    if not fields.recipient and "member" not in missing and "company" not in missing:
        missing.append("member or company")
    return missing


def field_problems(fields: Fields) -> list[str]:
    """Limits of the values a document is issued with."""
    problems = []
    for name in ("member", "company", "achievement", "period", "program"):
        value = getattr(fields, name)
        if value is not None and (not value.strip() or len(value) > MAX_FIELD):
            problems.append(f"{name} must be text of 1 to {MAX_FIELD} characters")
    if len(fields.figures) > MAX_FIGURES:
        problems.append(f"figures takes at most {MAX_FIGURES} figures")
    for index, figure in enumerate(fields.figures):
        if not figure.label.strip() or not figure.value.strip():
            problems.append(f"figures[{index}] needs a label and a value")
        elif len(figure.label) > 60 or len(figure.value) > 60:
            problems.append(f"figures[{index}]: label and value take at most 60 characters each")
    return problems


@dataclass(frozen=True)
class Filled:
    """What a document reads: its template filled with its fields."""

    kind: DocumentKind
    title: str
    recipient: str
    member: str | None  # printed under the company when both are given
    body: tuple[str, ...]  # paragraphs
    figures: tuple[Figure, ...]
    signature: str
    closing: str | None
    date: str


def filled(template: Template, fields: Fields) -> Filled:
    """The document's text (ValueError naming the fields missing)."""
    missing = missing_fields(template, fields)
    if missing:
        raise ValueError(f"the template needs a value for: {', '.join(missing)}")
    values = fields.values()
    body = tuple(p.strip() for p in re.split(r"\n\s*\n", fill(template.body, values)) if p.strip())
    return Filled(
        kind=template.kind,
        title=fill(template.title, values),
        recipient=fields.recipient,
        member=fields.member if fields.company and fields.member != fields.company else None,
        body=body,
        figures=fields.figures,
        signature=fill(template.signature, values),
        closing=None if template.closing is None else fill(template.closing, values),
        date=fields.date,
    )


def money_figure(amount: Decimal, currency: str) -> str:
    """An amount as a document prints it: ``1,250,000.00 EUR``."""
    return f"{amount.quantize(Decimal('0.01')):,.2f} {currency}"


# --- verification codes ----------------------------------------------------------------------------

CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32
CODE_PATTERN = r"^[A-Za-z2-7]{4}(-?[A-Za-z2-7]{4}){3}$"
CODE_RANDOM_BYTES = 10  # 80 bits drawn; 75 of them kept


def _luhn_total(values: Iterable[int], start_factor: int) -> int:
    n, total, factor = len(CODE_ALPHABET), 0, start_factor
    for value in values:
        addend = factor * value
        total += addend // n + addend % n
        factor = 1 if factor == 2 else 2
    return total


def check_character(body: str) -> str:
    """The Luhn mod 32 check character of ``body`` (base32): catches every single-character error
    and most swaps of neighbours."""
    values = [CODE_ALPHABET.index(c) for c in reversed(body)]
    n = len(CODE_ALPHABET)
    return CODE_ALPHABET[(n - _luhn_total(values, 2) % n) % n]


def new_code(entropy: bytes) -> str:
    """A verification code from ``CODE_RANDOM_BYTES`` random bytes: 15 base32 characters (75 bits)
    and the check character, in four groups of four."""
    if len(entropy) != CODE_RANDOM_BYTES:
        raise ValueError(f"a code takes {CODE_RANDOM_BYTES} random bytes, got {len(entropy)}")
    value = int.from_bytes(entropy, "big") >> 5  # 75 bits
    body = "".join(CODE_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(15)))
    raw = body + check_character(body)
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def normalised_code(text: str) -> str | None:
    """``text`` as a well-formed code (upper case, grouped), or None when it cannot be one: the
    wrong length or characters, or a check character that does not match."""
    raw = text.strip().upper().replace("-", "").replace(" ", "")
    if len(raw) != 16 or any(c not in CODE_ALPHABET for c in raw):
        return None
    values = [CODE_ALPHABET.index(c) for c in reversed(raw)]
    if _luhn_total(values, 1) % len(CODE_ALPHABET) != 0:
        return None
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


# --- lifecycle -------------------------------------------------------------------------------------


def revoked(status: str) -> DocumentStatus:
    """The status after a revocation (ValueError when it is not issued: revoked is final)."""
    if status == "revoked":
        raise ValueError("the document is revoked already: that is final")
    if status != "issued":
        raise ValueError(f"unknown document status {status!r}: one of {', '.join(DOCUMENT_STATUSES)}")
    return "revoked"


# --- the program rules that issue documents --------------------------------------------------------

CertificateTrigger = Literal["cycle-close-top-spend", "tier-reached", "years-of-partnership"]
CERTIFICATE_TRIGGERS: tuple[CertificateTrigger, ...] = (
    "cycle-close-top-spend",
    "tier-reached",
    "years-of-partnership",
)
LetterTrigger = Literal["cycle-close", "milestone"]
LETTER_TRIGGERS: tuple[LetterTrigger, ...] = ("cycle-close", "milestone")
MAX_TOP = 1000


@dataclass(frozen=True)
class HonourCertificate:
    """An honour certificate from ``template`` (a certificate template's id), issued:

    - ``cycle-close-top-spend``: at each cycle close, to the ``top`` treatment members by the
      cycle's net spend ("key account of the year" on a yearly cycle), once per cycle;
    - ``tier-reached``: when a member is promoted to ``tier``, once;
    - ``years-of-partnership``: at the first cycle close ``years`` years (or more) after the
      member's first order, once.

    ``achievement`` is the text of ``{achievement}`` (a default says what the rule saw)."""

    kind: ClassVar[Literal["honour-certificate"]] = "honour-certificate"
    id: str
    template: str
    trigger: CertificateTrigger
    top: int | None = None
    tier: str | None = None
    years: int | None = None
    achievement: str | None = None


@dataclass(frozen=True)
class ThankYouLetter:
    """A thank-you letter from ``template`` (a letter template's id), sent:

    - ``cycle-close``: at each cycle close, to every treatment member of the program;
    - ``milestone``: at the first cycle close after the member's net spend under the program
      (since its start) reached ``min_spend``, once."""

    kind: ClassVar[Literal["thank-you-letter"]] = "thank-you-letter"
    id: str
    template: str
    trigger: LetterTrigger
    min_spend: Decimal | None = None
    achievement: str | None = None


DocumentMeasure = HonourCertificate | ThankYouLetter


def at_cycle_close(measure: DocumentMeasure) -> bool:
    """Whether the measure issues at cycle close (else on a tier change)."""
    return not (isinstance(measure, HonourCertificate) and measure.trigger == "tier-reached")


@dataclass(frozen=True)
class Spender:
    """A member's figures in a cycle, for a ranking."""

    member_id: str
    spend: Decimal
    orders: int


@dataclass(frozen=True)
class Ranked:
    member_id: str
    rank: int
    spend: Decimal
    orders: int


def top_by_spend(spenders: Iterable[Spender], n: int) -> list[Ranked]:
    """The ``n`` members with the highest net spend (above 0), ranked 1 to n. A tie is broken by
    more orders, then by member id: the ranking is the same on every run."""
    if n < 1:
        raise ValueError(f"a top takes at least 1 member, got {n}")
    eligible = sorted((s for s in spenders if s.spend > 0), key=lambda s: (-s.spend, -s.orders, s.member_id))
    return [Ranked(s.member_id, rank, s.spend, s.orders) for rank, s in enumerate(eligible[:n], 1)]


def partnership_years(first_order_at: datetime, at: datetime) -> int:
    """Whole years from the member's first order to ``at`` (0 before the first anniversary)."""
    require_aware(first_order_at, "first_order_at")
    require_aware(at, "at")
    years = at.year - first_order_at.year
    while years > 0 and add_months(first_order_at, 12 * years) > at:
        years -= 1
    return max(years, 0)


def partnership_due(measure: HonourCertificate, first_order_at: datetime | None, cycle_end: datetime) -> bool:
    """Whether a years-of-partnership certificate is due at a cycle closing at ``cycle_end``."""
    if measure.trigger != "years-of-partnership" or measure.years is None or first_order_at is None:
        return False
    return partnership_years(first_order_at, cycle_end) >= measure.years


def milestone_due(measure: ThankYouLetter, cumulative_spend: Decimal) -> bool:
    """Whether a milestone letter is due: the member's net spend under the program reached it."""
    if measure.trigger != "milestone" or measure.min_spend is None:
        return False
    return cumulative_spend >= measure.min_spend


def tier_reached(measure: HonourCertificate, direction: str, to_tier: str) -> bool:
    """Whether a ``tier.changed`` earns a tier-reached certificate: a promotion to its tier."""
    return measure.trigger == "tier-reached" and direction == "up" and to_tier == measure.tier


def default_achievement(
    measure: DocumentMeasure, *, rank: int | None = None, cycle: str | None = None
) -> str:
    """The ``{achievement}`` of a rule-issued document when its measure gives none."""
    if measure.achievement:
        return measure.achievement
    if isinstance(measure, HonourCertificate):
        if measure.trigger == "cycle-close-top-spend":
            return f"Rank {rank} of the top {measure.top} by net spend in {cycle}"
        if measure.trigger == "tier-reached":
            return f"Reached the {measure.tier} tier"
        return f"{measure.years} years of partnership"
    if measure.trigger == "milestone":
        return f"A net spend of {measure.min_spend} reached"
    return f"Our partnership in {cycle}"
