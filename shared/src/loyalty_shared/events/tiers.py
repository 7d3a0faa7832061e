"""Events the tiers service publishes on ``loyalty.tiers`` (key = member id).

The points service keeps a local projection of ``tier.changed`` for its tier multiplier.
"""

from typing import Any, Literal

from pydantic import BaseModel, Field

from loyalty_shared.events.types import MemberId

TIERS_TOPIC = "loyalty.tiers"


class TierChanged(BaseModel):
    member_id: MemberId
    from_tier: str | None = None
    to_tier: str
    direction: Literal["up", "down", "same"]
    reason: Literal["qualified", "evaluated", "override", "override-ended"]
    points_multiplier: str = Field(pattern=r"^\d+(\.\d{1,4})?$", description="decimal string, e.g. '1.25'")
    figures: dict[str, Any] = Field(default_factory=dict)
