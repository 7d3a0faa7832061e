"""Document templates and how documents name a member: a template's versions (created, edited into
a new version, never changed), each checked in full (placeholders, lengths, what the font prints);
a member's name and company as the CRM keeps them, copied into a document when it is issued."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.errors import Conflict, NotFound, Unprocessable
from rewards_service.domain import documents as rules
from rewards_service.fonts import unsupported
from rewards_service.models import DocumentRecipient, DocumentTemplate

TEMPLATE_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
Kind = Literal["certificate", "letter"]


class TemplateBody(BaseModel):
    kind: Kind
    name: str = Field(min_length=1, max_length=rules.MAX_TITLE, description="what the CRM calls it")
    title: str = Field(min_length=1, max_length=rules.MAX_TITLE, description="placeholders allowed")
    body: str = Field(
        min_length=1,
        max_length=rules.MAX_BODY,
        description="the text; paragraphs separated by a blank line; placeholders: "
        + ", ".join(f"{{{p}}}" for p in rules.PLACEHOLDERS)
        + " ({{ and }} for a brace)",
    )
    signature: str = Field(min_length=1, max_length=rules.MAX_SIGNATURE, description="who signs")
    closing: str | None = Field(
        default=None,
        min_length=1,
        max_length=rules.MAX_SIGNATURE,
        description='a letter\'s ("With gratitude,")',
    )


class TemplateView(BaseModel):
    template_id: str
    version: int = Field(description="the version in force: the newest")
    kind: Kind
    name: str
    title: str
    body: str
    signature: str
    closing: str | None
    placeholders: list[str] = Field(description="the placeholders it uses")
    created_by: str
    created_at: datetime


class TemplateList(BaseModel):
    items: list[TemplateView]


class RecipientBody(BaseModel):
    member_name: str | None = Field(default=None, min_length=1, max_length=rules.MAX_FIELD)
    company: str | None = Field(default=None, min_length=1, max_length=rules.MAX_FIELD)


class RecipientView(BaseModel):
    member_id: str
    member_name: str | None
    company: str | None
    updated_at: datetime


# --- templates -------------------------------------------------------------------------------------


def template_of(row: DocumentTemplate) -> rules.Template:
    kind: Kind = "certificate" if row.kind == "certificate" else "letter"
    return rules.Template(kind, row.name, row.title, row.body, row.signature, row.closing)


def _template_view(row: DocumentTemplate) -> TemplateView:
    kind: Kind = "certificate" if row.kind == "certificate" else "letter"
    return TemplateView(
        template_id=row.template_id,
        version=row.version,
        kind=kind,
        name=row.name,
        title=row.title,
        body=row.body,
        signature=row.signature,
        closing=row.closing,
        placeholders=rules.template_placeholders(template_of(row)),
        created_by=row.created_by,
        created_at=row.created_at,
    )


def unprintable(texts: Mapping[str, str | None]) -> list[str]:
    """Every text with characters the document font cannot print (one problem each)."""
    problems = []
    for name, value in texts.items():
        if value and (missing := unsupported(value)):
            problems.append(f"{name}: the document font cannot print {''.join(missing[:10])!r}")
    return problems


def _checked(body: TemplateBody) -> rules.Template:
    template = rules.Template(body.kind, body.name, body.title, body.body, body.signature, body.closing)
    problems = rules.template_problems(template) + unprintable(
        {"title": body.title, "body": body.body, "signature": body.signature, "closing": body.closing}
    )
    if problems:
        raise Unprocessable(
            "; ".join(problems), code="invalid-template", title="Invalid template", problems=problems
        )
    return template


def _template_row(
    template_id: str, version: int, body: TemplateBody, actor: str, now: datetime
) -> DocumentTemplate:
    return DocumentTemplate(
        template_id=template_id,
        version=version,
        kind=body.kind,
        name=body.name,
        title=body.title,
        body=body.body,
        signature=body.signature,
        closing=body.closing,
        created_by=actor,
        created_at=now,
    )


async def create_template(session: AsyncSession, body: TemplateBody, actor: str) -> TemplateView:
    _checked(body)
    row = _template_row(str(uuid.uuid4()), 1, body, actor, clock_now(session))
    session.add(row)
    return _template_view(row)


_NEWEST = text(
    "SELECT DISTINCT ON (template_id) template_id, version FROM document_templates "
    "WHERE template_id = ANY(CAST(:ids AS text[])) ORDER BY template_id, version DESC"
)


async def edit_template(
    session: AsyncSession, template_id: str, body: TemplateBody, actor: str
) -> TemplateView:
    """A new version of the template (documents issued already keep theirs)."""
    _checked(body)
    first = await session.get(DocumentTemplate, (template_id, 1), with_for_update=True)  # the template's lock
    if first is None:
        raise NotFound(f"no document template {template_id}", code="template-not-found")
    if first.kind != body.kind:
        raise Conflict(
            f"template {template_id} is a {first.kind} template: its kind cannot change", code="kind-changed"
        )
    newest = await current_templates(session, [template_id])
    row = _template_row(template_id, newest[template_id].version + 1, body, actor, clock_now(session))
    session.add(row)
    return _template_view(row)


async def current_templates(session: AsyncSession, ids: Iterable[str]) -> dict[str, DocumentTemplate]:
    """The newest version of each template that exists."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    newest = (await session.execute(_NEWEST, {"ids": wanted})).all()
    if not newest:
        return {}
    rows = await session.scalars(
        select(DocumentTemplate).where(
            DocumentTemplate.template_id.in_([r.template_id for r in newest]),
            DocumentTemplate.version.in_({r.version for r in newest}),
        )
    )
    versions = {r.template_id: r.version for r in newest}
    return {r.template_id: r for r in rows if versions[r.template_id] == r.version}


async def get_template(session: AsyncSession, template_id: str) -> TemplateView:
    found = await current_templates(session, [template_id])
    if template_id not in found:
        raise NotFound(f"no document template {template_id}", code="template-not-found")
    return _template_view(found[template_id])


async def list_templates(session: AsyncSession, kind: Kind | None) -> TemplateList:
    ids = await session.scalars(select(DocumentTemplate.template_id).where(DocumentTemplate.version == 1))
    rows = (await current_templates(session, ids)).values()
    ordered = sorted(rows, key=lambda r: (r.name, r.template_id))
    return TemplateList(items=[_template_view(r) for r in ordered if kind is None or r.kind == kind])


# --- how documents name a member -------------------------------------------------------------------


@dataclass(frozen=True)
class Naming:
    member_name: str | None
    company: str | None


async def set_recipient(
    session: AsyncSession, member_id: str, body: RecipientBody, actor: str
) -> RecipientView:
    if body.member_name is None and body.company is None:
        raise Unprocessable("give the member's name, the company's, or both", code="no-name")
    if problems := unprintable({"member_name": body.member_name, "company": body.company}):
        raise Unprocessable("; ".join(problems), code="unprintable", problems=problems)
    now = clock_now(session)
    row = await session.get(DocumentRecipient, member_id, with_for_update=True)
    if row is None:
        row = DocumentRecipient(member_id=member_id)
        session.add(row)
    row.member_name, row.company, row.updated_by, row.updated_at = body.member_name, body.company, actor, now
    return RecipientView(
        member_id=member_id, member_name=row.member_name, company=row.company, updated_at=now
    )


async def get_recipient(session: AsyncSession, member_id: str) -> RecipientView:
    row = await session.get(DocumentRecipient, member_id)
    if row is None:
        raise NotFound(f"member {member_id} has no name for documents yet", code="recipient-not-found")
    return RecipientView(
        member_id=member_id, member_name=row.member_name, company=row.company, updated_at=row.updated_at
    )


async def namings(session: AsyncSession, members: Iterable[str]) -> dict[str, Naming]:
    rows = await session.scalars(
        select(DocumentRecipient).where(DocumentRecipient.member_id.in_(sorted(set(members))))
    )
    return {r.member_id: Naming(r.member_name, r.company) for r in rows}
