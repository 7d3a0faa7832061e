"""CRM: incentive programs (drafts, versions, lifecycle)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path

from loyalty_shared.api import Rt
from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import problem_responses
from rewards_service.programs import (
    LifecycleBody,
    ProgramList,
    ProgramView,
    Status,
    VersionList,
    change_status,
    create_program,
    edit_program,
    get_program,
    list_programs,
    program_versions,
)
from rewards_service.simulations import SimulationView, simulate_program

router = APIRouter(prefix="/v1/programs", tags=["programs"], route_class=AuthenticatedRoute)

Crm = Annotated[Principal, Depends(require("crm"))]
ProgramId = Annotated[
    str,
    Path(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        description="the program's id",
    ),
]
DOCUMENT = (
    "The program document: name, objective and targets, target_group, control_share, measures, "
    "schedule, budget (see the README's rewards section). Every problem is listed in one 422."
)
Document = Annotated[dict[str, Any], Body(description=DOCUMENT)]
INVALID = (422, "the program document is invalid: every problem listed in `problems`")


def _actor(principal: Principal) -> str:
    return f"crm-key:{principal.key_id}"


@router.post("", status_code=201, response_model=ProgramView, responses=problem_responses(400, INVALID))
async def post_program(document: Document, rt: Rt, principal: Crm) -> ProgramView:
    """Create a program as a draft (version 1); nothing is issued until it is activated."""
    async with rt.unit_of_work() as session:
        return await create_program(session, document, _actor(principal))


@router.get("", response_model=ProgramList, responses=problem_responses(422))
async def get_programs(rt: Rt, _: Crm, status: Status | None = None) -> ProgramList:
    async with rt.sessions() as session:
        return await list_programs(session, status)


@router.get(
    "/{program_id}", response_model=ProgramView, responses=problem_responses((404, "no such program"), 422)
)
async def get_one(program_id: ProgramId, rt: Rt, _: Crm) -> ProgramView:
    async with rt.sessions() as session:
        return await get_program(session, program_id)


@router.put(
    "/{program_id}",
    response_model=ProgramView,
    responses=problem_responses(400, (404, "no such program"), (409, "the program has ended"), INVALID),
)
async def put_program(program_id: ProgramId, document: Document, rt: Rt, principal: Crm) -> ProgramView:
    """Edit: the document becomes a new version, in force at once."""
    async with rt.unit_of_work() as session:
        return await edit_program(session, program_id, document, _actor(principal))


@router.post(
    "/{program_id}/lifecycle",
    response_model=ProgramView,
    responses=problem_responses(
        400, (404, "no such program"), (409, "not allowed from the current status"), 422
    ),
)
async def post_lifecycle(program_id: ProgramId, body: LifecycleBody, rt: Rt, principal: Crm) -> ProgramView:
    """Activate, pause or end the program (ended is final)."""
    async with rt.unit_of_work() as session:
        return await change_status(session, program_id, body, _actor(principal))


@router.get(
    "/{program_id}/versions",
    response_model=VersionList,
    responses=problem_responses((404, "no such program"), 422),
)
async def get_versions(program_id: ProgramId, rt: Rt, _: Crm) -> VersionList:
    async with rt.sessions() as session:
        return await program_versions(session, program_id)


@router.post(
    "/{program_id}/simulations",
    response_model=SimulationView,
    responses=problem_responses((404, "no such program"), 422),
)
async def post_simulation(program_id: ProgramId, rt: Rt, _: Crm) -> SimulationView:
    """A dry run on history: what the program (any status, a draft typically) would have issued over
    the orders the service has seen: members reached, rewards and cost by kind, refusals, the budget
    burn by cycle. Nothing is issued or written."""
    async with rt.sessions() as session:
        return await simulate_program(session, program_id)
