"""The services the platform runs, in start order: name, Python package, default HTTP port."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    package: str
    port: int

    @property
    def database(self) -> str:
        return self.name

    @property
    def consumer_group(self) -> str:
        return str(self._definition.consumer_group)

    @property
    def consumes(self) -> tuple[str, ...]:
        return tuple(self._definition.consumes)

    @property
    def _definition(self) -> Any:
        """The service's own ServiceDefinition (imported only when asked for)."""
        return importlib.import_module(f"{self.package}.app").DEFINITION


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("points", "points_service", 8001),
    ServiceSpec("tiers", "tiers_service", 8002),
    ServiceSpec("rewards", "rewards_service", 8003),
)

# Topics the platform uses, with the partition count `loyalty dev` creates them with.
DEFAULT_PARTITIONS = 6
