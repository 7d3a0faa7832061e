"""What one batch of events touches: loaded in a few statements, changed in memory in event order,
written back in a few statements.

``Workset.load`` locks the accounts of every member in the batch (one sorted multi-row upsert, the
lock every balance change takes first) and reads the orders, refund ids, open lots and tier periods
the batch's events refer to. The appliers (earning, reversals, tiers) then change the rows in
memory, one event after the other, exactly as they would one transaction per event; ``flush``
writes what changed with one statement per table. The ledger and the outbox are appended to at
commit (``defer_insert``, ``publish``), in event order.

Invariant, as before: for every member, Σ ledger.points = Σ lots.remaining − accounts.debt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.db import arrays_of, defer_insert, unnest_insert
from loyalty_shared.handling import Delivery
from points_service import domain
from points_service.earning_rules import current_rules
from points_service.models import LedgerEntry, Lot, Order, Refund, TierPeriod, table


@dataclass
class AccountRow:
    member_id: str
    debt: int
    tier: str | None
    tier_multiplier: Decimal
    tier_changed_at: datetime | None
    tier_effective_at: datetime | None
    dirty: bool = False


@dataclass
class OrderRow:
    order_id: str
    member_id: str
    currency: str
    amount: Decimal
    points_earned: int
    refunded_total: Decimal
    points_reversed: int
    cancelled: bool
    rule_version: int
    tier_multiplier: Decimal
    paid_at: datetime
    accrual_base: Decimal | None = None  # domain.Accrual; None for orders earned before it was kept
    accrual_divisor: Decimal | None = None
    new: bool = False
    dirty: bool = False

    def accrual(self) -> domain.Accrual | None:
        if self.accrual_base is None or self.accrual_divisor is None:
            return None
        return domain.Accrual(self.accrual_base, self.accrual_divisor)


@dataclass
class LotRow:
    id: int
    member_id: str
    source: str
    order_id: str | None
    points: int
    remaining: int
    earned_at: datetime
    available_at: datetime
    expires_at: datetime
    new: bool = False
    dirty: bool = False

    def domain(self) -> domain.Lot:
        return domain.Lot(self.id, self.remaining, self.available_at, self.expires_at)


# Every statement is built (and compiled) once; arrays carry the batch.
# By hand, not ``unnest_insert`` (which keeps the arrays' order): the accounts are locked in the
# database's order of member ids, the order the expiry run locks them in (no deadlock between them).
_LOCK_ACCOUNTS = text(
    "INSERT INTO accounts (member_id) SELECT m FROM unnest(CAST(:members AS text[])) AS m ORDER BY m "
    "ON CONFLICT (member_id) DO UPDATE SET member_id = excluded.member_id "
    "RETURNING member_id, debt, tier, tier_multiplier, tier_changed_at, tier_effective_at"
)
_ORDER_FIELDS = (
    "order_id, member_id, currency, amount, points_earned, refunded_total, points_reversed, "
    "cancelled, rule_version, tier_multiplier, paid_at, accrual_base, accrual_divisor"
)
_ORDER_COLUMNS = tuple(_ORDER_FIELDS.split(", "))
_ORDERS = text(f"SELECT {_ORDER_FIELDS} FROM orders WHERE order_id = ANY(CAST(:orders AS text[])) FOR UPDATE")
# a tier change may cover orders already earned: each member's orders paid after its earliest change
# in the batch took effect
_LATER_ORDERS = text(
    f"SELECT {', '.join('o.' + c for c in _ORDER_COLUMNS)} FROM orders AS o "
    "JOIN unnest(CAST(:members AS text[]), CAST(:since AS timestamptz[])) AS c(member_id, since) "
    "ON o.member_id = c.member_id AND o.paid_at > c.since FOR UPDATE OF o"
)
_REFUNDS = text("SELECT order_id, refund_id FROM refunds WHERE order_id = ANY(CAST(:orders AS text[]))")
_LOTS = text(
    "SELECT id, member_id, source, order_id, points, remaining, earned_at, available_at, expires_at "
    "FROM lots WHERE member_id = ANY(CAST(:members AS text[])) AND (remaining > 0 "
    "OR (source = 'order' AND order_id = ANY(CAST(:orders AS text[]))))"
)
_PERIODS = text(
    "SELECT member_id, effective_at, tier, tier_multiplier FROM tier_periods "
    "WHERE member_id = ANY(CAST(:members AS text[]))"
)
_LOT_IDS = text("SELECT nextval(pg_get_serial_sequence('lots', 'id')) FROM generate_series(1, :n)")
_INSERT_ORDERS = unnest_insert(table(Order), _ORDER_COLUMNS)
_UPDATE_ORDERS = text(
    "UPDATE orders AS o SET refunded_total = v.refunded_total, points_reversed = v.points_reversed, "
    "cancelled = v.cancelled, points_earned = v.points_earned, tier_multiplier = v.tier_multiplier "
    "FROM unnest(CAST(:order_id AS text[]), CAST(:refunded_total AS numeric[]), "
    "CAST(:points_reversed AS int[]), CAST(:cancelled AS bool[]), CAST(:points_earned AS int[]), "
    "CAST(:tier_multiplier AS numeric[])) "
    "AS v(order_id, refunded_total, points_reversed, cancelled, points_earned, tier_multiplier) "
    "WHERE o.order_id = v.order_id"
)
_REFUND_COLUMNS = ("order_id", "refund_id", "amount", "points_reversed")
_INSERT_REFUNDS = unnest_insert(table(Refund), _REFUND_COLUMNS)
_LOT_COLUMNS = (
    "id",
    "member_id",
    "source",
    "order_id",
    "points",
    "remaining",
    "earned_at",
    "available_at",
    "expires_at",
)
_INSERT_LOTS = unnest_insert(table(Lot), _LOT_COLUMNS, overriding=True)  # ids drawn ahead (_LOT_IDS)
_UPDATE_LOTS = text(
    "UPDATE lots AS l SET remaining = v.remaining FROM unnest(CAST(:id AS bigint[]), "
    "CAST(:remaining AS int[])) AS v(id, remaining) WHERE l.id = v.id"
)
_UPDATE_ACCOUNTS = text(
    "UPDATE accounts AS a SET debt = v.debt, tier = v.tier, tier_multiplier = v.tier_multiplier, "
    "tier_changed_at = v.tier_changed_at, tier_effective_at = v.tier_effective_at "
    "FROM unnest(CAST(:member_id AS text[]), CAST(:debt AS bigint[]), CAST(:tier AS text[]), "
    "CAST(:tier_multiplier AS numeric[]), CAST(:tier_changed_at AS timestamptz[]), "
    "CAST(:tier_effective_at AS timestamptz[])) "
    "AS v(member_id, debt, tier, tier_multiplier, tier_changed_at, tier_effective_at) "
    "WHERE a.member_id = v.member_id"
)
_UPSERT_PERIODS = unnest_insert(
    table(TierPeriod),
    ("member_id", "effective_at", "tier", "tier_multiplier"),
    "ON CONFLICT (member_id, effective_at) DO UPDATE "
    "SET tier = excluded.tier, tier_multiplier = excluded.tier_multiplier",
)
_LEDGER = table(LedgerEntry)


@dataclass
class Workset:
    session: AsyncSession
    rules: domain.EarningRules
    accounts: dict[str, AccountRow]
    orders: dict[str, OrderRow]
    refunds: set[tuple[str, str]]
    lots: dict[int, LotRow]
    periods: dict[str, dict[datetime, tuple[str, Decimal]]]
    lot_ids: Iterator[int]
    new_refunds: list[dict[str, Any]] = field(default_factory=list)
    changed_periods: set[tuple[str, datetime]] = field(default_factory=set)
    _member_lots: dict[str, list[LotRow]] = field(default_factory=dict)
    _order_lots: dict[str, LotRow] = field(default_factory=dict)
    _member_orders: dict[str, list[OrderRow]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for lot in self.lots.values():
            self._index(lot)
        for order in self.orders.values():
            self._member_orders.setdefault(order.member_id, []).append(order)

    def _index(self, lot: LotRow) -> None:
        self._member_lots.setdefault(lot.member_id, []).append(lot)
        if lot.source == "order" and lot.order_id is not None:
            known = self._order_lots.get(lot.order_id)
            if known is None or known.id < lot.id:  # a re-rated order's newest lot is its own
                self._order_lots[lot.order_id] = lot

    # loading and writing back

    @classmethod
    async def load(cls, session: AsyncSession, deliveries: Sequence[Delivery]) -> Workset:
        members = sorted({d.data.member_id for d in deliveries})
        orders = sorted({d.data.order_id for d in deliveries if hasattr(d.data, "order_id")})
        reversing = sorted({d.data.member_id for d in deliveries if d.type in _REVERSING})
        earning = sum(1 for d in deliveries if d.type in _CREDITING)
        execute = session.execute
        accounts = {
            r.member_id: AccountRow(
                r.member_id, r.debt, r.tier, r.tier_multiplier, r.tier_changed_at, r.tier_effective_at
            )
            for r in await execute(_LOCK_ACCOUNTS, {"members": members})
        }
        order_rows: dict[str, OrderRow] = {}
        refunds: set[tuple[str, str]] = set()
        if orders:
            order_rows = {r.order_id: OrderRow(*r) for r in await execute(_ORDERS, {"orders": orders})}
            if len(order_rows) and reversing:
                refunds = {(r.order_id, r.refund_id) for r in await execute(_REFUNDS, {"orders": orders})}
        changes = [d for d in deliveries if d.type == "tier.changed"]
        credits = 0  # at most one lot per tier change and order of its member it re-rates
        if changes:
            since: dict[str, datetime] = {}
            for d in changes:
                at = d.data.effective_at or d.event.time
                since[d.data.member_id] = min(at, since.get(d.data.member_id, at))
            params = {"members": list(since), "since": list(since.values())}
            later = {r.order_id: OrderRow(*r) for r in await execute(_LATER_ORDERS, params)}
            order_rows = later | order_rows
            per_member = Counter(o.member_id for o in later.values())
            per_member.update(d.data.member_id for d in deliveries if d.type == "order.paid")
            credits = sum(per_member[d.data.member_id] for d in changes)
            reversing = sorted({*reversing, *(order.member_id for order in later.values())})
            orders = sorted({*orders, *later})
        lots: dict[int, LotRow] = {}
        if reversing:
            params = {"members": reversing, "orders": orders}
            lots = {r.id: LotRow(*r) for r in await execute(_LOTS, params)}
        periods: dict[str, dict[datetime, tuple[str, Decimal]]] = {}
        if any(_needs_periods(d, accounts) for d in deliveries):
            for r in await execute(_PERIODS, {"members": members}):
                periods.setdefault(r.member_id, {})[r.effective_at] = (r.tier, r.tier_multiplier)
        ids: list[int] = []
        if earning + credits:
            ids = list((await execute(_LOT_IDS, {"n": earning + credits})).scalars())
        rules = await current_rules(session)
        return cls(session, rules, accounts, order_rows, refunds, lots, periods, iter(ids))

    async def flush(self) -> None:
        execute = self.session.execute
        orders = list(self.orders.values())
        if new := [o for o in orders if o.new]:
            await execute(_INSERT_ORDERS, arrays_of(new, _ORDER_COLUMNS))
        if changed := [o for o in orders if o.dirty and not o.new]:
            await execute(_UPDATE_ORDERS, arrays_of(changed, _ORDER_CHANGES))
        if self.new_refunds:
            refunds = {n: [row[n] for row in self.new_refunds] for n in _REFUND_COLUMNS}
            await execute(_INSERT_REFUNDS, refunds)
        lots = list(self.lots.values())
        if new_lots := [lot for lot in lots if lot.new]:
            await execute(_INSERT_LOTS, arrays_of(new_lots, _LOT_COLUMNS))
        if changed_lots := [lot for lot in lots if lot.dirty and not lot.new]:
            await execute(_UPDATE_LOTS, arrays_of(changed_lots, ("id", "remaining")))
        if accounts := [a for a in self.accounts.values() if a.dirty]:
            await execute(_UPDATE_ACCOUNTS, arrays_of(accounts, _ACCOUNT_COLUMNS))
        if self.changed_periods:
            keys = sorted(self.changed_periods)
            values = [self.periods[m][at] for m, at in keys]
            await execute(
                _UPSERT_PERIODS,
                {
                    "member_id": [m for m, _ in keys],
                    "effective_at": [at for _, at in keys],
                    "tier": [tier for tier, _ in values],
                    "tier_multiplier": [multiplier for _, multiplier in values],
                },
            )

    # what the appliers read and change

    def account(self, member_id: str) -> AccountRow:
        return self.accounts[member_id]

    def set_debt(self, account: AccountRow, debt: int) -> None:
        account.debt, account.dirty = debt, True

    def add_order(self, order: OrderRow) -> None:
        order.new = True
        self.orders[order.order_id] = order
        self._member_orders.setdefault(order.member_id, []).append(order)

    def member_orders(self, member_id: str, paid_after: datetime) -> list[OrderRow]:
        """The member's orders paid after ``paid_after`` (loaded for the batch's tier changes, or
        earned in it), in payment order."""
        found = [o for o in self._member_orders.get(member_id, ()) if o.paid_at > paid_after]
        return sorted(found, key=lambda order: (order.paid_at, order.order_id))

    def refund_applied(self, order_id: str, refund_id: str) -> bool:
        return (order_id, refund_id) in self.refunds

    def add_refund(self, order_id: str, refund_id: str, amount: Decimal, points_reversed: int) -> None:
        self.refunds.add((order_id, refund_id))
        row = {"order_id": order_id, "refund_id": refund_id, "amount": amount}
        self.new_refunds.append(row | {"points_reversed": points_reversed})

    def open_lots(self, member_id: str) -> list[domain.Lot]:
        return [lot.domain() for lot in self._member_lots.get(member_id, ()) if lot.remaining > 0]

    def order_lot_row(self, order_id: str) -> LotRow | None:
        return self._order_lots.get(order_id)

    def order_lot(self, order_id: str) -> domain.Lot | None:
        """The order's own lot, while it has points left."""
        lot = self._order_lots.get(order_id)
        return lot.domain() if lot is not None and lot.remaining > 0 else None

    def add_lot(
        self,
        account: AccountRow,
        points: int,
        *,
        source: str,
        earned_at: datetime,
        available_at: datetime,
        expires_at: datetime,
        order_id: str | None = None,
    ) -> tuple[int | None, int]:
        """Credit ``points`` as a new lot; an outstanding debt is paid first. Returns (lot id, repaid)."""
        repaid, lot_points = domain.settle_debt(account.debt, points)
        if repaid:
            self.set_debt(account, account.debt - repaid)
        if points == 0:
            return None, 0
        lot = LotRow(
            next(self.lot_ids),
            account.member_id,
            source,
            order_id,
            lot_points,
            lot_points,
            earned_at,
            available_at,
            expires_at,
            new=True,
        )
        self.lots[lot.id] = lot
        self._index(lot)
        return lot.id, repaid

    def debit(self, takes: Sequence[domain.Take]) -> None:
        for take in takes:
            lot = self.lots[take.lot_id]
            lot.remaining -= take.points
            lot.dirty = True

    def tier_at(self, account: AccountRow, paid_at: datetime) -> tuple[str | None, Decimal]:
        """The tier and multiplier an order paid at ``paid_at`` earns at."""
        if account.tier_effective_at is None or paid_at > account.tier_effective_at:
            return account.tier, account.tier_multiplier  # the usual case: no lookup
        before = [at for at in self.periods.get(account.member_id, {}) if at < paid_at]
        if not before:
            return None, Decimal("1")
        return self.periods[account.member_id][max(before)]

    def record_period(self, member_id: str, effective_at: datetime, tier: str, multiplier: Decimal) -> None:
        self.periods.setdefault(member_id, {})[effective_at] = (tier, multiplier)
        self.changed_periods.add((member_id, effective_at))

    def append_entry(self, **fields: Any) -> None:
        """Add a ledger entry (written at commit, with the outbox)."""
        fields.setdefault("rule_version", self.rules.version)
        defer_insert(self.session, _LEDGER, fields)


_ORDER_CHANGES = (
    "order_id",
    "refunded_total",
    "points_reversed",
    "cancelled",
    "points_earned",
    "tier_multiplier",
)
_ACCOUNT_COLUMNS = ("member_id", "debt", "tier", "tier_multiplier", "tier_changed_at", "tier_effective_at")


_REVERSING = frozenset({"order.refunded", "order.cancelled"})
_CREDITING = frozenset({"order.paid", "rebate.settled", "redemption.failed"})  # at most one new lot each


def _needs_periods(delivery: Delivery, accounts: dict[str, AccountRow]) -> bool:
    """Tier periods are read only when an event may need them: a tier change, or an order paid
    before the tier in force took effect."""
    if delivery.type == "tier.changed":
        return True
    if delivery.type != "order.paid":
        return False
    effective_at = accounts[delivery.data.member_id].tier_effective_at
    return effective_at is not None and delivery.event.time <= effective_at
