"""Gatherings (training courses, customer exchange events): the CRM's routes, and the public routes
of the members' single-use invitation links.

The link routes need no API key, like the health routes (no ``require``): the link's token is the
credential (128 random bits, stored only as its digest); an unknown token is a 404 that says nothing
more. Everything else needs a crm key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from loyalty_shared.api import MemberIdPath, Rt, json_response
from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import problem_responses
from loyalty_shared.idempotency import idempotency_key
from rewards_service.domain.gatherings import Action, GatheringStatus, Kind, Status
from rewards_service.gatherings import (
    UUID,
    AnswerView,
    CancelBody,
    GatheringList,
    GatheringView,
    InvitationList,
    InvitationRequest,
    InvitationResult,
    LinkView,
    MemberGatheringList,
    NewGathering,
    answer_by_link,
    answer_for_member,
    cancel_gathering,
    create_gathering,
    gathering_invitations,
    get_gathering,
    invite,
    link_invitation,
    list_gatherings,
    member_gatherings,
)

router = APIRouter(tags=["gatherings"], route_class=AuthenticatedRoute)

Crm = Annotated[Principal, Depends(require("crm"))]
Key = Annotated[str, Depends(idempotency_key)]
GatheringId = Annotated[str, Path(pattern=UUID, description="the gathering's id")]
NO_GATHERING = (404, "no such gathering")
NOT_INVITED = (404, "no such gathering, or the member is not invited to it")
REFUSED = (409, "not allowed now: the gathering is cancelled or has started, or the rules refuse it")


def _actor(principal: Principal) -> str:
    return f"crm-key:{principal.key_id}"


@router.post(
    "/v1/gatherings",
    status_code=201,
    response_model=GatheringView,
    responses=problem_responses(400, (422, "invalid: every problem listed; or in the past, no such program")),
)
async def post_gathering(body: NewGathering, rt: Rt, principal: Crm) -> GatheringView:
    """Schedule a training course or customer exchange event: kind, title, times (UTC), a place
    and/or a link, its capacity, and optionally the program whose target group it is for."""
    async with rt.unit_of_work() as session:
        return await create_gathering(session, body, _actor(principal))


@router.get("/v1/gatherings", response_model=GatheringList, responses=problem_responses(422))
async def get_gatherings(
    rt: Rt,
    _: Crm,
    status: GatheringStatus | None = None,
    kind: Kind | None = None,
    program_id: Annotated[str | None, Query(pattern=UUID)] = None,
) -> GatheringList:
    """The gatherings, soonest first, with their counts and seats left."""
    async with rt.sessions() as session:
        return await list_gatherings(session, status, kind, program_id)


@router.get(
    "/v1/gatherings/{gathering_id}",
    response_model=GatheringView,
    responses=problem_responses(NO_GATHERING, 422),
)
async def get_one(gathering_id: GatheringId, rt: Rt, _: Crm) -> GatheringView:
    """A gathering with its counts (invited, awaiting an answer, accepted, waitlisted, declined,
    attended) and the seats left."""
    async with rt.sessions() as session:
        return await get_gathering(session, gathering_id)


@router.post(
    "/v1/gatherings/{gathering_id}/cancel",
    response_model=GatheringView,
    responses=problem_responses(400, NO_GATHERING, (409, "the gathering has started"), 422),
)
async def post_cancel(gathering_id: GatheringId, body: CancelBody, rt: Rt, principal: Crm) -> GatheringView:
    """Cancel the gathering before it starts (publishes ``gathering.cancelled``; again: no change).
    Nothing about a cancelled gathering changes any more."""
    async with rt.unit_of_work() as session:
        return await cancel_gathering(session, gathering_id, body, _actor(principal))


@router.post(
    "/v1/gatherings/{gathering_id}/invitations",
    status_code=201,
    response_model=InvitationResult,
    responses=problem_responses(400, NO_GATHERING, REFUSED, 422),
)
async def post_invitations(
    gathering_id: GatheringId, body: InvitationRequest, key: Key, rt: Rt, _: Crm
) -> Response:
    """Invite ``member_ids``, or with ``program_id`` (the gathering's own program) its target group:
    the members enrolled in the program's treatment group (the control group is never invited; a
    named member in it is skipped). Each new invitation is published and gets a single-use link
    whose token is in this answer only (the e-mail is sent elsewhere). A member invited already is
    left as they are (``already_invited``). Once per Idempotency-Key: the same request again answers
    the same invitations (header ``Idempotent-Replayed: true``), with their unused links issued
    anew (a token is never shown twice: the ones answered before stop working)."""
    async with rt.unit_of_work() as session:
        result, replayed = await invite(session, gathering_id, body, key)
    response = json_response(result, status_code=201)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get(
    "/v1/gatherings/{gathering_id}/invitations",
    response_model=InvitationList,
    responses=problem_responses(NO_GATHERING, 422),
)
async def get_invitations(
    gathering_id: GatheringId, rt: Rt, _: Crm, status: Status | None = None
) -> InvitationList:
    """The invitations: the seats (accepted, attended), the waitlist in order (position 1 moves up
    next), the unanswered, the declined."""
    async with rt.sessions() as session:
        return await gathering_invitations(session, gathering_id, status)


async def _answer(rt: Rt, gathering_id: str, member_id: str, action: Action) -> AnswerView:
    async with rt.unit_of_work() as session:
        return await answer_for_member(session, gathering_id, member_id, action)


@router.post(
    "/v1/gatherings/{gathering_id}/members/{member_id}/accept",
    response_model=AnswerView,
    responses=problem_responses(NOT_INVITED, REFUSED, 422),
)
async def post_accept(gathering_id: GatheringId, member_id: MemberIdPath, rt: Rt, _: Crm) -> AnswerView:
    """Accept on the member's behalf, before the start: a seat if one is free, else the end of the
    waitlist. Also after their link was used (e.g. a member who declined changes their mind)."""
    return await _answer(rt, gathering_id, member_id, "accept")


@router.post(
    "/v1/gatherings/{gathering_id}/members/{member_id}/decline",
    response_model=AnswerView,
    responses=problem_responses(NOT_INVITED, REFUSED, 422),
)
async def post_decline(gathering_id: GatheringId, member_id: MemberIdPath, rt: Rt, _: Crm) -> AnswerView:
    """Decline on the member's behalf, before the start, also when they accepted through their
    link: a seat given back goes to the first waitlisted member at once (``moved_up``)."""
    return await _answer(rt, gathering_id, member_id, "decline")


@router.post(
    "/v1/gatherings/{gathering_id}/members/{member_id}/check-in",
    response_model=AnswerView,
    responses=problem_responses(
        NOT_INVITED, (409, "no seat, outside the check-in window, or cancelled"), 422
    ),
)
async def post_check_in(gathering_id: GatheringId, member_id: MemberIdPath, rt: Rt, _: Crm) -> AnswerView:
    """Record attendance (``gathering.attended``): a member with a seat, from an hour before the
    start until the end, by the service clock."""
    return await _answer(rt, gathering_id, member_id, "check-in")


@router.get(
    "/v1/members/{member_id}/gatherings", response_model=MemberGatheringList, responses=problem_responses(422)
)
async def get_member_gatherings(member_id: MemberIdPath, rt: Rt, _: Crm) -> MemberGatheringList:
    """The gatherings the member is invited to, soonest first, and where their answer stands."""
    async with rt.sessions() as session:
        return await member_gatherings(session, member_id)


# --- the members' links: public, the token is the credential --------------------------------------

links = APIRouter(prefix="/v1/invitations", tags=["invitation links (public: the token is the credential)"])

Token = Annotated[str, Path(min_length=1, max_length=100, description="the token of the member's link")]
NO_LINK = (404, "no such link")
LINK_REFUSED = (409, "the gathering is cancelled or has started, or the member has attended")
LINK_USED = (410, "the link has answered already: it works once")


@links.get("/{token}", response_model=LinkView, responses=problem_responses(NO_LINK, 422))
async def get_link(token: Token, rt: Rt) -> LinkView:
    """The gathering the link invites to, and where the member's answer stands (does not use it)."""
    async with rt.sessions() as session:
        return await link_invitation(session, token)


@links.post(
    "/{token}/accept",
    response_model=LinkView,
    responses=problem_responses(NO_LINK, LINK_REFUSED, LINK_USED, 422),
)
async def post_link_accept(token: Token, rt: Rt) -> LinkView:
    """Accept through the link, once: a seat if one is free, else a place on the waitlist."""
    async with rt.unit_of_work() as session:
        return await answer_by_link(session, token, "accept")


@links.post(
    "/{token}/decline",
    response_model=LinkView,
    responses=problem_responses(NO_LINK, LINK_REFUSED, LINK_USED, 422),
)
async def post_link_decline(token: Token, rt: Rt) -> LinkView:
    """Decline through the link, once. The CRM can still change the answer on the member's behalf."""
    async with rt.unit_of_work() as session:
        return await answer_by_link(session, token, "decline")
