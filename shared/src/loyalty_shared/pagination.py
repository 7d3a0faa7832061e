"""Newest-first pages keyed by a bigint id, with opaque cursors: ``<kind>:<id>``, base64url."""

from __future__ import annotations

import base64
from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from loyalty_shared.errors import Problem

Row = TypeVar("Row")


async def keyset_page(
    session: AsyncSession,
    query: Select[Row],
    id_column: InstrumentedAttribute[int],
    kind: str,
    cursor: str | None,
    limit: int,
) -> tuple[list[Row], str | None]:
    """One page of ``query``'s rows, newest (highest ``id_column``) first, from after ``cursor``;
    and the cursor that continues after its last row, if there are more."""
    if cursor:
        query = query.where(id_column < decode_cursor(kind, cursor))
    rows = list(await session.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    page = rows[:limit]
    more = len(rows) > limit
    return page, encode_cursor(kind, getattr(page[-1], id_column.key)) if more else None


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
