"""The rewards service: its definition, and the app uvicorn serves."""

from __future__ import annotations

from fastapi import FastAPI

from loyalty_shared.events import ORDERS_TOPIC, TIERS_TOPIC
from loyalty_shared.service import ServiceDefinition, create_app
from rewards_service.api import programs
from rewards_service.facts import APPLIERS, apply_events
from rewards_service.models import kit
from rewards_service.settings import RewardsSettings

DEFINITION = ServiceDefinition(
    name="rewards",
    version="0.1.0",
    description="Incentive programs for key accounts: target and control groups, schedule, budget, "
    "and the member facts they are decided on (tiers, orders net of refunds and cancels).",
    kit=kit,
    routers=(programs.router,),
    consumes=(ORDERS_TOPIC, TIERS_TOPIC),
    handles=tuple(APPLIERS),
    handler=apply_events,
)


def build_app(settings: RewardsSettings | None = None) -> FastAPI:
    return create_app(DEFINITION, settings or RewardsSettings())
