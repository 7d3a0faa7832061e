"""The load a run puts on the services: the orders (``loyalty simulate``'s generator), publishing them
(as fast as possible or paced), and the balance-read load generators (in a process of their own),
wrk, and the bare route they are compared with (bench/bare_app.py)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import random
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from bench.config import API_KEY, BENCH_DIR, HOST, STOP_TIMEOUT_S, Message
from bench.measure import Paced, percentiles
from bench.stack import Context, Stack, Started
from loyalty_cli.embedded import free_port
from loyalty_cli.processes import ProcessError, spawn
from loyalty_cli.simulate import generate_orders

# --- events and publishing ------------------------------------------------------------------------


def make_messages(orders: int, members: int, seed: int) -> list[Message]:
    events = generate_orders(members=members, orders=orders, seed=seed, refund_rate=0, cancel_rate=0)
    return [(member.encode(), event.id, event.to_bytes()) for member, event in events]


def make_orders(orders: int, members: int, seed: int) -> tuple[list[Message], dict[str, str]]:
    """``make_messages``, plus each event's order id (the tiers database is keyed by order)."""
    events = generate_orders(members=members, orders=orders, seed=seed, refund_rate=0, cancel_rate=0)
    messages = [(member.encode(), event.id, event.to_bytes()) for member, event in events]
    return messages, {event.id: str(event.data["order_id"]) for _, event in events}


def make_producer(stack: Stack) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=stack.bootstrap,
        acks="all",
        enable_idempotence=stack.idempotence,
        linger_ms=5,
        client_id="loyalty-bench",
    )


@contextlib.asynccontextmanager
async def producer_for(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(stack)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def publish_all(producer: AIOKafkaProducer, topic: str, messages: list[Message]) -> float:
    """Publish as fast as the producer takes them; returns the seconds until all were acknowledged."""
    started = time.perf_counter()
    for chunk in range(0, len(messages), 1000):
        sends = [await producer.send(topic, value, key) for key, _, value in messages[chunk : chunk + 1000]]
        await asyncio.gather(*sends)
    return time.perf_counter() - started


async def publish_paced(
    producer: AIOKafkaProducer, topic: str, messages: list[Message], rate: float, paced: Paced
) -> None:
    """Send message i at start + i/rate (late sends go at once); stamp each with time.time()."""
    sends = []
    start = time.monotonic()
    paced.first = time.time()
    for i, (key, event_id, value) in enumerate(messages):
        delay = start + i / rate - time.monotonic()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        paced.sent_at[event_id] = time.time()
        paced.sent.append(event_id)
        sends.append(await producer.send(topic, value, key))
    paced.last = time.time()
    await asyncio.gather(*sends)


# --- balance reads: the load generators -----------------------------------------------------------


@dataclass(frozen=True)
class ReadSpec:
    client: str
    host: str
    port: int
    members: list[str]
    seconds: float
    concurrency: int
    rate: float | None = None  # requests/s over all connections (raw client); None: as fast as it answers


def read_path(member: str) -> str:
    return f"/v1/members/{member}/points"


async def raw_reader(spec: ReadSpec, deadline: float, lat: list[float], statuses: dict[int, int]) -> None:
    """A minimal HTTP/1.1 keep-alive client (cheaper on CPU than httpx, so the service gets more)."""
    rng = random.Random()
    reader, writer = await asyncio.open_connection(spec.host, spec.port)
    # paced: this connection's requests are due every concurrency/rate seconds, and a request's
    # latency counts from when it was due (a slow answer delays the next: no coordinated omission)
    interval = spec.concurrency / spec.rate if spec.rate else 0.0
    due = time.perf_counter() + rng.random() * interval
    try:
        while time.monotonic() < deadline:
            path = read_path(rng.choice(spec.members))
            request = f"GET {path} HTTP/1.1\r\nHost: {spec.host}\r\nAuthorization: Bearer {API_KEY}\r\n\r\n"
            if interval:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                started, due = due, due + interval
            else:
                started = time.perf_counter()
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(content_length(head))
            lat.append(1000 * (time.perf_counter() - started))
            status = int(head[9:12])
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("response without content-length")


async def httpx_reader(
    client: httpx.AsyncClient, spec: ReadSpec, deadline: float, lat: list[float], statuses: dict[int, int]
) -> None:
    rng = random.Random()
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = await client.get(read_path(rng.choice(spec.members)))
        lat.append(1000 * (time.perf_counter() - started))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1


async def read_load(spec: ReadSpec) -> dict[str, Any]:
    lat: list[float] = []
    statuses: dict[int, int] = {}
    failures = 0
    cpu0, started = time.process_time(), time.perf_counter()
    deadline = time.monotonic() + spec.seconds
    if spec.client == "raw":
        results = await asyncio.gather(
            *(raw_reader(spec, deadline, lat, statuses) for _ in range(spec.concurrency)),
            return_exceptions=True,
        )
    else:
        limits = httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        base = f"http://{spec.host}:{spec.port}"
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=10) as client:
            results = await asyncio.gather(
                *(httpx_reader(client, spec, deadline, lat, statuses) for _ in range(spec.concurrency)),
                return_exceptions=True,
            )
    failures = sum(1 for r in results if isinstance(r, BaseException))
    elapsed = time.perf_counter() - started
    ok = statuses.get(200, 0)
    return {
        "client": spec.client,
        "rate": spec.rate,
        "concurrency": spec.concurrency,
        "seconds": round(elapsed, 2),
        "requests": len(lat),
        "requests_per_s": round(len(lat) / elapsed, 1),
        "ok_per_s": round(ok / elapsed, 1),
        "errors": len(lat) - ok + failures,
        "statuses": {str(k): v for k, v in statuses.items()},
        **{k: v for k, v in percentiles(lat).items() if k in ("p50_ms", "p99_ms", "max_ms")},
        "client_cpu_s": round(time.process_time() - cpu0, 2),
    }


def reads_worker(spec: ReadSpec, out: Any) -> None:
    """Entry point of the load-generator process."""
    try:
        out.put(asyncio.run(read_load(spec)))
    except Exception as exc:
        out.put({"client": spec.client, "error": repr(exc)})


async def run_reads(ctx: Context, spec: ReadSpec, started: Started) -> dict[str, Any]:
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    worker = mp.Process(target=reads_worker, args=(spec, out), daemon=True)
    worker.start()
    name = f"reads worker (pid {worker.pid})"
    started.add(name, worker.kill)
    try:
        result: dict[str, Any] = await asyncio.to_thread(out.get, True, spec.seconds + 120)
    except queue.Empty:
        result = {"client": spec.client, "error": "the load generator did not report"}
    finally:
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
        started.remove(name)
    return result


def run_wrk(url: str, seconds: float, concurrency: int) -> dict[str, Any] | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    args = [wrk, "-t2", f"-c{concurrency}", f"-d{max(1, int(seconds))}s", "--latency"]
    args += ["-H", f"Authorization: Bearer {API_KEY}", url]
    result = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
    return {"command": " ".join(args), "output": result.stdout + result.stderr}


@contextlib.asynccontextmanager
async def bare_route(ctx: Context) -> AsyncIterator[int]:
    """bench/bare_app.py on one uvicorn worker, as the services run; yields its port."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "bare_app:build_app", "--app-dir"]
    command += [str(BENCH_DIR), "--host", HOST, "--port", str(port), "--no-access-log"]
    bare = spawn(
        command,
        log_path=ctx.workdir / "bare-route.log",
        name="bare route",
        url=f"http://{HOST}:{port}",
        new_session=True,
    )
    name = f"bare route (pid {bare.pid})"
    ctx.started.add(name, lambda: bare.terminate(STOP_TIMEOUT_S))
    try:
        # not ready in time: the read runs against it report the errors
        with contextlib.suppress(ProcessError):
            await bare.wait_ready(10, path=read_path("M-1"), request_timeout=1, interval=0.1)
        yield port
    finally:
        await bare.stop(STOP_TIMEOUT_S)
        ctx.started.remove(name)
