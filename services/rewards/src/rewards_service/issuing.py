"""Issuing rewards: the programs in force, their budgets, who they reached, and the catalog stock
gifts come from, for one batch of events (or one CRM request).

``Issuer.load`` reads the active programs (parsed once per version), takes the budget rows' locks
(sorted by program: every issuance takes them, from the consumer or from REST, after the member's
lock) and the catalog items' locks, and reads the batch members' enrolments and once-keys. Each
event is then decided in memory in offset order, by the pure rules of ``domain.issuing``; ``flush``
writes one statement per table. Every issuance debits its cost from the budget first: refused when
it would go past the cap (or the member's cap), recorded as a refusal and counted, and the first
budget refusal of a program publishes ``program.budget_exhausted`` once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.dates import add_months
from loyalty_shared.db import SCALE, arrays_of, columns_of, unnest_insert
from loyalty_shared.events import (
    ProgramBudgetExhausted,
    ProgramMemberEnrolled,
    RewardIssued,
    TierChanged,
)
from loyalty_shared.handling import Delivery
from loyalty_shared.messaging.outbox import publish
from rewards_service import domain
from rewards_service.domain.entitlements import Scope
from rewards_service.domain.issuing import Due, gifts_for_order, gifts_for_promotion, reach, rights_for_order
from rewards_service.entitlements import granted_event, new_right, right_id
from rewards_service.facts import Facts, OrderRow
from rewards_service.models import Entitlement, Participant, RefusedReward, Reward, table

# --- the programs in force -------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveProgram:
    id: str
    version: int
    program: domain.Program


_PARSED: dict[tuple[str, int], domain.Program] = {}
_ACTIVE = text(
    "SELECT p.id, p.version, v.document FROM programs AS p JOIN program_versions AS v "
    "ON v.program_id = p.id AND v.version = p.version WHERE p.status = 'active' ORDER BY p.id"
)


def parsed(program_id: str, version: int, document: dict[str, Any]) -> domain.Program:
    """A program version's document as the domain's program (parsed once per process: a version is
    never changed)."""
    program = _PARSED.get((program_id, version))
    if program is None:
        program = _PARSED[(program_id, version)] = domain.program_from_document(document)
    return program


async def active_programs(session: AsyncSession) -> list[LiveProgram]:
    """The active programs at their version in force."""
    return [
        LiveProgram(row.id, row.version, parsed(row.id, row.version, row.document))
        for row in await session.execute(_ACTIVE)
    ]


def history_since(programs: Sequence[LiveProgram], earliest: datetime) -> datetime:
    """How far back a batch whose first event is at ``earliest`` needs its members' orders: the
    longest targeting window (an RFM segment looks back 12 months) and the start of a cycle-less
    program, whose one cycle is the whole schedule."""
    months = max([12, *(p.program.target_group.months for p in programs)])
    since = add_months(earliest, -months) - timedelta(days=1)
    for live in programs:
        if live.program.schedule.cycle == "none":
            since = min(since, live.program.schedule.starts)
    return since


# --- rows of one batch -----------------------------------------------------------------------------


@dataclass
class BudgetRow:
    program_id: str
    committed: Decimal
    spent: Decimal
    refusals: int
    exhausted_at: datetime | None
    dirty: bool = False

    @property
    def state(self) -> domain.BudgetState:
        return domain.BudgetState(self.committed, self.spent)


@dataclass
class ParticipantRow:
    program_id: str
    member_id: str
    grp: str
    version: int
    enrolled_at: datetime
    given: Decimal
    new: bool = False
    dirty: bool = False


@dataclass
class ItemRow:
    item_id: str
    currency: str
    value: Decimal
    stock: int
    status: str
    valid_from: datetime | None
    valid_until: datetime | None
    points_price: int | None
    tiers: list[str]
    dirty: bool = False

    def available(self, at: datetime) -> bool:
        return (
            self.status == "active"
            and (self.valid_from is None or self.valid_from <= at)
            and (self.valid_until is None or at < self.valid_until)
        )


_LOCK_BUDGETS = text(
    "INSERT INTO budgets (program_id) SELECT p FROM unnest(CAST(:programs AS text[])) AS p ORDER BY p "
    "ON CONFLICT (program_id) DO UPDATE SET program_id = excluded.program_id "
    "RETURNING program_id, committed, spent, refusals, exhausted_at"
)
_PARTICIPANTS = text(
    "SELECT program_id, member_id, grp, version, enrolled_at, given FROM participants "
    "WHERE program_id = ANY(CAST(:programs AS text[])) AND member_id = ANY(CAST(:members AS text[]))"
)
_ITEMS = text(
    "SELECT item_id, currency, value, stock, status, valid_from, valid_until, points_price, tiers "
    "FROM catalog_items "
    "WHERE item_id = ANY(CAST(:items AS text[])) ORDER BY item_id FOR UPDATE"
)
_KEYS = text(
    "SELECT dedupe FROM rewards WHERE member_id = ANY(CAST(:members AS text[])) "
    "AND program_id = ANY(CAST(:programs AS text[])) AND dedupe IS NOT NULL"
)
_RIGHT_KEYS = text(
    "SELECT dedupe FROM entitlements WHERE member_id = ANY(CAST(:members AS text[])) "
    "AND program_id = ANY(CAST(:programs AS text[])) AND dedupe IS NOT NULL"
)
_PARTICIPANT_COLUMNS = ("program_id", "member_id", "grp", "version", "enrolled_at", "given")
_INSERT_PARTICIPANTS = unnest_insert(table(Participant), _PARTICIPANT_COLUMNS)
_UPDATE_GIVEN = text(
    "UPDATE participants AS p SET given = v.given FROM unnest(CAST(:program_id AS text[]), "
    "CAST(:member_id AS text[]), CAST(:given AS numeric[])) AS v(program_id, member_id, given) "
    "WHERE p.program_id = v.program_id AND p.member_id = v.member_id"
)
_UPDATE_BUDGETS = text(
    "UPDATE budgets AS b SET committed = v.committed, spent = v.spent, refusals = v.refusals, "
    "exhausted_at = v.exhausted_at FROM unnest(CAST(:program_id AS text[]), "
    "CAST(:committed AS numeric[]), CAST(:spent AS numeric[]), CAST(:refusals AS integer[]), "
    "CAST(:exhausted_at AS timestamptz[])) AS v(program_id, committed, spent, refusals, exhausted_at) "
    "WHERE b.program_id = v.program_id"
)
_UPDATE_STOCK = text(
    "UPDATE catalog_items AS i SET stock = v.stock, updated_at = :now FROM unnest("
    "CAST(:item_id AS text[]), CAST(:stock AS integer[])) AS v(item_id, stock) WHERE i.item_id = v.item_id"
)
REWARD_COLUMNS = (
    "reward_id",
    "member_id",
    "program_id",
    "version",
    "measure_id",
    "kind",
    "cycle",
    "item_id",
    "points",
    "amount",
    "currency",
    "cost",
    "status",
    "reason",
    "dedupe",
    "request_hash",
    "issued_at",
    "status_changed_at",
)
_INSERT_REWARDS = unnest_insert(table(Reward), REWARD_COLUMNS)
_REFUSAL_COLUMNS = ("program_id", "version", "measure_id", "member_id", "cycle", "reason", "cost", "at")
_INSERT_REFUSALS = unnest_insert(table(RefusedReward), _REFUSAL_COLUMNS)


@dataclass
class Issued:
    """What one issuance attempt gave: the reward's id, or why it was refused."""

    reward_id: str | None
    refusal: str | None = None


@dataclass
class Issuer:
    session: AsyncSession
    now: datetime
    programs: dict[str, LiveProgram]
    budgets: dict[str, BudgetRow]
    participants: dict[tuple[str, str], ParticipantRow]
    items: dict[str, ItemRow]
    keys: set[str]
    rewards: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    rights: list[Entitlement] = field(default_factory=list)

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        programs: Sequence[LiveProgram],
        members: Iterable[str],
        items: dict[str, ItemRow] | None = None,
    ) -> Issuer:
        """Lock the programs' budgets (after the members: the caller holds them) and read the
        members' enrolments and once-keys. ``items``: the catalog items it may give, locked by
        ``lock_items`` after this (the order every path takes: members, budgets, items)."""
        ids = [p.id for p in programs]
        member_ids = sorted(set(members))
        locked = await session.execute(_LOCK_BUDGETS, {"programs": ids})
        budgets = {r.program_id: BudgetRow(*r) for r in locked}
        found = await session.execute(_PARTICIPANTS, {"programs": ids, "members": member_ids})
        participants = {(r.program_id, r.member_id): ParticipantRow(*r) for r in found}
        keys = set(await session.scalars(_KEYS, {"members": member_ids, "programs": ids}))
        granting = [p.id for p in programs if any(m.kind == "entitlement" for m in p.program.measures)]
        if granting:
            keys |= set(await session.scalars(_RIGHT_KEYS, {"members": member_ids, "programs": granting}))
        programs_by_id = {p.id: p for p in programs}
        return cls(session, clock_now(session), programs_by_id, budgets, participants, items or {}, keys)

    # --- who a program reaches -----------------------------------------------------------------

    def enrol(self, live: LiveProgram, member_id: str, group: str) -> ParticipantRow:
        """The member's enrolment in the program, recorded (and published) the first time."""
        known = self.participants.get((live.id, member_id))
        if known is not None:
            return known
        row = ParticipantRow(
            live.id, member_id, group, live.version, self.now, Decimal(0).quantize(SCALE), True
        )
        self.participants[(live.id, member_id)] = row
        publish(
            self.session,
            ProgramMemberEnrolled(
                program_id=live.id,
                program_version=live.version,
                member_id=member_id,
                group="control" if group == "control" else "treatment",
                enrolled_at=self.now,
            ),
            member_id,
        )
        return row

    def reached(self, live: LiveProgram, facts: domain.MemberFacts, at: datetime) -> ParticipantRow | None:
        """The member's treatment enrolment when the program reaches them at ``at``; None when it
        does not, or when they are held out (their control enrolment is recorded)."""
        where = reach(live.id, live.program, facts, at)
        if where == "outside":
            return None
        participant = self.enrol(live, facts.member_id, where)
        return participant if participant.grp == "treatment" else None

    # --- events ----------------------------------------------------------------------------------

    def on_order(self, facts: Facts, order: OrderRow) -> None:
        for live in self.programs.values():
            if live.program.budget.currency != order.currency:
                continue
            member = facts.member_facts(order.member_id, order.currency)
            participant = self.reached(live, member, order.paid_at)
            if participant is None:
                continue
            for due in gifts_for_order(
                live.id, live.program, member, order.order_id, order.amount, order.paid_at
            ):
                self.gift(live, participant, due)
            for measure, due in rights_for_order(
                live.id, live.program, member, order.order_id, order.amount, order.paid_at
            ):
                self.right(live, participant, measure, due, order.paid_at)

    def on_tier_change(self, facts: Facts, change: TierChanged, at: datetime) -> None:
        gift = change.benefits.upgrade_gift if change.benefits is not None else None
        if change.direction != "up" or not gift:
            return
        for live in self.programs.values():
            member = facts.member_facts(change.member_id, live.program.budget.currency)
            participant = self.reached(live, member, at)
            if participant is None:
                continue
            dues = gifts_for_promotion(
                live.id, live.program, change.member_id, change.direction, change.to_tier, gift, at
            )
            for due in dues:
                self.gift(live, participant, due)

    # --- issuing ---------------------------------------------------------------------------------

    def gift(
        self, live: LiveProgram, participant: ParticipantRow, due: Due, request_hash: str | None = None
    ) -> Issued:
        """One gift from the catalog's stock, once per ``due.key``, within the budget."""
        if due.key in self.keys:
            return Issued(None, "already-issued")
        item = None if due.item_id is None else self.items.get(due.item_id)
        currency = live.program.budget.currency
        if item is None or not item.available(self.now) or item.currency != currency:
            return self._refuse(live, participant, due, "item-unavailable", Decimal(0))
        if item.stock <= 0:
            return self._refuse(live, participant, due, "out-of-stock", item.value)
        refusal = self._debit(live, participant, item.value, spend=False)
        if refusal is not None:
            return self._refuse(live, participant, due, refusal, item.value)
        item.stock, item.dirty = item.stock - 1, True
        reward_id = self._record(
            live,
            participant,
            due,
            "gift",
            item.value,
            "issued",
            item_id=item.item_id,
            request_hash=request_hash,
        )
        publish(
            self.session,
            RewardIssued(
                reward_id=reward_id,
                program_id=live.id,
                program_version=live.version,
                measure_id=due.measure_id,
                member_id=participant.member_id,
                kind="gift",
                cycle=due.cycle,
                item_id=item.item_id,
                currency=currency,
                cost=item.value,
                reason=due.reason,
                issued_at=self.now,
            ),
            participant.member_id,
        )
        return Issued(reward_id)

    def right(
        self,
        live: LiveProgram,
        participant: ParticipantRow,
        measure: domain.EntitlementGrant,
        due: Due,
        at: datetime,
    ) -> Issued:
        """A right (an entitlement) from ``at`` for the measure's ``valid_days``, once per
        ``due.key``; it costs the budget nothing. Its id is the key's (batched or one by one, the same)."""
        if due.key in self.keys:
            return Issued(None, "already-issued")
        self.keys.add(due.key)
        scope = Scope(measure.skus, measure.categories, measure.launch_id, measure.service)
        row = new_right(
            right_id(due.key),
            participant.member_id,
            measure.right,
            measure.name,
            scope,
            unit=measure.unit,
            quota=measure.quota,
            valid_from=at,
            valid_until=at + timedelta(days=measure.valid_days),
            source="program",
            granted_by=f"program:{live.id}:v{live.version}:{measure.id}",
            granted_at=self.now,
            program_id=live.id,
            dedupe=due.key,
        )
        self.rights.append(row)
        publish(self.session, granted_event(row), participant.member_id)
        return Issued(row.entitlement_id)

    def rebate(
        self,
        live: LiveProgram,
        participant: ParticipantRow,
        due: Due,
        cost: Decimal,
        *,
        points: int | None,
        amount: Decimal | None,
    ) -> Issued:
        """A settled rebate: its cost is spent at once (points credit it; the wallet holds the cash)."""
        if due.key in self.keys:
            return Issued(None, "already-issued")
        refusal = self._debit(live, participant, cost, spend=True)
        if refusal is not None:
            return self._refuse(live, participant, due, refusal, cost)
        reward_id = self._record(
            live, participant, due, "rebate", cost, "credited", points=points, amount=amount
        )
        return Issued(reward_id)

    def coupon(
        self,
        live: LiveProgram,
        participant: ParticipantRow,
        due: Due,
        cost: Decimal,
        *,
        amount: Decimal | None,
        request_hash: str | None = None,
    ) -> Issued:
        """A coupon: an amount coupon commits its face value now (a percent one costs what its use
        takes off a basket, debited then)."""
        if due.key in self.keys:
            return Issued(None, "already-issued")
        refusal = self._debit(live, participant, cost, spend=False)
        if refusal is not None:
            return self._refuse(live, participant, due, refusal, cost)
        reward_id = self._record(
            live, participant, due, "coupon", cost, "issued", amount=amount, request_hash=request_hash
        )
        return Issued(reward_id)

    def _record(
        self,
        live: LiveProgram,
        participant: ParticipantRow,
        due: Due,
        kind: str,
        cost: Decimal,
        status: str,
        *,
        item_id: str | None = None,
        points: int | None = None,
        amount: Decimal | None = None,
        request_hash: str | None = None,
    ) -> str:
        """The issued reward's row (written by ``flush``), once per ``due.key``; its id."""
        reward_id = str(uuid.uuid4())
        self.keys.add(due.key)
        self.rewards.append(
            {
                "reward_id": reward_id,
                "member_id": participant.member_id,
                "program_id": live.id,
                "version": live.version,
                "measure_id": due.measure_id,
                "kind": kind,
                "cycle": due.cycle,
                "item_id": item_id,
                "points": points,
                "amount": amount,
                "currency": live.program.budget.currency,
                "cost": cost,
                "status": status,
                "reason": due.reason,
                "dedupe": due.key,
                "request_hash": request_hash,
                "issued_at": self.now,
                "status_changed_at": self.now,
            }
        )
        return reward_id

    def _debit(
        self, live: LiveProgram, participant: ParticipantRow, cost: Decimal, *, spend: bool
    ) -> str | None:
        """Take ``cost`` from the program's budget (committed, or spent at once); the refusal if not."""
        budget = self.budgets[live.id]
        debit = domain.debit(live.program.budget, budget.state, participant.given, cost)
        if not debit.ok:
            assert debit.reason is not None
            return debit.reason
        state = domain.spend(debit.new_state, cost) if spend else debit.new_state
        budget.committed, budget.spent, budget.dirty = state.committed, state.spent, True
        participant.given, participant.dirty = participant.given + cost, True
        return None

    def _refuse(
        self, live: LiveProgram, participant: ParticipantRow, due: Due, reason: str, cost: Decimal
    ) -> Issued:
        budget = self.budgets[live.id]
        budget.refusals, budget.dirty = budget.refusals + 1, True
        self.refusals.append(
            {
                "program_id": live.id,
                "version": live.version,
                "measure_id": due.measure_id,
                "member_id": participant.member_id,
                "cycle": due.cycle,
                "reason": reason,
                "cost": cost,
                "at": self.now,
            }
        )
        if reason == "budget-exhausted" and budget.exhausted_at is None:
            budget.exhausted_at = self.now
            cap = live.program.budget.cap
            publish(
                self.session,
                ProgramBudgetExhausted(
                    program_id=live.id,
                    program_version=live.version,
                    currency=live.program.budget.currency,
                    cap=cap,
                    used=budget.state.used,
                    refused_cost=cost,
                    at=self.now,
                ),
                f"program:{live.id}",
            )
        return Issued(None, reason)

    async def flush(self) -> None:
        execute = self.session.execute
        if new := [p for p in self.participants.values() if p.new]:
            await execute(_INSERT_PARTICIPANTS, arrays_of(new, _PARTICIPANT_COLUMNS))
        if given := [p for p in self.participants.values() if p.dirty and not p.new]:
            await execute(_UPDATE_GIVEN, arrays_of(given, ("program_id", "member_id", "given")))
        if budgets := [b for b in self.budgets.values() if b.dirty]:
            columns = ("program_id", "committed", "spent", "refusals", "exhausted_at")
            await execute(_UPDATE_BUDGETS, arrays_of(budgets, columns))
        await flush_items(self.session, self.items, self.now)
        if self.rewards:
            await execute(_INSERT_REWARDS, columns_of(table(Reward), self.rewards, REWARD_COLUMNS))
        if self.refusals:
            await execute(_INSERT_REFUSALS, columns_of(table(RefusedReward), self.refusals, _REFUSAL_COLUMNS))
        if self.rights:
            self.session.add_all(self.rights)
            await self.session.flush()
            self.rights = []


async def lock_items(session: AsyncSession, item_ids: Iterable[str]) -> dict[str, ItemRow]:
    """The catalog items' rows, locked in item order, in one statement (a batch takes them once,
    for its gifts and its redemptions alike)."""
    wanted = sorted(set(item_ids))
    if not wanted:
        return {}
    return {r.item_id: ItemRow(*r) for r in await session.execute(_ITEMS, {"items": wanted})}


async def flush_items(session: AsyncSession, items: dict[str, ItemRow], now: datetime) -> None:
    """Write back the stock of the items that changed (once: they are clean after)."""
    if dirty := [i for i in items.values() if i.dirty]:
        await session.execute(_UPDATE_STOCK, {**arrays_of(dirty, ("item_id", "stock")), "now": now})
        for item in dirty:
            item.dirty = False


def gift_items(programs: Sequence[LiveProgram], deliveries: Sequence[Delivery]) -> set[str]:
    """The catalog items a batch may give: its programs' threshold gifts and the upgrade gifts of
    its promotions."""
    measures = [m for p in programs for m in p.program.measures]
    items = {m.item for m in measures if isinstance(m, domain.ThresholdGift)}
    if not any(isinstance(m, domain.TierUpgradeGift) for m in measures):
        return items
    for delivery in deliveries:
        change = delivery.data
        if isinstance(change, TierChanged) and change.benefits is not None and change.benefits.upgrade_gift:
            items.add(change.benefits.upgrade_gift)
    return items
