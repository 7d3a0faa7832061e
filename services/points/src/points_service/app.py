"""The points service: its definition, and the app uvicorn serves."""

from __future__ import annotations

from fastapi import FastAPI

from loyalty_shared.events import ORDERS_TOPIC, TIERS_TOPIC
from loyalty_shared.service import ServiceDefinition, create_app
from points_service.api import admin, members
from points_service.earning import earn_for_order
from points_service.expiry import expiry_job
from points_service.models import kit
from points_service.reversals import reverse_for_cancel, reverse_for_refund
from points_service.settings import PointsSettings
from points_service.tiers import project_tier

DEFINITION = ServiceDefinition(
    name="points",
    version="0.1.0",
    description="Loyalty points: accrual from orders, pending points, reversal on refunds, "
    "redemption, expiry and an append-only ledger.",
    kit=kit,
    routers=(members.router, admin.router),
    consumes=(ORDERS_TOPIC, TIERS_TOPIC),
    handlers={
        "order.paid": earn_for_order,
        "order.refunded": reverse_for_refund,
        "order.cancelled": reverse_for_cancel,
        "tier.changed": project_tier,
    },
    jobs=(expiry_job,),
)


def build_app(settings: PointsSettings | None = None) -> FastAPI:
    return create_app(DEFINITION, settings or PointsSettings())
