"""Gatherings: training courses and customer exchange events, the CRM's invitations, the members'
answers (by the CRM on their behalf, or through their single-use link), the waitlist, check-in.

Every change of a gathering's invitations (an invitation, an answer, a check-in, its cancel) takes
the gathering's row lock first (``SELECT … FOR UPDATE``), and reads the clock after it. The seats
are counted under that lock (``seats_taken``, which a CHECK also keeps within the capacity) and
waitlist places are numbered under it, so concurrent acceptances never overbook and the waitlist
is in the order the answers committed. A decline that frees a seat gives it, in the same
transaction, to the first waitlisted member (``gathering.accepted`` with ``from_waitlist``).
The rules themselves are ``domain.gatherings``.

Links: each invitation has its own token (128 random bits, URL-safe base64), shown once, in the
answer to the invitation request; only its SHA-256 digest is stored, like API keys. The first
accept or decline through a link spends it (a second use: 410); an unknown token is a 404 that
says nothing more. A member who answered through the link can still change their answer through
the CRM (e.g. decline what they accepted); a CRM answer does not spend the link.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, model_validator
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.errors import Conflict, NotFound, Problem, Unprocessable
from loyalty_shared.events import (
    GatheringAccepted,
    GatheringAttended,
    GatheringCancelled,
    GatheringDeclined,
    GatheringInvited,
    GatheringWaitlisted,
)
from loyalty_shared.events.types import MemberId
from loyalty_shared.idempotency import fingerprint, reused_key
from loyalty_shared.messaging.outbox import publish
from rewards_service.domain import gatherings as rules
from rewards_service.domain import holdout
from rewards_service.domain.gatherings import Action, GatheringStatus, Kind, Status
from rewards_service.models import Gathering, GatheringInvitation, Participant, Program
from rewards_service.programs import program_at

UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
TOKEN_BYTES = 16  # 128 bits
Via = Literal["crm", "link"]


def new_token() -> str:
    """A link's token: 128 random bits, URL-safe base64 (22 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("out of range once in UTC") from exc


UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]

# --- requests and answers ---------------------------------------------------------------------------


class NewGathering(BaseModel):
    kind: Kind = Field(description="training (a course) or exchange (a customer exchange event)")
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    starts_at: UtcTime = Field(description="in the future (by the service clock)")
    ends_at: UtcTime = Field(description="after starts_at, at most 31 days later")
    place: str | None = Field(default=None, min_length=1, max_length=500, description="where (or a link)")
    link: str | None = Field(
        default=None, max_length=2000, pattern=r"^https?://\S+$", description="an online gathering's URL"
    )
    capacity: int = Field(ge=1, le=100_000, description="seats: acceptances past it join the waitlist")
    program_id: str | None = Field(
        default=None, pattern=UUID, description="the program whose target group it is for"
    )

    @model_validator(mode="after")
    def _somewhere(self) -> NewGathering:
        if self.place is None and self.link is None:
            raise ValueError("a gathering needs a place, a link, or both")
        return self


class CancelBody(BaseModel):
    note: str | None = Field(default=None, max_length=1000, description="why (kept, and published)")


class Counts(BaseModel):
    invited: int = Field(description="every member invited, whatever their answer")
    awaiting: int = Field(description="invited, no answer yet")
    accepted: int = Field(description="holding a seat, not checked in (yet)")
    waitlisted: int
    declined: int
    attended: int = Field(description="checked in (they keep their seat)")


class GatheringInfo(BaseModel):
    """What a member is shown of a gathering."""

    id: str
    kind: Kind
    title: str
    description: str | None
    starts_at: datetime
    ends_at: datetime
    place: str | None
    link: str | None
    status: GatheringStatus


class GatheringView(GatheringInfo):
    capacity: int
    program_id: str | None
    seats_taken: int = Field(description="accepted and attended")
    seats_left: int
    counts: Counts
    created_by: str
    created_at: datetime
    cancelled_at: datetime | None
    cancel_note: str | None


class GatheringList(BaseModel):
    items: list[GatheringView]


class InvitationRequest(BaseModel):
    """Whom to invite: the members named, or the gathering's program's target group (the members
    enrolled in its treatment group; its control group is never invited)."""

    member_ids: list[MemberId] | None = Field(default=None, min_length=1, max_length=1000)
    program_id: str | None = Field(default=None, pattern=UUID, description="the gathering's program")

    @model_validator(mode="after")
    def _one_target(self) -> InvitationRequest:
        if (self.member_ids is None) == (self.program_id is None):
            raise ValueError("name either member_ids or program_id (the gathering's program)")
        return self


class NewLink(BaseModel):
    member_id: str
    status: Status
    token: str | None = Field(
        description="the member's single-use link token, shown in this answer only (null: its link "
        "was used already)"
    )
    accept_path: str | None = Field(description="POST here (no API key) to accept")
    decline_path: str | None = Field(description="POST here (no API key) to decline")


class AlreadyInvited(BaseModel):
    member_id: str
    status: Status


class SkippedMember(BaseModel):
    member_id: str
    reason: Literal["control-group"]


class InvitationResult(BaseModel):
    gathering_id: str
    invited: list[NewLink] = Field(description="invited by this request, each with its link")
    already_invited: list[AlreadyInvited] = Field(
        description="invited before (by another request): unchanged, no new link"
    )
    skipped: list[SkippedMember] = Field(description="in the gathering's program's control group")


class InvitationView(BaseModel):
    member_id: str
    status: Status
    waitlist_position: int | None = Field(description="1 is next to move up; set while waitlisted")
    invited_at: datetime
    responded_at: datetime | None = Field(description="the member's last answer")
    responded_via: Via | None
    accepted_at: datetime | None = Field(description="when they got their seat")
    moved_up_at: datetime | None = Field(description="set when the seat came from the waitlist")
    waitlisted_at: datetime | None
    declined_at: datetime | None
    attended_at: datetime | None
    link_used_at: datetime | None = Field(description="when their link answered; null: it still can")


class InvitationList(BaseModel):
    gathering_id: str
    items: list[InvitationView]


class AnswerView(BaseModel):
    gathering_id: str
    member_id: str
    status: Status
    waitlist_position: int | None
    changed: bool = Field(description="false: the answer was given already (nothing changed)")
    seats_left: int
    moved_up: list[str] = Field(description="the waitlisted members this answer gave a seat to")


class LinkView(BaseModel):
    """What the member sees through their link."""

    gathering: GatheringInfo
    status: Status
    waitlist_position: int | None
    link_used_at: datetime | None = Field(description="when the link answered; null: it can answer once")


class MemberGathering(BaseModel):
    gathering: GatheringInfo
    invitation: InvitationView


class MemberGatheringList(BaseModel):
    items: list[MemberGathering]


# --- reading ---------------------------------------------------------------------------------------


def _info(gathering: Gathering) -> GatheringInfo:
    return GatheringInfo(
        id=gathering.id,
        kind=gathering.kind,
        title=gathering.title,
        description=gathering.description,
        starts_at=gathering.starts_at,
        ends_at=gathering.ends_at,
        place=gathering.place,
        link=gathering.link,
        status=gathering.status,
    )


def _view(gathering: Gathering, counts: Counts) -> GatheringView:
    return GatheringView(
        **_info(gathering).model_dump(),
        capacity=gathering.capacity,
        program_id=gathering.program_id,
        seats_taken=gathering.seats_taken,
        seats_left=gathering.capacity - gathering.seats_taken,
        counts=counts,
        created_by=gathering.created_by,
        created_at=gathering.created_at,
        cancelled_at=gathering.cancelled_at,
        cancel_note=gathering.cancel_note,
    )


def _invitation(invitation: GatheringInvitation, position: int | None) -> InvitationView:
    return InvitationView(
        member_id=invitation.member_id,
        status=invitation.status,
        waitlist_position=position,
        invited_at=invitation.invited_at,
        responded_at=invitation.responded_at,
        responded_via=invitation.responded_via,
        accepted_at=invitation.accepted_at,
        moved_up_at=invitation.moved_up_at,
        waitlisted_at=invitation.waitlisted_at,
        declined_at=invitation.declined_at,
        attended_at=invitation.attended_at,
        link_used_at=invitation.token_used_at,
    )


def _counts(by_status: dict[str, int]) -> Counts:
    return Counts(
        invited=sum(by_status.values()),
        awaiting=by_status.get("invited", 0),
        accepted=by_status.get("accepted", 0),
        waitlisted=by_status.get("waitlisted", 0),
        declined=by_status.get("declined", 0),
        attended=by_status.get("attended", 0),
    )


async def _counts_of(session: AsyncSession, gathering_ids: Any) -> dict[str, Counts]:
    """Each gathering's invitations counted by status (``gathering_ids``: ids or a subquery)."""
    by_gathering: dict[str, dict[str, int]] = {}
    rows = await session.execute(
        select(GatheringInvitation.gathering_id, GatheringInvitation.status, func.count())
        .where(GatheringInvitation.gathering_id.in_(gathering_ids))
        .group_by(GatheringInvitation.gathering_id, GatheringInvitation.status)
    )
    for gathering_id, status, number in rows:
        by_gathering.setdefault(gathering_id, {})[status] = number
    return {gathering_id: _counts(counts) for gathering_id, counts in by_gathering.items()}


async def _find(session: AsyncSession, gathering_id: str) -> Gathering:
    gathering = await session.get(Gathering, gathering_id)
    if gathering is None:
        raise NotFound(f"no gathering {gathering_id}", code="gathering-not-found")
    return gathering


async def get_gathering(session: AsyncSession, gathering_id: str) -> GatheringView:
    gathering = await _find(session, gathering_id)
    counts = await _counts_of(session, [gathering_id])
    return _view(gathering, counts.get(gathering_id, _counts({})))


async def list_gatherings(
    session: AsyncSession, status: GatheringStatus | None, kind: Kind | None, program_id: str | None
) -> GatheringList:
    """The gatherings (filtered), soonest first."""
    query = select(Gathering)
    if status is not None:
        query = query.where(Gathering.status == status)
    if kind is not None:
        query = query.where(Gathering.kind == kind)
    if program_id is not None:
        query = query.where(Gathering.program_id == program_id)
    gatherings = list(await session.scalars(query.order_by(Gathering.starts_at, Gathering.id)))
    counts = await _counts_of(session, select(query.subquery().c.id))
    return GatheringList(items=[_view(g, counts.get(g.id, _counts({}))) for g in gatherings])


_RANK = {"accepted": 0, "attended": 1, "waitlisted": 2, "invited": 3, "declined": 4}


async def gathering_invitations(
    session: AsyncSession, gathering_id: str, status: Status | None
) -> InvitationList:
    """The invitations: seats (accepted, attended), the waitlist in order, unanswered, declined."""
    await _find(session, gathering_id)
    rows = list(
        await session.scalars(
            select(GatheringInvitation).where(GatheringInvitation.gathering_id == gathering_id)
        )
    )
    positions = rules.waitlist_positions(
        r.waitlist_seq for r in rows if r.status == "waitlisted" and r.waitlist_seq is not None
    )
    views = [
        _invitation(r, positions.get(r.waitlist_seq or 0) if r.status == "waitlisted" else None)
        for r in rows
        if status is None or r.status == status
    ]
    views.sort(key=lambda v: (_RANK[v.status], v.waitlist_position or 0, v.member_id))
    return InvitationList(gathering_id=gathering_id, items=views)


_POSITION = text(
    "SELECT count(*) FROM gathering_invitations WHERE gathering_id = :gathering_id "
    "AND status = 'waitlisted' AND waitlist_seq <= :seq"
)


async def _position(session: AsyncSession, invitation: GatheringInvitation) -> int | None:
    """A waitlisted member's position: their rank among the waitlisted (None when not waitlisted)."""
    if invitation.status != "waitlisted":
        return None
    params = {"gathering_id": invitation.gathering_id, "seq": invitation.waitlist_seq}
    return int(await session.scalar(_POSITION, params) or 0)


async def member_gatherings(session: AsyncSession, member_id: str) -> MemberGatheringList:
    """The gatherings the member is invited to, soonest first, with where their answer stands."""
    rows = await session.execute(
        select(GatheringInvitation, Gathering)
        .join(Gathering, Gathering.id == GatheringInvitation.gathering_id)
        .where(GatheringInvitation.member_id == member_id)
        .order_by(Gathering.starts_at, Gathering.id)
    )
    items = []
    for invitation, gathering in rows.tuples():
        position = await _position(session, invitation)
        items.append(
            MemberGathering(gathering=_info(gathering), invitation=_invitation(invitation, position))
        )
    return MemberGatheringList(items=items)


# --- creating and cancelling -----------------------------------------------------------------------


async def create_gathering(session: AsyncSession, body: NewGathering, actor: str) -> GatheringView:
    now = clock_now(session)
    if problem := rules.schedule_problem(body.starts_at, body.ends_at, now):
        raise Unprocessable(problem, code="invalid-schedule")
    if body.program_id is not None and await session.get(Program, body.program_id) is None:
        raise Unprocessable(f"no program {body.program_id}", code="program-not-found")
    gathering = Gathering(
        id=str(uuid.uuid4()),
        **body.model_dump(),
        seats_taken=0,
        status="scheduled",
        created_by=actor,
        created_at=now,
    )
    session.add(gathering)
    return _view(gathering, _counts({}))


async def _lock(session: AsyncSession, gathering_id: str) -> Gathering:
    """The gathering's row, locked: what every change of it or of its invitations takes first."""
    gathering = await session.get(Gathering, gathering_id, with_for_update=True, populate_existing=True)
    if gathering is None:
        raise NotFound(f"no gathering {gathering_id}", code="gathering-not-found")
    return gathering


def _state(gathering: Gathering) -> rules.Gathering:
    return rules.Gathering(
        cast(GatheringStatus, gathering.status),
        gathering.starts_at,
        gathering.ends_at,
        rules.Seats(gathering.capacity, gathering.seats_taken),
    )


def _conflict(refused: rules.Refused) -> Conflict:
    return Conflict(str(refused), code=refused.code)


async def cancel_gathering(
    session: AsyncSession, gathering_id: str, body: CancelBody, actor: str
) -> GatheringView:
    """Cancel a gathering before it starts (again: a no-op). Its invitations stay as answered."""
    gathering = await _lock(session, gathering_id)
    now = clock_now(session)
    try:
        changed = rules.cancel(_state(gathering), now)
    except rules.Refused as exc:
        raise _conflict(exc) from exc
    view = await get_gathering(session, gathering_id)
    if not changed:
        return view
    gathering.status, gathering.cancelled_at, gathering.cancel_note = "cancelled", now, body.note
    publish(
        session,
        GatheringCancelled(
            gathering_id=gathering.id,
            kind=gathering.kind,
            title=gathering.title,
            program_id=gathering.program_id,
            starts_at=gathering.starts_at,
            accepted=view.counts.accepted,
            waitlisted=view.counts.waitlisted,
            note=body.note,
            cancelled_at=now,
        ),
        f"gathering:{gathering.id}",
    )
    return _view(gathering, view.counts)


# --- inviting --------------------------------------------------------------------------------------


def _about(gathering: Gathering, member_id: str) -> dict[str, Any]:
    """What every member event of the gathering says about it."""
    return {
        "gathering_id": gathering.id,
        "kind": gathering.kind,
        "title": gathering.title,
        "program_id": gathering.program_id,
        "member_id": member_id,
        "starts_at": gathering.starts_at,
        "ends_at": gathering.ends_at,
    }


def _link(member_id: str, status: str, token: str | None) -> NewLink:
    base = f"/v1/invitations/{token}" if token else None
    return NewLink(
        member_id=member_id,
        status=status,
        token=token,
        accept_path=base and f"{base}/accept",
        decline_path=base and f"{base}/decline",
    )


async def _targets(
    session: AsyncSession, gathering: Gathering, body: InvitationRequest
) -> tuple[list[str], list[SkippedMember]]:
    """Whom the request invites, sorted, and who it skips (a program gathering's control group)."""
    if body.program_id is not None:
        if gathering.program_id is None:
            raise Unprocessable(
                f"gathering {gathering.id} is for no program: name the members to invite",
                code="not-a-program-gathering",
            )
        if body.program_id != gathering.program_id:
            raise Unprocessable(
                f"gathering {gathering.id} is for program {gathering.program_id}, not {body.program_id}",
                code="another-program",
            )
        treatment = await session.scalars(
            select(Participant.member_id)
            .where(Participant.program_id == body.program_id, Participant.grp == "treatment")
            .order_by(Participant.member_id)
        )
        return list(treatment), []
    assert body.member_ids is not None
    members = sorted(set(body.member_ids))
    if gathering.program_id is None:
        return members, []
    program = await session.get(Program, gathering.program_id)
    assert program is not None
    share = (await program_at(session, program)).control_share
    enrolled = await session.execute(
        select(Participant.member_id, Participant.grp).where(
            Participant.program_id == program.id, Participant.member_id.in_(members)
        )
    )
    groups = {row.member_id: row.grp for row in enrolled}

    def held_out(member_id: str) -> bool:
        # the recorded group; for a member the program has not reached yet, the draw it will make
        known = groups.get(member_id)
        return known == "control" if known is not None else holdout(program.id, member_id, share)

    control = {m for m in members if held_out(m)}
    skipped = [SkippedMember(member_id=m, reason="control-group") for m in sorted(control)]
    return [m for m in members if m not in control], skipped


async def invite(
    session: AsyncSession, gathering_id: str, body: InvitationRequest, key: str
) -> tuple[InvitationResult, bool]:
    """Invite the members named, or the gathering's program's treatment group: one invitation and
    one link each, published once (a member invited already is left as they are). Once per
    Idempotency-Key: the same request again answers the same invitations (and True: a replay); the
    links of those not used yet are issued anew (a token is never shown twice: the earlier ones
    stop working)."""
    gathering = await _lock(session, gathering_id)
    request_hash = fingerprint(body)
    earlier = list(
        await session.scalars(
            select(GatheringInvitation)
            .where(GatheringInvitation.gathering_id == gathering_id, GatheringInvitation.invite_key == key)
            .order_by(GatheringInvitation.member_id)
        )
    )
    if any(e.invite_hash != request_hash for e in earlier):
        raise reused_key(key)
    now = clock_now(session)
    if not earlier:
        try:
            rules.invitable(_state(gathering), now)
        except rules.Refused as exc:
            raise _conflict(exc) from exc
    targets, skipped = await _targets(session, gathering, body)
    existing = {
        row.member_id: row.status
        for row in await session.execute(
            select(GatheringInvitation.member_id, GatheringInvitation.status).where(
                GatheringInvitation.gathering_id == gathering_id
            )
        )
    }
    invited: list[NewLink] = []
    if earlier:
        for invitation in earlier:
            token = None
            if invitation.token_used_at is None:
                token = new_token()
                invitation.token_hash = token_digest(token)
            invited.append(_link(invitation.member_id, invitation.status, token))
    else:
        rows = []
        for member_id in targets:
            if member_id in existing:
                continue
            token = new_token()
            rows.append(
                GatheringInvitation(
                    gathering_id=gathering_id,
                    member_id=member_id,
                    status="invited",
                    token_hash=token_digest(token),
                    invite_key=key,
                    invite_hash=request_hash,
                    invited_at=now,
                )
            )
            invited.append(_link(member_id, "invited", token))
            publish(session, GatheringInvited(**_about(gathering, member_id), invited_at=now), member_id)
        session.add_all(rows)
    mine = {link.member_id for link in invited}
    already = [
        AlreadyInvited(member_id=m, status=existing[m]) for m in targets if m in existing and m not in mine
    ]
    result = InvitationResult(
        gathering_id=gathering_id, invited=invited, already_invited=already, skipped=skipped
    )
    return result, bool(earlier)


# --- answers and check-in --------------------------------------------------------------------------

_WAITLIST_TAIL = text(
    "SELECT coalesce(max(waitlist_seq), 0) AS last, count(*) FILTER (WHERE status = 'waitlisted') AS waiting "
    "FROM gathering_invitations WHERE gathering_id = :gathering_id"
)


async def _apply(
    session: AsyncSession,
    gathering: Gathering,
    invitation: GatheringInvitation,
    action: Action,
    via: Via,
    now: datetime,
) -> tuple[rules.Step, list[str]]:
    """Apply ``action`` to the invitation at ``now`` (the gathering is locked, the clock read after
    the lock): the rules decide, the rows change, the events are published, a freed seat goes to
    the waitlist. The step, and who moved up."""
    try:
        step = rules.step(_state(gathering), cast(Status, invitation.status), action, now)
    except rules.Refused as exc:
        raise _conflict(exc) from exc
    if not step.changed:
        return step, []
    about = _about(gathering, invitation.member_id)
    before = invitation.status
    if action != "check-in":
        invitation.responded_at, invitation.responded_via = now, via
    if step.status == "waitlisted":
        tail = (await session.execute(_WAITLIST_TAIL, {"gathering_id": gathering.id})).one()
        invitation.waitlist_seq, invitation.waitlisted_at = tail.last + 1, now
        position = tail.waiting + 1
        publish(
            session,
            GatheringWaitlisted(**about, via=via, position=position, waitlisted_at=now),
            invitation.member_id,
        )
    elif step.status == "accepted":
        invitation.accepted_at, invitation.moved_up_at = now, None
        publish(
            session,
            GatheringAccepted(**about, via=via, from_waitlist=False, accepted_at=now),
            invitation.member_id,
        )
    elif step.status == "declined":
        invitation.declined_at = now
        publish(
            session,
            GatheringDeclined(
                **about, via=via, previous_status=before, freed_seat=step.freed_seat, declined_at=now
            ),
            invitation.member_id,
        )
    else:
        invitation.attended_at = now
        publish(session, GatheringAttended(**about, attended_at=now), invitation.member_id)
    invitation.status = step.status
    gathering.seats_taken = step.seats.taken
    moved = await _move_up(session, gathering, step.seats, now) if step.freed_seat else []
    return step, moved


async def _move_up(
    session: AsyncSession, gathering: Gathering, seats: rules.Seats, now: datetime
) -> list[str]:
    """Give the free seats to the first waitlisted members, in waitlist order."""
    waiting = list(
        await session.scalars(
            select(GatheringInvitation)
            .where(
                GatheringInvitation.gathering_id == gathering.id, GatheringInvitation.status == "waitlisted"
            )
            .order_by(GatheringInvitation.waitlist_seq)
            .limit(seats.left)
        )
    )
    moved = waiting[: rules.moving_up(seats, len(waiting))]
    for invitation in moved:
        seats = seats.take()
        invitation.status, invitation.accepted_at, invitation.moved_up_at = "accepted", now, now
        publish(
            session,
            GatheringAccepted(
                **_about(gathering, invitation.member_id), via="waitlist", from_waitlist=True, accepted_at=now
            ),
            invitation.member_id,
        )
    gathering.seats_taken = seats.taken
    return [invitation.member_id for invitation in moved]


async def answer_for_member(
    session: AsyncSession, gathering_id: str, member_id: str, action: Action
) -> AnswerView:
    """The CRM answers (or checks in) on the member's behalf."""
    gathering = await _lock(session, gathering_id)
    invitation = await session.get(GatheringInvitation, (gathering_id, member_id), populate_existing=True)
    if invitation is None:
        raise NotFound(
            f"member {member_id} is not invited to gathering {gathering_id}", code="invitation-not-found"
        )
    step, moved = await _apply(session, gathering, invitation, action, "crm", clock_now(session))
    return AnswerView(
        gathering_id=gathering_id,
        member_id=member_id,
        status=invitation.status,
        waitlist_position=await _position(session, invitation),
        changed=step.changed,
        seats_left=gathering.capacity - gathering.seats_taken,
        moved_up=moved,
    )


def _unknown_link() -> NotFound:
    return NotFound("no such invitation link", code="invitation-link-not-found")


async def _by_token(
    session: AsyncSession, token: str, *, lock: bool
) -> tuple[Gathering, GatheringInvitation]:
    digest = token_digest(token)
    query = select(GatheringInvitation).where(GatheringInvitation.token_hash == digest)
    found = await session.scalar(query)
    if found is None:
        raise _unknown_link()
    if not lock:
        return await _find(session, found.gathering_id), found
    gathering = await _lock(session, found.gathering_id)
    invitation = await session.scalar(query.execution_options(populate_existing=True))
    if invitation is None:  # its link was issued anew meanwhile: this token is dead
        raise _unknown_link()
    return gathering, invitation


async def _link_view(
    session: AsyncSession, gathering: Gathering, invitation: GatheringInvitation
) -> LinkView:
    return LinkView(
        gathering=_info(gathering),
        status=invitation.status,
        waitlist_position=await _position(session, invitation),
        link_used_at=invitation.token_used_at,
    )


async def link_invitation(session: AsyncSession, token: str) -> LinkView:
    gathering, invitation = await _by_token(session, token, lock=False)
    return await _link_view(session, gathering, invitation)


async def answer_by_link(session: AsyncSession, token: str, action: Literal["accept", "decline"]) -> LinkView:
    """The member answers through their link: once (a refused answer does not spend it)."""
    gathering, invitation = await _by_token(session, token, lock=True)
    if invitation.token_used_at is not None:
        raise Problem(
            f"this link was used on {invitation.token_used_at.isoformat()}: it answers once. Your "
            "account manager can still change your answer",
            status=410,
            code="invitation-link-used",
            title="Link used already",
        )
    now = clock_now(session)
    await _apply(session, gathering, invitation, action, "link", now)
    invitation.token_used_at = now
    return await _link_view(session, gathering, invitation)
