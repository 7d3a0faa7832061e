"""The tiers read path's ladder cache, missed for real.

``GET /v1/members/{id}/tier`` reads in one statement with the ladder version this process last saw
(``views.LADDERS``); the row says which version is in force, and when that is one the process has
not read (a change through this process's API, or another process's) it loads it and reads again,
with the new ladder's window. The answer after a miss must be the answer a warm cache gives.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import ServiceProcess, consumed, eventually, paid, publish, unique

SILVER_RULE = "Silver: {} EUR qualifying spend or 24 qualifying orders"


async def put_ladder(service: ServiceProcess, change: dict[str, Any] | None = None) -> int:
    """Put the ladder in force again, changed by ``change`` (a new version); its version."""
    view = await service.get("/v1/tiers")
    body = {k: v for k, v in view.items() if k not in ("version", "created_by", "created_at")}
    body.update(change or {})
    async with service.client() as crm:
        response = await crm.put("/v1/tiers", json=body)
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


def silver_at(service_view: dict[str, Any], min_spend: str) -> dict[str, Any]:
    tiers = [dict(t, min_spend=min_spend) if t["name"] == "Silver" else t for t in service_view["tiers"]]
    return {"tiers": tiers}


def stable(view: dict[str, Any]) -> dict[str, Any]:
    """The view without what moves with the clock between two reads (the rolling window's start)."""
    out = {k: v for k, v in view.items() if k != "window_start"}
    for key in ("next_tier", "keep"):
        if out[key] is not None:
            out[key] = {k: v for k, v in out[key].items() if k != "counted_from"}
    return out


async def test_a_ladder_this_process_has_not_read_is_loaded_and_read_with(
    tiers: ServiceProcess, tmp_path: Path
) -> None:
    member = unique("M")
    now = datetime.now(UTC)
    events = [
        paid(member, unique("O"), "30000.00", time=now - timedelta(days=2)),
        paid(member, unique("O"), "30000.00", time=now - timedelta(days=540)),  # 18 months back
    ]
    await publish(tiers.infra, tiers.prefix + "orders", events)

    async def counted() -> bool:
        return await consumed(tiers, *events)

    await eventually(counted, what="both orders counted")
    path = f"/v1/members/{member}/tier"

    # version 1 in force and read: the process's cache holds it
    assert await put_ladder(tiers) == 1
    view = await tiers.get(path)
    assert (view["ladder_version"], view["window"]) == (1, "the rolling 12 months")
    assert (view["qualifying_spend"], view["qualifying_orders"]) == ("30000.00", 1)

    # version 2 through this process's API: the read finds a version it has not read, loads it and
    # reads again over the longer window (the statement first guessed the 12-month one)
    assert await put_ladder(tiers, {"window": {"kind": "rolling-months", "months": 24}}) == 2
    missed = await tiers.get(path)
    assert (missed["ladder_version"], missed["window"]) == (2, "the rolling 24 months")
    assert (missed["qualifying_spend"], missed["qualifying_orders"]) == ("60000.00", 2)
    assert missed["tier"] == "Standard"  # a ladder change promotes no one; the next order or evaluation
    assert missed["next_tier"]["rule"] == SILVER_RULE.format("50000.00")
    assert (missed["next_tier"]["met"], missed["next_tier"]["missing_spend"]) == (True, "0.00")
    assert stable(await tiers.get(path)) == stable(missed), "a warm cache reads the same"

    # version 3 through another process on the same database: this one has not seen it either
    other = ServiceProcess(
        tiers.infra,
        tiers.database,
        tiers.prefix,
        tmp_path / "other",
        extra_env={"LOYALTY_SETTABLE_CLOCK": "true"},
        name="tiers",
    )
    other.log_dir.mkdir()
    await other.start()
    try:
        assert await put_ladder(other, silver_at(await other.get("/v1/tiers"), "70000")) == 3
        missed = await tiers.get(path)
        assert (missed["ladder_version"], missed["window"]) == (3, "the rolling 24 months")
        assert (missed["qualifying_spend"], missed["qualifying_orders"]) == ("60000.00", 2)
        assert missed["next_tier"]["rule"] == SILVER_RULE.format("70000.00")
        assert (missed["next_tier"]["met"], missed["next_tier"]["missing_spend"]) == (False, "10000.00")
        assert stable(await tiers.get(path)) == stable(missed), "a warm cache reads the same"
        assert stable(await other.get(path)) == stable(missed), "so does the other process"
    finally:
        other.kill()
