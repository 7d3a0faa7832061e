"""The kit's writing connections plan every statement for its parameters (the read pool keeps the
default: single-member lookups, where planning each one would cost as much as the read).

asyncpg prepares each statement once per connection; left to itself, PostgreSQL may switch a
prepared statement to a generic plan after five runs, costed on the table as it then was. A service
started on an empty database kept a sequential scan of ``orders`` for ``order_id = ANY($1)`` while
the table grew (12 ms a batch at 20,000 orders, then worse) until its connection was recycled.
"""

from __future__ import annotations

from harness import Infra
from sqlalchemy import text

from loyalty_shared.db import create_engine, create_read_pool


async def test_writes_use_custom_plans_and_reads_the_default(infra: Infra) -> None:
    url = infra.sqlalchemy_url(await infra.new_database())
    engine = create_engine(url)
    reader = await create_read_pool(url, size=1)
    try:
        async with engine.connect() as connection:
            written = await connection.scalar(text("SHOW plan_cache_mode"))
        async with reader.acquire() as connection:
            read = await connection.fetchval("SHOW plan_cache_mode")
    finally:
        await reader.close()
        await engine.dispose()
    assert (written, read) == ("force_custom_plan", "auto")
