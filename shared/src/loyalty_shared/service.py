"""One place that assembles a service: REST app, consumer runner, outbox relay, health, metrics.

A service describes itself with a ``ServiceDefinition`` (its consumed topics and handlers, its
routers, its tables, its scheduled jobs); ``create_app`` returns a FastAPI app whose lifespan starts
and stops everything in order, so one process serves REST and consumes events, and SIGTERM (uvicorn)
shuts it down cleanly: the batch in hand commits, the consumer leaves its group, the relay stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loyalty_shared.auth import ApiKeys
from loyalty_shared.clock import Clock, clock_router
from loyalty_shared.db import (
    KitTables,
    ReadConnection,
    asyncpg_dsn,
    create_engine,
    create_read_pool,
    session_factory,
)
from loyalty_shared.errors import PROBLEM_JSON, install_problem_handlers
from loyalty_shared.handling import BatchHandler
from loyalty_shared.messaging.consumer import ConsumerRunner
from loyalty_shared.messaging.outbox import OutboxRelay, ServiceTag
from loyalty_shared.observability import HTTP_LATENCY, configure_logging
from loyalty_shared.settings import ServiceSettings

log = logging.getLogger(__name__)

Job = Callable[["Runtime"], Coroutine[Any, Any, None]]


def periodic(name: str, interval_setting: str, run: Callable[[Runtime], Awaitable[str | None]]) -> Job:
    """A scheduled job: ``run`` now and then every ``settings.<interval_setting>`` seconds. What it
    returns is logged; a failure is logged and tried again at the next interval."""

    async def job(rt: Runtime) -> None:
        interval = float(getattr(rt.settings, interval_setting))
        while True:
            try:
                report = await run(rt)
                if report:
                    log.info("%s: %s", name, report)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; will retry", name)
            await asyncio.sleep(interval)

    job.__name__ = name.replace(" ", "_")
    return job


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    version: str
    description: str
    kit: KitTables
    routers: Sequence[APIRouter]
    consumes: Sequence[str] = ()
    # the types its handler applies; other platform events on their own topic are skipped (points
    # reads loyalty.rewards for rebates only), anything else is dead-lettered
    handles: Sequence[str] = ()
    handler: BatchHandler | None = None
    jobs: Sequence[Job] = ()

    @property
    def consumer_group(self) -> str:
        return f"loyalty-{self.name}"


@dataclass
class Runtime:
    """What a running service holds. Reached from routes through ``runtime(request)``."""

    definition: ServiceDefinition
    settings: ServiceSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    relay: OutboxRelay
    clock: Clock = field(default_factory=Clock)
    consumer: ConsumerRunner | None = None
    reader: asyncpg.Pool[asyncpg.Record] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[ReadConnection]:
        """A connection of the fast read path: asyncpg straight (no ORM, no SQLAlchemy greenlet),
        outside any transaction, so a read of one statement is one round trip. Each statement sees
        what is committed when it runs. For the hot reads (a balance, a tier), one statement each."""
        assert self.reader is not None, "the read pool opens with the app"
        async with self.reader.acquire() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """One transaction, committed once on success (the relay hears of its outbox rows)."""
        async with self.sessions() as session, session.begin():
            yield session


async def runtime(request: Request) -> Runtime:
    """The route dependency (async: FastAPI runs a plain function in its thread pool)."""
    rt: Runtime = request.app.state.runtime
    return rt


async def _start_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    deadline = time.monotonic() + 60
    while True:
        producer = AIOKafkaProducer(**settings.kafka.producer_kwargs())
        try:
            await producer.start()
            return producer
        except Exception:
            await producer.stop()
            if time.monotonic() > deadline:
                raise
            log.warning("broker not reachable yet at %s; retrying", settings.kafka.bootstrap_servers)
            await asyncio.sleep(1)


class RequestTiming:
    """HTTP latency by method, route template and status (plain ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_LATENCY.labels(scope["method"], route, str(status)).observe(time.perf_counter() - started)


def create_app(definition: ServiceDefinition, settings: ServiceSettings) -> FastAPI:
    configure_logging(settings.log_level, json_logs=settings.log_json)
    api_keys = ApiKeys(settings.api_keys.get_secret_value())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
        clock = Clock(settings.settable_clock)
        tag = ServiceTag(source=f"urn:loyalty:{definition.name}", kit=definition.kit)
        sessions = session_factory(engine, clock=clock, service=tag)
        producer = await _start_producer(settings)
        prefix = settings.topic_prefix
        relay = OutboxRelay(
            service=definition.name,
            topic_prefix=prefix,
            sessions=sessions,
            kit=definition.kit,
            producer=producer,
            listen_dsn=asyncpg_dsn(settings.database_url),
            poll_ms=settings.relay_poll_ms,
            batch_size=settings.relay_batch_size,
        )
        rt = Runtime(definition, settings, engine, sessions, producer, relay, clock)
        rt.reader = await create_read_pool(settings.database_url, size=settings.db_read_pool_size)
        app.state.runtime = rt
        tasks: list[asyncio.Task[None]] = []
        if settings.run_relay:
            tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
        if settings.run_consumer and definition.consumes:
            if definition.handler is None:
                raise ValueError(f"{definition.name} consumes {definition.consumes} but has no handler")
            rt.consumer = ConsumerRunner(
                name=prefix + definition.consumer_group,
                topics=[prefix + topic for topic in definition.consumes],
                event_types=definition.handles,
                handler=definition.handler,
                sessions=sessions,
                kit=definition.kit,
                producer=producer,
                kafka=settings.kafka,
                settings=settings.consumer,
            )
            await rt.consumer.start()
            tasks.append(asyncio.create_task(rt.consumer.run(), name="consumer"))
        tasks.extend(
            asyncio.create_task(job(rt), name=getattr(job, "__name__", "job")) for job in definition.jobs
        )
        log.info("%s service started", definition.name)
        # What is alive now (modules, metadata, compiled statements) lives as long as the process:
        # out of the collector's sight, so a full collection no longer walks it (a pause of tens of
        # milliseconds in the middle of requests and batches otherwise).
        gc.freeze()
        try:
            yield
        finally:
            log.info("%s service stopping", definition.name)
            if rt.consumer is not None:
                await rt.consumer.stop()
            relay.stop()
            for task in tasks:
                if task.get_name() not in ("consumer", "outbox-relay"):
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await producer.stop()
            await rt.reader.close()
            await engine.dispose()

    app = FastAPI(
        title=f"Loyalty {definition.name} service",
        version=definition.version,
        description=definition.description,
        lifespan=lifespan,
    )
    app.state.api_keys = api_keys
    install_problem_handlers(app)

    app.add_middleware(RequestTiming)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        rt: Runtime = request.app.state.runtime
        checks = {"database": "ok", "broker": "ok", "consumer": "ok"}
        try:
            async with rt.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=2)
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        try:
            await asyncio.wait_for(rt.producer.client.fetch_all_metadata(), timeout=2)
        except Exception as exc:
            checks["broker"] = f"unavailable: {type(exc).__name__}"
        if settings.run_consumer and definition.consumes and not (rt.consumer and rt.consumer.ready):
            checks["consumer"] = "not started"
        ok = all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"status": "ready" if ok else "not ready", "checks": checks}
        if not ok:
            body |= {"type": "urn:loyalty:problem:not-ready", "title": "Not ready", "status": 503}
        return JSONResponse(
            body,
            status_code=200 if ok else 503,
            media_type="application/json" if ok else PROBLEM_JSON,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in definition.routers:
        app.include_router(router)
    if settings.settable_clock:
        app.include_router(clock_router)
    return app
