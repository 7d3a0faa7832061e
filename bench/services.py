"""The services as subprocesses of the run (``python -m points_service serve``, ``tiers_service``,
``rewards_service``), by way of the harness the integration tests use too (:mod:`loyalty_cli.processes`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench.config import API_KEY, HOST, POINTS, READY_TIMEOUT_S, REWARDS, STOP_TIMEOUT_S, TIERS
from bench.stack import Context, DuoEnv, PhaseEnv, Stack, Started, TrioEnv
from loyalty_cli.embedded import free_port
from loyalty_cli.processes import Spawned, spawn_service


@dataclass
class Service:
    """A service process of this run, and the seconds it took to answer ``/readyz``."""

    process: Spawned
    name: str = "points service"
    ready_s: float = 0.0
    relay: Spawned | None = None  # the relay-only sibling, with LOYALTY_BENCH_RELAY_PROCESS

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pids(self) -> tuple[int, ...]:
        """Its processes: the service, and its relay when that runs apart."""
        return (self.pid,) if self.relay is None else (self.pid, self.relay.pid)

    @property
    def url(self) -> str:
        return self.process.url

    def tail(self) -> str:
        """The end of its log, for an error message."""
        return self.process.tail()


def service_env(stack: Stack, env: PhaseEnv) -> dict[str, str]:
    return {
        **os.environ,
        "LOYALTY_DATABASE_URL": env.dsn,
        "LOYALTY_KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "LOYALTY_KAFKA_ENABLE_IDEMPOTENCE": "true" if stack.idempotence else "false",
        "LOYALTY_API_KEYS": f"{API_KEY}:crm",
        "LOYALTY_TOPIC_PREFIX": env.prefix,
        "LOYALTY_LOG_LEVEL": "WARNING",
    }


def env_overrides() -> dict[str, str]:
    """LOYALTY_* settings from our own environment that reach the service (for the record)."""
    ours = {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_ENABLE_IDEMPOTENCE", "API_KEYS"}
    ours |= {"TOPIC_PREFIX", "LOG_LEVEL"}
    secret = ("KEY", "PASSWORD", "SECRET")
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith("LOYALTY_")
        and k.removeprefix("LOYALTY_") not in ours
        and not any(s in k for s in secret)
    }


@contextlib.asynccontextmanager
async def service_process(
    stack: Stack,
    env: PhaseEnv,
    workdir: Path,
    started: Started,
    package: str = POINTS,
    wait: bool = True,
    consume: bool = True,
) -> AsyncIterator[Service]:
    """``python -m <package> serve`` on a free port, on env's database and topics; stopped on exit.
    With ``wait=False`` the caller waits for readiness (to start several services at once). With
    ``consume=False`` only its API runs (no consumer joins the group, no relay), to set data up."""
    kind = package.removesuffix("_service")
    apart = bool(os.environ.get("LOYALTY_BENCH_RELAY_PROCESS")) and consume
    roles = {"LOYALTY_RUN_RELAY": "false" if apart or not consume else "true"}
    if not consume:
        roles["LOYALTY_RUN_CONSUMER"] = "false"
    process = _spawn(stack, env, workdir, package, kind, **roles)
    name = f"{kind} service ({env.name}, pid {process.pid})"
    started.add(name, lambda: process.terminate(STOP_TIMEOUT_S))
    service = Service(process, f"{kind} service")
    if apart:
        # the outbox relay in a process of its own (a relay-only replica), woken by NOTIFY
        relay = _spawn(stack, env, workdir, package, f"{kind}-relay", LOYALTY_RUN_CONSUMER="false")
        service.relay = relay
        started.add(name + " relay", lambda: relay.terminate(STOP_TIMEOUT_S))
    try:
        if wait:
            service.ready_s = await wait_ready(service)
        if profile_dir := os.environ.get("LOYALTY_BENCH_PROFILE"):
            # py-spy (``uv tool install py-spy``) samples the service until it exits: a raw folded
            # stacks file per service process, for flamegraph.pl or speedscope
            out = Path(profile_dir) / f"{kind}-{env.name}.txt"
            command = ["py-spy", "record", "-p", str(process.pid), "-r", "250", "-f", "raw", "-o", str(out)]
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield service
    finally:
        await process.stop(STOP_TIMEOUT_S)
        started.remove(name)
        if service.relay is not None:
            await service.relay.stop(STOP_TIMEOUT_S)
            started.remove(name + " relay")


def _spawn(stack: Stack, env: PhaseEnv, workdir: Path, package: str, kind: str, **extra: str) -> Spawned:
    return spawn_service(
        package,
        free_port(),
        log_path=workdir / f"{kind}-{env.name}.log",
        env={**service_env(stack, env), **extra},
        name=f"{kind} service",
        host=HOST,
        new_session=True,
    )


async def wait_ready(service: Service) -> float:
    """Until the service answers ``/readyz``; the seconds that took (raises if it exits or is not
    ready in READY_TIMEOUT_S)."""
    took = await service.process.wait_ready(READY_TIMEOUT_S, request_timeout=3)
    if service.relay is not None:
        await service.relay.wait_ready(READY_TIMEOUT_S, request_timeout=3)
    return took


def points_service(
    stack: Stack, env: PhaseEnv, workdir: Path, started: Started
) -> contextlib.AbstractAsyncContextManager[Service]:
    return service_process(stack, env, workdir, started, POINTS)


@contextlib.asynccontextmanager
async def both_services(ctx: Context, duo: DuoEnv) -> AsyncIterator[tuple[Service, Service]]:
    """Points and tiers, each its own process on its own database, started together."""
    async with (
        service_process(ctx.stack, duo.points, ctx.workdir, ctx.started, POINTS, wait=False) as points,
        service_process(ctx.stack, duo.tiers, ctx.workdir, ctx.started, TIERS, wait=False) as tiers,
    ):
        points.ready_s, tiers.ready_s = await asyncio.gather(wait_ready(points), wait_ready(tiers))
        yield points, tiers


@contextlib.asynccontextmanager
async def trio_services(ctx: Context, trio: TrioEnv) -> AsyncIterator[tuple[Service, Service, Service]]:
    """Points, tiers and rewards, each its own process on its own database, started together."""
    async with (
        service_process(ctx.stack, trio.points, ctx.workdir, ctx.started, POINTS, wait=False) as points,
        service_process(ctx.stack, trio.tiers, ctx.workdir, ctx.started, TIERS, wait=False) as tiers,
        service_process(ctx.stack, trio.rewards, ctx.workdir, ctx.started, REWARDS, wait=False) as rewards,
    ):
        points.ready_s, tiers.ready_s, rewards.ready_s = await asyncio.gather(
            wait_ready(points), wait_ready(tiers), wait_ready(rewards)
        )
        yield points, tiers, rewards
