"""Reversal: taking back the points of refunded money, in proportion to what was refunded."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

from points_service.domain.rules import EXACT, require_amount, require_count


class RefundExceedsPaid(ValueError):
    """More money would be refunded than the order paid."""

    def __init__(self, amount: Decimal, refunded_total: Decimal, refund: Decimal | None = None) -> None:
        self.amount = amount
        self.refunded_total = refunded_total
        self.refund = refund
        cause = f"a refund of {refund} would bring" if refund is not None else "it would bring"
        super().__init__(
            f"refund exceeds amount paid: {cause} the refunded total to {refunded_total}, "
            f"more than the {amount} paid"
        )


def reversal_due(points_earned: int, amount: Decimal, refunded_total: Decimal, already_reversed: int) -> int:
    """Points to take back now for an order refunded ``refunded_total`` of ``amount`` so far.

    Over all its refunds an order gives back ``floor(points_earned * refunded_total / amount)``
    points, so however a full refund is split, exactly ``points_earned`` come back in the
    end and never more. This returns what is still missing from that figure (never below 0).
    """
    require_count(points_earned, "points_earned")
    require_amount(amount, "amount")
    require_amount(refunded_total, "refunded_total")
    require_count(already_reversed, "already_reversed")
    if amount == 0:
        raise ValueError("amount must be more than 0: an order that paid nothing has no refund")
    if refunded_total > amount:
        raise RefundExceedsPaid(amount, refunded_total)
    if already_reversed > points_earned:
        raise ValueError(
            f"already_reversed ({already_reversed}) is more than the {points_earned} points earned"
        )
    with localcontext(EXACT):
        # Both sides are non-negative, so integer division is the floor; nothing rounds before it.
        owed = int((points_earned * refunded_total) // amount)
    return max(0, owed - already_reversed)


@dataclass(frozen=True)
class Rerating:
    """An order re-rated at another tier multiplier: what it has earned and had reversed now, and
    the points to credit (above 0) or take back (below 0) for the difference."""

    points_earned: int
    points_reversed: int
    change: int


def rerate(
    points_now: int,
    amount: Decimal,
    refunded_total: Decimal,
    points_earned: int,
    points_reversed: int,
    cancelled: bool,
) -> Rerating:
    """The order as if it had earned ``points_now`` from the start: its refunds so far reverse
    floor(points_now × refunded / amount), a cancelled order has everything reversed, and the
    member's balance moves by the difference between what the order holds now and what it held."""
    if cancelled:
        return Rerating(points_now, points_now, 0)
    reversed_now = reversal_due(points_now, amount, refunded_total, 0)
    change = (points_now - reversed_now) - (points_earned - points_reversed)
    return Rerating(points_now, reversed_now, change)
