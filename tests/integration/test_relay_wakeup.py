"""The outbox relay hears of new rows from any process: NOTIFY at commit, LISTEN in the relay.

A consumer-only process (``LOYALTY_RUN_RELAY=false``) and a relay-only one
(``LOYALTY_RUN_CONSUMER=false``) share one database, and the relay's poll is ten minutes: the
event the consumer emits still reaches the topic within seconds, because the commit told the relay.
"""

from __future__ import annotations

from pathlib import Path

from conftest import ServiceFactory
from harness import PointsService, ServiceProcess, consumed, eventually, outbox_drained, paid, publish, unique

LISTEN = "LISTEN %loyalty_outbox%"  # what pg_stat_activity shows of the relay's connection
NEVER_MS = "600000"  # the relay's poll: it would wait ten minutes without being told


async def test_a_relay_in_another_process_is_woken_by_the_commit(
    points_factory: ServiceFactory, tmp_path: Path
) -> None:
    consumer = await points_factory(LOYALTY_RUN_RELAY="false")
    relay = ServiceProcess(
        consumer.infra,
        consumer.database,
        consumer.prefix,
        tmp_path / "relay",
        extra_env={"LOYALTY_RUN_CONSUMER": "false", "LOYALTY_RELAY_POLL_MS": NEVER_MS},
    )
    (tmp_path / "relay").mkdir()
    try:
        await relay.start()
        await eventually(lambda: outbox_drained(relay), what="the relay's first pass")
        member = unique("M")
        order = paid(member, unique("O"), "42.00")
        await publish(consumer.infra, consumer.prefix + "orders", [order])
        await eventually(lambda: consumed(consumer, order), what="order consumed")
        await eventually(lambda: outbox_drained(relay), timeout=15, what="points.earned published")
        earned = await relay.scalar(
            "SELECT count(*) FROM outbox WHERE event_type = 'points.earned' AND key = $1", member
        )
        assert earned == 1
    finally:
        relay.kill()


async def test_the_relay_listens_again_after_losing_its_connection(points: PointsService) -> None:
    """The server terminates the LISTEN connection; the relay connects again and is woken again."""
    await eventually(lambda: _listener(points), what="the relay LISTENs")
    first = await _listener(points)
    await points.scalar("SELECT pg_terminate_backend($1)", first)
    await eventually(lambda: _listener_other_than(points, first), timeout=15, what="a new LISTEN connection")
    member = unique("M")
    order = paid(member, unique("O"), "7.00")
    await publish(points.infra, points.prefix + "orders", [order])
    await eventually(lambda: consumed(points, order), what="order consumed")
    await eventually(lambda: outbox_drained(points), what="points.earned published")


async def _listener(points: PointsService) -> int | None:
    pid = await points.scalar(
        "SELECT min(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE $1",
        LISTEN,
    )
    return None if pid is None else int(pid)


async def _listener_other_than(points: PointsService, pid: int | None) -> bool:
    now = await _listener(points)
    return now is not None and now != pid
