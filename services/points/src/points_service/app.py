"""The points service: its definition, and the app uvicorn serves."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import (
    ORDERS_TOPIC,
    REWARDS_TOPIC,
    TIERS_TOPIC,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
    RebateSettled,
    RedemptionFailed,
    TierChanged,
)
from loyalty_shared.handling import Delivery
from loyalty_shared.service import ServiceDefinition, create_app
from points_service.api import admin, members
from points_service.earning import earn_for_order
from points_service.expiry import expiry_job
from points_service.from_rewards import credit_rebate, restore_redemption
from points_service.models import kit
from points_service.reversals import reverse_for_cancel, reverse_for_refund
from points_service.settings import PointsSettings
from points_service.tiers import project_tier
from points_service.workset import Workset

# One applier per event type; each changes the batch's workset in memory.
APPLIERS: dict[str, Callable[[Workset, Delivery], None]] = {
    OrderPaid.event_type: earn_for_order,
    OrderRefunded.event_type: reverse_for_refund,
    OrderCancelled.event_type: reverse_for_cancel,
    TierChanged.event_type: project_tier,
    RebateSettled.event_type: credit_rebate,
    RedemptionFailed.event_type: restore_redemption,
}


async def apply_events(session: AsyncSession, deliveries: Sequence[Delivery]) -> None:
    """The service's handler: load what the batch touches, apply each event in order, write back."""
    ws = await Workset.load(session, deliveries)
    for delivery in deliveries:
        APPLIERS[delivery.type](ws, delivery)
    await ws.flush()


DEFINITION = ServiceDefinition(
    name="points",
    version="0.1.0",
    description="Loyalty points: accrual from orders, pending points, reversal on refunds, "
    "redemption, expiry and an append-only ledger.",
    kit=kit,
    routers=(members.router, admin.router),
    consumes=(ORDERS_TOPIC, TIERS_TOPIC, REWARDS_TOPIC),
    handles=tuple(APPLIERS),
    handler=apply_events,
    jobs=(expiry_job,),
)


def build_app(settings: PointsSettings | None = None) -> FastAPI:
    return create_app(DEFINITION, settings or PointsSettings())
