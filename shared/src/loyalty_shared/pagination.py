"""Opaque cursors for newest-first pages keyed by a bigint id: ``<kind>:<id>``, base64url."""

from __future__ import annotations

import base64

from loyalty_shared.errors import Problem


def encode_cursor(kind: str, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> int:
    """The id a cursor of ``kind`` continues after; 400 for anything this API did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != kind or not 0 < int(value) < 2**63:  # a bigint id, or a DataError (500)
            raise ValueError(prefix)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem("cursor is not one this API returned", code="invalid-cursor", status=400) from exc
