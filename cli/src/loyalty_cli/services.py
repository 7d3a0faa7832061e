"""The services the platform runs, in start order: name, Python package, default HTTP port."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    package: str
    port: int

    @property
    def database(self) -> str:
        return self.name


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("points", "points_service", 8001),
    ServiceSpec("tiers", "tiers_service", 8002),
)

# Topics the platform uses, with the partition count `loyalty dev` creates them with.
DEFAULT_PARTITIONS = 6
