"""A dry run on the history a real rewards process has seen: what a draft program would have issued,
with nothing issued or written."""

from __future__ import annotations

from datetime import timedelta

from harness import ServiceProcess, consumed, count, eventually, paid, publish, refunded, set_clock, unique
from test_rewards_issuing import MUG
from test_rewards_settlement import Q1, Q2, Q3, REBATE


async def test_a_draft_program_simulated_on_history_issues_nothing(rewards: ServiceProcess) -> None:
    members = [unique("M") for _ in range(3)]
    first = unique("O")
    events = [
        paid(members[0], first, "6000.00", time=Q1 + timedelta(days=1)),
        refunded(members[0], first, "R1", "1000.00", time=Q1 + timedelta(days=2)),  # Q1 net 5000: 3 %
        paid(members[1], unique("O"), "1000.00", time=Q1 + timedelta(days=3)),  # 2 %
        paid(members[1], unique("O"), "500.00", time=Q2 + timedelta(days=3)),  # below the first step
        paid(members[2], unique("O"), "100.00", time=Q1 + timedelta(days=4)),  # below the first step
    ]
    await publish(rewards.infra, rewards.prefix + "orders", events)
    await eventually(lambda: consumed(rewards, *events), what="history consumed")
    document = REBATE | {
        "measures": [
            *REBATE["measures"],
            {"id": "big", "kind": "threshold-gift", "basis": "order", "min": "1000", "item": "mug"},
        ]
    }
    async with rewards.client() as client:
        assert (await client.post("/v1/catalog", json=MUG)).status_code == 201
        program = (await client.post("/v1/programs", json=document)).json()
        await set_clock(rewards, Q3 + timedelta(days=1))
        response = await client.post(f"/v1/programs/{program['id']}/simulations")
    assert response.status_code == 200, response.text
    view = response.json()
    assert (view["members_seen"], view["members_reached"], view["members_held_out"]) == (3, 3, 0)
    assert view["rewards"] == {"gift": 2, "rebate-points": 2}
    assert view["cost"] == {"gift": "50.00", "rebate-points": "170.00"}  # 150 + 20
    assert (view["points"], view["total_cost"], view["budget_remaining"]) == (17000, "220.00", "99780.00")
    assert [(b["cycle"], b["cost"]) for b in view["burn"]] == [("2027-Q1", "220.00")]
    for table in ("rewards", "statements", "participants", "budgets", "outbox"):
        assert await count(rewards, f"SELECT count(*) FROM {table}") == 0, table
