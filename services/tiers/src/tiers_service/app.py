"""The tiers service: its definition, and the app uvicorn serves."""

from __future__ import annotations

from fastapi import FastAPI

from loyalty_shared.events import ORDERS_TOPIC, OrderCancelled, OrderPaid, OrderRefunded
from loyalty_shared.service import ServiceDefinition, create_app
from tiers_service.api import admin, members
from tiers_service.evaluations import evaluation_job
from tiers_service.models import kit
from tiers_service.orders import apply_order_events
from tiers_service.settings import TiersSettings

DEFINITION = ServiceDefinition(
    name="tiers",
    version="0.1.0",
    description="Member tiers: promotion as soon as an order qualifies, demotion at evaluation after "
    "grace, qualification progress, CRM overrides.",
    kit=kit,
    routers=(members.router, admin.router),
    consumes=(ORDERS_TOPIC,),
    handles=(OrderPaid.event_type, OrderRefunded.event_type, OrderCancelled.event_type),
    handler=apply_order_events,
    jobs=(evaluation_job,),
)


def build_app(settings: TiersSettings | None = None) -> FastAPI:
    return create_app(DEFINITION, settings or TiersSettings())
