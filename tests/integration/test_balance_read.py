"""The balance read (one SQL statement, sums in the database) agrees with the balance rule
(``domain.summarize``, which redemptions use) for any lots: Hypothesis draws lots whose vesting and
expiry fall on, just before and just after ``now`` and the end of the "expiring soon" window, spent
and unspent, a debt, rules in force or none; and a partner reads only its own members."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from harness import Infra
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from loyalty_shared.errors import NotFound
from points_service import domain
from points_service.balances import member_balance

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
DAY = timedelta(days=1)


def moments(soon_days: int) -> st.SearchStrategy[datetime]:
    """Times around every boundary the balance has: now, and the end of the soon window."""
    soon = NOW + soon_days * DAY
    near = [
        NOW - 400 * DAY,
        NOW - DAY,
        NOW - TICK,
        NOW,
        NOW + TICK,
        NOW + DAY,
        soon - TICK,
        soon,
        soon + TICK,
    ]
    return st.sampled_from(near) | st.integers(-500, 500).map(lambda hours: NOW + timedelta(hours=hours))


@st.composite
def balances(draw: st.DrawFn) -> tuple[list[domain.Lot], int, int | None]:
    soon_days = draw(st.none() | st.integers(0, 60))
    lots = []
    for lot_id in range(1, draw(st.integers(0, 8)) + 1):
        available_at = draw(moments(soon_days or 30))
        expires_at = max(available_at, draw(moments(soon_days or 30)))
        lots.append(domain.Lot(lot_id, draw(st.integers(0, 500)), available_at, expires_at))
    return lots, draw(st.integers(0, 300)), soon_days


async def read(infra: Infra, database: str, lots: list[domain.Lot], debt: int, soon: int | None) -> None:
    conn = await asyncpg.connect(infra.asyncpg_url(database))
    try:
        await conn.execute("TRUNCATE lots, earning_rules, partner_members, accounts CASCADE")
        await conn.execute("INSERT INTO accounts (member_id, debt) VALUES ('M-1', $1)", debt)
        await conn.execute("INSERT INTO partner_members (partner_id, member_id) VALUES ('P-1', 'M-1')")
        if soon is not None:
            await conn.execute(
                "INSERT INTO earning_rules (version, points_per_unit, category_multipliers,"
                " return_window_days, expiry_months, debt_policy, expiring_soon_days, created_by)"
                " VALUES (1, 1, '{}', 0, 12, 'debt', $1, 'test')",
                soon,
            )
        await conn.executemany(
            "INSERT INTO lots (member_id, source, points, remaining, earned_at, available_at, expires_at)"
            " VALUES ('M-1', 'adjustment', $1, $1, $2, $2, $3)",
            [(lot.remaining, lot.available_at, lot.expires_at) for lot in lots],
        )
        found = await member_balance(conn, "M-1", NOW, partner_id="P-1")
        with pytest.raises(NotFound):
            await member_balance(conn, "M-1", NOW, partner_id="P-2")
    finally:
        await conn.close()
    soon_days = domain.DEFAULT_RULES.expiring_soon_days if soon is None else soon
    rule = domain.summarize(lots, debt, NOW, soon_days)
    assert (found.available, found.pending, found.expiring_soon, found.next_expiry_at) == (
        rule.available,
        rule.pending,
        rule.expiring_soon,
        rule.next_expiry_at,
    )
    assert (found.debt, found.expiring_soon_days, found.as_of) == (debt, soon_days, NOW)


@pytest.fixture(scope="module")
def database(infra: Infra) -> str:
    return asyncio.run(infra.new_database())


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@seed(20261203)
@given(case=balances())
def test_the_balance_read_sums_lots_as_the_rule_does(
    infra: Infra, database: str, case: tuple[list[domain.Lot], int, int | None]
) -> None:
    asyncio.run(read(infra, database, *case))
