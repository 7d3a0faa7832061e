"""Typed event payloads (the ``data`` of each CloudEvent) and the catalogue of topics.

Each event type has one versioned schema. ``EVENT_TYPES`` maps a CloudEvent ``type`` to its data
model; ``TOPICS`` says which types travel on which topic. ``loyalty schemas`` exports JSON Schema for
every type and an AsyncAPI document for the topics from these two tables.
"""

from loyalty_shared.events.orders import (
    ORDERS_TOPIC,
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderRefunded,
)
from loyalty_shared.events.points import (
    POINTS_TOPIC,
    PartnerLinked,
    PartnerUnlinked,
    PointsAdjusted,
    PointsEarned,
    PointsExpired,
    PointsRedeemed,
    PointsReversed,
)
from loyalty_shared.events.rewards import (
    REWARDS_TOPIC,
    CertificateIssued,
    CouponUsed,
    DocumentRevoked,
    EntitlementConsumed,
    EntitlementEnded,
    EntitlementGranted,
    EntitlementReturned,
    GatheringAccepted,
    GatheringAttended,
    GatheringCancelled,
    GatheringDeclined,
    GatheringInvited,
    GatheringWaitlisted,
    LetterIssued,
    ProgramBudgetExhausted,
    ProgramMemberEnrolled,
    RebateSettled,
    RedemptionFailed,
    RewardFulfilmentChanged,
    RewardIssued,
)
from loyalty_shared.events.tiers import TIERS_TOPIC, TierBenefits, TierChanged
from loyalty_shared.events.types import EventData

SCHEMA_VERSION = "1"

EVENT_TYPES: dict[str, type[EventData]] = {
    model.event_type: model
    for model in (
        OrderPaid,
        OrderRefunded,
        OrderCancelled,
        PointsEarned,
        PointsReversed,
        PointsRedeemed,
        PointsExpired,
        PointsAdjusted,
        PartnerLinked,
        PartnerUnlinked,
        TierChanged,
        ProgramMemberEnrolled,
        RewardIssued,
        RewardFulfilmentChanged,
        ProgramBudgetExhausted,
        RebateSettled,
        CouponUsed,
        RedemptionFailed,
        CertificateIssued,
        LetterIssued,
        DocumentRevoked,
        EntitlementGranted,
        EntitlementEnded,
        EntitlementConsumed,
        EntitlementReturned,
        GatheringInvited,
        GatheringAccepted,
        GatheringWaitlisted,
        GatheringDeclined,
        GatheringAttended,
        GatheringCancelled,
    )
}

TOPICS: dict[str, list[str]] = {}
for _model in EVENT_TYPES.values():
    TOPICS.setdefault(_model.topic, []).append(_model.event_type)


def schema_uri(event_type: str) -> str:
    return f"urn:loyalty:schema:{event_type}:v{SCHEMA_VERSION}"


__all__ = [
    "EVENT_TYPES",
    "ORDERS_TOPIC",
    "POINTS_TOPIC",
    "REWARDS_TOPIC",
    "SCHEMA_VERSION",
    "TIERS_TOPIC",
    "TOPICS",
    "CertificateIssued",
    "CouponUsed",
    "DocumentRevoked",
    "EntitlementConsumed",
    "EntitlementEnded",
    "EntitlementGranted",
    "EntitlementReturned",
    "EventData",
    "GatheringAccepted",
    "GatheringAttended",
    "GatheringCancelled",
    "GatheringDeclined",
    "GatheringInvited",
    "GatheringWaitlisted",
    "LetterIssued",
    "OrderCancelled",
    "OrderLine",
    "OrderPaid",
    "OrderRefunded",
    "PartnerLinked",
    "PartnerUnlinked",
    "PointsAdjusted",
    "PointsEarned",
    "PointsExpired",
    "PointsRedeemed",
    "PointsReversed",
    "ProgramBudgetExhausted",
    "ProgramMemberEnrolled",
    "RebateSettled",
    "RedemptionFailed",
    "RewardFulfilmentChanged",
    "RewardIssued",
    "TierBenefits",
    "TierChanged",
    "schema_uri",
]
