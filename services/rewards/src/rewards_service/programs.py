"""Programs: created as drafts, edited into new versions, moved through their lifecycle. Nothing is
overwritten: every version's document and every lifecycle step are kept."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.errors import Conflict, NotFound, Unprocessable
from rewards_service import domain
from rewards_service.models import Program, ProgramEvent, ProgramVersion

Status = Literal["draft", "active", "paused", "ended"]


class ProgramView(BaseModel):
    id: str
    name: str
    status: Status
    version: int = Field(description="the version in force: the newest")
    created_by: str
    created_at: datetime
    status_changed_at: datetime
    document: dict[str, Any] = Field(description="the program document of the version in force")


class ProgramList(BaseModel):
    items: list[ProgramView]


class VersionView(BaseModel):
    version: int
    created_by: str
    created_at: datetime
    document: dict[str, Any]


class VersionList(BaseModel):
    items: list[VersionView]


class LifecycleBody(BaseModel):
    action: Literal["activate", "pause", "end"] = Field(
        description="draft|paused → active (activate), active → paused (pause), active|paused → ended (end)"
    )
    note: str | None = Field(default=None, max_length=1000)


def normalised(document: dict[str, Any]) -> dict[str, Any]:
    """The document as kept: every problem at once as a 422, else its JSON form (UTC, decimal strings)."""
    problems = domain.validate_program(document)
    if problems:
        raise Unprocessable(
            "; ".join(problems), code="invalid-program", title="Invalid program", problems=problems
        )
    return domain.program_document(domain.program_from_document(document))


async def create_program(session: AsyncSession, document: dict[str, Any], actor: str) -> ProgramView:
    kept = normalised(document)
    now = clock_now(session)
    program = Program(
        id=str(uuid.uuid4()),
        name=kept["name"],
        status="draft",
        version=1,
        created_by=actor,
        created_at=now,
        status_changed_at=now,
    )
    session.add(program)
    await session.flush()  # the program row first: its versions and events refer to it
    _record(session, program, "create", actor, now, document=kept)
    return _view(program, kept)


async def edit_program(
    session: AsyncSession, program_id: str, document: dict[str, Any], actor: str
) -> ProgramView:
    """A new version, in force at once; rewards issued so far keep naming the version that issued them."""
    kept = normalised(document)
    program = await _find(session, program_id, lock=True)
    if program.status == "ended":
        raise Conflict(f"program {program_id} has ended: it cannot be edited", code="program-ended")
    now = clock_now(session)
    program.version += 1
    program.name = kept["name"]
    _record(session, program, "edit", actor, now, document=kept)
    return _view(program, kept)


async def change_status(
    session: AsyncSession, program_id: str, body: LifecycleBody, actor: str
) -> ProgramView:
    program = await _find(session, program_id, lock=True)
    try:
        status = domain.transition(program.status, body.action)  # type: ignore[arg-type]
    except ValueError as exc:
        raise Conflict(str(exc), code="invalid-transition") from exc
    now = clock_now(session)
    program.status, program.status_changed_at = status, now
    _record(session, program, body.action, actor, now, note=body.note)
    return _view(program, await _document(session, program))


async def get_program(session: AsyncSession, program_id: str) -> ProgramView:
    program = await _find(session, program_id)
    return _view(program, await _document(session, program))


async def list_programs(session: AsyncSession, status: Status | None) -> ProgramList:
    query = select(Program, ProgramVersion.document).join(
        ProgramVersion,
        (ProgramVersion.program_id == Program.id) & (ProgramVersion.version == Program.version),
    )
    if status is not None:
        query = query.where(Program.status == status)
    rows = await session.execute(query.order_by(Program.created_at.desc(), Program.id))
    return ProgramList(items=[_view(program, document) for program, document in rows])


async def program_versions(session: AsyncSession, program_id: str) -> VersionList:
    await _find(session, program_id)
    rows = await session.scalars(
        select(ProgramVersion).where(ProgramVersion.program_id == program_id).order_by(ProgramVersion.version)
    )
    return VersionList(
        items=[
            VersionView(
                version=r.version, created_by=r.created_by, created_at=r.created_at, document=r.document
            )
            for r in rows
        ]
    )


def _record(
    session: AsyncSession,
    program: Program,
    action: str,
    actor: str,
    at: datetime,
    *,
    document: dict[str, Any] | None = None,
    note: str | None = None,
) -> None:
    """The lifecycle step, and with a document the new version it puts in force."""
    if document is not None:
        session.add(
            ProgramVersion(
                program_id=program.id,
                version=program.version,
                document=document,
                created_by=actor,
                created_at=at,
            )
        )
    session.add(
        ProgramEvent(
            program_id=program.id,
            action=action,
            version=program.version,
            status=program.status,
            actor=actor,
            at=at,
            note=note,
        )
    )


async def program_at(session: AsyncSession, program: Program) -> domain.Program:
    """The program as its version in force says."""
    return domain.program_from_document(await _document(session, program))


async def _find(session: AsyncSession, program_id: str, *, lock: bool = False) -> Program:
    program = await session.get(Program, program_id, with_for_update=lock)
    if program is None:
        raise NotFound(f"no program {program_id}", code="program-not-found")
    return program


async def _document(session: AsyncSession, program: Program) -> dict[str, Any]:
    version = await session.get(ProgramVersion, (program.id, program.version))
    assert version is not None
    return version.document


def _view(program: Program, document: dict[str, Any]) -> ProgramView:
    return ProgramView(
        id=program.id,
        name=program.name,
        status=program.status,
        version=program.version,
        created_by=program.created_by,
        created_at=program.created_at,
        status_changed_at=program.status_changed_at,
        document=document,
    )
