"""The points service's settings: the shared ones plus its own jobs."""

from pydantic import Field

from loyalty_shared.settings import ServiceSettings


class PointsSettings(ServiceSettings):
    expiry_interval_s: float = Field(default=3600, gt=0, description="how often the expiry job runs")
