"""A rebate's settlement at cycle close, and its statement.

A cycle's rebate is ``rebate_for`` the cycle's net spend and order count (refunds and cancels known
at settlement deducted). A closed statement is never rewritten: what a late refund or cancel changes
in an earlier cycle is an *adjustment* on the next statement (what that cycle earns now, less what
was paid for it so far). A statement whose lines add up below zero pays nothing and carries the
difference to the next one (brought forward), so a rebate is never paid twice and never clawed back
from a member's points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from rewards_service.domain.measures import Rebate, RebateDue, rebate_for


@dataclass(frozen=True)
class EarlierCycle:
    """A cycle settled before: its figures as the service knows them now, and what was paid for it
    (its rebate line and every adjustment since)."""

    cycle: str
    net_spend: Decimal
    orders: int
    segment: str | None
    paid: Decimal


@dataclass(frozen=True)
class Adjustment:
    cycle: str
    amount: Decimal  # what the cycle earns now less what was paid for it (usually < 0: a late refund)


@dataclass(frozen=True)
class Settlement:
    due: RebateDue  # this cycle's rebate
    adjustments: tuple[Adjustment, ...]
    brought_forward: Decimal  # a negative balance carried from the statement before (≤ 0)
    payable: Decimal  # what is paid now (≥ 0)
    carried: Decimal  # what this statement carries to the next one (≤ 0)

    @property
    def total(self) -> Decimal:
        return self.due.amount + sum((a.amount for a in self.adjustments), Decimal(0)) + self.brought_forward


def settle(
    measure: Rebate,
    net_spend: Decimal,
    orders: int,
    segment: str | None,
    earlier: Sequence[EarlierCycle] = (),
    brought_forward: Decimal = Decimal(0),
) -> Settlement:
    """The statement of one member's cycle: its rebate, the adjustments of earlier cycles, and the
    amount payable (never below 0; a shortfall is carried)."""
    if brought_forward > 0:
        raise ValueError(f"only a shortfall is carried forward, got {brought_forward}")
    due = rebate_for(measure, net_spend, orders, segment)
    adjustments = []
    for cycle in earlier:
        now_due = rebate_for(measure, cycle.net_spend, cycle.orders, cycle.segment).amount
        if now_due != cycle.paid:
            adjustments.append(Adjustment(cycle.cycle, now_due - cycle.paid))
    total = due.amount + sum((a.amount for a in adjustments), Decimal(0)) + brought_forward
    return Settlement(
        due, tuple(adjustments), brought_forward, max(total, Decimal(0)), min(total, Decimal(0))
    )
