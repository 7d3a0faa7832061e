"""Events the tiers service publishes on ``loyalty.tiers`` (key = member id).

The points service keeps a local projection of ``tier.changed`` for its tier multiplier; the rewards
service will act on the benefits (an upgrade gift on the way up).
"""

from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, Field

from loyalty_shared.events.types import EventData, MemberId

TIERS_TOPIC = "loyalty.tiers"

_DECIMAL = r"^\d+(\.\d{1,4})?$"


class TierBenefits(BaseModel):
    """What the tier gives, as in force when the change happened."""

    points_multiplier: str = Field(pattern=_DECIMAL, description="decimal string, e.g. '1.25'")
    discount_rate: str = Field(pattern=_DECIMAL, description="decimal string, 0.05 = 5 %")
    priority_purchase: bool = False
    service_level: str = Field(min_length=1, max_length=64)
    upgrade_gift: str | None = Field(default=None, max_length=64)


class TierChanged(EventData):
    event_type: ClassVar[str] = "tier.changed"
    topic: ClassVar[str] = TIERS_TOPIC

    member_id: MemberId
    from_tier: str | None = None
    to_tier: str
    direction: Literal["up", "down", "same"]
    reason: Literal["qualified", "evaluated", "override", "override-ended"]
    points_multiplier: str = Field(pattern=_DECIMAL, description="decimal string, e.g. '1.25'")
    figures: dict[str, Any] = Field(
        default_factory=dict,
        description="what decided the change: qualifying spend and orders, the window, the rule, the "
        "ladder version",
    )
    benefits: TierBenefits | None = None
    effective_at: AwareDatetime | None = Field(
        default=None,
        description="orders paid after this instant earn at the new tier (the promoting order itself "
        "earns at the old one); the event's time when absent",
    )
