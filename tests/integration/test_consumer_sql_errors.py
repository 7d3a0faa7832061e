"""Regression: a handler whose SQL statement fails on the fast path aborts the batch transaction.

The consumer then checks that the database is alive before it blames the event. That probe used to
run on the batch's own (aborted) transaction, so it failed too, the SQL error was taken for a lost
database, and the batch was rolled back and rewound: forever, with every other event of the batch
stuck behind it. The probe now takes a connection of its own: the failing event is retried alone,
in a savepoint, and dead-lettered; the rest of the batch is processed and the consumer moves on.

Two SQL errors a tiers handler meets, in one batch with good events around them:

- an ``order.paid`` whose ``order_id`` holds a NUL character: valid for the event schema, refused
  by PostgreSQL when the handler inserts it (text cannot hold NUL);
- an ``order.refunded`` whose row breaks a constraint of ``qualifying_refunds`` (a CHECK put
  directly in the test's tiers database, refusing one refund id).
"""

from __future__ import annotations

from conftest import ServiceProcessFactory
from harness import consumed, eventually, paid, publish, refunded, unique

from loyalty_shared.messaging.deadletters import DeadLetter, read_dead_letters


async def test_an_sql_error_in_one_handler_dead_letters_that_event_and_the_batch_goes_on(
    service_factory: ServiceProcessFactory,
) -> None:
    tiers = await service_factory("tiers", start=False)
    conn = await tiers.db()
    try:
        await conn.execute(
            "ALTER TABLE qualifying_refunds ADD CONSTRAINT test_refund_refused CHECK (refund_id <> 'R-refused')"
        )
    finally:
        await conn.close()
    member, other = unique("M"), unique("M")
    order, nul_order = unique("O"), unique("O") + "\x00x"
    before = [paid(member, order, "1000.00"), paid(other, unique("O"), "70000.00")]
    nul_paid = paid(member, nul_order, "5.00")
    refused_refund = refunded(member, order, "R-refused", "100.00")
    after = [
        refunded(member, order, "R-ok", "200.00"),
        paid(member, unique("O"), "300.00"),
        paid(other, unique("O"), "1.00"),
    ]
    # All in the topic before the service starts: its first poll takes them as one batch.
    await publish(tiers.infra, tiers.prefix + "orders", [*before, nul_paid, refused_refund, *after])
    await tiers.start()

    await eventually(
        lambda: consumed(tiers, *before, *after), what="the good events of the batch", timeout=30
    )
    letters: list[DeadLetter] = await eventually(
        lambda: _dead_letters(tiers.infra.bootstrap, tiers.prefix + "loyalty-tiers", 2),
        what="two dead letters",
        timeout=30,
    )
    by_value = {letter.value: letter for letter in letters}
    assert set(by_value) == {nul_paid.to_bytes(), refused_refund.to_bytes()}
    nul_letter, refund_letter = by_value[nul_paid.to_bytes()], by_value[refused_refund.to_bytes()]
    # not permanent: retried (each attempt in a savepoint of its own), then quarantined
    assert (nul_letter.attempts, refund_letter.attempts) == (3, 3)
    assert "0x00" in nul_letter.error, nul_letter.error
    assert "test_refund_refused" in refund_letter.error, refund_letter.error
    assert not await consumed(tiers, nul_paid) and not await consumed(tiers, refused_refund)

    # the rest of the batch counted, exactly once
    body = await tiers.get(f"/v1/members/{member}/tier")
    assert (body["qualifying_spend"], body["qualifying_orders"]) == ("1100.00", 2)  # 1000 - 200 + 300
    assert (await tiers.get(f"/v1/members/{other}/tier"))["tier"] == "Silver"
    assert await tiers.scalar("SELECT count(*) FROM qualifying_refunds") == 1
    # and the consumer moved on: its offsets are past the batch, new events are handled
    later = paid(member, unique("O"), "0.50")
    await publish(tiers.infra, tiers.prefix + "orders", [later])
    await eventually(lambda: consumed(tiers, later), what="an event after the batch", timeout=30)
    assert (await tiers.get(f"/v1/members/{member}/tier"))["qualifying_spend"] == "1100.50"
    log = tiers.log_path.read_text(errors="replace")
    assert "batch failed on infrastructure" not in log
    assert log.count("handler failed 3 times; dead-lettering") == 2


async def _dead_letters(bootstrap: str, consumer: str, n: int) -> list[DeadLetter] | None:
    letters = await read_dead_letters({"bootstrap_servers": bootstrap}, consumer)
    return letters if len(letters) >= n else None
