"""The rewards service's settings: the shared ones and its own jobs'."""

from pydantic import Field

from loyalty_shared.settings import ServiceSettings


class RewardsSettings(ServiceSettings):
    settlement_interval_s: float = Field(
        default=3600, gt=0, description="how often closed cycles are looked for and their rebates settled"
    )
    document_render_interval_s: float = Field(
        default=5, gt=0, description="how often certificates and letters not rendered yet are rendered to PDF"
    )
