"""The yardstick of the balance reads: a bare FastAPI route on one uvicorn worker, answering a
balance-shaped body it does not look up. The bench (``python -m bench``) serves it beside the
service and loads both with the same client, so the read path's figure is a ratio measured in one run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

BODY: dict[str, Any] = {
    "available": 1234,
    "pending": 0,
    "expiring_soon": 0,
    "expiring_soon_days": 30,
    "next_expiry_at": "2027-12-03T12:00:00Z",
    "debt": 0,
    "lifetime_earned": 1234,
    "lifetime_redeemed": 0,
    "lifetime_reversed": 0,
    "lifetime_expired": 0,
    "tier": None,
    "tier_multiplier": "1",
}


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/members/{member_id}/points")
    async def balance(member_id: str) -> dict[str, Any]:
        return {"member_id": member_id, **BODY, "as_of": datetime.now(UTC).isoformat()}

    return app
