"""The tiers service's settings: the shared ones plus its evaluation schedule."""

from pydantic import Field

from loyalty_shared.settings import ServiceSettings


class TiersSettings(ServiceSettings):
    evaluation_interval_s: float = Field(
        default=3600, gt=0, description="how often the scheduled evaluation looks for members due"
    )
