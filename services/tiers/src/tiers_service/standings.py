"""Members' standings in the database: lock and load, create, save, figures over a window, and
recording a change (history row and ``tier.changed`` through the outbox, in the same transaction)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.db import defer_insert
from loyalty_shared.events import TierBenefits, TierChanged
from loyalty_shared.messaging.outbox import publish
from tiers_service import domain
from tiers_service.models import Member, QualifyingOrder, TierHistory, table

# Statements on the hot path are built once (Core, bound at execution).
_members = table(Member)
_orders = table(QualifyingOrder)
_LOCK = select(_members).where(_members.c.member_id == bindparam("member_id")).with_for_update()
_CREATE = (
    insert(_members)
    .on_conflict_do_nothing(index_elements=[_members.c.member_id])
    .returning(_members.c.member_id)
)
_net = _orders.c.qualifying - _orders.c.refunded
_in_window = (
    _orders.c.member_id == bindparam("member_id"),
    _orders.c.currency == bindparam("currency"),
    _orders.c.cancelled_at.is_(None),
    _orders.c.paid_at > bindparam("start"),
)
_FIGURES_OPEN = select(func.coalesce(func.sum(_net), 0), func.count().filter(_net > 0)).where(*_in_window)
_FIGURES_BOUNDED = _FIGURES_OPEN.where(_orders.c.paid_at <= bindparam("end"))


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


def standing_from_row(row: Row) -> domain.Standing:
    """A members row (an asyncpg record, or a SQLAlchemy row's ``_mapping``) as a standing."""
    override = None
    if row["override_tier"] is not None:
        override = domain.Override(
            tier=row["override_tier"],
            reason=row["override_reason"] or "",
            set_by=row["override_by"] or "",
            set_at=row["override_at"],
            until=row["override_until"],
        )
    return domain.Standing(
        member_id=row["member_id"],
        tier=row["tier"],
        tier_since=row["tier_since"],
        earned=row["earned_tier"],
        earned_since=row["earned_since"],
        joined_at=row["joined_at"],
        next_evaluation_at=row["next_evaluation_at"],
        last_evaluation_at=row["last_evaluation_at"],
        grace_until=row["grace_until"],
        grace_from=row["grace_from"],
        override=override,
    )


def columns(standing: domain.Standing) -> dict[str, Any]:
    override = standing.override
    return {
        "member_id": standing.member_id,
        "tier": standing.tier,
        "tier_since": standing.tier_since,
        "earned_tier": standing.earned,
        "earned_since": standing.earned_since,
        "joined_at": standing.joined_at,
        "next_evaluation_at": standing.next_evaluation_at,
        "last_evaluation_at": standing.last_evaluation_at,
        "grace_until": standing.grace_until,
        "grace_from": standing.grace_from,
        "override_tier": override.tier if override else None,
        "override_reason": override.reason if override else None,
        "override_by": override.set_by if override else None,
        "override_at": override.set_at if override else None,
        "override_until": override.until if override else None,
    }


async def lock_standing(session: AsyncSession, member_id: str) -> domain.Standing | None:
    """The member's standing, locked for the rest of the transaction; None for a member never seen."""
    row = (await session.execute(_LOCK, {"member_id": member_id})).first()
    return None if row is None else standing_from_row(row._mapping)


async def read_standing(session: AsyncSession, member_id: str) -> domain.Standing | None:
    row = (await session.execute(select(_members).where(_members.c.member_id == member_id))).first()
    return None if row is None else standing_from_row(row._mapping)


async def create_standing(session: AsyncSession, standing: domain.Standing) -> bool:
    """Insert a new member's standing; False if another transaction created the member first."""
    return (await session.execute(_CREATE, columns(standing))).first() is not None


async def save_standing(session: AsyncSession, standing: domain.Standing) -> None:
    values = columns(standing)
    member_id = values.pop("member_id")
    await session.execute(update(_members).where(_members.c.member_id == member_id).values(**values))


async def figures(
    session: AsyncSession, member_id: str, ladder: domain.Ladder, start: datetime, end: datetime | None
) -> domain.Figures:
    """Qualifying spend and orders (net of refunds, cancelled orders out) paid in (start, end]."""
    params = {"member_id": member_id, "currency": ladder.currency, "start": start, "end": end}
    spend, count = (await session.execute(_FIGURES_OPEN if end is None else _FIGURES_BOUNDED, params)).one()
    return domain.Figures(Decimal(spend), int(count), start, end)


async def current_figures(
    session: AsyncSession, member_id: str, ladder: domain.Ladder, now: datetime
) -> domain.Figures:
    start, end = domain.current_window(ladder, now)
    return await figures(session, member_id, ladder, start, end)


def benefits(ladder: domain.Ladder, tier: str) -> TierBenefits:
    b = ladder.tier(tier).benefits
    return TierBenefits(
        points_multiplier=format(b.points_multiplier, "f"),
        discount_rate=format(b.discount_rate, "f"),
        priority_purchase=b.priority_purchase,
        service_level=b.service_level,
        upgrade_gift=b.upgrade_gift,
    )


async def record_change(
    session: AsyncSession,
    ladder: domain.Ladder,
    member_id: str,
    change: domain.Change,
    *,
    actor: str | None = None,
) -> None:
    """The tier in force changed: a history row and ``tier.changed``, both written at commit.

    The change applies to orders paid after ``change.at`` (``effective_at``): for a promotion, the
    promoting order's own payment, so that order earns at the old tier whatever order the points
    service sees the events in."""
    effective_at = change.at
    in_force = benefits(ladder, change.to_tier)
    figures_doc = {**change.figures, "effective_at": effective_at.isoformat()}
    event = publish(
        session,
        TierChanged(
            member_id=member_id,
            from_tier=change.from_tier,
            to_tier=change.to_tier,
            direction=change.direction,
            reason=change.reason,
            points_multiplier=in_force.points_multiplier,
            figures=figures_doc,
            benefits=in_force,
            effective_at=effective_at,
        ),
        member_id,
    )
    # The event's time (the service clock: when the change is decided, even when it settles a step
    # that was due earlier) orders changes for consumers; the points projection keeps the newest.
    defer_insert(
        session,
        table(TierHistory),
        {
            "member_id": member_id,
            "at": change.at,
            "from_tier": change.from_tier,
            "to_tier": change.to_tier,
            "direction": change.direction,
            "reason": change.reason,
            "figures": figures_doc,
            "ladder_version": ladder.version,
            "actor": actor,
            "event_id": event.id,
        },
    )
