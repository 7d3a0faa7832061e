"""``loyalty simulate``'s rewards demo (``loyalty_cli.demo``): the documents it creates are what the
rewards service accepts, its cells and tables, the statement in words, and the calls it makes
(against ``httpx.MockTransport``: no service, no network)."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from loyalty_cli import demo, simulate
from loyalty_cli.dev import LocalPlatform
from loyalty_cli.main import build_parser
from loyalty_cli.simulate import BUDGETS, REWARDS, SOURCES, generate_orders, reading, render_figures, resolve
from rewards_service import domain as rewards_domain
from rewards_service.catalog import NewItem
from rewards_service.domain.cycles import Schedule, cycle_of
from tiers_service.domain.ladder import DEFAULT_LADDER

NOW = datetime(2026, 12, 4, 5, 0, tzinfo=UTC)
Q4 = demo.quarter_of(NOW)
URL = "http://rewards"
POINTS_URL = "http://points"


# --- what is created -------------------------------------------------------------------------------


def test_the_program_documents_are_valid_for_the_rewards_service() -> None:
    documents = demo.program_documents(Q4.start)
    assert set(documents) == {demo.REBATE, demo.THRESHOLD, demo.UPGRADE}
    for role, document in documents.items():
        assert rewards_domain.validate_program(document) == [], role
    rebate = rewards_domain.program_from_document(documents[demo.REBATE])
    assert rebate.target_group.tiers == {"Gold", "Platinum", "Ambassador"}
    assert rebate.control_share == Decimal("0.1")
    assert rebate.budget.point_value == Decimal("0.01")
    assert rebate.schedule == Schedule(Q4.start, None, "quarter")
    [measure] = rebate.measures
    assert isinstance(measure, rewards_domain.Rebate) and measure.pay_as == "points"
    due = rewards_domain.rebate_for(measure, Decimal("600000"), 30, None)
    assert due.amount == Decimal("6000.00")  # 1 % from 500,000 EUR


def test_the_catalog_has_every_upgrade_gift_of_the_default_ladder_and_the_threshold_gift() -> None:
    items = demo.catalog_items()
    for item in items:
        NewItem.model_validate(item)  # what POST /v1/catalog accepts
        assert item["stock"] == demo.STOCK and item["currency"] == "EUR"
    ids = {item["item_id"] for item in items}
    gifts = {t.benefits.upgrade_gift for t in DEFAULT_LADDER.tiers if t.benefits.upgrade_gift}
    assert gifts == {"silver-welcome-kit", "gold-welcome-gift", "platinum-gift", "ambassador-award"}
    assert gifts <= ids
    threshold = demo.program_documents(Q4.start)[demo.THRESHOLD]["measures"][0]
    assert threshold["item"] in ids


def test_the_small_budget_runs_out_and_the_rebate_budget_does_not() -> None:
    hamper = next(i for i in demo.catalog_items() if i["item_id"] == demo.HAMPER)
    assert Decimal(demo.HAMPER_CAP) / Decimal(hamper["value"]) == 15  # about 30 members qualify
    assert Decimal(demo.REBATE_CAP) >= 100_000


def test_quarters_are_the_rewards_service_s_quarterly_cycles() -> None:
    assert (Q4.start, Q4.end, Q4.label) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
        "2026-Q4",
    )
    schedule = Schedule(datetime(2020, 1, 1, tzinfo=UTC), None, "quarter")
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    while moment < datetime(2027, 3, 1, tzinfo=UTC):
        for at in (moment, moment - timedelta(microseconds=1), moment + timedelta(days=17, hours=5)):
            cycle = cycle_of(schedule, at)
            assert cycle is not None
            assert (demo.quarter_of(at).start, demo.quarter_of(at).end, demo.quarter_of(at).label) == (
                cycle.start,
                cycle.end,
                cycle.label,
            ), at
        moment += timedelta(days=23)
    offset = datetime(2026, 12, 31, 23, 30, tzinfo=UTC).astimezone(
        datetime(2027, 1, 1, tzinfo=UTC).astimezone().tzinfo
    )
    assert demo.quarter_of(offset).label == "2026-Q4"


def test_orders_are_dated_in_the_quarter_that_is_closed() -> None:
    events = generate_orders(members=50, orders=500, seed=3, start=NOW - timedelta(days=3))
    assert demo.orders_start(events[0][1].time, Q4.start) is None  # well inside: left where they are
    early = datetime(2027, 1, 2, 8, 0, tzinfo=UTC)  # a day into Q1: the default start is in Q4
    default = generate_orders(members=50, orders=500, seed=3, start=early - timedelta(days=11))
    floor = demo.quarter_of(early).start
    start = demo.orders_start(default[0][1].time, floor)
    assert start == floor + timedelta(seconds=1)
    moved = generate_orders(members=50, orders=500, seed=3, start=start)
    paid = [event.time for _, event in moved if event.type == "order.paid"]
    assert all(demo.quarter_of(at).label == "2027-Q1" for at in paid)
    assert [e.id for _, e in moved] == [e.id for _, e in default]  # the same orders, later


def test_the_clock_moves_just_past_the_quarter_end_and_never_back() -> None:
    assert demo.clock_target(NOW, Q4) == Q4.end + timedelta(seconds=1)
    assert demo.clock_target(Q4.end - timedelta(microseconds=1), Q4) == Q4.end + timedelta(seconds=1)
    assert demo.clock_target(Q4.end, Q4) is None
    assert demo.clock_target(Q4.end + timedelta(days=40), Q4) is None


def test_a_program_in_a_few_words() -> None:
    documents = demo.program_documents(Q4.start)
    assert demo.describe(documents[demo.REBATE]) == (
        "a rebate of 0.5 % from 100,000, 1 % from 500,000, 1.5 % from 1,000,000 EUR net spend a "
        "quarter, as points (tiers Gold, Platinum, Ambassador, 10 % held out as control group; "
        "budget 150,000 EUR)"
    )
    assert demo.describe(documents[demo.THRESHOLD]) == (
        "gift-hamper for an order of 10,000 EUR or more (every member; budget 600 EUR)"
    )
    assert demo.describe(documents[demo.UPGRADE]) == (
        "the tier's upgrade gift on a promotion (every member; budget 5,000 EUR)"
    )


# --- the live view -----------------------------------------------------------------------------------


def reward(kind: str, item: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "item_id": item, "status": "issued", "points": None, "amount": None, **extra}


def test_a_member_s_rewards_in_three_cells() -> None:
    assert demo.reward_cells({"items": []}) == ("0", "-", "-")
    body = {
        "items": [
            reward("gift", "gift-hamper"),
            reward("gift", "silver-welcome-kit"),
            reward("gift", "gold-welcome-gift", status="cancelled"),  # its unit went back: not counted
            reward("gift", "gift-hamper"),
            reward("coupon"),
            reward("rebate", status="credited", points=1_623_453),
            reward("rebate", status="credited", amount="30.0000"),
        ]
    }
    assert demo.reward_cells(body) == (
        "6",
        "gift-hamper x2, silver-welcome-kit, 1 coupon",
        "1,623,453 points, 30 EUR",
    )


BUDGET: dict[str, Any] = {
    "program_id": "p",
    "currency": "EUR",
    "allocated": "600.0000",
    "committed": "600.0000",
    "spent": "0.0000",
    "remaining": "0.0000",
    "per_member_cap": None,
    "refusals": 20,
    "refusals_by_reason": {"budget-exhausted": 19, "out-of-stock": 1},
    "exhausted_at": "2026-12-04T05:11:30+00:00",
    "burn": [],
}


def test_a_budget_in_cells() -> None:
    assert demo.budget_cells(BUDGET) == (
        "600 EUR",
        "600",
        "0",
        "0",
        "20 (budget-exhausted 19, out-of-stock 1)",
    )
    spent = {**BUDGET, "allocated": "150000.0000", "committed": "0", "spent": "59290.1600"}
    spent |= {"remaining": "90709.8400", "refusals": 0, "refusals_by_reason": {}}
    assert demo.budget_cells(spent) == ("150,000 EUR", "0", "59,290.16", "90,709.84", "0")


def programs() -> tuple[demo.DemoProgram, ...]:
    documents = demo.program_documents(Q4.start)
    return tuple(
        demo.DemoProgram(role, f"p-{role}", doc["name"], Q4.start, "created and activated", doc)
        for role, doc in documents.items()
    )


def test_the_budget_table_says_what_it_does_not_know_yet_and_why() -> None:
    rebate, threshold, upgrade = programs()
    got: dict[str, demo.Got] = {
        threshold.id: (demo.budget_cells(BUDGET), ""),
        upgrade.id: (None, "not reachable at http://rewards (ConnectError)"),
    }
    assert demo.render_budgets([rebate, threshold, upgrade], got) == [
        "program budget                         allocated  committed  spent  remaining  refusals",
        "Key accounts: quarterly volume rebate          …          …      …          …  …",
        "Big orders: a gift hamper                600 EUR        600      0          0  20 (budget-exhausted 19, out-of-stock 1)",
        "Tier upgrades: a welcome gift                  -          -      -          -  -",
        "  Tier upgrades: a welcome gift: not reachable at http://rewards (ConnectError)",
    ]


def test_the_figures_are_the_members_table_then_their_rewards_then_the_budgets() -> None:
    points, _ = SOURCES
    demo_programs = programs()
    snapshot = {
        ("points", "M-0001"): reading(points, 200, {"available": 10, "pending": 2, "lifetime_earned": 12}),
        ("rewards", "M-0001"): reading(REWARDS, 200, {"items": [reward("gift", "gift-hamper")]}),
        (BUDGETS.service, demo_programs[1].id): reading(BUDGETS, 200, BUDGET),
    }
    plain = render_figures(["M-0001"], [points], snapshot)
    assert plain == ["member  available  pending", "M-0001         10        2"]
    lines = render_figures(["M-0001"], [points], snapshot, rewards=True, programs=demo_programs)
    assert lines[:6] == [
        *plain,
        "",
        "member  rewards  gifts        rebates",
        "M-0001        1  gift-hamper  -",
        "",
    ]
    assert lines[6].startswith("program budget") and len(lines) == 10
    assert lines[8].startswith("Big orders: a gift hamper") and lines[8].endswith("out-of-stock 1)")
    only_rewards = render_figures(["M-0001"], [], snapshot, rewards=True)
    assert only_rewards == lines[3:5]


# --- the statement -----------------------------------------------------------------------------------

STATEMENT: dict[str, Any] = {
    "statement_id": "s-1",
    "program_id": "p-rebate",
    "program_version": 1,
    "measure_id": "volume-rebate",
    "member_id": "M-0022",
    "cycle": "2026-Q4",
    "cycle_start": "2026-10-01T00:00:00Z",
    "cycle_end": "2027-01-01T00:00:00Z",
    "currency": "EUR",
    "net_spend": "1082301.7200",
    "orders": 2,
    "segment": None,
    "step_min": "1000000.0000",
    "step_value": "1.5000",
    "rebate": "16234.5300",
    "adjustments": "0.0000",
    "brought_forward": "0.0000",
    "payable": "16234.5300",
    "carried": "0.0000",
    "pay_as": "points",
    "points": 1623453,
    "status": "paid",
    "refusal": None,
    "reward_id": "r-1",
    "settled_at": "2027-01-01T00:00:01.5Z",
    "lines": [
        {"line": 1, "kind": "order", "cycle": "2026-Q4", "order_id": "SO-1", "paid": "900000.0000",
         "deducted": "0.0000", "amount": "900000.0000"},
        {"line": 2, "kind": "order", "cycle": "2026-Q4", "order_id": "SO-2", "paid": "429291.4800",
         "deducted": "246989.7600", "amount": "182301.7200"},
        {"line": 3, "kind": "rebate", "cycle": "2026-Q4", "order_id": None, "paid": None,
         "deducted": None, "amount": "16234.5300"},
    ],
}  # fmt: skip


def test_a_statement_in_words_and_figures() -> None:
    assert demo.statement_lines(STATEMENT, demo.REBATE_NAME) == [
        "rebate statement of M-0022, 'Key accounts: quarterly volume rebate', 2026-Q4 "
        "(2026-10-01 to 2027-01-01, end exclusive):",
        "  orders        2 (paid 1,329,291.48, refunded or cancelled 246,989.76 EUR)",
        "  net spend     1,082,301.72 EUR",
        "  step reached  from 1,000,000 EUR: 1.5 %",
        "  rebate        16,234.53 EUR",
        "  settled       2027-01-01 00:00 UTC",
        "  paid          1,623,453 points (16,234.53 EUR at 0.01 EUR a point)",
    ]
    below = {**STATEMENT, "step_min": None, "step_value": None, "rebate": "0", "payable": "0"}
    below |= {"points": None, "status": "nothing-due", "adjustments": "-30.0000", "lines": []}
    lines = demo.statement_lines(below, "R")
    assert "  orders        2" in lines and "  step reached  below the first step: no rebate" in lines
    assert "  adjustments   -30 EUR" in lines and lines[-1] == "  status        nothing-due"
    refused = demo.statement_lines({**STATEMENT, "status": "refused", "refusal": "budget-exhausted"}, "R")
    assert refused[-1] == "  status        refused: budget-exhausted"


def listed(member: str, *statements: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    return member, [{"member_id": member, **s} for s in statements]


def test_the_statement_shown_is_the_busiest_member_s_paid_one_of_the_program_and_quarter() -> None:
    mine = {"program_id": "p-rebate", "cycle": "2026-Q4"}
    found = [
        listed("M-0001"),
        listed("M-0002", {**mine, "cycle": "2026-Q3", "status": "paid"}, {**mine, "program_id": "x"}),
        listed("M-0003", {**mine, "status": "nothing-due"}),
        listed("M-0004", {**mine, "status": "paid", "statement_id": "s-4"}),
        listed("M-0005", {**mine, "status": "paid"}),
    ]
    picked = demo.pick_statement(found, "p-rebate", "2026-Q4")
    assert picked is not None and picked[0] == "M-0004" and picked[1]["statement_id"] == "s-4"
    fallback = demo.pick_statement(found[:3], "p-rebate", "2026-Q4")
    assert fallback is not None and fallback[0] == "M-0003"
    assert demo.pick_statement(found[:2], "p-rebate", "2026-Q4") is None


def test_the_credit_in_points_and_why_it_may_be_pending() -> None:
    entry = {"points": 1623453, "reason": "rebate of program 'K' (p) for 2026-Q4", "adjustment_id": "r-1"}
    balance = {"available": 1_674_244, "pending": 1_623_453}
    ahead = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)
    lines = demo.credit_lines("M-0022", entry, balance, ahead)
    assert lines[:2] == [
        "points: +1,623,453 credited to M-0022: \"rebate of program 'K' (p) for 2026-Q4\"",
        "  balance now: available 1,674,244, pending 1,623,453",
    ]
    assert lines[2].startswith("  (pending until 2027-01-01 00:00 UTC")
    assert len(demo.credit_lines("M-0022", entry, {**balance, "pending": 0}, ahead)) == 2
    assert len(demo.credit_lines("M-0022", entry, balance, None)) == 2
    assert demo.credit_lines("M-0022", None, None, ahead) == [
        "points: no credit for the rebate in M-0022's ledger yet (points may still be catching up)"
    ]


# --- where the rewards service is ----------------------------------------------------------------------

LOCAL = LocalPlatform(
    bootstrap="127.0.0.1:19092",
    idempotence=False,
    services={"points": "http://p", "tiers": "http://t", "rewards": "http://r"},
    keys={"crm": "local-crm", "ecommerce": "e", "partner": "x"},
)
HOME = Path("/home/someone/.local/share/loyalty")


def options(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["simulate", *argv])


def test_rewards_from_the_running_dev_or_a_flag_or_left_out() -> None:
    target = resolve(options(), LOCAL, HOME, environ={})
    assert target.rewards is not None
    assert (target.rewards.source, target.rewards.url, target.rewards.key) == (
        REWARDS,
        "http://r",
        "local-crm",
    )
    assert [feed.source.service for feed in target.feeds] == ["points", "tiers"]  # its tables are its own
    flagged = resolve(options("--rewards-api", "http://elsewhere", "--api-key", "k"), LOCAL, HOME, environ={})
    assert flagged.rewards is not None and (flagged.rewards.url, flagged.rewards.key) == (
        "http://elsewhere",
        "k",
    )
    own = resolve(options("--rewards-api-key", "rk", "--api-key", "k"), LOCAL, HOME, environ={})
    assert own.rewards is not None and own.rewards.key == "rk"
    assert resolve(options("--no-rewards"), LOCAL, HOME, environ={}).rewards is None
    without = LocalPlatform(LOCAL.bootstrap, False, {"points": "http://p"}, LOCAL.keys)
    assert resolve(options(), without, HOME, environ={}).rewards is None
    assert "--rewards-api http://HOST:8003" in simulate.no_platform_hint(HOME)


# --- the calls, against a fake rewards service -----------------------------------------------------------


class FakeRewards:
    """The part of the rewards (and points) REST API the demo calls, in memory."""

    def __init__(self, *, settable: bool = True, clock: datetime = NOW) -> None:
        self.items: set[str] = set()
        self.programs: list[dict[str, Any]] = []
        self.settable = settable
        self.clock = clock
        self.calls: list[tuple[str, str]] = []
        self.settled: list[str] = []
        self.statement = dict(STATEMENT)
        self.credited = True
        self.broken: Callable[[httpx.Request], httpx.Response | None] = lambda request: None

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        self.calls.append((method, path))
        if (broken := self.broken(request)) is not None:
            return broken
        assert request.headers.get("authorization") == "Bearer crm"
        body: Any = json.loads(request.content) if request.content else None
        if (method, path) == ("POST", "/v1/catalog"):
            if body["item_id"] in self.items:
                return httpx.Response(409, json={"detail": "exists"})
            self.items.add(body["item_id"])
            return httpx.Response(201, json=body)
        if (method, path) == ("GET", "/v1/programs"):
            return httpx.Response(200, json={"items": self.programs})
        if (method, path) == ("POST", "/v1/programs"):
            problems = rewards_domain.validate_program(body)
            if problems:
                return httpx.Response(422, json={"detail": "invalid", "problems": problems})
            program = {"id": f"p-{len(self.programs)}", "name": body["name"], "status": "draft"}
            self.programs.append({**program, "document": body})
            return httpx.Response(201, json=self.programs[-1])
        if method == "POST" and path.endswith("/lifecycle"):
            program = next(p for p in self.programs if p["id"] == path.split("/")[3])
            program["status"] = "active"
            return httpx.Response(200, json=program)
        if path == "/v1/clock":
            if not self.settable:
                return httpx.Response(404, json={"detail": "Not Found"})
            if method == "PUT":
                self.clock = datetime.fromisoformat(body["now"])
            return httpx.Response(200, json={"now": self.clock.isoformat(), "offset_seconds": 1.0})
        if (method, path) == ("POST", "/v1/settlements"):
            fresh = self.clock >= Q4.end and Q4.label not in self.settled
            if fresh:
                self.settled.append(Q4.label)
            return httpx.Response(200, json={"cycles": int(fresh), "statements": 1, "paid": 1, "refused": 0})
        if method == "GET" and path.endswith("/statements"):
            member = path.split("/")[3]
            mine = member == self.statement["member_id"] and self.settled
            return httpx.Response(200, json={"items": [self.statement] if mine else []})
        if method == "GET" and path.startswith("/v1/statements/"):
            return httpx.Response(200, json=self.statement)
        if method == "GET" and path.endswith("/points/ledger"):
            entry = {"points": 1623453, "reason": "rebate of program", "adjustment_id": "r-1"}
            return httpx.Response(200, json={"items": [entry] if self.credited else [], "next_cursor": None})
        if method == "GET" and path.endswith("/points"):
            return httpx.Response(200, json={"available": 5, "pending": 1623453})
        return httpx.Response(404, json={"detail": f"no route {method} {path}"})


API = demo.Api(URL, "crm")


async def set_up(fake: FakeRewards) -> demo.DemoSet:
    async with httpx.AsyncClient(transport=fake.transport()) as client:
        return await demo.set_up(client, API, NOW)


async def test_set_up_creates_the_set_once_and_uses_it_again_after() -> None:
    fake = FakeRewards()
    first = await set_up(fake)
    assert first.items_created == tuple(i["item_id"] for i in demo.catalog_items()) and not first.items_kept
    assert [(p.role, p.name, p.how) for p in first.programs] == [
        (demo.REBATE, demo.REBATE_NAME, "created and activated"),
        (demo.THRESHOLD, demo.THRESHOLD_NAME, "created and activated"),
        (demo.UPGRADE, demo.UPGRADE_NAME, "created and activated"),
    ]
    assert first.floor == Q4.start and first.clock == NOW
    assert all(p["status"] == "active" for p in fake.programs)

    again = await set_up(fake)
    assert not again.items_created and again.items_kept == first.items_created
    assert [p.id for p in again.programs] == [p.id for p in first.programs]
    assert {p.how for p in again.programs} == {"already active, used again"}
    assert len(fake.programs) == 3
    lines = demo.setup_lines(URL, again)
    assert lines[0] == "rewards demo programs on http://rewards:"
    assert "(none new, stock 100 each when created)" in lines[1]
    assert f"  '{demo.REBATE_NAME}' already active, used again (p-0):" in lines


async def test_set_up_activates_a_draft_left_over_and_replaces_an_ended_program() -> None:
    fake = FakeRewards(settable=False)
    document = demo.program_documents(Q4.start - timedelta(days=92))[demo.REBATE]
    fake.programs = [
        {"id": "old", "name": demo.REBATE_NAME, "status": "ended", "document": document},
        {"id": "draft", "name": demo.REBATE_NAME, "status": "draft", "document": document},
    ]
    found = await set_up(fake)
    rebate = found.program(demo.REBATE)
    assert (rebate.id, rebate.how, rebate.starts) == (
        "draft",
        "draft activated",
        Q4.start - timedelta(days=92),
    )
    assert found.clock is None  # GET /v1/clock is not there: the system clock
    assert "the rewards clock is the system clock" in demo.setup_lines(URL, found)[-1]


@pytest.mark.parametrize(
    ("broken", "said"),
    [
        (httpx.ConnectError("refused"), "not reachable at http://rewards/v1/catalog (ConnectError; the catalog)"),
        (httpx.Response(401, json={"detail": "no"}), "HTTP 401, the API key was refused"),
        (httpx.Response(404, json={"detail": "Not Found"}), "HTTP 404 at http://rewards/v1/catalog"),
        (httpx.Response(500, text="boom"), "catalog item silver-welcome-kit: HTTP 500 at http://rewards/v1/catalog: boom"),
    ],
)  # fmt: skip
async def test_set_up_says_in_one_line_why_rewards_cannot_be_used(
    broken: httpx.Response | Exception, said: str
) -> None:
    fake = FakeRewards()

    def fail(request: httpx.Request) -> httpx.Response | None:
        if isinstance(broken, Exception):
            raise broken
        return broken

    fake.broken = fail
    with pytest.raises(demo.Unavailable) as raised:
        await set_up(fake)
    assert said in str(raised.value)


async def test_a_program_document_refused_says_every_problem() -> None:
    fake = FakeRewards()
    fake.broken = lambda request: (
        httpx.Response(422, json={"detail": "x", "problems": ["budget.cap is required", "name is required"]})
        if request.url.path == "/v1/programs" and request.method == "POST"
        else None
    )
    with pytest.raises(demo.Unavailable, match=re.escape("budget.cap is required; name is required")):
        await set_up(fake)


def closing(fake: FakeRewards, said: list[str], demo_set: demo.DemoSet, **kwargs: Any) -> demo.Closing:
    async def budgets() -> list[str]:
        return ["program budget ..."]

    options: dict[str, Any] = {
        "rewards": API,
        "points": demo.Api(POINTS_URL, "crm"),
        "demo": demo_set,
        "quarter": Q4,
        "members": ["M-0001", "M-0022", "M-0003"],
        "bootstrap": None,
        "say": said.append,
        "budgets": budgets,
        "transport": fake.transport(),
    }
    return demo.Closing(**(options | kwargs))


async def test_closing_the_quarter_moves_the_clock_settles_and_shows_a_statement_and_its_credit() -> None:
    fake = FakeRewards()
    demo_set = await set_up(fake)
    fake.statement["program_id"] = demo_set.program(demo.REBATE).id
    said: list[str] = []
    assert await demo.close_quarter(closing(fake, said, demo_set))
    assert fake.clock == Q4.end + timedelta(seconds=1)
    assert said[1] == demo.moved_note(Q4, NOW, Q4.end + timedelta(seconds=1))
    assert said[2] == "settled (POST /v1/settlements): 1 cycle(s), 1 statement(s), 1 paid, 0 refused"
    assert said[3] == "program budget ..."
    start = said.index(demo.statement_lines(fake.statement, demo.REBATE_NAME)[0])
    assert said[start + 6] == "  paid          1,623,453 points (16,234.53 EUR at 0.01 EUR a point)"
    assert said[-3].startswith("points: +1,623,453 credited to M-0022")
    assert said[-1].startswith("  (pending until 2027-01-01 00:00 UTC")
    looked = [path for method, path in fake.calls if path.endswith("/statements")]
    assert looked == ["/v1/members/M-0001/statements", "/v1/members/M-0022/statements"]  # then stopped

    again: list[str] = []  # a second run: the clock is past the end already
    before = len(fake.calls)
    assert await demo.close_quarter(closing(fake, again, demo_set))
    assert again[1] == demo.closed_before_note(Q4, Q4.end + timedelta(seconds=1))
    assert ("PUT", "/v1/clock") not in fake.calls[before:]
    assert ("POST", "/v1/settlements") in fake.calls[before:]  # safe to repeat: it settles nothing new


async def test_a_quarter_settled_before_rewards_restarted_is_said() -> None:
    fake = FakeRewards()
    demo_set = await set_up(fake)
    fake.settled.append(Q4.label)  # settled by an earlier run; its clock started again from now
    said: list[str] = []
    await demo.close_quarter(closing(fake, said, demo_set))
    assert demo.closed_before_note(Q4, None) in said
    assert "settled by an earlier run, before rewards restarted" in demo.closed_before_note(Q4, None)


async def test_a_clock_that_is_not_settable_closes_nothing() -> None:
    fake = FakeRewards(settable=False)
    demo_set = await set_up(fake)
    said: list[str] = []
    assert not await demo.close_quarter(closing(fake, said, demo_set))
    assert said == [demo.not_settable_note(Q4)]
    assert "LOYALTY_SETTABLE_CLOCK is off" in said[0] and "2027-01-01 00:00 UTC" in said[0]
    assert ("POST", "/v1/settlements") not in fake.calls


async def test_closing_degrades_to_a_line_when_rewards_goes_away_or_no_one_has_a_statement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeRewards()
    demo_set = await set_up(fake)

    def down(request: httpx.Request) -> httpx.Response | None:
        raise httpx.ConnectError("refused")

    fake.broken = down
    said: list[str] = []
    assert not await demo.close_quarter(closing(fake, said, demo_set))
    assert said == [
        "rewards: not reachable at http://rewards/v1/clock (ConnectError; the rewards clock); "
        "no rebate statement this run"
    ]

    fake.broken = lambda request: None
    nobody: list[str] = []
    assert not await demo.close_quarter(closing(fake, nobody, demo_set, members=["M-0001"]))
    assert nobody[-1].startswith("no rebate statement for 2026-Q4 among M-0001")

    monkeypatch.setattr(demo, "CREDIT_WAIT_S", 0)
    fake.statement["program_id"] = demo_set.program(demo.REBATE).id
    fake.credited = False
    late: list[str] = []
    assert await demo.close_quarter(closing(fake, late, demo_set))
    assert late[-1].startswith("points: no credit for the rebate in M-0022's ledger yet")
