"""Events the points service publishes on ``loyalty.points`` (key = member id)."""

from typing import ClassVar

from pydantic import AwareDatetime, Field

from loyalty_shared.events.types import EventData, MemberId

POINTS_TOPIC = "loyalty.points"


class PointsEarned(EventData):
    event_type: ClassVar[str] = "points.earned"
    topic: ClassVar[str] = POINTS_TOPIC

    member_id: MemberId
    order_id: str
    points: int = Field(ge=0)
    rule_version: int
    tier: str | None = None
    tier_multiplier: str = Field(description="decimal string")
    available_at: AwareDatetime
    expires_at: AwareDatetime
    debt_repaid: int = Field(ge=0, default=0)


class PointsReversed(EventData):
    event_type: ClassVar[str] = "points.reversed"
    topic: ClassVar[str] = POINTS_TOPIC

    member_id: MemberId
    order_id: str
    refund_id: str | None = None
    reason: str = Field(description="refund or cancel")
    points: int = Field(ge=0, description="points taken back by this event")
    reversed_total: int = Field(ge=0, description="all points reversed for this order so far")
    debt_created: int = Field(ge=0, default=0)


class PointsRedeemed(EventData):
    event_type: ClassVar[str] = "points.redeemed"
    topic: ClassVar[str] = POINTS_TOPIC

    member_id: MemberId
    redemption_id: str
    points: int = Field(gt=0)
    description: str
    reference: str | None = None


class PointsExpired(EventData):
    event_type: ClassVar[str] = "points.expired"
    topic: ClassVar[str] = POINTS_TOPIC

    member_id: MemberId
    lot_id: int
    points: int = Field(gt=0)
    expired_at: AwareDatetime


class PointsAdjusted(EventData):
    event_type: ClassVar[str] = "points.adjusted"
    topic: ClassVar[str] = POINTS_TOPIC

    member_id: MemberId
    adjustment_id: str
    points: int
    reason: str
    actor: str


class PartnerLinked(EventData):
    """A partner serves this member from now on: its partner key may read the member's points and
    rewards. The points service owns partner links; the rewards service learns them from these."""

    event_type: ClassVar[str] = "partner.linked"
    topic: ClassVar[str] = POINTS_TOPIC

    partner_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    member_id: MemberId
    at: AwareDatetime


class PartnerUnlinked(EventData):
    event_type: ClassVar[str] = "partner.unlinked"
    topic: ClassVar[str] = POINTS_TOPIC

    partner_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    member_id: MemberId
    at: AwareDatetime
