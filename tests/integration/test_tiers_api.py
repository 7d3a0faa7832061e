"""The tiers REST API against a real service process, a real PostgreSQL and a real broker: the
member's tier with its explanation, the history, CRM overrides, the ladder, evaluations, and
DESIGN.md guarantees 5 (least privilege) and 6 (clear errors, nothing written).

Tests that change global state (the ladder, the clock, evaluation counts) get their own service
(``tiers``); the rest share one service per module (``svc``) and keep apart by their member ids.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import (
    CRM_KEY,
    PARTNER_KEY,
    SHOP_KEY,
    TOPICS,
    Infra,
    ServiceProcess,
    assert_problem,
    consumed,
    count,
    evaluate,
    eventually,
    paid,
    publish,
    refunded,
    set_clock,
    tier_changes,
    unique,
)

from loyalty_cli.embedded import ensure_topics
from loyalty_shared.envelope import CloudEvent

CRM_ACTOR = "crm-key:" + hashlib.sha256(CRM_KEY.encode()).hexdigest()[:8]
NOW = datetime.now(UTC)
NEXT_EVALUATION = datetime(NOW.year + 1, 1, 1, tzinfo=UTC)
SILVER_RULE = "Silver: 50000.00 EUR qualifying spend or 24 qualifying orders"
GOLD_RULE = "Gold: 200000.00 EUR qualifying spend or 60 qualifying orders"
PLATINUM_RULE = "Platinum: 1000000.00 EUR qualifying spend"


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def svc(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServiceProcess]:
    """One tiers service shared by the module's tests that leave the ladder and the clock alone."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    await ensure_topics(infra.bootstrap, [prefix + t for t in TOPICS], partitions=3)
    log_dir: Path = tmp_path_factory.mktemp("tiers-api")
    service = ServiceProcess(
        infra,
        await infra.new_database("tiers"),
        prefix,
        log_dir,
        extra_env={"LOYALTY_SETTABLE_CLOCK": "true"},
        name="tiers",
    )
    await service.start()
    yield service
    service.kill()


# --- helpers ------------------------------------------------------------------------------------


async def written(service: ServiceProcess, member: str | None = None) -> dict[str, int]:
    """Every row a tiers request could write (for one member, or in all)."""
    where, args = ("WHERE member_id = $1", [member]) if member else ("", [])
    counts = {
        t: await count(service, f"SELECT count(*) FROM {t} {where}", *args)
        for t in ("members", "tier_history", "qualifying_orders")
    }
    outbox_where = "WHERE key = $1" if member else ""
    counts["outbox"] = await count(service, f"SELECT count(*) FROM outbox {outbox_where}", *args)
    counts["ladders"] = await count(service, "SELECT count(*) FROM ladders")
    return counts


async def orders(service: ServiceProcess, *events: CloudEvent) -> None:
    """Publish order events and wait until the service has processed them all."""
    await publish(service.infra, service.prefix + "orders", list(events))

    async def done() -> bool:
        return await consumed(service, *events)

    await eventually(done, what=f"{len(events)} order event(s) processed")


async def member_with(service: ServiceProcess, *amounts: str) -> str:
    member = unique("M")
    await orders(service, *[paid(member, unique("O"), amount) for amount in amounts])
    return member


async def tier(service: ServiceProcess, member: str) -> dict[str, Any]:
    body: dict[str, Any] = await service.get(f"/v1/members/{member}/tier")
    return body


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def moves(changes: list[dict[str, Any]]) -> list[tuple[str | None, str, str, str]]:
    return [
        (c["data"]["from_tier"], c["data"]["to_tier"], c["data"]["direction"], c["data"]["reason"])
        for c in changes
    ]


async def put_override(
    client: httpx.AsyncClient, member: str, tier_name: str, reason: str = "key account", **extra: Any
) -> httpx.Response:
    return await client.put(
        f"/v1/members/{member}/tier/override", json={"tier": tier_name, "reason": reason, **extra}
    )


async def ladder_body(service: ServiceProcess) -> dict[str, Any]:
    """The ladder in force as a PUT body (the view without its version fields)."""
    view = await service.get("/v1/tiers")
    return {k: v for k, v in view.items() if k not in ("version", "created_by", "created_at")}


def tier_named(body: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in body["tiers"] if t["name"] == name)
    return found


def summary(**counts: int) -> dict[str, int]:
    zero = dict.fromkeys(
        ("members", "evaluations", "kept", "grace_started", "promoted", "demoted", "overrides_ended"), 0
    )
    return {**zero, **counts}


def without_as_of(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "as_of"}


# --- the member's tier ----------------------------------------------------------------------------


async def test_an_unknown_member_stands_at_the_entry_tier(svc: ServiceProcess) -> None:
    member = unique("M")
    view = await tier(svc, member)
    assert view["known"] is False
    assert (view["tier"], view["rank"], view["earned_tier"], view["status"]) == (
        "Standard",
        10,
        "Standard",
        "secure",
    )
    assert (view["since"], view["earned_since"], view["override"], view["keep"]) == (None, None, None, None)
    assert (view["next_evaluation_at"], view["grace_until"]) == (None, None)
    assert (view["qualifying_spend"], view["qualifying_orders"]) == ("0.00", 0)
    assert (view["currency"], view["window"], view["ladder_version"]) == ("EUR", "the rolling 12 months", 0)
    assert view["next_tier"] == {
        "tier": "Silver",
        "rule": SILVER_RULE,
        "requires": "any",
        "met": False,
        "missing_spend": "50000.00",
        "missing_orders": 24,
        "qualifying_spend": "0.00",
        "qualifying_orders": 0,
        "counted_from": view["window_start"],
        "deadline": None,
    }
    assert view["benefits"] == {
        "points_multiplier": "1",
        "discount_rate": "0",
        "priority_purchase": False,
        "service_level": "standard",
        "upgrade_gift": None,
    }
    assert view["explanation"] == (
        f"No orders yet: {member} starts at Standard, the entry tier. Next: {SILVER_RULE}; missing "
        "50000.00 EUR more qualifying spend or 24 more qualifying orders."
    )
    history = await svc.get(f"/v1/members/{member}/tier/history")
    assert history == {"items": [], "next_cursor": None}
    assert await written(svc, member) == {
        "members": 0,
        "tier_history": 0,
        "qualifying_orders": 0,
        "outbox": 0,
        "ladders": 0,
    }


async def test_a_gold_member_sees_the_figures_the_rule_and_what_platinum_needs(svc: ServiceProcess) -> None:
    member = await member_with(svc, "250000.00")
    view = await tier(svc, member)
    assert view["known"] is True
    assert (view["tier"], view["rank"], view["earned_tier"], view["status"]) == ("Gold", 30, "Gold", "secure")
    assert (view["qualifying_spend"], view["qualifying_orders"]) == ("250000.00", 1)
    assert at(view["next_evaluation_at"]) == NEXT_EVALUATION
    assert view["next_tier"] == {
        "tier": "Platinum",
        "rule": PLATINUM_RULE,
        "requires": "any",
        "met": False,
        "missing_spend": "750000.00",
        "missing_orders": None,
        "qualifying_spend": "250000.00",
        "qualifying_orders": 1,
        "counted_from": view["window_start"],
        "deadline": None,
    }
    keep = view["keep"]
    assert (keep["tier"], keep["rule"], keep["met"]) == ("Gold", GOLD_RULE, True)
    assert (keep["missing_spend"], keep["missing_orders"]) == ("0.00", 59)
    assert at(keep["deadline"]) == NEXT_EVALUATION
    assert view["benefits"] == {
        "points_multiplier": "1.5",
        "discount_rate": "0.04",
        "priority_purchase": True,
        "service_level": "dedicated",
        "upgrade_gift": "gold-welcome-gift",
    }
    decided = view["decided_by"]
    assert (decided["reason"], decided["from_tier"], decided["rule"]) == ("qualified", None, GOLD_RULE)
    assert (decided["qualifying_spend"], decided["qualifying_orders"]) == ("250000.00", 1)
    assert decided["at"] == view["since"]
    since = datetime.fromisoformat(view["window_start"]).date().isoformat()
    on = datetime.fromisoformat(view["since"]).date().isoformat()
    assert view["explanation"] == (
        f"Gold since {on} (qualified: 250000.00 EUR qualifying spend and 1 qualifying order, against "
        f"{GOLD_RULE}). Now 250000.00 EUR qualifying spend and 1 qualifying order in the rolling 12 "
        f"months (since {since}). Gold is kept at the evaluation on {NEXT_EVALUATION.date().isoformat()}: "
        f"{GOLD_RULE}, met. Next: {PLATINUM_RULE}; missing 750000.00 EUR more qualifying spend."
    )


async def test_history_pages_newest_first_with_a_cursor(svc: ServiceProcess) -> None:
    member = unique("M")
    await orders(svc, paid(member, unique("O"), "60000.00"), paid(member, unique("O"), "150000.00"))
    async with svc.client() as crm:
        assert (await put_override(crm, member, "Ambassador")).status_code == 200
        assert (await crm.delete(f"/v1/members/{member}/tier/override")).status_code == 204
        url = f"/v1/members/{member}/tier/history"
        first = (await crm.get(url, params={"limit": 3})).json()
        assert first["next_cursor"] is not None
        second = (await crm.get(url, params={"limit": 3, "cursor": first["next_cursor"]})).json()
        whole = (await crm.get(url)).json()
        for cursor in (
            "garbage!!",
            base64.urlsafe_b64encode(b"ledger:5").decode(),  # another API's cursor
            base64.urlsafe_b64encode(b"tier-history:abc").decode(),
            base64.urlsafe_b64encode(b"tier-history:0").decode(),
            base64.urlsafe_b64encode(b"tier-history:99999999999999999999999").decode(),
        ):
            assert_problem(await crm.get(url, params={"cursor": cursor}), 400, "invalid-cursor")
        assert_problem(await crm.get(url, params={"limit": 0}), 422, "validation-error")
        assert_problem(await crm.get(url, params={"limit": 201}), 422, "validation-error")
    assert second["next_cursor"] is None
    items = first["items"] + second["items"]
    assert [(i["from_tier"], i["to_tier"], i["reason"]) for i in items] == [
        ("Ambassador", "Gold", "override-ended"),
        ("Gold", "Ambassador", "override"),
        ("Silver", "Gold", "qualified"),
        (None, "Silver", "qualified"),
    ]
    assert [len(first["items"]), len(second["items"])] == [3, 1]
    assert items == whole["items"] and whole["next_cursor"] is None
    assert [i["actor"] for i in items] == [CRM_ACTOR, CRM_ACTOR, None, None]


# --- overrides ------------------------------------------------------------------------------------


async def test_an_override_to_ambassador_then_back_to_the_earned_tier(svc: ServiceProcess) -> None:
    member = await member_with(svc, "250000.00")
    until = (NOW + timedelta(days=90)).replace(microsecond=0)
    async with svc.client() as crm:
        response = await put_override(
            crm, member, "Ambassador", "key account of the year", until=until.isoformat()
        )
        assert response.status_code == 200, response.text
        view = response.json()
        assert (view["tier"], view["earned_tier"], view["rank"]) == ("Ambassador", "Gold", 50)
        assert view["override"]["tier"] == "Ambassador"
        assert view["override"]["reason"] == "key account of the year"
        assert view["override"]["set_by"] == CRM_ACTOR
        assert at(view["override"]["until"]) == until
        assert view["benefits"]["points_multiplier"] == "2"
        assert view["explanation"].startswith(
            f"Ambassador by CRM override until {until.date().isoformat()} (key account of the year); "
            "the figures hold Gold: 250000.00 EUR qualifying spend and 1 qualifying order"
        )
        assert (await tier(svc, member))["tier"] == "Ambassador"

        changes = await tier_changes(svc, member)
        assert moves(changes) == [(None, "Gold", "up", "qualified"), ("Gold", "Ambassador", "up", "override")]
        override = changes[1]["data"]
        assert override["points_multiplier"] == "2"
        assert override["figures"]["override_tier"] == "Ambassador"
        assert override["figures"]["override_reason"] == "key account of the year"
        assert override["figures"]["earned_tier"] == "Gold"
        assert override["figures"]["set_by"] == CRM_ACTOR
        assert at(override["figures"]["override_until"]) == until

        response = await crm.delete(f"/v1/members/{member}/tier/override")
        assert response.status_code == 204, response.text
        view = await tier(svc, member)
        assert (view["tier"], view["earned_tier"], view["override"]) == ("Gold", "Gold", None)
        changes = await tier_changes(svc, member)
        assert moves(changes)[2:] == [("Ambassador", "Gold", "down", "override-ended")]
        assert changes[2]["data"]["points_multiplier"] == "1.5"

        before = await written(svc, member)
        assert_problem(await crm.delete(f"/v1/members/{member}/tier/override"), 404, "not-found")
        assert_problem(await crm.delete(f"/v1/members/{unique('M')}/tier/override"), 404, "not-found")
        assert await written(svc, member) == before
    history = (await svc.get(f"/v1/members/{member}/tier/history"))["items"]
    assert [(h["reason"], h["actor"]) for h in history] == [
        ("override-ended", CRM_ACTOR),
        ("override", CRM_ACTOR),
        ("qualified", None),
    ]


async def test_an_override_below_the_earned_tier_changes_nothing_in_force(svc: ServiceProcess) -> None:
    member = await member_with(svc, "250000.00")
    before = await written(svc, member)
    async with svc.client() as crm:
        response = await put_override(crm, member, "Silver", "downgrade requested")
        assert response.status_code == 200, response.text
        view = response.json()
        assert (view["tier"], view["earned_tier"], view["override"]["tier"]) == ("Gold", "Gold", "Silver")
        assert (await crm.delete(f"/v1/members/{member}/tier/override")).status_code == 204
    assert (await tier(svc, member))["tier"] == "Gold"
    assert await written(svc, member) == before  # no history, no tier.changed
    assert moves(await tier_changes(svc, member)) == [(None, "Gold", "up", "qualified")]


async def test_bad_overrides_are_refused_and_write_nothing(svc: ServiceProcess) -> None:
    member = unique("M")
    url = f"/v1/members/{member}/tier/override"
    past = (NOW - timedelta(days=1)).isoformat()
    async with svc.client() as crm:
        body = assert_problem(
            await put_override(crm, member, "Ambassador", until=past), 422, "override-in-past"
        )
        assert "is not in the future" in body["detail"]
        body = assert_problem(await put_override(crm, member, "Diamond"), 422, "unknown-tier")
        assert body["detail"] == (
            "tier 'Diamond' is not on the ladder (Standard, Silver, Gold, Platinum, Ambassador)"
        )
        for bad in (
            {"tier": "Gold", "reason": "x", "colour": "gold"},  # an extra field
            {"tier": "Gold"},  # no reason
            {"tier": "Gold", "reason": ""},
            {"tier": "", "reason": "x"},
            {"tier": "Gold", "reason": "x", "until": "2030-01-01T00:00:00"},  # no time zone
            {"tier": "Gold", "reason": "x", "until": "soon"},
            {"tier": 3, "reason": "x"},
            {"tier": "Gold", "reason": "a\x00b"},  # PostgreSQL stores no NUL (it was a 500)
        ):
            assert_problem(await crm.put(url, json=bad), 422, "validation-error")
        assert_problem(
            await crm.put(url, content=b"{not json", headers={"Content-Type": "application/json"}),
            422,
            "validation-error",
        )
        assert_problem(await crm.put("/v1/members/bad%20id!/tier/override", json={}), 422)
    assert await written(svc, member) == {
        "members": 0,
        "tier_history": 0,
        "qualifying_orders": 0,
        "outbox": 0,
        "ladders": 0,
    }


async def test_an_override_for_a_member_never_seen_publishes_one_change(tiers: ServiceProcess) -> None:
    member = unique("M")
    async with tiers.client() as crm:
        response = await put_override(crm, member, "Ambassador", "invited key account")
        assert response.status_code == 200, response.text
    view = response.json()
    assert (view["known"], view["tier"], view["earned_tier"]) == (True, "Ambassador", "Standard")
    assert moves(await tier_changes(tiers, member)) == [("Standard", "Ambassador", "up", "override")]
    history = (await tiers.get(f"/v1/members/{member}/tier/history"))["items"]
    assert [(h["from_tier"], h["to_tier"], h["reason"]) for h in history] == [
        ("Standard", "Ambassador", "override")
    ]


async def test_an_override_running_out_ends_at_the_next_evaluation_run(tiers: ServiceProcess) -> None:
    member = await member_with(tiers, "60000.00")
    until = NOW + timedelta(hours=1)
    async with tiers.client() as crm:
        response = await put_override(crm, member, "Gold", "trial", until=until.isoformat())
        assert response.status_code == 200, response.text
    assert (await tier(tiers, member))["tier"] == "Gold"
    assert without_as_of(await evaluate(tiers)) == summary()  # not yet

    await set_clock(tiers, NOW + timedelta(hours=2))
    assert without_as_of(await evaluate(tiers)) == summary(members=1, overrides_ended=1)
    view = await tier(tiers, member)
    assert (view["tier"], view["earned_tier"], view["override"]) == ("Silver", "Silver", None)
    changes = await tier_changes(tiers, member)
    assert moves(changes) == [
        (None, "Silver", "up", "qualified"),
        ("Silver", "Gold", "up", "override"),
        ("Gold", "Silver", "down", "override-ended"),
    ]
    ended = changes[2]["data"]
    assert (ended["figures"]["override_tier"], ended["figures"]["override_reason"]) == ("Gold", "trial")
    assert at(ended["effective_at"]) == until
    assert without_as_of(await evaluate(tiers)) == summary()


async def test_an_order_after_an_override_ran_out_reports_the_override_ending(tiers: ServiceProcess) -> None:
    """The override has run out but no evaluation has ended it yet when a qualifying order arrives:
    the order first brings the member up to date (the override ended at its time, as the evaluation
    run would have published), then promotes from the earned tier. A qualifying order never moves a
    member down."""
    member = await member_with(tiers, "60000.00")
    until = NOW + timedelta(hours=1)
    async with tiers.client() as crm:
        response = await put_override(crm, member, "Platinum", "trial", until=until.isoformat())
        assert response.status_code == 200, response.text
    after_override = NOW + timedelta(hours=2)
    await set_clock(tiers, after_override)
    await orders(tiers, paid(member, unique("O"), "150000.00", time=after_override))

    assert (await tier(tiers, member))["tier"] == "Gold"
    changes = await tier_changes(tiers, member)
    assert moves(changes)[:2] == [
        (None, "Silver", "up", "qualified"),
        ("Silver", "Platinum", "up", "override"),
    ]
    assert moves(changes)[2:] == [
        ("Platinum", "Silver", "down", "override-ended"),
        ("Silver", "Gold", "up", "qualified"),
    ]
    assert at(changes[2]["data"]["effective_at"]) == until
    assert at(changes[3]["data"]["effective_at"]) == after_override
    assert without_as_of(await evaluate(tiers)) == summary()  # nothing left to end


# --- the ladder -----------------------------------------------------------------------------------


async def test_ladder_versions_invalid_ladders_and_tiers_in_use(tiers: ServiceProcess) -> None:
    default = await tiers.get("/v1/tiers")
    assert (default["version"], default["created_by"], default["created_at"]) == (0, None, None)
    assert [(t["name"], t["rank"], t["min_spend"], t["min_orders"]) for t in default["tiers"]] == [
        ("Standard", 10, None, None),
        ("Silver", 20, "50000", 24),
        ("Gold", 30, "200000", 60),
        ("Platinum", 40, "1000000", None),
        ("Ambassador", 50, None, None),
    ]
    assert [t["benefits"]["points_multiplier"] for t in default["tiers"]] == ["1", "1.25", "1.5", "2", "2"]
    assert default["window"] == {"kind": "rolling-months", "months": 12}
    assert default["evaluation"] == {
        "at": "period-end",
        "period": "year",
        "grace_days": 30,
        "max_demotion_steps": 1,
    }
    assert default["excluded_categories"] == ["gift-cards"]
    assert tier_named(default, "Ambassador")["invitation_only"] is True

    gold_member = await member_with(tiers, "250000.00")
    ambassador = await member_with(tiers, "10.00")
    body = await ladder_body(tiers)
    async with tiers.client() as crm:
        assert (await put_override(crm, ambassador, "Ambassador")).status_code == 200
        before = await written(tiers)

        ranks = copy.deepcopy(body)
        tier_named(ranks, "Silver")["rank"] = 5
        two_entries = copy.deepcopy(body)
        two_entries["tiers"].insert(1, {"name": "Basic", "rank": 15, "benefits": {"points_multiplier": "1"}})
        thresholds = copy.deepcopy(body)
        tier_named(thresholds, "Gold")["min_spend"] = "40000"
        everything = copy.deepcopy(ranks)
        everything["tiers"].insert(1, {"name": "Basic", "rank": 15, "benefits": {"points_multiplier": "1"}})
        tier_named(everything, "Gold")["min_spend"] = "40000"
        rank_problem = "ranks must be strictly increasing: Silver (5) comes after Standard (10)"
        entry_problem = (
            "exactly one entry tier (no thresholds, not invitation-only) is needed, found 2: Standard, Basic"
        )
        threshold_problem = (
            "thresholds must be strictly increasing: Gold min_spend 40000 is not above Silver's 50000"
        )
        for invalid, problems in (
            (ranks, [rank_problem]),
            (two_entries, [entry_problem]),
            (thresholds, [threshold_problem]),
            (
                everything,
                [
                    "ranks must be strictly increasing: Silver (5) comes after Basic (15)",
                    entry_problem,
                    threshold_problem,
                ],
            ),
        ):
            problem = assert_problem(await crm.put("/v1/tiers", json=invalid), 422, "invalid-ladder")
            assert problem["problems"] == problems
            assert problem["detail"] == "; ".join(problems)

        # malformed bodies: refused by the schema before any rule is looked at
        extra = {**body, "colour": "red"}
        number = copy.deepcopy(body)
        tier_named(number, "Silver")["min_spend"] = 50000
        negative = copy.deepcopy(body)
        tier_named(negative, "Silver")["min_spend"] = "-5"
        zero = copy.deepcopy(body)
        tier_named(zero, "Silver")["min_spend"] = "0"
        bad_multiplier = copy.deepcopy(body)
        tier_named(bad_multiplier, "Gold")["benefits"]["points_multiplier"] = "-1.5"
        lower_currency = {**body, "currency": "eur"}
        no_tiers = {**body, "tiers": []}
        nul = {**body, "excluded_categories": ["gift\x00cards"]}  # PostgreSQL stores no NUL (a 500)
        for bad in (extra, number, negative, zero, bad_multiplier, lower_currency, no_tiers, nul):
            assert_problem(await crm.put("/v1/tiers", json=bad), 422, "validation-error")
        problem = assert_problem(await crm.put("/v1/tiers", json=number), 422, "validation-error")
        assert ["body", "tiers", "1", "min_spend"] in [e["location"] for e in problem["errors"]]

        # a tier a member holds (earned, or by override) cannot be taken away
        without_gold = copy.deepcopy(body)
        without_gold["tiers"] = [t for t in body["tiers"] if t["name"] != "Gold"]
        problem = assert_problem(await crm.put("/v1/tiers", json=without_gold), 409, "tier-in-use")
        assert problem["held"] == {"Gold": 1}
        gold_invitation = copy.deepcopy(body)
        tier_named(gold_invitation, "Gold").update(min_spend=None, min_orders=None, invitation_only=True)
        problem = assert_problem(await crm.put("/v1/tiers", json=gold_invitation), 409, "tier-in-use")
        assert problem["held"] == {"Gold": 1}
        without_ambassador = copy.deepcopy(body)
        without_ambassador["tiers"] = [t for t in body["tiers"] if t["name"] != "Ambassador"]
        problem = assert_problem(await crm.put("/v1/tiers", json=without_ambassador), 409, "tier-in-use")
        assert problem["held"] == {"Ambassador": 1}
        assert await written(tiers) == before
        assert (await tiers.get("/v1/tiers"))["version"] == 0

        # a valid change is a new version
        lowered = copy.deepcopy(body)
        tier_named(lowered, "Silver")["min_spend"] = "25000"
        response = await crm.put("/v1/tiers", json=lowered)
        assert response.status_code == 200, response.text
        created = response.json()
        assert (created["version"], created["created_by"]) == (1, CRM_ACTOR)
        assert created["created_at"] is not None
    in_force = await tiers.get("/v1/tiers")
    assert in_force == created
    assert tier_named(in_force, "Silver")["min_spend"] == "25000"
    assert {k: v for k, v in in_force.items() if k not in ("version", "created_by", "created_at")} == lowered
    assert await count(tiers, "SELECT count(*) FROM ladders") == 1
    # members keep their tiers: a ladder change is no tier change
    assert (await tier(tiers, gold_member))["tier"] == "Gold"
    assert (await tier(tiers, gold_member))["ladder_version"] == 1
    assert await written(tiers) == {**before, "ladders": 1}


async def test_a_lowered_threshold_promotes_at_the_next_order_or_evaluation(tiers: ServiceProcess) -> None:
    by_order, by_evaluation = await member_with(tiers, "30000.00"), await member_with(tiers, "30000.00")
    body = await ladder_body(tiers)
    tier_named(body, "Silver")["min_spend"] = "25000"
    async with tiers.client() as crm:
        response = await crm.put("/v1/tiers", json=body)
        assert response.status_code == 200, response.text
    # the ladder change itself promotes no one
    assert (await tier(tiers, by_evaluation))["tier"] == "Standard"
    assert len(await tier_changes(tiers, by_evaluation)) == 1

    await orders(tiers, paid(by_order, unique("O"), "1.00"))
    changes = await tier_changes(tiers, by_order)
    assert moves(changes) == [
        (None, "Standard", "up", "qualified"),
        ("Standard", "Silver", "up", "qualified"),
    ]
    figures = changes[1]["data"]["figures"]
    assert (figures["ladder_version"], figures["qualifying_spend"]) == (1, "30001.00")
    assert figures["rule"] == "Silver: 25000.00 EUR qualifying spend or 24 qualifying orders"

    await set_clock(tiers, NEXT_EVALUATION + timedelta(hours=1))
    assert without_as_of(await evaluate(tiers)) == summary(members=2, evaluations=2, kept=1, promoted=1)
    view = await tier(tiers, by_evaluation)
    assert (view["tier"], view["earned_tier"]) == ("Silver", "Silver")
    changes = await tier_changes(tiers, by_evaluation)
    assert moves(changes) == [
        (None, "Standard", "up", "qualified"),
        ("Standard", "Silver", "up", "evaluated"),
    ]
    promotion = changes[1]["data"]
    assert promotion["figures"]["outcome"] == "qualifies higher at evaluation"
    assert promotion["figures"]["ladder_version"] == 1
    assert at(promotion["figures"]["window_end"]) == NEXT_EVALUATION
    assert at(promotion["effective_at"]) == NEXT_EVALUATION
    history = (await tiers.get(f"/v1/members/{by_evaluation}/tier/history"))["items"]
    assert (history[0]["reason"], history[0]["ladder_version"], at(history[0]["at"])) == (
        "evaluated",
        1,
        NEXT_EVALUATION,
    )


# --- evaluations ----------------------------------------------------------------------------------


async def test_an_evaluation_run_reports_exact_counts(tiers: ServiceProcess) -> None:
    keeps_gold = await member_with(tiers, "250000.00")
    below_gold = unique("M")
    order = unique("O")
    await orders(tiers, paid(below_gold, order, "250000.00"), refunded(below_gold, order, "R1", "100000.00"))
    standard = await member_with(tiers, "100.00")
    overridden = await member_with(tiers, "60000.00")
    async with tiers.client() as crm:
        response = await put_override(
            crm, overridden, "Gold", "trial", until=(NOW + timedelta(hours=1)).isoformat()
        )
        assert response.status_code == 200, response.text

    first = await evaluate(tiers)
    assert without_as_of(first) == summary()
    assert abs(datetime.fromisoformat(first["as_of"]) - datetime.now(UTC)) < timedelta(minutes=1)

    moment = NEXT_EVALUATION + timedelta(hours=1)
    await set_clock(tiers, moment)
    result = await evaluate(tiers)
    assert timedelta(0) <= datetime.fromisoformat(result["as_of"]) - moment < timedelta(minutes=1)
    # the override ran out (and the member kept Silver at the evaluation after it); Gold kept,
    # Standard kept, below Gold: grace
    assert without_as_of(result) == summary(
        members=4, evaluations=4, kept=3, grace_started=1, overrides_ended=1
    )
    assert [(await tier(tiers, m))["tier"] for m in (keeps_gold, below_gold, standard, overridden)] == [
        "Gold",
        "Gold",
        "Standard",
        "Silver",
    ]
    assert (await tier(tiers, below_gold))["status"] == "in-grace"
    assert without_as_of(await evaluate(tiers)) == summary()

    await set_clock(tiers, NEXT_EVALUATION + timedelta(days=31))
    assert without_as_of(await evaluate(tiers)) == summary(members=1, demoted=1)
    assert (await tier(tiers, below_gold))["tier"] == "Silver"
    assert without_as_of(await evaluate(tiers)) == summary()


# --- least privilege ------------------------------------------------------------------------------


async def test_every_tiers_route_needs_a_crm_key(svc: ServiceProcess) -> None:
    member = await member_with(svc, "250000.00")
    ladder = await ladder_body(svc)
    before = await written(svc)
    clock = await svc.get("/v1/clock")
    routes: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/v1/members/{member}/tier", {}),
        ("GET", f"/v1/members/{member}/tier/history", {}),
        ("PUT", f"/v1/members/{member}/tier/override", {"json": {"tier": "Ambassador", "reason": "x"}}),
        ("DELETE", f"/v1/members/{member}/tier/override", {}),
        ("GET", "/v1/tiers", {}),
        ("PUT", "/v1/tiers", {"json": ladder}),
        ("POST", "/v1/evaluations", {}),
        ("GET", "/v1/clock", {}),
        ("PUT", "/v1/clock", {"json": {"now": (NOW + timedelta(days=400)).isoformat()}}),
        # the key is checked before the body is read (a bad body answered 400 or 422 first)
        ("PUT", "/v1/tiers", {"content": b"\xff", "headers": {"Content-Type": "application/json"}}),
        (
            "PUT",
            f"/v1/members/{member}/tier/override",
            {"content": b"{", "headers": {"Content-Type": "application/json"}},
        ),
    ]
    for key, status, code in (
        (None, 401, "unauthorized"),
        ("not-a-key", 401, "unauthorized"),
        (CRM_KEY + "x", 401, "unauthorized"),
        (SHOP_KEY, 403, "forbidden"),
        (PARTNER_KEY, 403, "forbidden"),
    ):
        async with svc.client(key) as client:
            for method, url, kw in routes:
                response = await client.request(method, url, **kw)
                problem = assert_problem(response, status, code)
                assert "tier" not in problem, (method, url)
                if status == 401:
                    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), (method, url)
    assert await written(svc) == before
    assert (await tier(svc, member))["tier"] == "Gold"
    after = await svc.get("/v1/clock")
    assert after["offset_seconds"] == clock["offset_seconds"]
