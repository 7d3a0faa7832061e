"""Honour certificates and thank-you letters: issuing (by program rules at cycle close and on tier
changes, or by the CRM), storage, rendering to PDF and the public verification of a certificate's
code. Their templates and how they name a member: ``document_templates``.

Issuing writes the document's row — its template version and its filled fields, fixed from then
on — once per ``dedupe`` key (``INSERT … ON CONFLICT DO NOTHING``: duplicates, replays and
concurrent requests issue once) and publishes ``certificate.issued`` or ``letter.issued`` in the
same transaction. Rendering is kept off the consumer's and the settlement's path: a periodic job
renders the documents not rendered yet and stores their PDF in PostgreSQL; a download of one not
rendered yet renders it then. A document costs its program's budget nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.db import columns_of, unnest_insert
from loyalty_shared.errors import NotFound, Problem, Unprocessable
from loyalty_shared.events import CertificateIssued, DocumentRevoked, LetterIssued, TierChanged
from loyalty_shared.events.types import MemberId
from loyalty_shared.handling import Delivery
from loyalty_shared.idempotency import fingerprint, reused_key
from loyalty_shared.messaging.outbox import publish
from loyalty_shared.service import Runtime, periodic
from rewards_service import domain
from rewards_service.document_templates import (
    TEMPLATE_ID,
    Kind,
    Naming,
    current_templates,
    namings,
    template_of,
    unprintable,
)
from rewards_service.domain import documents as rules
from rewards_service.domain.issuing import once_key
from rewards_service.facts import Facts, lock_members
from rewards_service.fonts import FontUnavailable
from rewards_service.issuing import Issuer, LiveProgram
from rewards_service.models import Document, DocumentFile, DocumentTemplate, table
from rewards_service.rendering import render

log = logging.getLogger(__name__)
MEMBERS_PER_TRANSACTION = 200
RENDERED_PER_RUN = 50

# --- REST bodies and views -------------------------------------------------------------------------


class FigureBody(BaseModel):
    label: str = Field(min_length=1, max_length=60)
    value: str = Field(min_length=1, max_length=60)


class FieldsBody(BaseModel):
    """What the documents say; ``member`` and ``company`` default to how the member is named
    (``PUT /v1/members/{id}/recipient``) and may be given for a single member only."""

    member: str | None = Field(default=None, min_length=1, max_length=rules.MAX_FIELD)
    company: str | None = Field(default=None, min_length=1, max_length=rules.MAX_FIELD)
    achievement: str | None = Field(default=None, min_length=1, max_length=rules.MAX_FIELD)
    period: str | None = Field(default=None, min_length=1, max_length=rules.MAX_FIELD)
    figures: list[FigureBody] = Field(default_factory=list, max_length=rules.MAX_FIGURES)
    program: str | None = Field(
        default=None, min_length=1, max_length=rules.MAX_FIELD, description="the program or occasion"
    )


class IssueBody(BaseModel):
    template_id: str = Field(pattern=TEMPLATE_ID)
    member_ids: list[MemberId] = Field(min_length=1, max_length=MEMBERS_PER_TRANSACTION)
    fields: FieldsBody = Field(default_factory=FieldsBody)
    reason: str | None = Field(default=None, min_length=1, max_length=500, description="why (kept)")


class FieldsView(BaseModel):
    member: str | None
    company: str | None
    achievement: str | None
    period: str | None
    figures: list[FigureBody]
    program: str | None
    date: str


class DocumentView(BaseModel):
    document_id: str
    kind: Kind
    member_id: str
    template_id: str
    template_version: int
    title: str = Field(description="the title as the document reads")
    fields: FieldsView
    code: str | None = Field(description="a certificate's verification code (a letter has none)")
    status: Literal["issued", "revoked"]
    reason: str
    issued_by: str
    program_id: str | None
    program_version: int | None
    measure_id: str | None
    cycle: str | None
    issued_at: datetime
    status_changed_at: datetime
    revoke_reason: str | None
    rendered: bool = Field(description="whether its PDF is rendered (a download renders it when not)")
    pdf: str = Field(description="where its PDF is downloaded")


class DocumentList(BaseModel):
    items: list[DocumentView]


class RevokeBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class CertificateCheck(BaseModel):
    """What a certificate itself shows, and whether it stands: nothing else."""

    code: str
    status: Literal["valid", "revoked"]
    title: str
    awarded_to: str = Field(description="the name the certificate is made out to")
    member: str | None = Field(description="the member's name, printed under the company's")
    achievement: str | None
    period: str | None
    issued_on: str = Field(description="the issue date, YYYY-MM-DD")


# --- issuing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """A document to issue, once per ``dedupe``."""

    member_id: str
    template: DocumentTemplate
    fields: rules.Fields
    reason: str
    dedupe: str
    issued_by: str
    live: LiveProgram | None = None
    measure_id: str | None = None
    cycle: str | None = None
    request_hash: str | None = None


_COLUMNS = (
    "document_id",
    "kind",
    "template_id",
    "template_version",
    "member_id",
    "program_id",
    "program_version",
    "measure_id",
    "cycle",
    "fields",
    "code",
    "status",
    "reason",
    "dedupe",
    "request_hash",
    "issued_by",
    "issued_at",
    "status_changed_at",
)
_INSERT = unnest_insert(table(Document), _COLUMNS, "ON CONFLICT (dedupe) DO NOTHING RETURNING document_id")


def new_code() -> str:
    return rules.new_code(secrets.token_bytes(rules.CODE_RANDOM_BYTES))


async def issue(session: AsyncSession, drafts: Sequence[Draft], now: datetime) -> list[str]:
    """Issue the drafts not issued before (by their dedupe key) and publish each one issued; the
    ids issued now. The caller holds the members' locks."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for draft in drafts:
        if draft.dedupe in seen:
            continue
        seen.add(draft.dedupe)
        kind = draft.template.kind
        rows.append(
            {
                "document_id": str(uuid.uuid4()),
                "kind": kind,
                "template_id": draft.template.template_id,
                "template_version": draft.template.version,
                "member_id": draft.member_id,
                "program_id": None if draft.live is None else draft.live.id,
                "program_version": None if draft.live is None else draft.live.version,
                "measure_id": draft.measure_id,
                "cycle": draft.cycle,
                "fields": rules.fields_document(draft.fields),
                "code": new_code() if kind == "certificate" else None,
                "status": "issued",
                "reason": draft.reason,
                "dedupe": draft.dedupe,
                "request_hash": draft.request_hash,
                "issued_by": draft.issued_by,
                "issued_at": now,
                "status_changed_at": now,
            }
        )
    if not rows:
        return []
    inserted = set(await session.scalars(_INSERT, columns_of(table(Document), rows, _COLUMNS)))
    by_dedupe = {d.dedupe: d for d in drafts}
    for row in rows:
        if row["document_id"] in inserted:
            _published(session, row, by_dedupe[row["dedupe"]], now)
    return [r["document_id"] for r in rows if r["document_id"] in inserted]


def _published(session: AsyncSession, row: dict[str, Any], draft: Draft, now: datetime) -> None:
    title = rules.fill(draft.template.title, draft.fields.values())
    common: dict[str, Any] = {
        "document_id": row["document_id"],
        "member_id": draft.member_id,
        "template_id": draft.template.template_id,
        "template_version": draft.template.version,
        "title": title,
        "issued_by": "crm" if draft.live is None else "program",
        "program_id": row["program_id"],
        "program_version": row["program_version"],
        "measure_id": draft.measure_id,
        "cycle": draft.cycle,
        "reason": draft.reason,
        "issued_at": now,
    }
    if row["kind"] == "certificate":
        publish(session, CertificateIssued(**common, code_hint=row["code"][-4:]), draft.member_id)
    else:
        publish(session, LetterIssued(**common), draft.member_id)


def named(
    naming: Naming | None, member_id: str, template: rules.Template, fields: rules.Fields
) -> rules.Fields:
    """``fields`` with the member's names for documents (as given, else as kept, else the member's
    id, so a rule-issued document always names its recipient)."""
    member = fields.member or (naming.member_name if naming else None)
    company = fields.company or (naming.company if naming else None)
    used = rules.template_placeholders(template)
    if "company" in used and company is None:
        company = member or member_id
    if member is None and (company is None or "member" in used):
        member = company or member_id
    return dataclasses.replace(fields, member=member, company=company)


async def issue_by_crm(
    session: AsyncSession, body: IssueBody, key: str, actor: str
) -> tuple[list[DocumentView], bool]:
    """The template's document for each member named, once per Idempotency-Key; whether it was
    issued now (False: a replay)."""
    members = sorted(set(body.member_ids))
    if (body.fields.member or body.fields.company) and len(members) > 1:
        raise Unprocessable(
            "fields.member and fields.company name one member: for several, name each with "
            "PUT /v1/members/{id}/recipient",
            code="names-for-several",
        )
    given = body.fields
    texts = {"member": given.member, "company": given.company, "achievement": given.achievement}
    texts |= {"period": given.period, "program": given.program, "reason": body.reason}
    texts |= {f"figures[{i}]": f.label + f.value for i, f in enumerate(given.figures)}
    if problems := unprintable(texts):
        raise Unprocessable("; ".join(problems), code="unprintable", problems=problems)
    await lock_members(session, members)
    request_hash = fingerprint(body)
    keys = {m: once_key("crm-document", key, m) for m in members}
    earlier = list(await session.scalars(select(Document).where(Document.dedupe.in_(list(keys.values())))))
    if earlier:
        if any(d.request_hash != request_hash for d in earlier) or len(earlier) != len(members):
            raise reused_key(key)
        return await _views(session, sorted(earlier, key=lambda d: d.member_id)), False
    template_row = (await current_templates(session, [body.template_id])).get(body.template_id)
    if template_row is None:
        raise Unprocessable(f"no document template {body.template_id}", code="template-not-found")
    template, now = template_of(template_row), clock_now(session)
    names = await namings(session, members)
    fields = rules.Fields(
        given.member,
        given.company,
        given.achievement,
        given.period,
        tuple(rules.Figure(f.label, f.value) for f in given.figures),
        given.program,
        now.date().isoformat(),
    )
    drafts, problems = [], []
    for member_id in members:
        naming = names.get(member_id)
        member_fields = dataclasses.replace(
            fields,
            member=fields.member or (naming.member_name if naming else None),
            company=fields.company or (naming.company if naming else None),
        )
        if missing := rules.missing_fields(template, member_fields):
            problems.append(f"{member_id}: the template needs {', '.join(missing)}")
            continue
        reason = body.reason or f"issued by the CRM ({template_row.name})"
        drafts.append(
            Draft(
                member_id,
                template_row,
                member_fields,
                reason,
                keys[member_id],
                actor,
                request_hash=request_hash,
            )
        )
    if problems:
        raise Unprocessable(
            "; ".join(problems), code="fields-missing", title="Fields missing", problems=problems
        )
    await issue(session, drafts, now)
    found = await session.scalars(select(Document).where(Document.dedupe.in_(list(keys.values()))))
    return await _views(session, sorted(found, key=lambda d: d.member_id)), True


# --- on a tier change (the consumer) ---------------------------------------------------------------


@dataclass
class TierCertificates:
    """The tier-reached certificates a batch of events issues: the active programs' rules, their
    templates and the batch members' names, loaded once; ``on_tier_change`` decides in event order,
    ``flush`` issues (once per program, measure, member and tier)."""

    session: AsyncSession
    now: datetime
    measures: list[tuple[LiveProgram, rules.HonourCertificate]]
    templates: dict[str, DocumentTemplate]
    names: dict[str, Naming]
    drafts: list[Draft] = field(default_factory=list)

    @classmethod
    async def load(
        cls, session: AsyncSession, programs: Sequence[LiveProgram], deliveries: Sequence[Delivery]
    ) -> TierCertificates | None:
        measures = [
            (live, m)
            for live in programs
            for m in live.program.measures
            if isinstance(m, rules.HonourCertificate) and m.trigger == "tier-reached"
        ]
        changes = [d.data for d in deliveries if isinstance(d.data, TierChanged) and d.data.direction == "up"]
        if not measures or not changes:
            return None
        templates = await current_templates(session, {m.template for _, m in measures})
        names = await namings(session, {c.member_id for c in changes})
        return cls(session, clock_now(session), measures, templates, names)

    def on_tier_change(self, issuer: Issuer, facts: Facts, change: TierChanged, at: datetime) -> None:
        for live, measure in self.measures:
            if not rules.tier_reached(measure, change.direction, change.to_tier):
                continue
            row = _usable(self.templates, live, measure)
            if row is None:
                continue
            participant = issuer.reached(
                live, facts.member_facts(change.member_id, live.program.budget.currency), at
            )
            if participant is None:
                continue  # outside the program, or held out in its control group
            cycle = domain.cycle_of(live.program.schedule, at)
            fields = rules.Fields(
                achievement=rules.default_achievement(measure),
                period=None if cycle is None else cycle.label,
                figures=(rules.Figure("Tier", change.to_tier),),
                program=live.program.name,
                date=self.now.date().isoformat(),
            )
            member = change.member_id
            self.drafts.append(
                Draft(
                    member,
                    row,
                    named(self.names.get(member), member, template_of(row), fields),
                    f"promoted to {change.to_tier}",
                    once_key("honour-certificate", live.id, measure.id, member, change.to_tier),
                    f"program:{live.id}",
                    live,
                    measure.id,
                    None if cycle is None else cycle.label,
                )
            )

    async def flush(self) -> None:
        await issue(self.session, self.drafts, self.now)


def _usable(
    templates: Mapping[str, DocumentTemplate], live: LiveProgram, measure: rules.DocumentMeasure
) -> DocumentTemplate | None:
    """The measure's template when it exists and is of its kind (else nothing is issued, and said)."""
    row = templates.get(measure.template)
    wanted = "certificate" if isinstance(measure, rules.HonourCertificate) else "letter"
    if row is None or row.kind != wanted:
        log.warning(
            "program %s measure %s names %s %s: nothing issued",
            live.id,
            measure.id,
            "a missing template" if row is None else f"a {row.kind} template, not a {wanted} one,",
            measure.template,
        )
        return None
    return row


# --- at cycle close (settlement) -------------------------------------------------------------------

_CYCLE_ORDERS = text(
    "SELECT member_id, amount, refunded, cancelled_at, paid_at FROM orders "
    "WHERE member_id = ANY(CAST(:members AS text[])) AND currency = :currency "
    "AND paid_at >= :since AND paid_at < :until"
)
_FIRST_ORDERS = text(
    "SELECT member_id, first_order_at FROM members WHERE member_id = ANY(CAST(:members AS text[]))"
)


@dataclass(frozen=True)
class MemberCycle:
    member_id: str
    cycle: domain.Figures
    program: domain.Figures  # since the program started, up to the cycle's end
    first_order_at: datetime | None


async def _cycle_figures(
    session: AsyncSession, live: LiveProgram, cycle: domain.Cycle, members: Sequence[str]
) -> list[MemberCycle]:
    assert cycle.end is not None
    start = live.program.schedule.starts
    params = {"members": list(members), "currency": live.program.budget.currency}
    orders: dict[str, list[tuple[datetime, Decimal]]] = {m: [] for m in members}
    found = await session.execute(
        _CYCLE_ORDERS, params | {"since": min(start, cycle.start), "until": cycle.end}
    )
    for o in found:
        orders[o.member_id].append(
            (o.paid_at, Decimal(0) if o.cancelled_at is not None else o.amount - o.refunded)
        )
    first = {r.member_id: r.first_order_at for r in await session.execute(_FIRST_ORDERS, params)}
    result = []
    for member_id in members:
        facts = domain.MemberFacts(member_id, None, tuple(orders[member_id]))
        result.append(
            MemberCycle(
                member_id,
                domain.figures(facts, cycle.start, cycle.end),
                domain.figures(facts, start, cycle.end),
                first.get(member_id),
            )
        )
    return result


def _due_at_close(
    live: LiveProgram, measure: rules.DocumentMeasure, cycle: domain.Cycle, members: Sequence[MemberCycle]
) -> list[tuple[MemberCycle, str, str, tuple[rules.Figure, ...], str]]:
    """Who the measure issues to at this cycle's close: (member, achievement, reason, figures, once
    key) each."""
    assert cycle.end is not None
    currency = live.program.budget.currency
    due = []

    def spend(figures: domain.Figures) -> tuple[rules.Figure, ...]:
        return (
            rules.Figure("Net spend", rules.money_figure(figures.spend, currency)),
            rules.Figure("Orders", str(figures.orders)),
        )

    if isinstance(measure, rules.HonourCertificate) and measure.trigger == "cycle-close-top-spend":
        assert measure.top is not None
        by_id = {m.member_id: m for m in members}
        spenders = [rules.Spender(m.member_id, m.cycle.spend, m.cycle.orders) for m in members]
        for ranked in rules.top_by_spend(spenders, measure.top):
            member = by_id[ranked.member_id]
            achievement = rules.default_achievement(measure, rank=ranked.rank, cycle=cycle.label)
            figures = (rules.Figure("Rank", f"{ranked.rank} of {measure.top}"), *spend(member.cycle))
            reason = f"top {measure.top} by net spend in {cycle.label}: rank {ranked.rank}"
            key = once_key("honour-certificate", live.id, measure.id, member.member_id, cycle.label)
            due.append((member, achievement, reason, figures, key))
    elif isinstance(measure, rules.HonourCertificate):
        for member in members:
            if not rules.partnership_due(measure, member.first_order_at, cycle.end):
                continue
            assert member.first_order_at is not None
            years = rules.partnership_years(member.first_order_at, cycle.end)
            figures = (
                rules.Figure("Partner since", member.first_order_at.date().isoformat()),
                rules.Figure("Years", str(years)),
            )
            reason = f"{years} years of partnership at the close of {cycle.label}"
            key = once_key("honour-certificate", live.id, measure.id, member.member_id)
            due.append((member, rules.default_achievement(measure), reason, figures, key))
    elif measure.trigger == "milestone":
        for member in members:
            if not rules.milestone_due(measure, member.program.spend):
                continue
            assert measure.min_spend is not None
            achievement = (
                measure.achievement or f"A net spend of {rules.money_figure(measure.min_spend, currency)}"
            )
            figures = (rules.Figure("Net spend", rules.money_figure(member.program.spend, currency)),)
            reason = f"net spend {member.program.spend} reached {measure.min_spend} by {cycle.label}"
            key = once_key("thank-you-letter", live.id, measure.id, member.member_id)
            due.append((member, achievement, reason, figures, key))
    else:
        for member in members:
            reason = f"thanks for {cycle.label}"
            key = once_key("thank-you-letter", live.id, measure.id, member.member_id, cycle.label)
            due.append(
                (
                    member,
                    rules.default_achievement(measure, cycle=cycle.label),
                    reason,
                    spend(member.cycle),
                    key,
                )
            )
    return due


async def issue_at_cycle_close(
    rt: Runtime, live: LiveProgram, cycle: domain.Cycle, members: Sequence[str]
) -> int:
    """The documents the program's cycle-close rules issue for ``cycle`` to its treatment
    ``members``: figures read first for all of them (a top N ranks them all), then issued in
    chunks, each one transaction taking the members' locks. Idempotent (once keys)."""
    measures = [
        m
        for m in live.program.measures
        if isinstance(m, rules.HonourCertificate | rules.ThankYouLetter) and rules.at_cycle_close(m)
    ]
    if not measures or not members:
        return 0
    figures: list[MemberCycle] = []
    async with rt.sessions() as session:
        templates = await current_templates(session, {m.template for m in measures})
        for start in range(0, len(members), MEMBERS_PER_TRANSACTION):
            figures += await _cycle_figures(
                session, live, cycle, members[start : start + MEMBERS_PER_TRANSACTION]
            )
    due: list[
        tuple[rules.DocumentMeasure, DocumentTemplate, MemberCycle, str, str, tuple[rules.Figure, ...], str]
    ] = []
    for measure in measures:
        row = _usable(templates, live, measure)
        if row is not None:
            due += [(measure, row, *entry) for entry in _due_at_close(live, measure, cycle, figures)]
    issued = 0
    for start in range(0, len(due), MEMBERS_PER_TRANSACTION):
        chunk = due[start : start + MEMBERS_PER_TRANSACTION]
        async with rt.unit_of_work() as session:
            await lock_members(session, [entry[2].member_id for entry in chunk])
            names = await namings(session, [entry[2].member_id for entry in chunk])
            now = clock_now(session)
            drafts = []
            for measure, row, member, achievement, reason, member_figures, key in chunk:
                fields = rules.Fields(
                    achievement=achievement,
                    period=cycle.label,
                    figures=member_figures,
                    program=live.program.name,
                    date=now.date().isoformat(),
                )
                drafts.append(
                    Draft(
                        member.member_id,
                        row,
                        named(names.get(member.member_id), member.member_id, template_of(row), fields),
                        reason,
                        key,
                        f"program:{live.id}",
                        live,
                        measure.id,
                        cycle.label,
                    )
                )
            issued += len(await issue(session, drafts, now))
    return issued


# --- reading -------------------------------------------------------------------------------------


async def _views(session: AsyncSession, documents: Sequence[Document]) -> list[DocumentView]:
    keys = {(d.template_id, d.template_version) for d in documents}
    templates: dict[tuple[str, int], DocumentTemplate] = {}
    for template_id, version in keys:
        row = await session.get(DocumentTemplate, (template_id, version))
        assert row is not None
        templates[(template_id, version)] = row
    return [_view(d, templates[(d.template_id, d.template_version)]) for d in documents]


def _view(document: Document, template: DocumentTemplate) -> DocumentView:
    fields = rules.fields_from_document(document.fields)
    kind: Kind = "certificate" if document.kind == "certificate" else "letter"
    return DocumentView(
        document_id=document.document_id,
        kind=kind,
        member_id=document.member_id,
        template_id=document.template_id,
        template_version=document.template_version,
        title=rules.fill(template.title, fields.values()),
        fields=FieldsView(
            member=fields.member,
            company=fields.company,
            achievement=fields.achievement,
            period=fields.period,
            figures=[FigureBody(label=f.label, value=f.value) for f in fields.figures],
            program=fields.program,
            date=fields.date,
        ),
        code=document.code,
        status="revoked" if document.status == "revoked" else "issued",
        reason=document.reason,
        issued_by=document.issued_by,
        program_id=document.program_id,
        program_version=document.program_version,
        measure_id=document.measure_id,
        cycle=document.cycle,
        issued_at=document.issued_at,
        status_changed_at=document.status_changed_at,
        revoke_reason=document.revoke_reason,
        rendered=document.rendered_at is not None,
        pdf=f"/v1/documents/{document.document_id}.pdf",
    )


async def _find(session: AsyncSession, document_id: str, *, lock: bool = False) -> Document:
    document = await session.get(Document, document_id, with_for_update=lock, populate_existing=lock)
    if document is None:
        raise NotFound(f"no document {document_id}", code="document-not-found")
    return document


async def get_document(session: AsyncSession, document_id: str) -> DocumentView:
    [view] = await _views(session, [await _find(session, document_id)])
    return view


async def member_documents(session: AsyncSession, member_id: str) -> DocumentList:
    rows = await session.scalars(
        select(Document)
        .where(Document.member_id == member_id)
        .order_by(Document.issued_at, Document.document_id)
    )
    return DocumentList(items=await _views(session, list(rows)))


async def revoke(session: AsyncSession, document_id: str, body: RevokeBody, actor: str) -> DocumentView:
    """Revoke a document (final); a retry changes nothing."""
    found = await _find(session, document_id)
    await lock_members(session, [found.member_id])
    document = await _find(session, document_id, lock=True)
    if document.status != "revoked":
        now = clock_now(session)
        document.status = rules.revoked(document.status)
        document.status_changed_at, document.revoke_reason = now, body.reason
        kind: Kind = "certificate" if document.kind == "certificate" else "letter"
        publish(
            session,
            DocumentRevoked(
                document_id=document_id,
                member_id=document.member_id,
                kind=kind,
                reason=body.reason,
                revoked_at=now,
            ),
            document.member_id,
        )
    return await get_document(session, document_id)


async def check_certificate(session: AsyncSession, code: str) -> CertificateCheck:
    """What the certificate with this code shows: the same 404 for a code that is malformed, does
    not exist or is a letter's (there are none), so a lookup learns nothing else."""
    normalised = rules.normalised_code(code)
    document = None
    if normalised is not None:
        document = await session.scalar(select(Document).where(Document.code == normalised))
    if document is None or document.kind != "certificate":
        raise NotFound("no certificate has this verification code", code="certificate-not-found")
    template = await session.get(DocumentTemplate, (document.template_id, document.template_version))
    assert template is not None
    fields = rules.fields_from_document(document.fields)
    text_of = rules.filled(template_of(template), fields)
    return CertificateCheck(
        code=normalised or code,
        status="revoked" if document.status == "revoked" else "valid",
        title=text_of.title,
        awarded_to=text_of.recipient,
        member=text_of.member,
        achievement=fields.achievement,
        period=fields.period,
        issued_on=fields.date,
    )


# --- rendering and storage -------------------------------------------------------------------------

_PENDING = text(
    "SELECT document_id FROM documents WHERE rendered_at IS NULL AND document_id > :after "
    "ORDER BY document_id LIMIT :limit"
)
_STORE = text(
    "INSERT INTO document_files (document_id, pdf, sha256, rendered_at) VALUES (:id, :pdf, :sha, :now) "
    "ON CONFLICT (document_id) DO NOTHING"
)
_RENDERED = text("UPDATE documents SET rendered_at = :now WHERE document_id = :id AND rendered_at IS NULL")


class FontMissing(Problem):
    status, code, title = 503, "document-font-unavailable", "Documents cannot be rendered"


@dataclass(frozen=True)
class Rendition:
    document_id: str
    kind: str
    pdf: bytes


@dataclass(frozen=True)
class _ToRender:
    text: rules.Filled
    code: str | None
    issued_at: datetime

    async def pdf(self) -> bytes:
        """Rendered off the event loop (FontUnavailable without a font)."""
        return await asyncio.to_thread(render, self.text, code=self.code, issued_at=self.issued_at)


async def _to_render(session: AsyncSession, document: Document) -> _ToRender:
    template = await session.get(DocumentTemplate, (document.template_id, document.template_version))
    assert template is not None
    text_of = rules.filled(template_of(template), rules.fields_from_document(document.fields))
    return _ToRender(text_of, document.code, document.issued_at)


async def _store(rt: Runtime, document_id: str, pdf: bytes) -> None:
    async with rt.unit_of_work() as session:
        now = clock_now(session)
        sha = hashlib.sha256(pdf).hexdigest()
        await session.execute(_STORE, {"id": document_id, "pdf": pdf, "sha": sha, "now": now})
        await session.execute(_RENDERED, {"id": document_id, "now": now})


async def document_pdf(rt: Runtime, document_id: str) -> Rendition:
    """The document's PDF: as stored, or rendered (and stored) now when it is not yet."""
    async with rt.sessions() as session:
        document = await _find(session, document_id)
        stored = await session.get(DocumentFile, document_id)
        if stored is not None:
            return Rendition(document_id, document.kind, stored.pdf)
        to_render = await _to_render(session, document)
    try:
        pdf = await to_render.pdf()
    except FontUnavailable as exc:
        log.error("document %s cannot be rendered: %s", document_id, exc)
        raise FontMissing(str(exc)) from exc
    await _store(rt, document_id, pdf)
    return Rendition(document_id, document.kind, pdf)


async def render_pending(rt: Runtime) -> str | None:
    """Render the documents not rendered yet (up to ``RENDERED_PER_RUN``) and store their PDF."""
    rendered, after = 0, ""
    while rendered < RENDERED_PER_RUN:
        async with rt.sessions() as session:
            ids = list(await session.scalars(_PENDING, {"after": after, "limit": 10}))
        if not ids:
            break
        for document_id in ids:
            after = document_id
            async with rt.sessions() as session:
                to_render = await _to_render(session, await _find(session, document_id))
            try:
                pdf = await to_render.pdf()
            except FontUnavailable as exc:
                log.error("documents cannot be rendered: %s", exc)
                return f"{rendered} documents rendered; stopped: no font"
            except Exception:
                log.exception("document %s could not be rendered; the next run tries again", document_id)
                continue
            await _store(rt, document_id, pdf)
            rendered += 1
    return f"{rendered} documents rendered" if rendered else None


document_render_job = periodic("document rendering", "document_render_interval_s", render_pending)
