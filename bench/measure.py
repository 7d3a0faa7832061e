"""What a run observes: row counts and commit watchers on the databases, the tier.changed (and
reward.issued) watcher on the broker, CPU time from /proc, the services' /metrics, latency percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.config import COUNT_POLL_S, TIER_WATCH_FETCH_WAIT_MS, TIERS_TABLE, WATCH_POLL_S
from bench.services import Service
from bench.stack import Stack

# --- database observation -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connection(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def count_rows(conn: asyncpg.Connection, table: str) -> int:
    value = await conn.fetchval(f"SELECT count(*) FROM {table}")
    return int(value)


async def wait_for_count(conn: asyncpg.Connection, table: str, target: int, timeout: float) -> float | None:
    """Poll until the table holds target rows; returns time.time() then, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await count_rows(conn, table) >= target:
            return time.time()
        await asyncio.sleep(COUNT_POLL_S)
    return None


@dataclass
class Paced:
    sent_at: dict[str, float] = field(default_factory=dict)  # event id -> wall-clock send time
    sent: list[str] = field(default_factory=list)  # event ids in send order
    first: float = 0.0
    last: float = 0.0


class CommitWatcher:
    """Notes when each ledger row becomes visible to another connection (= after its commit).

    ``id > last`` is safe because one consumer writes the ledger, one transaction at a time, so ids
    become visible in order."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._last_id = 0
        self.seen: dict[str, float] = {}

    async def skip_existing(self) -> None:
        self._last_id = int(await self._conn.fetchval("SELECT coalesce(max(id), 0) FROM ledger_entries"))

    async def poll(self) -> None:
        rows = await self._conn.fetch(
            "SELECT id, event_id FROM ledger_entries WHERE id > $1 ORDER BY id", self._last_id
        )
        now = time.time()
        for row in rows:
            self.seen.setdefault(row["event_id"], now)
        if rows:
            self._last_id = rows[-1]["id"]

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_POLL_S)
        await self.poll()


# --- points + tiers: orders counted, tier.changed received ----------------------------------------


class OrderWatcher:
    """Notes when each sent order's ``qualifying_orders`` row (or ``table``'s, keyed by order_id)
    becomes visible to another connection (= after the service committed it). Looks up only orders
    sent and not seen yet, by primary key, every 20 ms, so its cost follows the backlog, not the
    table."""

    def __init__(
        self, conn: asyncpg.Connection, paced: Paced, order_of: dict[str, str], table: str = TIERS_TABLE
    ) -> None:
        self._conn = conn
        self._paced = paced
        self._order_of = order_of
        self._table = table
        self._taken = 0
        self._waiting: set[str] = set()
        self.seen: dict[str, float] = {}  # event id -> first seen

    async def poll(self) -> None:
        fresh = self._paced.sent[self._taken :]
        self._taken += len(fresh)
        self._waiting.update(fresh)
        if not self._waiting:
            return
        by_order = {self._order_of[e]: e for e in self._waiting}
        rows = await self._conn.fetch(
            f"SELECT order_id FROM {self._table} WHERE order_id = ANY($1::text[])", list(by_order)
        )
        now = time.time()
        for row in rows:
            event_id = by_order[row["order_id"]]
            self.seen[event_id] = now
            self._waiting.discard(event_id)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_POLL_S)
        await self.poll()


@dataclass
class Received:
    event_id: str
    at: float  # time.time() when our consumer got it
    timestamp: float  # the record's timestamp (the relay's producer stamps it at send), seconds
    data: dict[str, Any]
    type: str = ""  # the CloudEvent's type
    time: float | None = None  # the CloudEvent's time (the publishing service's clock), seconds


class TierChangeWatcher:
    """Reads ``<prefix>loyalty.tiers`` (or any topic of CloudEvents) from its end (no group), noting
    when each event arrives."""

    def __init__(self, stack: Stack, topic: str, client_id: str = "loyalty-bench-tiers-watch") -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=TIER_WATCH_FETCH_WAIT_MS,
            client_id=client_id,
        )
        self.received: list[Received] = []

    async def start(self) -> None:
        await self.consumer.start()
        await self.consumer.topics()  # loads the metadata
        partitions = self.consumer.partitions_for_topic(self.topic) or set()
        if not partitions:
            raise RuntimeError(f"topic {self.topic} has no partitions")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before anything is published
            await self.consumer.position(tp)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value)
                    data = event.get("data") or {}
                    at = event.get("time")
                    moment = datetime.fromisoformat(at).timestamp() if isinstance(at, str) else None
                    self.received.append(
                        Received(
                            event.get("id", ""),
                            now,
                            record.timestamp / 1000,
                            data,
                            event.get("type", ""),
                            moment,
                        )
                    )

    async def stop(self) -> None:
        await self.consumer.stop()


# --- CPU accounting from /proc --------------------------------------------------------------------


TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int, with_children: bool = False) -> float:
    """utime+stime (and reaped children's) of one process in seconds; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def child_pids(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            pids.append(int(stat.parent.name))
    return pids


def postmaster_pid(stack: Stack) -> int | None:
    if stack.embedded_pg is None:
        return None
    try:
        return int((stack.embedded_pg.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class CpuMeter:
    """CPU seconds used between two snapshots by the bench, the services, PostgreSQL and the broker."""

    stack: Stack
    services: dict[str, tuple[int, ...]] = field(default_factory=dict)  # label -> pids (and children)
    _start: dict[str, float] = field(default_factory=dict)
    _machine: float | None = None

    def snapshot(self) -> dict[str, float]:
        times = os.times()
        snap = {"bench": times.user + times.system}
        for label, pids in self.services.items():
            snap[label] = sum(proc_cpu(pid, with_children=True) for pid in pids)
        master = postmaster_pid(self.stack)
        if master is not None:
            # A backend that exits is reaped by the postmaster: its time moves to the children's.
            backends = sum(proc_cpu(pid) for pid in child_pids(master))
            snap["postgres"] = proc_cpu(master, with_children=True) + backends
        if self.stack.broker is not None and self.stack.broker.pid is not None:
            snap["broker"] = proc_cpu(self.stack.broker.pid, with_children=True)
        return snap

    def start(self) -> None:
        self._machine = machine_busy()
        self._start = self.snapshot()

    def peak_rss_mb(self) -> dict[str, float]:
        """Each service's peak resident memory so far (VmHWM: the kernel's high-water mark since
        the process started, so no sample can miss the peak), in MB; the largest of its processes."""
        return {
            label: max((peak_rss(p) for pid in pids for p in (pid, *child_pids(pid))), default=0.0)
            for label, pids in self.services.items()
        }

    def used(self) -> dict[str, float]:
        """CPU seconds per process group, and ``others``: what the rest of the machine used meanwhile
        (busy time from /proc/stat minus ours; other people's work shows here)."""
        machine, end = machine_busy(), self.snapshot()
        used = {k: round(end[k] - self._start.get(k, 0.0), 2) for k in end}
        if self._machine is not None and machine is not None:
            used["others"] = round(max(0.0, machine - self._machine - sum(used.values())), 2)
        return used


def peak_rss(pid: int) -> float:
    """VmHWM of a process in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def machine_busy() -> float | None:
    """Seconds of CPU time the whole machine spent busy since boot (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


# --- the services' /metrics -----------------------------------------------------------------------


async def scrape_metrics(service: Service) -> dict[str, float]:
    """Sums of the service's consumer-batch and HTTP histograms (Prometheus text format)."""
    async with httpx.AsyncClient(base_url=service.url, timeout=5) as client:
        text = (await client.get("/metrics")).text
    wanted = {
        "loyalty_consumer_batch_seconds_sum": "batch_seconds",
        "loyalty_consumer_batch_seconds_count": "batches",
        "loyalty_http_request_seconds_sum": "http_seconds",
        "loyalty_http_request_seconds_count": "http_requests",
    }
    totals = dict.fromkeys(wanted.values(), 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted and ('route="/v1/members' in line or "http" not in name):
            totals[wanted[name]] += float(line.rsplit(" ", 1)[1])
    return totals


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def batch_figures(delta: dict[str, float], events: int) -> dict[str, float]:
    batches = delta["batches"]
    if not batches:
        return {}
    return {
        "batches": int(batches),
        "avg_batch_size": round(events / batches, 1),
        "avg_batch_ms": round(1000 * delta["batch_seconds"] / batches, 1),
    }


# --- latency figures ------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))], 1)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": round(ordered[-1], 1)}


async def commit_times(conn: asyncpg.Connection) -> dict[str, float]:
    rows = await conn.fetch("SELECT event_id, extract(epoch FROM created_at) AS at FROM ledger_entries")
    return {row["event_id"]: float(row["at"]) for row in rows}


def latency_figures(paced: Paced, committed: dict[str, float], seen: dict[str, float]) -> dict[str, Any]:
    tx = [1000 * (committed[i] - t) for i, t in paced.sent_at.items() if i in committed]
    visible = [1000 * (seen[i] - t) for i, t in paced.sent_at.items() if i in seen]
    return {
        "processed": len(tx),
        "latency_tx_start": percentiles(tx),
        "latency_visible": percentiles(visible),
    }
