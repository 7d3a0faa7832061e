"""The rewards service: its handler, its definition, and the app uvicorn serves."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.events import (
    ORDERS_TOPIC,
    POINTS_TOPIC,
    TIERS_TOPIC,
    OrderPaid,
    PointsAdjusted,
    PointsRedeemed,
    TierChanged,
)
from loyalty_shared.handling import Delivery
from loyalty_shared.service import ServiceDefinition, create_app
from rewards_service.api import (
    catalog,
    checkout,
    documents,
    entitlements,
    gatherings,
    programs,
    rewards,
    settlements,
)
from rewards_service.coupons import coupon_expiry_job
from rewards_service.documents import TierCertificates, document_render_job
from rewards_service.entitlements import REVERSALS, TierEntitlements
from rewards_service.facts import APPLIERS, Facts
from rewards_service.issuing import (
    Issuer,
    active_programs,
    flush_items,
    gift_items,
    history_since,
    lock_items,
)
from rewards_service.models import kit
from rewards_service.redemptions import Redeemer, redeemed_items
from rewards_service.settings import RewardsSettings
from rewards_service.settlement import settlement_job

# Events that also drive the redemption saga: redemptions to fulfil, refunds to note.
SAGA = (PointsRedeemed.event_type, PointsAdjusted.event_type)


async def apply_events(session: AsyncSession, deliveries: Sequence[Delivery]) -> None:
    """The service's handler: load what the batch touches (members, then budgets, then catalog
    items: the lock order every path keeps), apply each event to the member facts in order, issue
    what it earns under the active programs, fulfil catalog redemptions; write back."""
    live = await active_programs(session)
    since = history_since(live, min(d.event.time for d in deliveries)) if live else None
    facts = await Facts.load(session, deliveries, since)
    rights = await TierEntitlements.load(session, deliveries)
    issuer = await Issuer.load(session, live, facts.members) if live else None
    certificates = await TierCertificates.load(session, live, deliveries) if live else None
    items = await lock_items(
        session, (gift_items(live, deliveries) if live else set()) | redeemed_items(deliveries)
    )
    if issuer is not None:
        issuer.items = items
    redeemer = None
    if any(d.type in SAGA for d in deliveries):
        redeemer = await Redeemer.load(session, deliveries, items)
    for delivery in deliveries:
        data = delivery.data
        changed = APPLIERS[delivery.type](facts, delivery)
        if isinstance(data, TierChanged) and changed:
            rights.on_tier_change(data, data.effective_at or delivery.event.time, delivery.event.id)
        elif delivery.type in REVERSALS and changed:
            rights.on_order_reversed(facts, delivery)
        if isinstance(data, PointsRedeemed):
            assert redeemer is not None
            redeemer.on_redeemed(facts, data)
        elif isinstance(data, PointsAdjusted):
            assert redeemer is not None
            redeemer.on_adjusted(data)
        if issuer is None:
            continue
        if isinstance(data, OrderPaid) and changed:
            issuer.on_order(facts, facts.orders[data.order_id])
        elif isinstance(data, TierChanged):
            issuer.on_tier_change(facts, data, data.effective_at or delivery.event.time)
            if certificates is not None:
                certificates.on_tier_change(issuer, facts, data, data.effective_at or delivery.event.time)
    await facts.flush()
    await rights.flush()
    if issuer is not None:
        await issuer.flush()
    if certificates is not None:
        await certificates.flush()
    if redeemer is not None:
        await redeemer.flush()
    await flush_items(session, items, clock_now(session))


DEFINITION = ServiceDefinition(
    name="rewards",
    version="0.1.0",
    description="Incentive programs for key accounts: target and control groups, schedule, budget; "
    "the rewards they issue within budget, exactly once: gifts from the catalog's stock, rebates "
    "settled at cycle close as points or store credit, with statements, coupons; catalog "
    "redemptions for points (a saga with the points service); the checkout API.",
    kit=kit,
    routers=(
        programs.router,
        catalog.router,
        rewards.router,
        settlements.router,
        checkout.router,
        entitlements.router,
        gatherings.router,
        gatherings.links,
        documents.router,
        documents.public,
    ),
    consumes=(ORDERS_TOPIC, TIERS_TOPIC, POINTS_TOPIC),
    handles=tuple(APPLIERS),
    handler=apply_events,
    jobs=(settlement_job, coupon_expiry_job, document_render_job),
)


def build_app(settings: RewardsSettings | None = None) -> FastAPI:
    return create_app(DEFINITION, settings or RewardsSettings())
