"""Lots: each earning is a lot of points that vests, gets spent oldest-expiry first, and expires.

Also how debits are planned across lots, how debts arise and are repaid, and what the
member's balance looks like at a given moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from loyalty_shared.dates import require_aware
from points_service.domain.rules import (
    DEBT_POLICIES,
    DebtPolicy,
    require_count,
)


@dataclass(frozen=True)
class Lot:
    """Points earned together: spendable from ``available_at``, gone at ``expires_at``."""

    id: int
    remaining: int
    available_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        require_count(self.id, "lot id")
        require_count(self.remaining, "remaining")
        require_aware(self.available_at, "available_at")
        require_aware(self.expires_at, "expires_at")


@dataclass(frozen=True)
class Take:
    """Points to take out of one lot."""

    lot_id: int
    points: int

    def __post_init__(self) -> None:
        require_count(self.lot_id, "lot_id")
        require_count(self.points, "points", minimum=1)


@dataclass(frozen=True)
class DebitPlan:
    """Which lots a debit draws on, and how much no lot could cover (``shortfall``)."""

    takes: tuple[Take, ...]
    shortfall: int

    def __post_init__(self) -> None:
        require_count(self.shortfall, "shortfall")

    @property
    def covered(self) -> int:
        """Points the plan takes from lots."""
        return sum(take.points for take in self.takes)


@dataclass(frozen=True)
class Balance:
    """A member's points at a moment, as the member and the CRM see them."""

    available: int
    pending: int
    expiring_soon: int
    next_expiry_at: datetime | None


def is_available(lot: Lot, now: datetime) -> bool:
    """The lot has vested, has not expired, and still holds points."""
    require_aware(now, "now")
    return lot.remaining > 0 and lot.available_at <= now < lot.expires_at


def is_pending(lot: Lot, now: datetime) -> bool:
    """The lot still holds points that are waiting out the return window."""
    require_aware(now, "now")
    return lot.remaining > 0 and now < lot.available_at


def _spend_order(lots: Iterable[Lot]) -> list[Lot]:
    """Soonest-expiring first, so members lose as little as possible to expiry."""
    return sorted(lots, key=lambda lot: (lot.expires_at, lot.id))


def _require_distinct_ids(lots: Sequence[Lot]) -> None:
    ids = [lot.id for lot in lots]
    if len(ids) != len(set(ids)):
        duplicates = sorted({lot_id for lot_id in ids if ids.count(lot_id) > 1})
        raise ValueError(f"the same lot appears more than once: {duplicates}")


def _take_in_order(ordered: Iterable[Lot], points: int) -> DebitPlan:
    takes: list[Take] = []
    needed = points
    for lot in ordered:
        if needed == 0:
            break
        taken = min(lot.remaining, needed)
        if taken > 0:
            takes.append(Take(lot_id=lot.id, points=taken))
            needed -= taken
    return DebitPlan(takes=tuple(takes), shortfall=needed)


def plan_redemption(lots: Sequence[Lot], points: int, now: datetime) -> DebitPlan:
    """Which available lots pay for spending ``points``: soonest expiry first, then oldest lot.

    Pending and expired lots are never spent. Whatever the lots cannot cover is the shortfall.
    """
    require_count(points, "points", minimum=1)
    require_aware(now, "now")
    _require_distinct_ids(lots)
    return _take_in_order(_spend_order(lot for lot in lots if is_available(lot, now)), points)


def plan_reversal(order_lot: Lot | None, other_lots: Sequence[Lot], points: int, now: datetime) -> DebitPlan:
    """Which lots give back ``points`` taken back for a refund.

    The refunded order's own lot goes first, pending or available, as long as it has
    not expired: a refund inside the return window cancels the pending points first.
    Then the member's other available lots, as for a redemption. What is still
    missing is the shortfall (a debt or a write-off, see :func:`resolve_shortfall`).
    """
    require_count(points, "points", minimum=1)
    require_aware(now, "now")
    _require_distinct_ids(other_lots)
    first: list[Lot] = []
    if order_lot is not None and order_lot.remaining > 0 and now < order_lot.expires_at:
        first.append(order_lot)
    order_lot_id = order_lot.id if order_lot is not None else None
    others = _spend_order(lot for lot in other_lots if lot.id != order_lot_id and is_available(lot, now))
    return _take_in_order([*first, *others], points)


def settle_debt(debt: int, earned: int) -> tuple[int, int]:
    """New earnings repay an outstanding debt first: ``(repaid, points_left_for_the_lot)``."""
    require_count(debt, "debt")
    require_count(earned, "earned")
    repaid = min(debt, earned)
    return repaid, earned - repaid


def resolve_shortfall(shortfall: int, policy: DebtPolicy) -> int:
    """The debt a shortfall creates: all of it under ``"debt"``, none under ``"forgive"``."""
    require_count(shortfall, "shortfall")
    if policy not in DEBT_POLICIES:
        raise ValueError(f"debt policy must be one of {', '.join(DEBT_POLICIES)}, got {policy!r}")
    return shortfall if policy == "debt" else 0


def due_for_expiry(lots: Sequence[Lot], now: datetime) -> list[Lot]:
    """Lots whose leftover points have expired by ``now``, soonest expiry first."""
    require_aware(now, "now")
    return _spend_order(lot for lot in lots if lot.remaining > 0 and lot.expires_at <= now)


def summarize(lots: Sequence[Lot], debt: int, now: datetime, soon_days: int) -> Balance:
    """The member's balance at ``now``.

    ``available`` is spendable points minus any debt, so it goes negative while the
    member owes points; ``pending`` is still inside the return window;
    ``expiring_soon`` is the spendable part that expires within ``soon_days``.
    """
    require_count(debt, "debt")
    require_aware(now, "now")
    require_count(soon_days, "soon_days")
    available = [lot for lot in lots if is_available(lot, now)]
    soon = now + timedelta(days=soon_days)
    return Balance(
        available=sum(lot.remaining for lot in available) - debt,
        pending=sum(lot.remaining for lot in lots if is_pending(lot, now)),
        expiring_soon=sum(lot.remaining for lot in available if lot.expires_at <= soon),
        next_expiry_at=min((lot.expires_at for lot in available), default=None),
    )
