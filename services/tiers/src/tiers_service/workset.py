"""What one batch of order events touches: loaded in a few statements, changed in memory in event
order, written back in a few statements.

``Workset.load`` locks the standings of every member in the batch (one statement, in member order)
and reads their qualifying orders as far back as any window the batch can ask about (the current
window, the window of a step falling due, a grace period's make-up), the orders the batch refers
to and their refund ids. The appliers (``orders``) then change the rows in memory, one event after
the other, exactly as one transaction per event would, and ``figures`` sums the window from memory
the way the SQL does. ``flush`` writes what changed with one statement per table; history rows and
``tier.changed`` go out at commit (``record_change``), in event order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, insert, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.db import arrays_of, unnest_insert
from loyalty_shared.handling import Delivery
from tiers_service import domain
from tiers_service.ladders import current_ladder
from tiers_service.models import Member, QualifyingOrder, QualifyingRefund, table
from tiers_service.standings import columns, standing_from_row


@dataclass
class OrderRow:
    order_id: str
    member_id: str
    currency: str
    amount: Decimal
    qualifying: Decimal
    refunded: Decimal  # qualifying spend refunded
    refunded_amount: Decimal  # money refunded
    paid_at: datetime
    cancelled_at: datetime | None
    new: bool = False
    dirty: bool = False


_MEMBERS = text(
    "SELECT * FROM members WHERE member_id = ANY(CAST(:members AS text[])) ORDER BY member_id FOR UPDATE"
)
_ORDER_FIELDS = (
    "order_id, member_id, currency, amount, qualifying, refunded, refunded_amount, paid_at, cancelled_at"
)
_ORDERS = text(
    f"SELECT {_ORDER_FIELDS} FROM qualifying_orders "
    "WHERE (member_id = ANY(CAST(:members AS text[])) AND paid_at > :since) "
    "OR order_id = ANY(CAST(:orders AS text[])) FOR UPDATE"
)
_REFUNDS = text(
    "SELECT order_id, refund_id FROM qualifying_refunds WHERE order_id = ANY(CAST(:orders AS text[]))"
)
_ORDER_COLUMNS = tuple(_ORDER_FIELDS.split(", "))
_INSERT_ORDERS = unnest_insert(table(QualifyingOrder), _ORDER_COLUMNS)
_UPDATE_ORDERS = text(
    "UPDATE qualifying_orders AS o SET refunded = v.refunded, refunded_amount = v.refunded_amount, "
    "cancelled_at = v.cancelled_at FROM unnest(CAST(:order_id AS text[]), CAST(:refunded AS numeric[]), "
    "CAST(:refunded_amount AS numeric[]), CAST(:cancelled_at AS timestamptz[])) "
    "AS v(order_id, refunded, refunded_amount, cancelled_at) WHERE o.order_id = v.order_id"
)
_REFUND_COLUMNS = ("order_id", "refund_id", "amount", "qualifying")
_INSERT_REFUNDS = unnest_insert(table(QualifyingRefund), _REFUND_COLUMNS)
_members = table(Member)
_CREATE_MEMBERS = insert(_members)
# executed with one parameter set per member: the SET clause is every column the sets carry
_SAVE_MEMBERS = update(_members).where(_members.c.member_id == bindparam("key"))


@dataclass
class Workset:
    session: AsyncSession
    ladder: domain.Ladder
    now: datetime
    since: datetime  # orders paid after this are all in memory (for the batch's members)
    standings: dict[str, domain.Standing]
    orders: dict[str, OrderRow]
    refunds: set[tuple[str, str]]
    stored: dict[str, domain.Standing] = field(default_factory=dict)  # as read from the database
    new_refunds: list[dict[str, Any]] = field(default_factory=list)
    _member_orders: dict[str, list[OrderRow]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stored = dict(self.standings)
        for order in self.orders.values():
            self._member_orders.setdefault(order.member_id, []).append(order)

    @classmethod
    async def load(cls, session: AsyncSession, deliveries: Sequence[Delivery]) -> Workset:
        ladder = await current_ladder(session)
        now = clock_now(session)
        members = sorted({d.data.member_id for d in deliveries})
        referred = sorted({d.data.order_id for d in deliveries})
        execute = session.execute
        standings = {
            row.member_id: standing_from_row(row._mapping)
            for row in await execute(_MEMBERS, {"members": members})
        }
        since = min(
            [
                domain.window_start(ladder.window, now),
                *(_earliest(ladder, s, now) for s in standings.values()),
            ]
        )
        params = {"members": members, "since": since, "orders": referred}
        orders = {row.order_id: OrderRow(*row) for row in await execute(_ORDERS, params)}
        refunds: set[tuple[str, str]] = set()
        if any(d.type == "order.refunded" for d in deliveries):
            found = await execute(_REFUNDS, {"orders": referred})
            refunds = {(row.order_id, row.refund_id) for row in found}
        return cls(session, ladder, now, since, standings, orders, refunds)

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
        created = [columns(s) for m, s in self.standings.items() if m not in self.stored]
        if created:
            await execute(_CREATE_MEMBERS, created)
        saved = [
            {**{k: v for k, v in columns(s).items() if k != "member_id"}, "key": m}
            for m, s in self.standings.items()
            if m in self.stored and s != self.stored[m]
        ]
        if saved:
            await execute(_SAVE_MEMBERS, saved)

    # what the appliers read and change

    def add_order(self, order: OrderRow) -> None:
        order.new = True
        self.orders[order.order_id] = order
        self._member_orders.setdefault(order.member_id, []).append(order)

    def refund_counted(self, order_id: str, refund_id: str) -> bool:
        return (order_id, refund_id) in self.refunds

    def add_refund(self, order_id: str, refund_id: str, amount: Decimal, qualifying: Decimal) -> None:
        self.refunds.add((order_id, refund_id))
        self.new_refunds.append(
            {"order_id": order_id, "refund_id": refund_id, "amount": amount, "qualifying": qualifying}
        )

    async def figures(self, member_id: str, start: datetime, end: datetime | None) -> domain.Figures:
        """Qualifying spend and orders (net of refunds, cancelled orders out) paid in (start, end],
        summed as the SQL of ``standings.figures`` sums them."""
        if start < self.since:
            raise RuntimeError(f"figures from {start} asked of a workset loaded from {self.since}")
        counted = (
            (order.paid_at, order.qualifying - order.refunded)
            for order in self._member_orders.get(member_id, ())
            if order.currency == self.ladder.currency and order.cancelled_at is None
        )
        return domain.window_figures(counted, start, end)


_ORDER_CHANGES = ("order_id", "refunded", "refunded_amount", "cancelled_at")


def _earliest(ladder: domain.Ladder, standing: domain.Standing, now: datetime) -> datetime:
    """The earliest window start the member's events in this batch can ask about: the first step
    falling due (later steps have later windows) and the grace period's make-up."""
    starts = [domain.window_start(ladder.window, now)]
    step = domain.due(standing, now)
    if step is not None:
        starts.append(domain.due_window(ladder, standing, step)[0])
    if standing.grace_from is not None:
        starts.append(standing.grace_from)
    return min(starts)
