"""``POST /v1/programs/{id}/simulations``: a dry run of a program (a draft, typically) on the orders
the service has seen (``domain.simulation``); nothing is issued, nothing is written."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from pydantic import BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.dates import add_months
from loyalty_shared.errors import NotFound
from loyalty_shared.events.types import Amount
from rewards_service.domain.simulation import MemberHistory, PastOrder, simulate
from rewards_service.models import CatalogItem, Program
from rewards_service.programs import program_at

_HISTORY = text(
    "SELECT o.member_id, m.tier, o.order_id, o.paid_at, o.amount, "
    "CASE WHEN o.cancelled_at IS NULL THEN o.amount - o.refunded ELSE 0 END AS net "
    "FROM orders AS o JOIN members AS m ON m.member_id = o.member_id "
    "WHERE o.currency = :currency AND o.paid_at >= :since AND o.paid_at < :until "
    "ORDER BY o.member_id, o.paid_at, o.order_id"
)


class CycleCost(BaseModel):
    cycle: str
    cost: Amount


class SimulationView(BaseModel):
    program_id: str
    program_version: int
    members_seen: int = Field(description="members with orders in the program's currency in the window")
    members_reached: int = Field(description="in the target group, treatment")
    members_held_out: int = Field(description="in the target group, control")
    rewards: dict[str, int] = Field(description="issued per kind: gift, discount, rebate-points, rebate-cash")
    cost: dict[str, Amount] = Field(description="cost per kind")
    points: int = Field(description="points the points rebates would credit")
    total_cost: Amount
    refusals: dict[str, int]
    budget_cap: Amount
    budget_remaining: Amount
    burn: list[CycleCost] = Field(description="cost per cycle")
    not_simulated: list[str]


async def simulate_program(session: AsyncSession, program_id: str) -> SimulationView:
    row = await session.get(Program, program_id)
    if row is None:
        raise NotFound(f"no program {program_id}", code="program-not-found")
    program = await program_at(session, row)
    now = clock_now(session)
    months = max(12, program.target_group.months)
    until = now if program.schedule.ends is None else min(now, program.schedule.ends)
    params = {
        "currency": program.budget.currency,
        "since": add_months(program.schedule.starts, -months),
        "until": until,
    }
    orders: dict[str, list[PastOrder]] = defaultdict(list)
    tiers: dict[str, str | None] = {}
    for r in await session.execute(_HISTORY, params):
        orders[r.member_id].append(PastOrder(r.order_id, r.paid_at, r.amount, r.net))
        tiers[r.member_id] = r.tier
    members = [MemberHistory(m, tiers[m], tuple(o)) for m, o in orders.items()]
    values = {i.item_id: i.value for i in await session.scalars(select(CatalogItem)) if i.status == "active"}
    result = simulate(program_id, program, members, values, now)
    total = sum(result.cost.values(), Decimal(0))
    return SimulationView(
        program_id=program_id,
        program_version=row.version,
        members_seen=result.members_seen,
        members_reached=result.reached,
        members_held_out=result.held_out,
        rewards=dict(result.rewards),
        cost=result.cost,
        points=result.points,
        total_cost=total,
        refusals=dict(result.refusals),
        budget_cap=program.budget.cap,
        budget_remaining=program.budget.cap - result.used,
        burn=[CycleCost(cycle=c, cost=v) for c, v in result.burn.items()],
        not_simulated=result.not_simulated,
    )
