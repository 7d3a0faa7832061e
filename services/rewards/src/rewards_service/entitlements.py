"""Entitlements: priority purchase rights and custom services, their product launches, what was used
of them, and what tiers give and take away.

Every change of a member's entitlements takes the member's lock first (as every change of their
rewards does), then the entitlement rows: a hundred concurrent consumptions of one right are
serialised by it, and the table's ``used <= quota`` check stands behind that. A consumption is
recorded once per Idempotency-Key; the order it was for, once cancelled or refunded in full, gives
its units back, once (refund events carry no lines: a partial refund gives nothing back).

Tiers: on a ``tier.changed`` that takes effect (the newest), the member's tier rights are
reconciled with the new tier's benefits (``priority_purchase``: a priority right for every launch;
a ``service_level`` other than standard: that custom service): a right the new tier also gives is
kept, one it does not is ended at the change's ``effective_at``, one it adds starts then.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.db import ReadConnection
from loyalty_shared.errors import Conflict, NotFound, Unprocessable
from loyalty_shared.events import (
    EntitlementConsumed,
    EntitlementEnded,
    EntitlementGranted,
    EntitlementReturned,
    OrderCancelled,
    OrderRefunded,
    TierChanged,
)
from loyalty_shared.handling import Delivery
from loyalty_shared.idempotency import fingerprint, reused_key
from loyalty_shared.messaging.outbox import publish
from rewards_service.domain import entitlements as rules
from rewards_service.facts import Facts, lock_members
from rewards_service.models import Entitlement, EntitlementConsumption, Launch

SKU = Field(min_length=1, max_length=64)
Name = Field(min_length=1, max_length=64)

# --- bodies and views ------------------------------------------------------------------------------


class ScopeBody(BaseModel):
    skus: list[str] = Field(default_factory=list, max_length=500, description="SKUs the right covers")
    categories: list[str] = Field(default_factory=list, max_length=100)
    launch_id: str | None = Field(default=None, pattern=r"^[0-9a-f-]{36}$", description="one launch")
    service: str | None = Field(default=None, min_length=1, max_length=64, description="a custom service")

    def scope(self) -> rules.Scope:
        return rules.Scope(tuple(self.skus), tuple(self.categories), self.launch_id, self.service)


class GrantBody(BaseModel):
    kind: rules.Kind
    name: str = Field(min_length=1, max_length=200, description='e.g. "Early access: X200 launch"')
    scope: ScopeBody = Field(default_factory=ScopeBody)
    unit: rules.Unit = "units"
    quota: int | None = Field(default=None, ge=1, le=1_000_000, description="None: no limit")
    valid_from: AwareDatetime | None = Field(default=None, description="now when absent")
    valid_until: AwareDatetime | None = None


class EntitlementView(BaseModel):
    entitlement_id: str
    member_id: str
    kind: rules.Kind
    name: str
    scope: ScopeBody
    unit: rules.Unit
    quota: int | None
    used: int
    remaining: int | None
    valid_from: datetime
    valid_until: datetime | None
    state: rules.State = Field(description="where the right stands now")
    source: rules.Source
    tier: str | None
    program_id: str | None
    granted_at: datetime
    end_reason: str | None


class LaunchView(BaseModel):
    launch_id: str
    name: str
    skus: list[str]
    opens_at: datetime
    public_at: datetime
    phase: Literal["before", "priority", "public"]
    rights_used: int = Field(description="rights (entitlements) used to buy in the priority window")
    members: int = Field(description="members who bought in the priority window")
    units: int = Field(description="units bought under a right, net of those given back")


class PurchaseDecision(BaseModel):
    sku: str
    allowed: bool = Field(description="whether the member may buy (pre-order) the SKU now")
    reason: Literal["public", "priority-right", "no-right", "before-priority-window"]
    launch_id: str | None
    opens_at: datetime | None
    public_at: datetime | None
    entitlement_id: str | None = Field(description="the right a purchase would use")
    remaining: int | None


class EntitlementList(BaseModel):
    member_id: str
    at: datetime
    entitlements: list[EntitlementView]
    decision: PurchaseDecision | None = Field(description="with ?sku=: may the member buy it now")


class ConsumeBody(BaseModel):
    """A purchase under a priority right, at checkout."""

    sku: str = SKU
    category: str | None = Field(default=None, min_length=1, max_length=64)
    order_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(default=1, ge=1, le=10_000)


class UseBody(BaseModel):
    """Units, sessions or hours of one entitlement used (a custom service, recorded by the CRM)."""

    quantity: int = Field(ge=1, le=10_000)
    order_id: str | None = Field(default=None, min_length=1, max_length=64)
    note: str | None = Field(default=None, max_length=500)


class ConsumptionView(BaseModel):
    consumption_id: int
    entitlement_id: str
    member_id: str
    quantity: int
    sku: str | None
    order_id: str | None
    launch_id: str | None
    remaining: int | None = Field(description="what is left of the quota; None: no limit")
    at: datetime
    returned_at: datetime | None


class LaunchBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    skus: list[str] = Field(min_length=1, max_length=500)
    opens_at: AwareDatetime = Field(description="the priority window opens: members with a right may buy")
    public_at: AwareDatetime = Field(description="everybody may buy")


# --- rows as the rules see them --------------------------------------------------------------------


def right_of(row: Entitlement) -> rules.Right:
    return rules.Right(
        row.entitlement_id,
        row.kind,  # type: ignore[arg-type]
        rules.Scope(tuple(row.skus), tuple(row.categories), row.launch_id, row.service),
        row.quota,
        row.used,
        row.valid_from,
        row.valid_until,
        row.status,  # type: ignore[arg-type]
    )


def view_of(row: Entitlement, at: datetime) -> EntitlementView:
    right = right_of(row)
    return EntitlementView(
        entitlement_id=row.entitlement_id,
        member_id=row.member_id,
        kind=right.kind,
        name=row.name,
        scope=ScopeBody(
            skus=row.skus, categories=row.categories, launch_id=row.launch_id, service=row.service
        ),
        unit=row.unit,
        quota=row.quota,
        used=row.used,
        remaining=right.remaining,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        state=right.state(at),
        source=row.source,
        tier=row.tier,
        program_id=row.program_id,
        granted_at=row.granted_at,
        end_reason=row.end_reason,
    )


def launch_of(row: Launch) -> rules.Launch:
    return rules.Launch(row.launch_id, tuple(row.skus), row.opens_at, row.public_at)


def new_right(
    entitlement_id: str,
    member_id: str,
    kind: str,
    name: str,
    scope: rules.Scope,
    *,
    unit: str,
    quota: int | None,
    valid_from: datetime,
    valid_until: datetime | None,
    source: rules.Source,
    granted_by: str,
    granted_at: datetime,
    **origin: str | None,
) -> Entitlement:
    """A new right's row, in force from ``valid_from``; ``origin``: its tier, program_id, dedupe or
    request_hash."""
    return Entitlement(
        entitlement_id=entitlement_id,
        member_id=member_id,
        kind=kind,
        name=name,
        skus=list(scope.skus),
        categories=list(scope.categories),
        launch_id=scope.launch_id,
        service=scope.service,
        unit=unit,
        quota=quota,
        used=0,
        valid_from=valid_from,
        valid_until=valid_until,
        status="active",
        source=source,
        granted_by=granted_by,
        granted_at=granted_at,
        **origin,
    )


def granted_event(row: Entitlement) -> EntitlementGranted:
    return EntitlementGranted(
        entitlement_id=row.entitlement_id,
        member_id=row.member_id,
        kind=row.kind,
        name=row.name,
        skus=row.skus,
        categories=row.categories,
        launch_id=row.launch_id,
        service=row.service,
        unit=row.unit,
        quota=row.quota,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        source=row.source,
        tier=row.tier,
        program_id=row.program_id,
        granted_at=row.granted_at,
    )


# --- the CRM ---------------------------------------------------------------------------------------


async def grant(
    session: AsyncSession, member_id: str, body: GrantBody, key: str, actor: str
) -> EntitlementView:
    """Give the member a right, once per Idempotency-Key."""
    now = clock_now(session)
    scope = body.scope.scope()
    valid_from = body.valid_from or now
    if problems := rules.grant_problems(body.kind, scope, body.quota, valid_from, body.valid_until):
        raise Unprocessable("; ".join(problems), code="invalid-entitlement")
    await lock_members(session, [member_id])
    dedupe, request_hash = f"crm:{member_id}:{key}", fingerprint(body)
    earlier = await session.scalar(select(Entitlement).where(Entitlement.dedupe == dedupe))
    if earlier is not None:
        if earlier.request_hash != request_hash:
            raise reused_key(key)
        return view_of(earlier, now)
    if scope.launch_id is not None and await session.get(Launch, scope.launch_id) is None:
        raise Unprocessable(f"no launch {scope.launch_id}", code="launch-not-found")
    row = new_right(
        str(uuid.uuid4()),
        member_id,
        body.kind,
        body.name,
        scope,
        unit=body.unit,
        quota=body.quota,
        valid_from=valid_from,
        valid_until=body.valid_until,
        source="crm",
        granted_by=actor,
        granted_at=now,
        dedupe=dedupe,
        request_hash=request_hash,
    )
    session.add(row)
    publish(session, granted_event(row), member_id)
    return view_of(row, now)


async def revoke(session: AsyncSession, entitlement_id: str, actor: str) -> EntitlementView:
    """End a right now (a revoked right stays revoked: a second revoke answers the same)."""
    found = await session.get(Entitlement, entitlement_id)
    if found is None:
        raise NotFound(f"no entitlement {entitlement_id}", code="entitlement-not-found")
    await lock_members(session, [found.member_id])
    row = await session.get(Entitlement, entitlement_id, with_for_update=True, populate_existing=True)
    assert row is not None
    now = clock_now(session)
    if row.status != "revoked":
        ends_at = now if row.valid_until is None else min(now, row.valid_until)
        row.status, row.valid_until, row.end_reason = "revoked", ends_at, f"revoked by {actor}"
        publish(
            session,
            EntitlementEnded(
                entitlement_id=row.entitlement_id,
                member_id=row.member_id,
                kind=row.kind,
                reason="revoked",
                ends_at=ends_at,
            ),
            row.member_id,
        )
    return view_of(row, now)


# --- reads -----------------------------------------------------------------------------------------

_RIGHTS = (
    "SELECT entitlement_id, member_id, kind, name, skus, categories, launch_id, service, unit, quota, "
    "used, valid_from, valid_until, status, end_reason, source, tier, program_id, granted_at "
    "FROM entitlements WHERE member_id = $1 ORDER BY granted_at, entitlement_id"
)
_SKU_LAUNCHES = (
    "SELECT launch_id, skus, opens_at, public_at FROM launches WHERE skus @> ARRAY[$1]::varchar[] "
    "AND public_at > $2"
)


async def member_entitlements(
    connection: ReadConnection,
    member_id: str,
    at: datetime,
    sku: str | None = None,
    category: str | None = None,
    quantity: int = 1,
) -> EntitlementList:
    """The member's rights (every one, ended ones too: the account manager's view) and, for a SKU,
    whether they may buy it now: two statements on the read path, no transaction."""
    rows = [Entitlement(**dict(r)) for r in await connection.fetch(_RIGHTS, member_id)]
    decision = None
    if sku is not None:
        launches = [
            rules.Launch(r["launch_id"], tuple(r["skus"]), r["opens_at"], r["public_at"])
            for r in await connection.fetch(_SKU_LAUNCHES, sku, at)
        ]
        decided = rules.may_buy([right_of(r) for r in rows], launches, sku, category, at, quantity)
        decision = PurchaseDecision(
            sku=sku,
            allowed=decided.allowed,
            reason=decided.reason,
            launch_id=decided.launch.launch_id if decided.launch else None,
            opens_at=decided.launch.opens_at if decided.launch else None,
            public_at=decided.launch.public_at if decided.launch else None,
            entitlement_id=decided.right.entitlement_id if decided.right else None,
            remaining=decided.right.remaining if decided.right else None,
        )
    return EntitlementList(
        member_id=member_id, at=at, entitlements=[view_of(r, at) for r in rows], decision=decision
    )


_LAUNCHES = (
    "SELECT l.launch_id, l.name, l.skus, l.opens_at, l.public_at, "
    "count(DISTINCT c.entitlement_id) AS rights, count(DISTINCT c.member_id) AS members, "
    "coalesce(sum(c.quantity), 0) AS units FROM launches AS l "
    "LEFT JOIN entitlement_consumptions AS c ON c.launch_id = l.launch_id AND c.returned_at IS NULL "
)
_LAUNCH = text(_LAUNCHES + "WHERE l.launch_id = :launch GROUP BY l.launch_id")
_LAUNCH_LIST = text(_LAUNCHES + "GROUP BY l.launch_id ORDER BY l.opens_at DESC, l.launch_id LIMIT 200")


def _launch_view(row: Any, at: datetime) -> LaunchView:
    """A launch with what was bought under rights in its window (a row of ``_LAUNCHES``)."""
    return LaunchView(
        launch_id=row.launch_id,
        name=row.name,
        skus=row.skus,
        opens_at=row.opens_at,
        public_at=row.public_at,
        phase=launch_of(row).phase(at),
        rights_used=row.rights,
        members=row.members,
        units=row.units,
    )


async def launch_view(session: AsyncSession, launch_id: str) -> LaunchView:
    row = (await session.execute(_LAUNCH, {"launch": launch_id})).one_or_none()
    if row is None:
        raise NotFound(f"no launch {launch_id}", code="launch-not-found")
    return _launch_view(row, clock_now(session))


async def create_launch(session: AsyncSession, body: LaunchBody, actor: str) -> LaunchView:
    if problems := rules.launch_problems(body.skus, body.opens_at, body.public_at):
        raise Unprocessable("; ".join(problems), code="invalid-launch")
    row = Launch(
        launch_id=str(uuid.uuid4()),
        name=body.name,
        skus=body.skus,
        opens_at=body.opens_at,
        public_at=body.public_at,
        created_by=actor,
        created_at=clock_now(session),
    )
    session.add(row)
    await session.flush()
    return await launch_view(session, row.launch_id)


async def launch_list(session: AsyncSession) -> list[LaunchView]:
    """The newest 200 launches, in one statement."""
    now = clock_now(session)
    return [_launch_view(row, now) for row in await session.execute(_LAUNCH_LIST)]


# --- consumption -----------------------------------------------------------------------------------


async def _locked_rights(session: AsyncSession, member_id: str) -> list[Entitlement]:
    found = await session.scalars(
        select(Entitlement)
        .where(Entitlement.member_id == member_id, Entitlement.status != "revoked")
        .order_by(Entitlement.entitlement_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(found)


async def _earlier(
    session: AsyncSession, member_id: str, key: str, request_hash: str
) -> ConsumptionView | None:
    """The consumption a retry with the same Idempotency-Key made (same body), if any."""
    earlier = await session.scalar(
        select(EntitlementConsumption).where(
            EntitlementConsumption.member_id == member_id, EntitlementConsumption.idempotency_key == key
        )
    )
    if earlier is None:
        return None
    if earlier.request_hash != request_hash:
        raise reused_key(key)
    row = await session.get(Entitlement, earlier.entitlement_id)
    assert row is not None
    return _consumption_view(earlier, row)


def _consumption_view(use: EntitlementConsumption, row: Entitlement) -> ConsumptionView:
    return ConsumptionView(
        consumption_id=use.id,
        entitlement_id=use.entitlement_id,
        member_id=use.member_id,
        quantity=use.quantity,
        sku=use.sku,
        order_id=use.order_id,
        launch_id=use.launch_id,
        remaining=None if row.quota is None else row.quota - row.used,
        at=use.at,
        returned_at=use.returned_at,
    )


async def _record(
    session: AsyncSession,
    row: Entitlement,
    quantity: int,
    key: str,
    request_hash: str,
    *,
    sku: str | None = None,
    order_id: str | None = None,
    launch_id: str | None = None,
    note: str | None = None,
) -> ConsumptionView:
    now = clock_now(session)
    row.used += quantity
    use = EntitlementConsumption(
        entitlement_id=row.entitlement_id,
        member_id=row.member_id,
        quantity=quantity,
        sku=sku,
        order_id=order_id,
        launch_id=launch_id,
        note=note,
        idempotency_key=key,
        request_hash=request_hash,
        at=now,
    )
    session.add(use)
    await session.flush()
    view = _consumption_view(use, row)
    publish(
        session,
        EntitlementConsumed(
            entitlement_id=row.entitlement_id,
            member_id=row.member_id,
            kind=row.kind,
            quantity=quantity,
            sku=sku,
            order_id=order_id,
            launch_id=launch_id,
            remaining=view.remaining,
            consumed_at=now,
        ),
        row.member_id,
    )
    return view


async def consume(session: AsyncSession, member_id: str, body: ConsumeBody, key: str) -> ConsumptionView:
    """A purchase of ``body.sku`` under the member's right that covers it (the one ``GET
    …/entitlements?sku=`` names), once per Idempotency-Key; never past a quota."""
    await lock_members(session, [member_id])
    request_hash = fingerprint(body)
    if (earlier := await _earlier(session, member_id, key, request_hash)) is not None:
        return earlier
    now = clock_now(session)
    rows = {r.entitlement_id: r for r in await _locked_rights(session, member_id)}
    found = await session.scalars(
        select(Launch).where(Launch.skus.contains([body.sku]), Launch.public_at > now)
    )
    launches = [launch_of(r) for r in found]
    decision = rules.may_buy(
        [right_of(r) for r in rows.values()], launches, body.sku, body.category, now, body.quantity
    )
    if decision.reason == "before-priority-window":
        assert decision.launch is not None
        raise Conflict(
            f"{body.sku} is not on sale before {decision.launch.opens_at.isoformat()}",
            code="before-priority-window",
        )
    if decision.right is None:
        raise Conflict(
            f"member {member_id} holds no right in force for {body.quantity} × {body.sku}"
            + (" (the right's quota may be used up)" if rows else ""),
            code="no-right",
        )
    return await _record(
        session,
        rows[decision.right.entitlement_id],
        body.quantity,
        key,
        request_hash,
        sku=body.sku,
        order_id=body.order_id,
        launch_id=decision.launch.launch_id if decision.launch else None,
    )


async def use(session: AsyncSession, entitlement_id: str, body: UseBody, key: str) -> ConsumptionView:
    """Sessions or hours of one entitlement used, once per Idempotency-Key; never past its quota."""
    found = await session.get(Entitlement, entitlement_id)
    if found is None:
        raise NotFound(f"no entitlement {entitlement_id}", code="entitlement-not-found")
    await lock_members(session, [found.member_id])
    request_hash = fingerprint(body)
    if (earlier := await _earlier(session, found.member_id, key, request_hash)) is not None:
        return earlier
    row = await session.get(Entitlement, entitlement_id, with_for_update=True, populate_existing=True)
    assert row is not None
    now = clock_now(session)
    right = right_of(row)
    if not right.in_force(now, body.quantity):
        state = right.state(now)
        detail = (
            f"only {right.remaining} {row.unit} left of {row.quota}"
            if state == "active" or state == "used-up"
            else f"the entitlement is {state}"
        )
        raise Conflict(
            detail, code="not-in-force" if state not in ("active", "used-up") else "quota-exceeded"
        )
    return await _record(
        session, row, body.quantity, key, request_hash, order_id=body.order_id, note=body.note
    )


async def consumptions(session: AsyncSession, entitlement_id: str) -> list[ConsumptionView]:
    row = await session.get(Entitlement, entitlement_id)
    if row is None:
        raise NotFound(f"no entitlement {entitlement_id}", code="entitlement-not-found")
    found = await session.scalars(
        select(EntitlementConsumption)
        .where(EntitlementConsumption.entitlement_id == entitlement_id)
        .order_by(EntitlementConsumption.id)
    )
    return [_consumption_view(u, row) for u in found]


# --- the consumer: tier changes and orders given back ----------------------------------------------

_TIER_RIGHT_IDS = uuid.UUID("6f1c7a52-3d0e-4f8e-9a35-2b8e1f0c9d41")


def right_id(name: str) -> str:
    """The id of a right the consumer grants, from what names it (the event and the right, or its
    once-key): the same whether the batch is applied whole or one event at a time."""
    return str(uuid.uuid5(_TIER_RIGHT_IDS, name))


_TIER_RIGHTS = text(
    "SELECT entitlement_id, member_id, kind, service FROM entitlements "
    "WHERE member_id = ANY(CAST(:members AS text[])) AND source = 'tier' AND status = 'active' "
    "ORDER BY entitlement_id FOR UPDATE"
)
_END = text(
    "UPDATE entitlements AS e SET status = 'ended', valid_until = v.ends_at, end_reason = v.reason "
    "FROM unnest(CAST(:ids AS text[]), CAST(:ends_at AS timestamptz[]), CAST(:reasons AS text[])) "
    "AS v(id, ends_at, reason) WHERE e.entitlement_id = v.id"
)
_RETURN = text(
    "UPDATE entitlement_consumptions AS c SET returned_at = :now, return_reason = v.reason "
    "FROM unnest(CAST(:orders AS text[]), CAST(:reasons AS text[])) AS v(order_id, reason) "
    "WHERE c.order_id = v.order_id AND c.returned_at IS NULL "
    "RETURNING c.entitlement_id, c.member_id, c.quantity, c.order_id, c.return_reason"
)
_GIVE_BACK = text(
    "UPDATE entitlements AS e SET used = e.used - v.quantity FROM unnest(CAST(:ids AS text[]), "
    "CAST(:quantities AS integer[])) AS v(id, quantity) WHERE e.entitlement_id = v.id"
)


@dataclass
class TierEntitlements:
    """One batch's part: the tier rights of the members whose tier changed, reconciled in event order,
    and the orders whose consumptions go back; written by ``flush``."""

    session: AsyncSession
    held: dict[str, dict[str, rules.TierRight]]  # member: {entitlement id: right}
    ending: list[tuple[str, datetime, str]] = field(default_factory=list)
    granted: list[Entitlement] = field(default_factory=list)
    returns: dict[str, str] = field(default_factory=dict)  # order id: reason

    @classmethod
    async def load(cls, session: AsyncSession, deliveries: Sequence[Delivery]) -> TierEntitlements:
        members = sorted({d.data.member_id for d in deliveries if d.type == TierChanged.event_type})
        held: dict[str, dict[str, rules.TierRight]] = {m: {} for m in members}
        if members:
            for r in await session.execute(_TIER_RIGHTS, {"members": members}):
                held[r.member_id][r.entitlement_id] = rules.TierRight(r.kind, r.service)
        return cls(session, held)

    def on_tier_change(self, change: TierChanged, at: datetime, event_id: str) -> None:
        """The newest tier change of the member (the facts took it): their rights follow its benefits.
        A right it grants is named after the event (batched or one by one, the same id)."""
        if change.benefits is None:
            return  # an event without benefits says nothing of rights
        wanted = rules.tier_rights(change.benefits.priority_purchase, change.benefits.service_level)
        held = self.held.setdefault(change.member_id, {})
        ending, granting = rules.reconcile(held, wanted)
        now = clock_now(self.session)
        reason = f"tier {change.from_tier or '-'} -> {change.to_tier}"
        for entitlement_id in ending:
            right = held.pop(entitlement_id)
            self.ending.append((entitlement_id, at, reason))
            publish(
                self.session,
                EntitlementEnded(
                    entitlement_id=entitlement_id,
                    member_id=change.member_id,
                    kind=right.kind,
                    reason="tier-changed",
                    ends_at=at,
                ),
                change.member_id,
            )
        for right in granting:
            label = "Priority purchase" if right.kind == rules.PRIORITY else f"Service: {right.service}"
            row = new_right(
                right_id(f"{event_id}:{right.kind}:{right.service}"),
                change.member_id,
                right.kind,
                f"{label} ({change.to_tier})",
                right.scope,
                unit="units" if right.kind == rules.PRIORITY else "sessions",
                quota=None,
                valid_from=at,
                valid_until=None,
                source="tier",
                granted_by="tiers",
                granted_at=now,
                tier=change.to_tier,
            )
            held[row.entitlement_id] = right
            self.granted.append(row)
            publish(self.session, granted_event(row), change.member_id)

    def on_order_reversed(self, facts: Facts, delivery: Delivery) -> None:
        """An order cancelled, or refunded in full: what it used of a right goes back."""
        order = facts.orders.get(delivery.data.order_id)
        if order is None or order.net != 0:
            return
        cancelled = isinstance(delivery.data, OrderCancelled)
        self.returns.setdefault(order.order_id, "order-cancelled" if cancelled else "order-refunded")

    async def flush(self) -> None:
        execute = self.session.execute
        if self.ending:
            ids, ends_at, reasons = (list(x) for x in zip(*self.ending, strict=True))
            await execute(_END, {"ids": ids, "ends_at": ends_at, "reasons": reasons})
        if self.granted:
            self.session.add_all(self.granted)
            await self.session.flush()
        if not self.returns:
            return
        now = clock_now(self.session)
        orders = sorted(self.returns)
        returned = list(
            await execute(
                _RETURN, {"now": now, "orders": orders, "reasons": [self.returns[o] for o in orders]}
            )
        )
        back: dict[str, int] = {}
        for r in returned:
            back[r.entitlement_id] = back.get(r.entitlement_id, 0) + r.quantity
            publish(
                self.session,
                EntitlementReturned(
                    entitlement_id=r.entitlement_id,
                    member_id=r.member_id,
                    quantity=r.quantity,
                    order_id=r.order_id,
                    reason=r.return_reason,
                    returned_at=now,
                ),
                r.member_id,
            )
        if back:
            ids = sorted(back)
            await execute(_GIVE_BACK, {"ids": ids, "quantities": [back[i] for i in ids]})


REVERSALS = (OrderRefunded.event_type, OrderCancelled.event_type)
