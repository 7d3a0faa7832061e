"""The rewards service: its handler, its definition, and the app uvicorn serves."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import ORDERS_TOPIC, TIERS_TOPIC, OrderPaid, TierChanged
from loyalty_shared.handling import Delivery
from loyalty_shared.service import ServiceDefinition, create_app
from rewards_service.api import catalog, checkout, programs, rewards, settlements
from rewards_service.coupons import coupon_expiry_job
from rewards_service.facts import APPLIERS, Facts
from rewards_service.issuing import Issuer, active_programs, gift_items, history_since
from rewards_service.models import kit
from rewards_service.settings import RewardsSettings
from rewards_service.settlement import settlement_job


async def apply_events(session: AsyncSession, deliveries: Sequence[Delivery]) -> None:
    """The service's handler: load what the batch touches, apply each event to the member facts in
    order and, when programs are active, issue what it earns; write back."""
    live = await active_programs(session)
    since = history_since(live, min(d.event.time for d in deliveries)) if live else None
    facts = await Facts.load(session, deliveries, since)
    issuer = None
    if live:
        issuer = await Issuer.load(session, live, facts.members, gift_items(live, deliveries))
    for delivery in deliveries:
        changed = APPLIERS[delivery.type](facts, delivery)
        if issuer is None:
            continue
        data = delivery.data
        if isinstance(data, OrderPaid) and changed:
            issuer.on_order(facts, facts.orders[data.order_id])
        elif isinstance(data, TierChanged):
            issuer.on_tier_change(facts, data, data.effective_at or delivery.event.time)
    await facts.flush()
    if issuer is not None:
        await issuer.flush()


DEFINITION = ServiceDefinition(
    name="rewards",
    version="0.1.0",
    description="Incentive programs for key accounts: target and control groups, schedule, budget; "
    "the rewards they issue within budget, exactly once: gifts from the catalog's stock, rebates "
    "settled at cycle close as points or store credit, with statements.",
    kit=kit,
    routers=(programs.router, catalog.router, rewards.router, settlements.router, checkout.router),
    consumes=(ORDERS_TOPIC, TIERS_TOPIC),
    handles=tuple(APPLIERS),
    handler=apply_events,
    jobs=(settlement_job, coupon_expiry_job),
)


def build_app(settings: RewardsSettings | None = None) -> FastAPI:
    return create_app(DEFINITION, settings or RewardsSettings())
