"""`loyalty chaos`, short: the embedded platform as real processes, 1,500 orders with refunds and
cancels, a random service SIGKILLed every ~2 s while they arrive; every invariant checked after."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.embedded]  # runs its own embedded platform

FIGURES = re.compile(
    r"^chaos: orders=(?P<orders>\d+) events=(?P<events>\d+) kills=(?P<kills>\d+) \(points (?P<points>\d+), "
    r"tiers (?P<tiers>\d+), rewards (?P<rewards>\d+)\) lost=(?P<lost>\d+) duplicated=(?P<duplicated>\d+) "
    r"mismatches=(?P<mismatches>\d+) in (?P<seconds>\d+) s$"
)


def test_chaos_run_loses_nothing_and_applies_everything_once() -> None:
    command = [sys.executable, "-m", "loyalty_cli.main", "chaos", "--orders", "1500", "--members", "40"]
    command += ["--seed", "2025", "--rate", "60", "--kill-every", "2", "--timeout", "45"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=170, check=False)
    output = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-4000:]}"
    lines = run.stdout.strip().splitlines()
    assert lines, output
    found = FIGURES.match(lines[-1])
    assert found, output
    figures = {name: int(value) for name, value in found.groupdict().items()}
    assert figures["orders"] == 1500, output
    assert (
        figures["kills"] >= 1
        and figures["kills"] == figures["points"] + figures["tiers"] + figures["rewards"]
    ), output
    assert (figures["lost"], figures["duplicated"], figures["mismatches"]) == (0, 0, 0), output
    assert run.returncode == 0, output
