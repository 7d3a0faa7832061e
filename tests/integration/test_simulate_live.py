"""`loyalty simulate` with no flags, against points and tiers as real processes: it finds the platform
from the dev-platform.json a running `loyalty dev` writes, publishes, and prints the figures the
services' REST APIs give; with no platform running it says how to start one."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from conftest import Platform
from harness import CRM_KEY, PARTNER_KEY, SHOP_KEY, Infra

from loyalty_cli.dev import KEYS_FILE, PLATFORM_FILE, write_platform
from loyalty_cli.simulate import busiest_members, generate_orders

# Settings simulate would otherwise take from the environment: only the platform file may say.
AMBIENT = ("LOYALTY_HOME", "LOYALTY_KAFKA_BOOTSTRAP_SERVERS", "LOYALTY_KAFKA_ENABLE_IDEMPOTENCE")


async def simulate(*argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "loyalty_cli.main", "simulate", *argv]
    env = {name: value for name, value in os.environ.items() if name not in AMBIENT}
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=180, env=env, check=False
    )


def cells(line: str) -> list[str]:
    """A table line's cells: columns are two or more spaces apart, and no cell holds two spaces."""
    return re.split(r"\s{2,}", line.strip())


def final_table(stdout: str) -> dict[str, dict[str, str]]:
    """The table printed once the figures settled: member -> heading -> cell."""
    assert "settled after" in stdout, stdout
    lines = stdout[stdout.index("settled after") :].splitlines()[1:]
    heading = cells(lines[0])
    assert heading[0] == "member", lines
    rows = [cells(line) for line in lines[1:] if line.startswith("M-")]
    return {row[0]: dict(zip(heading, row, strict=True)) for row in rows}


async def test_simulate_with_no_flags_shows_what_the_services_say(
    platform: Platform, infra: Infra, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    services = {"points": platform.points.url, "tiers": platform.tiers.url}
    write_platform(home, infra.bootstrap, infra.idempotence, services)  # with this test's pid: running
    (home / KEYS_FILE).write_text(json.dumps({"ecommerce": SHOP_KEY, "crm": CRM_KEY, "partner": PARTNER_KEY}))

    argv = ["--data-dir", str(home), "--seed", "5", "--members", "3", "--orders", "30", "--rate", "0"]
    fed = await simulate(*argv, "--show", "2", "--topic-prefix", platform.prefix)

    assert fed.returncode == 0, fed.stdout + fed.stderr
    out = fed.stdout
    assert (
        f"publishing to '{platform.prefix}orders' on {infra.bootstrap} (the loyalty dev running in {home})"
        in out
    )
    assert f"balances from {platform.points.url}" in out and f"tiers from {platform.tiers.url}" in out
    assert re.search(r"^\[ *\d+\.\d s\] ", out, re.MULTILINE), "no table while it moved"
    assert "\x1b" not in out and "\r" not in out, "escapes in a log"
    table = final_table(out)
    members = busiest_members(generate_orders(members=3, orders=30, seed=5), 2)
    assert list(table) == members
    for member in members:
        shown = table[member]
        balance = await platform.points.balance(member)
        tier = await platform.tiers.get(f"/v1/members/{member}/tier")
        assert balance["lifetime_earned"] > 0 and tier["known"] and tier["qualifying_orders"] > 0, (
            balance,
            tier,
        )
        assert int(shown["available"].replace(",", "")) == balance["available"], (shown, balance)
        assert int(shown["pending"].replace(",", "")) == balance["pending"], (shown, balance)
        assert shown["tier"] == tier["tier"], (shown, tier)
        spend = int(Decimal(tier["qualifying_spend"]))  # shown in whole units, rounded down
        assert shown["spend"] == f"{spend:,} {tier['currency']}", (shown, tier)
        assert int(shown["orders"]) == tier["qualifying_orders"], (shown, tier)
        following = tier["next_tier"]
        assert shown["next tier: missing"].startswith(f"{following['tier']}: " if following else "-"), shown


async def test_no_platform_running_and_no_flags_says_how_to_start_one(tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    stale.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (stale / PLATFORM_FILE).write_text(
        json.dumps({"pid": gone.pid, "bootstrap": "127.0.0.1:9092", "idempotence": False, "services": {}})
    )
    (stale / KEYS_FILE).write_text(json.dumps({"ecommerce": "e", "crm": "c", "partner": "p"}))
    for home in (tmp_path / "empty", stale):
        result = await simulate("--data-dir", str(home), "--orders", "3")
        assert result.returncode != 0, result.stdout + result.stderr
        assert "seed" not in result.stdout, "published anyway"
        assert f"no `loyalty dev` is running on {home}" in result.stderr
        assert f"./loyalty dev --data-dir {home}" in result.stderr
        assert "./loyalty simulate --bootstrap HOST:9092 --api " in result.stderr
