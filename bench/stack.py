"""What a run starts and owns: PostgreSQL and a Kafka-protocol broker (embedded unless given), every
child process by handle (:class:`Started`), and each phase's fresh database and topic namespace."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.config import HOST, PARTITIONS, POINTS, REWARDS, REWARDS_TOPIC, TIERS, TOPICS
from loyalty_cli.embedded import EmbeddedPostgres, TansuBroker, ensure_topics, free_port

# --- processes we start: always stopped, by handle ------------------------------------------------


class Started:
    """Every child process and server this run started, stopped in reverse order by handle."""

    def __init__(self) -> None:
        self._stops: list[tuple[str, Callable[[], object]]] = []

    def add(self, name: str, stop: Callable[[], object]) -> None:
        self._stops.append((name, stop))

    def remove(self, name: str) -> None:
        self._stops = [(n, s) for n, s in self._stops if n != name]

    def stop_all(self) -> None:
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:
                print(f"warning: could not stop {name}: {exc!r}", file=sys.stderr)


# --- the stack: PostgreSQL and a Kafka-protocol broker --------------------------------------------


@dataclass
class Stack:
    bootstrap: str
    pg_url: str  # postgresql://user@host:port (no database)
    broker_kind: str
    idempotence: bool
    embedded_pg: EmbeddedPostgres | None = None
    broker: TansuBroker | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    databases: list[str] = field(default_factory=list)

    def dsn(self, database: str) -> str:
        parts = urlsplit(self.pg_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def start_stack(args: argparse.Namespace, workdir: Path, started: Started) -> Stack:
    if args.postgres_url:
        pg_url, embedded_pg = args.postgres_url.rstrip("/"), None
    else:
        embedded_pg = EmbeddedPostgres(workdir / "pg", free_port())
        started.add("postgres", embedded_pg.stop)
        embedded_pg.start()
        pg_url = f"postgresql://postgres@{HOST}:{embedded_pg.port}"
    if args.bootstrap:
        kind = "external Kafka" + (" (idempotent producer)" if args.idempotence else "")
        return Stack(args.bootstrap, pg_url, kind, args.idempotence, embedded_pg)
    broker = TansuBroker(free_port(), log_path=workdir / "tansu.log")
    started.add("tansu", broker.stop)
    broker.start()
    return Stack(broker.bootstrap, pg_url, "tansu (embedded)", False, embedded_pg, broker)


# --- each phase's database and topics -------------------------------------------------------------


@dataclass
class PhaseEnv:
    """One phase's fresh database and topic namespace."""

    name: str
    database: str
    dsn: str
    prefix: str

    def topic(self, name: str) -> str:
        return self.prefix + name


async def new_phase_env(
    stack: Stack, phase: str, migrate: bool = True, package: str = POINTS, prefix: str | None = None
) -> PhaseEnv:
    """A fresh database for ``phase`` (migrated for ``package``) and the topics under ``prefix``
    (default: a fresh one of its own)."""
    database = f"bench_{phase.replace('-', '_')}_{stack.run_id}"
    admin = await asyncpg.connect(stack.dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    stack.databases.append(database)
    prefix = prefix or f"bench{stack.run_id}-{phase}."
    env = PhaseEnv(phase, database, stack.dsn(database), prefix)
    if migrate:
        await asyncio.to_thread(run_migrations, env.dsn, package)
    await ensure_topics(stack.bootstrap, [env.topic(t) for t in TOPICS], PARTITIONS)
    return env


def run_migrations(dsn: str, package: str = POINTS) -> None:
    env = {**os.environ, "LOYALTY_DATABASE_URL": dsn}
    result = subprocess.run(
        [sys.executable, "-m", package, "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migration of {package} failed:\n{result.stdout}{result.stderr}")


async def drop_databases(stack: Stack) -> None:
    """Only on a server we did not start (an embedded one is deleted with its directory)."""
    admin = await asyncpg.connect(stack.dsn("postgres"))
    try:
        for database in stack.databases:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


@dataclass
class DuoEnv:
    """Two databases, one per service, under ONE topic prefix: both consume the same orders."""

    points: PhaseEnv
    tiers: PhaseEnv

    def topic(self, name: str) -> str:
        return self.points.topic(name)


async def new_duo_env(stack: Stack, phase: str) -> DuoEnv:
    points = await new_phase_env(
        stack, f"{phase}-points", package=POINTS, prefix=f"bench{stack.run_id}-{phase}."
    )
    tiers = await new_phase_env(stack, f"{phase}-tiers", package=TIERS, prefix=points.prefix)
    return DuoEnv(points, tiers)


@dataclass
class TrioEnv:
    """Points, tiers and rewards: a database each, ONE topic prefix (they consume the same orders;
    points and rewards consume tiers' tier.changed, points consumes rewards' events)."""

    points: PhaseEnv
    tiers: PhaseEnv
    rewards: PhaseEnv

    def topic(self, name: str) -> str:
        return self.points.topic(name)

    @property
    def duo(self) -> DuoEnv:
        return DuoEnv(self.points, self.tiers)


async def new_rewards_env(stack: Stack, phase: str, prefix: str | None = None) -> PhaseEnv:
    """A fresh database migrated for rewards, its topics and the one it publishes to."""
    env = await new_phase_env(stack, phase, package=REWARDS, prefix=prefix)
    await ensure_topics(stack.bootstrap, [env.topic(REWARDS_TOPIC)], PARTITIONS)
    return env


async def new_trio_env(stack: Stack, phase: str) -> TrioEnv:
    prefix = f"bench{stack.run_id}-{phase}."
    points = await new_phase_env(stack, f"{phase}-points", package=POINTS, prefix=prefix)
    tiers = await new_phase_env(stack, f"{phase}-tiers", package=TIERS, prefix=prefix)
    rewards = await new_rewards_env(stack, f"{phase}-rewards", prefix=prefix)
    return TrioEnv(points, tiers, rewards)


@dataclass
class Context:
    args: argparse.Namespace
    stack: Stack
    workdir: Path
    started: Started
