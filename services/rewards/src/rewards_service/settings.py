"""The rewards service's settings: the shared ones (no others yet)."""

from loyalty_shared.settings import ServiceSettings


class RewardsSettings(ServiceSettings):
    pass
