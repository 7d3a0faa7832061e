"""The simplest end-to-end path: an order event in, points out, over the real broker and database."""

from harness import PointsService, eventually, paid, publish, read_topic, unique


async def test_paid_order_earns_points_and_publishes_points_earned(points: PointsService) -> None:
    member = unique("M")
    await publish(points.infra, points.prefix + "orders", [paid(member, unique("O"), "129.90")])

    async def available() -> int:
        return int((await points.balance(member))["available"])

    assert await eventually(available, what="points earned") == 129
    records = await read_topic(points.infra, points.prefix + "loyalty.points", expect=1)
    assert len(records) == 1 and records[0].key == member.encode()
    await points.assert_ledger_consistent()
