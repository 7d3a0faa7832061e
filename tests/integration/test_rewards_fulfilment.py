"""A gift's fulfilment and the CRM's custom gifts, as real processes over a real broker and PostgreSQL:
issued → shipped → delivered spends what the gift committed, cancelled returns its unit and its
commitment, a final status stays final, a retry is a no-op, and every change is published; a custom
gift once per Idempotency-Key, refused to the control group, without stock, under a program that is
not active and for an item that cannot be given; concurrent gifts never take more than the stock."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
from harness import (
    ServiceProcess,
    assert_problem,
    consumed,
    count,
    eventually,
    paid,
    publish,
    published,
    unique,
)
from test_rewards_issuing import MUG, PROGRAM, Q1, budget, rewards_of, setup

from rewards_service.domain import holdout

# Custom gifts are given now (the service's clock): an open-ended schedule holds any test day.
OPEN_ENDED: dict[str, Any] = copy.deepcopy(PROGRAM) | {
    "schedule": {"starts": "2026-01-01T00:00:00+00:00", "cycle": "quarter"}
}


def money(value: str) -> Decimal:
    return Decimal(value)


def figures(view: dict[str, Any]) -> tuple[Decimal, Decimal, Decimal]:
    """A budget view's committed, spent and remaining."""
    return money(view["committed"]), money(view["spent"]), money(view["remaining"])


def burn(view: dict[str, Any]) -> list[tuple[str, int, Decimal]]:
    return [(b["cycle"], b["issued"], money(b["cost"])) for b in view["burn"]]


async def mug_stock(rewards: ServiceProcess, item_id: str = "mug") -> int:
    return await count(rewards, "SELECT stock FROM catalog_items WHERE item_id = $1", item_id)


async def gift_by_order(rewards: ServiceProcess, *members: str) -> list[dict[str, Any]]:
    """Each member's order of 1,500 in Q1 crosses the program's threshold: their one gift each."""
    events = [paid(member, unique("O"), "1500.00", time=Q1) for member in members]
    await publish(rewards.infra, rewards.prefix + "orders", events)
    await eventually(lambda: consumed(rewards, *events), what="every order consumed")
    gifts = []
    for member in members:
        (issued,) = await rewards_of(rewards, member)
        assert (issued["kind"], issued["item_id"], issued["status"]) == ("gift", "mug", "issued")
        gifts.append(issued)
    return gifts


async def fulfil(client: httpx.AsyncClient, reward_id: str, status: str) -> httpx.Response:
    return await client.put(f"/v1/rewards/{reward_id}/fulfilment", json={"status": status})


async def changes(rewards: ServiceProcess, member: str) -> list[tuple[str, str, str]]:
    """The ``reward.fulfilment_changed`` events published for ``member``: (reward, from, to)."""
    events = await published(
        rewards, "loyalty.rewards", event_type="reward.fulfilment_changed", member=member
    )
    return [(e["data"]["reward_id"], e["data"]["from_status"], e["data"]["to_status"]) for e in events]


async def test_a_gift_shipped_then_delivered_spends_what_it_committed(rewards: ServiceProcess) -> None:
    program_id = await setup(rewards)
    first, second = unique("M"), unique("M")
    shipped_gift, direct_gift = await gift_by_order(rewards, first, second)
    assert figures(await budget(rewards, program_id)) == (money("50"), money("0"), money("950"))
    assert await mug_stock(rewards) == 48

    async with rewards.client() as client:
        gift_id = shipped_gift["reward_id"]
        response = await fulfil(client, gift_id, "shipped")
        assert response.status_code == 200, response.text
        shipped = response.json()
        assert (shipped["reward_id"], shipped["status"]) == (gift_id, "shipped")
        changed, issued_at = (datetime.fromisoformat(x["status_changed_at"]) for x in (shipped, shipped_gift))
        assert changed > issued_at
        assert figures(await budget(rewards, program_id)) == (money("50"), money("0"), money("950"))

        again = await fulfil(client, gift_id, "shipped")  # a retry: a no-op
        assert again.status_code == 200, again.text
        assert again.json() == shipped

        response = await fulfil(client, gift_id, "delivered")
        assert response.status_code == 200, response.text
        delivered = response.json()
        assert delivered["status"] == "delivered"
        assert figures(await budget(rewards, program_id)) == (money("25"), money("25"), money("950"))
        again = await fulfil(client, gift_id, "delivered")
        assert again.status_code == 200, again.text
        assert again.json() == delivered
        assert figures(await budget(rewards, program_id)) == (money("25"), money("25"), money("950"))

        for status in ("cancelled", "shipped", "issued"):
            refused = await fulfil(client, gift_id, status)
            problem = assert_problem(refused, 409, "invalid-fulfilment")
            assert problem["detail"] == "the gift is delivered: that is final"

        response = await fulfil(client, direct_gift["reward_id"], "delivered")  # issued → delivered
        assert response.status_code == 200, response.text
        view = await budget(rewards, program_id)
        assert figures(view) == (money("0"), money("50"), money("950"))
        assert burn(view) == [("2026-Q1", 2, money("50"))]  # delivered gifts still count

        response = await client.get(f"/v1/rewards/{gift_id}")
        assert response.status_code == 200, response.text
        assert response.json() == delivered
        assert_problem(await fulfil(client, gift_id, "lost"), 422, "validation-error")
        assert_problem(await fulfil(client, str(uuid.uuid4()), "shipped"), 404, "reward-not-found")
        assert_problem(await fulfil(client, "not-a-reward-id", "shipped"), 422, "validation-error")

    assert await mug_stock(rewards) == 48  # delivering takes nothing more from the stock
    assert await changes(rewards, first) == [
        (gift_id, "issued", "shipped"),
        (gift_id, "shipped", "delivered"),
    ]  # the no-op retries published nothing
    assert await changes(rewards, second) == [(direct_gift["reward_id"], "issued", "delivered")]
    (event,) = await published(
        rewards, "loyalty.rewards", event_type="reward.fulfilment_changed", member=second
    )
    data = event["data"]
    assert (data["program_id"], data["item_id"], data["member_id"]) == (program_id, "mug", second)


async def test_a_cancelled_gift_returns_its_unit_and_its_commitment(rewards: ServiceProcess) -> None:
    program_id = await setup(rewards)
    first, second = unique("M"), unique("M")
    issued, shipped = await gift_by_order(rewards, first, second)
    view = await budget(rewards, program_id)
    assert (figures(view), burn(view)) == (
        (money("50"), money("0"), money("950")),
        [("2026-Q1", 2, money("50"))],
    )
    assert await mug_stock(rewards) == 48

    async with rewards.client() as client:
        response = await fulfil(client, issued["reward_id"], "cancelled")  # issued → cancelled
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        assert await mug_stock(rewards) == 49
        view = await budget(rewards, program_id)
        assert figures(view) == (money("25"), money("0"), money("975"))
        assert burn(view) == [("2026-Q1", 1, money("25"))]  # the cancelled gift no longer counts

        again = await fulfil(client, issued["reward_id"], "cancelled")  # a retry returns no second unit
        assert again.status_code == 200, again.text
        assert again.json() == response.json()
        assert await mug_stock(rewards) == 49
        assert figures(await budget(rewards, program_id)) == (money("25"), money("0"), money("975"))

        response = await fulfil(client, shipped["reward_id"], "shipped")
        assert response.status_code == 200, response.text
        racing = await asyncio.gather(*(fulfil(client, shipped["reward_id"], "cancelled") for _ in range(5)))
        assert [r.status_code for r in racing] == [200] * 5, [r.text for r in racing]  # shipped → cancelled
        assert await mug_stock(rewards) == 50  # once, however many cancels raced
        view = await budget(rewards, program_id)
        assert figures(view) == (money("0"), money("0"), money("1000"))
        assert burn(view) == []

        for status in ("delivered", "shipped", "issued"):
            problem = assert_problem(
                await fulfil(client, shipped["reward_id"], status), 409, "invalid-fulfilment"
            )
            assert problem["detail"] == "the gift is cancelled: that is final"
    assert await mug_stock(rewards) == 50
    assert figures(await budget(rewards, program_id)) == (money("0"), money("0"), money("1000"))
    assert await changes(rewards, first) == [(issued["reward_id"], "issued", "cancelled")]
    assert await changes(rewards, second) == [
        (shipped["reward_id"], "issued", "shipped"),
        (shipped["reward_id"], "shipped", "cancelled"),
    ]


async def gift(
    client: httpx.AsyncClient,
    program_id: str,
    member: str,
    item: str = "mug",
    *,
    key: str | None = None,
    **extra: Any,
) -> httpx.Response:
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    body = {"member_id": member, "item_id": item, **extra}
    return await client.post(f"/v1/programs/{program_id}/gifts", json=body, headers=headers)


async def test_a_custom_gift_once_per_idempotency_key(rewards: ServiceProcess) -> None:
    program_id = await setup(rewards, OPEN_ENDED)
    member, key = unique("M"), str(uuid.uuid4())
    async with rewards.client() as client:
        missing = await client.post(
            f"/v1/programs/{program_id}/gifts", json={"member_id": member, "item_id": "mug"}
        )
        assert_problem(missing, 400, "idempotency-key-required")

        response = await gift(client, program_id, member, key=key, note="sorry for the delay")
        assert response.status_code == 201, response.text
        given = response.json()
        assert (given["member_id"], given["program_id"], given["program_version"]) == (member, program_id, 1)
        assert (given["kind"], given["item_id"], given["measure_id"], given["status"]) == (
            "gift",
            "mug",
            None,
            "issued",
        )
        assert (given["reason"], money(given["cost"]), given["currency"]) == (
            "sorry for the delay",
            money("25"),
            "EUR",
        )

        retry = await gift(client, program_id, member, key=key, note="sorry for the delay")
        assert retry.status_code == 201, retry.text
        assert retry.json() == given  # the same reward, no second unit

        for other in ({"note": "another reason"}, {"note": None}):
            reused = await gift(client, program_id, member, key=key, **other)
            assert key in assert_problem(reused, 422, "idempotency-key-reused")["detail"]
        reused = await gift(client, program_id, unique("M"), key=key, note="sorry for the delay")
        assert_problem(reused, 422, "idempotency-key-reused")

        racing = str(uuid.uuid4())  # one request retried at once: one gift
        retries = await asyncio.gather(*(gift(client, program_id, member, key=racing) for _ in range(5)))
        assert [r.status_code for r in retries] == [201] * 5, [r.text for r in retries]
        assert len({r.json()["reward_id"] for r in retries}) == 1
        assert retries[0].json()["reward_id"] != given["reward_id"]

        plain = await gift(client, program_id, member)  # another key: another gift
        assert plain.status_code == 201, plain.text
        assert plain.json()["reason"] == "custom gift"
        assert plain.json()["reward_id"] != given["reward_id"]

    rewarded = [given["reward_id"], retries[0].json()["reward_id"], plain.json()["reward_id"]]
    assert [g["reward_id"] for g in await rewards_of(rewards, member)] == rewarded
    assert await mug_stock(rewards) == 47
    assert figures(await budget(rewards, program_id)) == (money("75"), money("0"), money("925"))
    issued = await published(rewards, "loyalty.rewards", event_type="reward.issued", member=member)
    assert sorted(e["data"]["reward_id"] for e in issued) == sorted(rewarded)


async def post_program(client: httpx.AsyncClient, document: dict[str, Any], *actions: str) -> str:
    response = await client.post("/v1/programs", json=document)
    assert response.status_code == 201, response.text
    program_id: str = response.json()["id"]
    for action in actions:
        response = await client.post(f"/v1/programs/{program_id}/lifecycle", json={"action": action})
        assert response.status_code == 200, response.text
    return program_id


async def test_a_custom_gift_is_refused_when_it_cannot_be_given(rewards: ServiceProcess) -> None:
    program_id = await setup(rewards, OPEN_ENDED | {"control_share": "0.5"})
    control: list[str] = []
    treatment: list[str] = []
    while not control or len(treatment) < 2:  # the program's draw decides who is held out
        candidate = unique("M")
        (control if holdout(program_id, candidate, Decimal("0.5")) else treatment).append(candidate)
    async with rewards.client() as client:
        for item in (
            MUG | {"item_id": "last-mug", "stock": 1},
            MUG | {"item_id": "old-mug", "status": "withdrawn"},
            MUG | {"item_id": "usd-mug", "currency": "USD"},
            MUG | {"item_id": "future-mug", "valid_from": "2099-01-01T00:00:00+00:00"},
        ):
            response = await client.post("/v1/catalog", json=item)
            assert response.status_code == 201, response.text

        held_out = await gift(client, program_id, control[0])
        assert control[0] in assert_problem(held_out, 409, "control-group")["detail"]
        given = await gift(client, program_id, treatment[0])
        assert given.status_code == 201, given.text

        last = await gift(client, program_id, treatment[0], "last-mug")
        assert last.status_code == 201, last.text
        none_left = await gift(client, program_id, treatment[1], "last-mug")
        assert "last-mug" in assert_problem(none_left, 409, "out-of-stock")["detail"]

        for item_id in ("no-such-item", "old-mug", "usd-mug", "future-mug"):
            unavailable = await gift(client, program_id, treatment[0], item_id)
            assert item_id in assert_problem(unavailable, 422, "item-unavailable")["detail"], item_id

        draft = await post_program(client, OPEN_ENDED)
        paused = await post_program(client, OPEN_ENDED, "activate", "pause")
        ended = await post_program(client, OPEN_ENDED, "activate", "end")
        for other, status in ((draft, "draft"), (paused, "paused"), (ended, "ended")):
            inactive = await gift(client, other, treatment[0])
            assert status in assert_problem(inactive, 409, "not-active")["detail"]
        assert_problem(await gift(client, str(uuid.uuid4()), treatment[0]), 404, "program-not-found")
        bad = await gift(client, program_id, "-not a member-")
        assert_problem(bad, 422, "validation-error")

    assert await rewards_of(rewards, control[0]) == []
    assert [g["item_id"] for g in await rewards_of(rewards, treatment[0])] == ["mug", "last-mug"]
    assert (await mug_stock(rewards), await mug_stock(rewards, "last-mug")) == (49, 0)
    assert figures(await budget(rewards, program_id)) == (money("50"), money("0"), money("950"))
    for other in (draft, paused, ended):
        assert figures(await budget(rewards, other)) == (money("0"), money("0"), money("1000"))


async def test_a_custom_gift_past_the_budget_is_refused(rewards: ServiceProcess) -> None:
    document = copy.deepcopy(OPEN_ENDED)
    document["budget"] |= {"cap": "50.00"}  # two mugs
    program_id = await setup(rewards, document)
    async with rewards.client() as client:
        for _ in range(2):
            response = await gift(client, program_id, unique("M"))
            assert response.status_code == 201, response.text
        refused = await gift(client, program_id, unique("M"))
        assert_problem(refused, 409, "budget-exhausted")
    assert figures(await budget(rewards, program_id)) == (money("50"), money("0"), money("0"))
    assert await mug_stock(rewards) == 48


async def test_concurrent_custom_gifts_never_take_more_than_the_stock(rewards: ServiceProcess) -> None:
    program_id = await setup(rewards, OPEN_ENDED, MUG | {"stock": 5})
    members = [unique("M") for _ in range(20)]
    async with rewards.client() as client:
        responses = await asyncio.gather(*(gift(client, program_id, member) for member in members))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [409] * 15, [r.text for r in responses if r.status_code not in (201, 409)]
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "out-of-stock")
    winners = {r.json()["member_id"] for r in responses if r.status_code == 201}
    assert len(winners) == 5
    assert await mug_stock(rewards) == 0
    assert await count(rewards, "SELECT count(*) FROM rewards WHERE program_id = $1", program_id) == 5
    view = await budget(rewards, program_id)
    assert figures(view) == (5 * money("25"), money("0"), money("1000") - 5 * money("25"))
    assert sum(b[1] for b in burn(view)) == 5
    rewarded = {r["member_id"] for r in await rewards.fetch("SELECT member_id FROM rewards")}
    assert rewarded == winners


async def test_a_cancelled_gift_no_longer_counts_against_the_members_cap(rewards: ServiceProcess) -> None:
    document = copy.deepcopy(OPEN_ENDED)
    document["budget"] |= {"per_member_cap": "25.00"}  # one mug a member
    program_id = await setup(rewards, document)
    member = unique("M")
    async with rewards.client() as client:
        first = await gift(client, program_id, member)
        assert first.status_code == 201, first.text
        assert_problem(await gift(client, program_id, member), 409, "member-cap-reached")
        cancelled = await fulfil(client, first.json()["reward_id"], "cancelled")
        assert cancelled.status_code == 200, cancelled.text
        assert figures(await budget(rewards, program_id)) == (money("0"), money("0"), money("1000"))
        again = await gift(client, program_id, member)  # the member has been given nothing now
        assert again.status_code == 201, again.text


async def test_a_custom_gift_refused_by_the_budget_is_counted_and_published(rewards: ServiceProcess) -> None:
    document = copy.deepcopy(OPEN_ENDED)
    document["budget"] |= {"cap": "25.00"}  # one mug
    program_id = await setup(rewards, document)
    async with rewards.client() as client:
        assert (await gift(client, program_id, unique("M"))).status_code == 201
        assert_problem(await gift(client, program_id, unique("M")), 409, "budget-exhausted")
    view = await budget(rewards, program_id)
    assert figures(view) == (money("25"), money("0"), money("0"))
    assert (view["refusals"], view["refusals_by_reason"]) == (1, {"budget-exhausted": 1})
    assert view["exhausted_at"] is not None
    exhausted = await published(rewards, "loyalty.rewards", event_type="program.budget_exhausted")
    assert [e["subject"] for e in exhausted] == [f"program:{program_id}"]
