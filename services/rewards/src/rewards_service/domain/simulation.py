"""A dry run of a program on history: what it would have issued had it been active over the orders
the service has seen, with nothing issued.

Members are replayed in time order. Each order is judged as the live service judges it (``reach``
on the member's orders up to it, the threshold gifts it earns, once per key); a ladder discount
earned in a cycle is priced on the member's orders of the next one; each rebate cycle that has
closed by ``now`` is settled on its net spend. Every cost is debited from one running budget, in
time order, so the burn and the refusals are the ones the program would have met. Net amounts are
as known now (refunds and cancels deducted).

What history cannot tell is reported, not guessed: tier-upgrade gifts and the tier discount need
the member's tier changes over time (rewards keeps the tier in force only), and coupons are issued
by the CRM, not by events; targeting by tier uses the tier in force now.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from rewards_service.domain.budget import BudgetState, debit, spend
from rewards_service.domain.cycles import closed_cycles, cycle_of, next_cycle, previous_cycle
from rewards_service.domain.groups import MemberFacts, figures
from rewards_service.domain.issuing import gifts_for_order, reach
from rewards_service.domain.measures import (
    LadderDiscount,
    OneTimeDiscount,
    Rebate,
    ThresholdGift,
    TierDiscount,
    TierUpgradeGift,
    cash_value_of_points,
    ladder_discount_rate,
    points_for_cash,
)
from rewards_service.domain.money import to_cents
from rewards_service.domain.programs import Program
from rewards_service.domain.rfm import segment_of
from rewards_service.domain.settlement import settle


@dataclass(frozen=True)
class PastOrder:
    order_id: str
    paid_at: datetime
    amount: Decimal  # paid
    net: Decimal  # as known now


@dataclass(frozen=True)
class MemberHistory:
    member_id: str
    tier: str | None
    orders: tuple[PastOrder, ...]  # in time order


@dataclass
class SimulationResult:
    members_seen: int = 0
    reached: int = 0  # treatment members
    held_out: int = 0  # control members
    rewards: Counter[str] = field(default_factory=Counter)  # kind: count
    cost: dict[str, Decimal] = field(default_factory=dict)  # kind: cost
    points: int = 0  # points rebates, in points
    refusals: Counter[str] = field(default_factory=Counter)
    burn: dict[str, Decimal] = field(default_factory=dict)  # cycle label: cost
    used: Decimal = Decimal(0)
    not_simulated: list[str] = field(default_factory=list)


@dataclass(order=True)
class _Cost:
    at: datetime
    member: str
    kind: str
    cycle: str
    amount: Decimal
    points: int = 0


def simulate(
    program_id: str,
    program: Program,
    members: Sequence[MemberHistory],
    item_values: Mapping[str, Decimal],
    now: datetime,
) -> SimulationResult:
    result = SimulationResult(members_seen=len(members), not_simulated=_not_simulated(program))
    costs: list[_Cost] = []
    for member in members:
        group = _group(program_id, program, member)
        if group == "control":
            result.held_out += 1
        if group != "treatment":
            continue
        result.reached += 1
        costs += _member_costs(program_id, program, member, item_values, now, result)
    state = BudgetState()
    given: dict[str, Decimal] = defaultdict(Decimal)
    for cost in sorted(costs):
        outcome = debit(program.budget, state, given[cost.member], cost.amount)
        if not outcome.ok:
            assert outcome.reason is not None
            result.refusals[outcome.reason] += 1
            continue
        state = spend(outcome.new_state, cost.amount)
        given[cost.member] += cost.amount
        result.rewards[cost.kind] += 1
        result.cost[cost.kind] = result.cost.get(cost.kind, Decimal(0)) + cost.amount
        result.points += cost.points
        result.burn[cost.cycle] = result.burn.get(cost.cycle, Decimal(0)) + cost.amount
    result.used = state.used
    result.burn = dict(sorted(result.burn.items()))
    return result


def _group(program_id: str, program: Program, member: MemberHistory) -> str:
    """Where the program puts the member: the group of the first order it reaches them at."""
    for index, order in enumerate(member.orders):
        facts = _facts(member, index + 1)
        where = reach(program_id, program, facts, order.paid_at)
        if where != "outside":
            return where
    return "outside"


def _facts(member: MemberHistory, upto: int) -> MemberFacts:
    return MemberFacts(member.member_id, member.tier, tuple((o.paid_at, o.net) for o in member.orders[:upto]))


def _member_costs(
    program_id: str,
    program: Program,
    member: MemberHistory,
    item_values: Mapping[str, Decimal],
    now: datetime,
    result: SimulationResult,
) -> list[_Cost]:
    costs: list[_Cost] = []
    keys: set[str] = set()
    for index, order in enumerate(member.orders):
        facts = _facts(member, index + 1)
        if reach(program_id, program, facts, order.paid_at) != "treatment":
            continue
        for due in gifts_for_order(program_id, program, facts, order.order_id, order.amount, order.paid_at):
            if due.key in keys:
                continue
            keys.add(due.key)
            value = item_values.get(due.item_id or "")
            if value is None:
                result.refusals["item-unavailable"] += 1
                continue
            costs.append(_Cost(order.paid_at, member.member_id, "gift", due.cycle or "all", value))
    everything = _facts(member, len(member.orders))
    for measure in program.measures:
        if isinstance(measure, LadderDiscount):
            costs += _ladder_costs(program, measure, member, everything)
        elif isinstance(measure, Rebate):
            costs += _rebate_costs(program, measure, member, everything, now)
    return costs


def _ladder_costs(
    program: Program, measure: LadderDiscount, member: MemberHistory, facts: MemberFacts
) -> list[_Cost]:
    costs: list[_Cost] = []
    for order in member.orders:
        cycle = cycle_of(program.schedule, order.paid_at)
        if cycle is None:
            continue
        before = previous_cycle(program.schedule, cycle)
        if before is None or before.end is None:
            continue
        earned = figures(facts, before.start, before.end)
        rate = ladder_discount_rate(measure, earned.spend, earned.orders)
        if rate > 0:
            costs.append(
                _Cost(order.paid_at, member.member_id, "discount", cycle.label, to_cents(order.amount * rate))
            )
    return costs


def _rebate_costs(
    program: Program, measure: Rebate, member: MemberHistory, facts: MemberFacts, now: datetime
) -> list[_Cost]:
    costs: list[_Cost] = []
    for cycle in closed_cycles(program.schedule, now):
        assert cycle.end is not None
        earned = figures(facts, cycle.start, cycle.end)
        if not earned.orders:
            continue
        segment = segment_of(facts, cycle.end) if measure.personalised else None
        payable = settle(measure, earned.spend, earned.orders, segment).payable
        points = 0
        if measure.pay_as == "points" and program.budget.point_value is not None:
            points = points_for_cash(payable, program.budget.point_value)
            payable = cash_value_of_points(points, program.budget.point_value)
        if payable > 0:
            costs.append(
                _Cost(cycle.end, member.member_id, f"rebate-{measure.pay_as}", cycle.label, payable, points)
            )
        if next_cycle(program.schedule, cycle) is None:
            break
    return costs


def _not_simulated(program: Program) -> list[str]:
    notes = []
    for measure in program.measures:
        if isinstance(measure, TierUpgradeGift):
            notes.append(f"{measure.id}: upgrade gifts need the tier changes over time, which are not kept")
        elif isinstance(measure, TierDiscount):
            notes.append(
                f"{measure.id}: the tier discount needs the tier of each order's day, which is not kept"
            )
        elif isinstance(measure, OneTimeDiscount):
            notes.append(f"{measure.id}: coupons are issued by the CRM, not by orders")
        elif not isinstance(measure, LadderDiscount | Rebate | ThresholdGift):
            notes.append(f"{measure.id}: {measure.kind} costs the budget nothing and is not simulated")
    if program.target_group.tiers:
        notes.append("targeting by tier uses each member's tier in force now")
    return notes
