"""Fixtures for the integration suite (see harness.py for the knobs)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import TOPICS, Infra, PointsService, ServiceProcess, migrate_template

from loyalty_cli.embedded import EmbeddedPostgres, TansuBroker, ensure_topics, free_port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    # Our own directory, not pytest's tmp_path: pytest prunes old base directories, which would pull
    # the data directory from under a server when several test sessions run at once.
    workdir = Path(tempfile.mkdtemp(prefix="loyalty-test-"))
    started: list[EmbeddedPostgres | TansuBroker] = []
    try:
        pg_server = os.environ.get("LOYALTY_TEST_POSTGRES_URL")
        if not pg_server:
            pg = EmbeddedPostgres(workdir / "pg", free_port())
            pg.start()
            started.append(pg)
            pg_server = f"postgresql://postgres@127.0.0.1:{pg.port}"
        bootstrap = os.environ.get("LOYALTY_TEST_KAFKA_BOOTSTRAP")
        idempotence = os.environ.get("LOYALTY_TEST_KAFKA_IDEMPOTENCE", "false").lower() == "true"
        if not bootstrap:
            broker = TansuBroker(free_port(), workdir / "tansu.log")
            broker.start()
            started.append(broker)
            bootstrap, idempotence = broker.bootstrap, False
        infra = Infra(pg_server=pg_server.rstrip("/"), bootstrap=bootstrap, idempotence=idempotence)
        if started and isinstance(started[-1], TansuBroker):
            # tansu holds a joining member for half the session timeout; Apache Kafka refuses < 6 s.
            infra.consumer_env = {
                "LOYALTY_CONSUMER_SESSION_TIMEOUT_MS": "2000",
                "LOYALTY_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
            }
        migrate_template(infra)
        yield infra
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


ServiceFactory = Callable[..., Awaitable[PointsService]]


@pytest.fixture
async def points_factory(service_factory: ServiceProcessFactory) -> ServiceFactory:
    """Make a points service with its own database and its own topics; started unless told not."""

    async def make(*, start: bool = True, **env: str) -> PointsService:
        return await service_factory("points", start=start, **env)

    return make


@pytest.fixture
async def points(points_factory: ServiceFactory) -> PointsService:
    return await points_factory()


@dataclass
class Platform:
    """Points and tiers on the same topics (one prefix), each with its own database."""

    points: ServiceProcess
    tiers: ServiceProcess

    @property
    def prefix(self) -> str:
        return self.tiers.prefix


ServiceProcessFactory = Callable[..., Awaitable[ServiceProcess]]


@pytest.fixture
async def service_factory(infra: Infra, tmp_path: Path) -> AsyncIterator[ServiceProcessFactory]:
    """Make a service (``name``: points, tiers or rewards) with its own database on the topics of ``prefix``
    (new topics when not given); started unless told not. Tiers and rewards get a settable clock."""
    services: list[ServiceProcess] = []

    async def make(name: str, *, prefix: str | None = None, start: bool = True, **env: str) -> ServiceProcess:
        if prefix is None:
            prefix = f"t{uuid.uuid4().hex[:10]}."
            await ensure_topics(infra.bootstrap, [prefix + t for t in TOPICS], partitions=3)
        if name in ("tiers", "rewards"):
            env = {"LOYALTY_SETTABLE_CLOCK": "true", **env}
        service = ServiceProcess(
            infra, await infra.new_database(name), prefix, tmp_path, extra_env=env, name=name
        )
        services.append(service)
        if start:
            await service.start()
        return service

    yield make
    for service in services:
        service.kill()


@pytest.fixture
async def tiers(service_factory: ServiceProcessFactory) -> ServiceProcess:
    return await service_factory("tiers")


@pytest.fixture
async def rewards(service_factory: ServiceProcessFactory) -> ServiceProcess:
    return await service_factory("rewards")


@pytest.fixture
async def platform(service_factory: ServiceProcessFactory) -> Platform:
    """Tiers and points consuming the same orders; points consumes what tiers publishes."""
    tiers = await service_factory("tiers")
    points = await service_factory("points", prefix=tiers.prefix)
    return Platform(points=points, tiers=tiers)
