"""Reading and changing the tier ladder. Every change is a new version; nothing is overwritten."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.errors import Conflict, Unprocessable
from loyalty_shared.events.types import Currency, PositiveMoney
from tiers_service import domain
from tiers_service.models import LadderVersion, Member, QualifyingOrder

Rate = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=4)]
_RESCHEDULE_CHUNK = 1000


class BenefitsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points_multiplier: Rate = Field(description="points earned per order are multiplied by this")
    discount_rate: Rate = Field(default=Decimal("0"), description="0.05 = 5 % off list prices")
    priority_purchase: bool = Field(default=False, description="pre-order rights on new products")
    service_level: str = Field(default="standard", min_length=1, max_length=64)
    upgrade_gift: str | None = Field(
        default=None, min_length=1, max_length=64, description="handed out by rewards on reaching the tier"
    )


class TierBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=32)
    rank: int = Field(ge=0, le=1_000_000)
    min_spend: PositiveMoney | None = Field(default=None, description="qualifying spend in the window")
    min_orders: int | None = Field(default=None, ge=1, le=1_000_000)
    requires: Literal["any", "all"] = Field(default="any", description="with both thresholds: either or both")
    invitation_only: bool = Field(default=False, description="reached only by a CRM override")
    benefits: BenefitsBody


class WindowBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["rolling-months", "calendar-year", "calendar-quarter"] = "rolling-months"
    months: int = Field(default=12, ge=1, le=60, description="rolling-months only")


class EvaluationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Literal["period-end", "anniversary"] = Field(
        default="period-end",
        description="demotions happen at each period end, or each membership anniversary",
    )
    period: Literal["year", "quarter", "month"] = Field(default="year", description="period-end only")
    grace_days: int = Field(default=30, ge=0, le=366, description="time to make up a shortfall")
    max_demotion_steps: int = Field(
        default=1, ge=1, le=100, description="tiers dropped at most per evaluation"
    )


class LadderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: Currency = Field(description="the currency of thresholds; orders in others count nothing")
    tiers: list[TierBody] = Field(min_length=1, max_length=50, description="lowest rank first")
    window: WindowBody = Field(default_factory=WindowBody)
    evaluation: EvaluationBody = Field(default_factory=EvaluationBody)
    excluded_categories: list[str] = Field(
        default_factory=list, max_length=200, description="order lines in these categories do not qualify"
    )


class LadderView(LadderBody):
    version: int = Field(description="0 is the built-in default")
    created_by: str | None = None
    created_at: datetime | None = None


def to_domain(body: LadderBody, version: int) -> domain.Ladder:
    """The body is the ladder's JSON document (the one kept in the database)."""
    return domain.ladder_from_document(version, body.model_dump(mode="json"))


def view(ladder: domain.Ladder, row: LadderVersion | None = None) -> LadderView:
    return LadderView(
        version=ladder.version,
        created_by=row.created_by if row else None,
        created_at=row.created_at if row else None,
        **domain.ladder_document(ladder),
    )


async def current_ladder(session: AsyncSession) -> domain.Ladder:
    """The ladder in force: the newest version (cached for the transaction)."""
    cached = session.info.get("ladder")
    if isinstance(cached, domain.Ladder):
        return cached
    row = await session.scalar(select(LadderVersion).order_by(LadderVersion.version.desc()).limit(1))
    ladder = domain.DEFAULT_LADDER if row is None else domain.ladder_from_document(row.version, row.document)
    session.info["ladder"] = ladder
    return ladder


async def ladder_in_force(session: AsyncSession) -> LadderView:
    ladder = await current_ladder(session)
    return view(ladder, await session.get(LadderVersion, ladder.version))


async def change_ladder(session: AsyncSession, body: LadderBody, actor: str) -> LadderView:
    """Put a new ladder in force. Members keep their tiers; orders and evaluations from now on use it
    (a lowered threshold promotes at the next order or evaluation). A tier that members hold cannot
    be removed or made invitation-only while they hold it."""
    await session.execute(select(func.pg_advisory_xact_lock(7_000_002)))  # one writer at a time
    previous = await current_ladder(session)
    newest = await session.scalar(select(func.max(LadderVersion.version)))
    candidate = to_domain(body, (newest or 0) + 1)
    problems = domain.validate_ladder(candidate)
    if problems:
        raise Unprocessable(
            "; ".join(problems), code="invalid-ladder", title="Invalid tier ladder", problems=problems
        )
    await _refuse_orphans(session, candidate)
    if candidate.currency != previous.currency:
        await _refuse_currency_change(session, previous.currency, candidate.currency)
    row = LadderVersion(
        version=candidate.version, document=domain.ladder_document(candidate), created_by=actor
    )
    session.add(row)
    await session.flush()
    if candidate.evaluation != previous.evaluation:
        await _reschedule(session, candidate, clock_now(session))
    session.info["ladder"] = candidate
    return view(candidate, row)


async def _refuse_orphans(session: AsyncSession, ladder: domain.Ladder) -> None:
    reachable = [t.name for t in ladder.qualifying_tiers]
    names = [t.name for t in ladder.tiers]
    rows = await session.execute(
        select(Member.earned_tier, func.count())
        .where(Member.earned_tier.not_in(reachable))
        .group_by(Member.earned_tier)
    )
    held = {tier: n for tier, n in rows}
    rows = await session.execute(
        select(Member.override_tier, func.count())
        .where(Member.override_tier.is_not(None), Member.override_tier.not_in(names))
        .group_by(Member.override_tier)
    )
    for tier, n in rows:
        held[tier] = held.get(tier, 0) + n
    if held:
        listed = ", ".join(f"{tier} ({n} members)" for tier, n in sorted(held.items()))
        raise Conflict(
            f"members hold tiers this ladder no longer lets them reach: {listed}",
            code="tier-in-use",
            title="Tier in use",
            held=held,
        )


async def _refuse_currency_change(session: AsyncSession, old: str, new: str) -> None:
    counted = await session.scalar(
        select(func.count()).select_from(QualifyingOrder).where(QualifyingOrder.currency == old)
    )
    if counted:
        raise Conflict(
            f"{counted} orders qualify in {old}; a ladder in {new} would stop counting them all. "
            f"Keep {old} (orders in other currencies are dead-lettered), or start a new tiers "
            "database for the new currency.",
            code="currency-in-use",
            title="Currency in use",
        )


async def _reschedule(session: AsyncSession, ladder: domain.Ladder, now: datetime) -> None:
    """The evaluation schedule changed: every member's next evaluation follows the new one."""
    last = ""
    while True:
        rows = (
            await session.execute(
                select(Member.member_id, Member.joined_at)
                .where(Member.member_id > last)
                .order_by(Member.member_id)
                .limit(_RESCHEDULE_CHUNK)
            )
        ).all()
        if not rows:
            return
        await session.execute(
            update(Member),
            [
                {
                    "member_id": r.member_id,
                    "next_evaluation_at": domain.next_evaluation(ladder.evaluation, r.joined_at, now),
                }
                for r in rows
            ],
        )
        last = rows[-1].member_id
