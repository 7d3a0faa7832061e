"""A program's budget: a money cap on what it may give, optionally per member, with points valued at
``point_value``.

Every issuance debits its cost: a debit is all or nothing, and nothing is issued past the cap. What
was issued is *committed* until it is consumed (*spent*: a coupon used, a gift delivered, points
credited) or given back (*released*: a gift cancelled, a coupon expired unused); committed and spent
both count against the cap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from rewards_service.domain.cycles import Schedule, cycle_of

Refusal = Literal["budget-exhausted", "member-cap-reached"]


@dataclass(frozen=True)
class Budget:
    currency: str
    cap: Decimal
    per_member_cap: Decimal | None = None
    point_value: Decimal | None = None  # what one point costs; needed by points rewards


@dataclass(frozen=True)
class BudgetState:
    committed: Decimal = Decimal(0)
    spent: Decimal = Decimal(0)

    @property
    def used(self) -> Decimal:
        return self.committed + self.spent


@dataclass(frozen=True)
class Debit:
    ok: bool
    reason: Refusal | None  # why it was refused
    new_state: BudgetState  # unchanged when refused


def _require_cost(cost: Decimal) -> None:
    if not cost.is_finite() or cost < 0:
        raise ValueError(f"a cost is an amount of 0 or more, got {cost}")


def debit(budget: Budget, state: BudgetState, member_spent: Decimal, cost: Decimal) -> Debit:
    """Commit ``cost`` for one issuance to a member who has already been given ``member_spent`` by the
    program; refused whole when it would take the program past its cap (checked first) or the member
    past theirs."""
    _require_cost(cost)
    if state.used + cost > budget.cap:
        return Debit(False, "budget-exhausted", state)
    if budget.per_member_cap is not None and member_spent + cost > budget.per_member_cap:
        return Debit(False, "member-cap-reached", state)
    return Debit(True, None, replace(state, committed=state.committed + cost))


def spend(state: BudgetState, amount: Decimal) -> BudgetState:
    """``amount`` of what was committed is consumed."""
    _require_cost(amount)
    if amount > state.committed:
        raise ValueError(f"cannot spend {amount}: only {state.committed} is committed")
    return BudgetState(state.committed - amount, state.spent + amount)


def release(state: BudgetState, amount: Decimal) -> BudgetState:
    """``amount`` of what was committed comes back to the budget."""
    _require_cost(amount)
    if amount > state.committed:
        raise ValueError(f"cannot release {amount}: only {state.committed} is committed")
    return replace(state, committed=state.committed - amount)


def remaining(budget: Budget, state: BudgetState) -> Decimal:
    return budget.cap - state.used


def burn_by_cycle(schedule: Schedule, debits: Iterable[tuple[datetime, Decimal]]) -> dict[str, Decimal]:
    """The cost of ``debits`` (when, cost) per cycle label, in cycle order; only cycles with debits."""
    burn: dict[str, Decimal] = {}
    for at, cost in sorted(debits, key=lambda d: d[0]):
        cycle = cycle_of(schedule, at)
        if cycle is None:
            raise ValueError(f"a debit at {at.isoformat()} is outside the program's schedule")
        burn[cycle.label] = burn.get(cycle.label, Decimal(0)) + cost
    return burn
