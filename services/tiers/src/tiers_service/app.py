"""The tiers service: its definition, and the app uvicorn serves."""

from __future__ import annotations

from fastapi import FastAPI

from loyalty_shared.events import ORDERS_TOPIC
from loyalty_shared.service import ServiceDefinition, create_app
from tiers_service.api import admin, members
from tiers_service.evaluations import evaluation_job
from tiers_service.models import kit
from tiers_service.orders import qualify_order, unqualify_cancel, unqualify_refund
from tiers_service.settings import TiersSettings

DEFINITION = ServiceDefinition(
    name="tiers",
    version="0.1.0",
    description="Member tiers: promotion as soon as an order qualifies, demotion at evaluation after "
    "grace, qualification progress, CRM overrides.",
    kit=kit,
    routers=(members.router, admin.router),
    consumes=(ORDERS_TOPIC,),
    handlers={
        "order.paid": qualify_order,
        "order.refunded": unqualify_refund,
        "order.cancelled": unqualify_cancel,
    },
    jobs=(evaluation_job,),
)


def build_app(settings: TiersSettings | None = None) -> FastAPI:
    return create_app(DEFINITION, settings or TiersSettings())
