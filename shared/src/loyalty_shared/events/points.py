"""Events the points service publishes on ``loyalty.points`` (key = member id)."""

from pydantic import AwareDatetime, BaseModel, Field

from loyalty_shared.events.types import MemberId

POINTS_TOPIC = "loyalty.points"


class PointsEarned(BaseModel):
    member_id: MemberId
    order_id: str
    points: int = Field(ge=0)
    rule_version: int
    tier: str | None = None
    tier_multiplier: str = Field(description="decimal string")
    available_at: AwareDatetime
    expires_at: AwareDatetime
    debt_repaid: int = Field(ge=0, default=0)


class PointsReversed(BaseModel):
    member_id: MemberId
    order_id: str
    refund_id: str | None = None
    reason: str = Field(description="refund or cancel")
    points: int = Field(ge=0, description="points taken back by this event")
    reversed_total: int = Field(ge=0, description="all points reversed for this order so far")
    debt_created: int = Field(ge=0, default=0)


class PointsRedeemed(BaseModel):
    member_id: MemberId
    redemption_id: str
    points: int = Field(gt=0)
    description: str
    reference: str | None = None


class PointsExpired(BaseModel):
    member_id: MemberId
    lot_id: int
    points: int = Field(gt=0)
    expired_at: AwareDatetime


class PointsAdjusted(BaseModel):
    member_id: MemberId
    adjustment_id: str
    points: int
    reason: str
    actor: str
