"""Idempotency-Key for every POST that moves value.

Same key + same body → the first result again; same key + a different body → 422. The service stores
the key and the body's fingerprint next to what the request created, in the same transaction.
"""

from __future__ import annotations

import hashlib
import json

from fastapi import Header
from pydantic import BaseModel

from loyalty_shared.errors import Problem, Unprocessable

MAX_KEY_LENGTH = 200


def fingerprint(body: BaseModel) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def idempotency_key(
    key: str | None = Header(default=None, alias="Idempotency-Key"),
) -> str:
    """FastAPI dependency: the request's Idempotency-Key, required."""
    if key is None or not key.strip():
        raise Problem(
            "this request moves value: send an Idempotency-Key header (e.g. a UUID) so a retry is safe",
            status=400,
            code="idempotency-key-required",
            title="Idempotency-Key required",
        )
    if len(key) > MAX_KEY_LENGTH:
        raise Problem(f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters", status=400)
    return key.strip()


def reused_key(key: str) -> Unprocessable:
    return Unprocessable(
        f"Idempotency-Key {key!r} was already used with a different request body",
        code="idempotency-key-reused",
        title="Idempotency-Key reused",
    )
