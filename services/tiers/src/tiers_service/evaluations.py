"""Evaluation: every member with a step due (an evaluation point, the end of a grace period, the end
of an override) has those steps run in time order, each at its own time. Scheduled and on demand;
idempotent: a step once run is not due again."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.service import Runtime, periodic
from tiers_service import domain
from tiers_service.ladders import current_ladder
from tiers_service.models import Member
from tiers_service.standings import figures, lock_standing, record_change, save_standing

MEMBERS_PER_TRANSACTION = 200

# (member, start, end) -> the member's figures in (start, end]
FiguresOf = Callable[[str, datetime, datetime | None], Awaitable[domain.Figures]]


class EvaluationSummary(BaseModel):
    as_of: datetime
    members: int = Field(description="members with a step due")
    evaluations: int = Field(description="evaluation points run (period ends or anniversaries)")
    kept: int = Field(description="members who kept their tier at an evaluation or at the end of grace")
    grace_started: int = Field(description="members below their tier who entered a grace period")
    promoted: int
    demoted: int
    overrides_ended: int


def _due_condition(now: datetime) -> ColumnElement[bool]:
    return or_(
        Member.next_evaluation_at <= now,
        Member.grace_until <= now,
        Member.override_until <= now,
    )


async def run_due_steps(
    session: AsyncSession | None,
    ladder: domain.Ladder,
    standing: domain.Standing,
    now: datetime,
    *,
    tally: Counter[str] | None = None,
    record: bool = True,
    figures_of: FiguresOf | None = None,
) -> domain.Standing:
    """Run the member's steps due at ``now`` in time order, each at its own time; changes are
    recorded (history, ``tier.changed``) unless ``record`` is false (a read that looks ahead).
    The figures come from the database unless ``figures_of`` (a batch's workset, a read) gives them.
    The caller saves the standing it gets back."""
    while (step := domain.due(standing, now)) is not None:
        start, end = domain.due_window(ladder, standing, step)
        if figures_of is None:
            assert session is not None
            found = await figures(session, standing.member_id, ladder, start, end)
        else:
            found = await figures_of(standing.member_id, start, end)
        result, change = domain.apply_due(ladder, standing, step, found)
        if tally is not None:
            _count(tally, ladder, step, standing, result)
        if change is not None and record:
            assert session is not None, "recording a change needs the transaction"
            await record_change(session, ladder, standing.member_id, change)
        standing = result
    return standing


async def evaluate_member(
    session: AsyncSession, ladder: domain.Ladder, member_id: str, now: datetime, tally: Counter[str]
) -> None:
    standing = await lock_standing(session, member_id)
    if standing is None:
        return
    result = await run_due_steps(session, ladder, standing, now, tally=tally)
    if result != standing:
        await save_standing(session, result)


def _count(
    tally: Counter[str],
    ladder: domain.Ladder,
    step: domain.Due,
    before: domain.Standing,
    after: domain.Standing,
) -> None:
    """Tally by the earned tier (an override may hold the tier in force where it was)."""
    if step.kind == "override-end":
        tally["overrides_ended"] += 1
        return
    if step.kind == "evaluation":
        tally["evaluations"] += 1
    if after.earned != before.earned:
        up = domain.rank(ladder, after.earned) > domain.rank(ladder, before.earned)
        tally["promoted" if up else "demoted"] += 1
    elif after.grace_until is not None and before.grace_until is None:
        tally["grace_started"] += 1
    elif after.grace_until is None:
        tally["kept"] += 1


async def run_evaluation(rt: Runtime, now: datetime | None = None) -> EvaluationSummary:
    """Run every step due at ``now`` (the service's clock), a bounded number of members per
    transaction."""
    moment = now or rt.clock.now()
    tally: Counter[str] = Counter()
    last = ""
    while True:
        async with rt.unit_of_work() as session:
            ladder = await current_ladder(session)
            members = list(
                await session.scalars(
                    select(Member.member_id)
                    .where(Member.member_id > last, _due_condition(moment))
                    .order_by(Member.member_id)
                    .limit(MEMBERS_PER_TRANSACTION)
                )
            )
            for member_id in members:
                await evaluate_member(session, ladder, member_id, moment, tally)
        tally["members"] += len(members)
        if len(members) < MEMBERS_PER_TRANSACTION:
            break
        last = members[-1]
    return EvaluationSummary(
        as_of=moment,
        members=tally["members"],
        evaluations=tally["evaluations"],
        kept=tally["kept"],
        grace_started=tally["grace_started"],
        promoted=tally["promoted"],
        demoted=tally["demoted"],
        overrides_ended=tally["overrides_ended"],
    )


async def _scheduled_evaluation(rt: Runtime) -> str | None:
    summary = await run_evaluation(rt)
    return str(summary.model_dump(mode="json")) if summary.members else None


evaluation_job = periodic("evaluation", "evaluation_interval_s", _scheduled_evaluation)
