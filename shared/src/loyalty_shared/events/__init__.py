"""Typed event payloads (the ``data`` of each CloudEvent) and the catalogue of topics.

Each event type has one versioned schema. ``EVENT_TYPES`` maps a CloudEvent ``type`` to its data
model; ``TOPICS`` says which types travel on which topic. ``loyalty schemas`` exports JSON Schema for
every type and an AsyncAPI document for the topics from these two tables.
"""

from pydantic import BaseModel

from loyalty_shared.events.orders import (
    ORDERS_TOPIC,
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderRefunded,
)
from loyalty_shared.events.points import (
    POINTS_TOPIC,
    PointsAdjusted,
    PointsEarned,
    PointsExpired,
    PointsRedeemed,
    PointsReversed,
)
from loyalty_shared.events.tiers import TIERS_TOPIC, TierBenefits, TierChanged

SCHEMA_VERSION = "1"

EVENT_TYPES: dict[str, type[BaseModel]] = {
    "order.paid": OrderPaid,
    "order.refunded": OrderRefunded,
    "order.cancelled": OrderCancelled,
    "points.earned": PointsEarned,
    "points.reversed": PointsReversed,
    "points.redeemed": PointsRedeemed,
    "points.expired": PointsExpired,
    "points.adjusted": PointsAdjusted,
    "tier.changed": TierChanged,
}

TOPICS: dict[str, list[str]] = {
    ORDERS_TOPIC: ["order.paid", "order.refunded", "order.cancelled"],
    POINTS_TOPIC: [
        "points.earned",
        "points.reversed",
        "points.redeemed",
        "points.expired",
        "points.adjusted",
    ],
    TIERS_TOPIC: ["tier.changed"],
}


def schema_uri(event_type: str) -> str:
    return f"urn:loyalty:schema:{event_type}:v{SCHEMA_VERSION}"


__all__ = [
    "EVENT_TYPES",
    "ORDERS_TOPIC",
    "POINTS_TOPIC",
    "SCHEMA_VERSION",
    "TIERS_TOPIC",
    "TOPICS",
    "OrderCancelled",
    "OrderLine",
    "OrderPaid",
    "OrderRefunded",
    "PointsAdjusted",
    "PointsEarned",
    "PointsExpired",
    "PointsRedeemed",
    "PointsReversed",
    "TierBenefits",
    "TierChanged",
    "schema_uri",
]
