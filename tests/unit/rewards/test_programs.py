"""The program document: what it reads into, every validation rule (all listed at once), the JSON round
trip, and the lifecycle."""

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from rewards_service.domain import (
    Budget,
    LadderDiscount,
    OneTimeDiscount,
    Program,
    Rebate,
    Schedule,
    Step,
    Target,
    TargetGroup,
    ThresholdGift,
    TierDiscount,
    TierUpgradeGift,
    program_document,
    program_from_document,
    transition,
    validate_program,
)


def d(value: str) -> Decimal:
    return Decimal(value)


DOCUMENT: dict[str, Any] = {
    "name": "Key accounts 2026",
    "objective": "+15 % sales in the target group and an NPS of 50",
    "targets": [{"metric": "sales_uplift_pct", "target": "15"}, {"metric": "nps", "target": "50"}],
    "target_group": {
        "tiers": ["Gold", "Platinum"],
        "rfm_segments": ["big-spenders", "champions"],
        "min_spend": "50000.00",
        "min_orders": 6,
        "months": 12,
        "members": ["acme-gmbh"],
    },
    "control_share": "0.1",
    "measures": [
        {
            "id": "volume-ladder",
            "kind": "ladder-discount",
            "basis": "volume",
            "steps": [{"min": "100000", "value": "3"}, {"min": "250000", "value": "4.5"}],
            "applies": "next-cycle",
        },
        {"id": "tier-discount", "kind": "tier-discount"},
        {
            "id": "welcome-coupon",
            "kind": "one-time-discount",
            "percent": "10",
            "amount": None,
            "min_order": "500.00",
            "valid_days": 60,
        },
        {
            "id": "quarterly-rebate",
            "kind": "rebate",
            "basis": "volume",
            "steps": [{"min": "50000", "value": "1"}, {"min": "100000", "value": "2.5"}],
            "fixed": False,
            "pay_as": "points",
            "personalised": {"champions": [{"min": "50000", "value": "2"}, {"min": "100000", "value": "4"}]},
        },
        {
            "id": "frequent-buyer",
            "kind": "rebate",
            "basis": "count",
            "steps": [{"min": "12", "value": "500.00"}],
            "fixed": True,
            "pay_as": "cash",
            "personalised": {},
        },
        {
            "id": "big-order-gift",
            "kind": "threshold-gift",
            "basis": "order",
            "min": "20000",
            "item": "espresso-machine",
        },
        {"id": "upgrade-gift", "kind": "tier-upgrade-gift", "tiers": ["Gold", "Platinum"]},
    ],
    "schedule": {
        "starts": "2026-01-01T00:00:00+00:00",
        "ends": "2027-01-01T00:00:00+00:00",
        "cycle": "quarter",
    },
    "budget": {"currency": "EUR", "cap": "250000.00", "per_member_cap": "15000.00", "point_value": "0.01"},
}

PROGRAM = Program(
    name="Key accounts 2026",
    objective="+15 % sales in the target group and an NPS of 50",
    schedule=Schedule(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), "quarter"),
    budget=Budget("EUR", d("250000.00"), d("15000.00"), d("0.01")),
    measures=(
        LadderDiscount("volume-ladder", "volume", (Step(d("100000"), d("3")), Step(d("250000"), d("4.5")))),
        TierDiscount("tier-discount"),
        OneTimeDiscount("welcome-coupon", percent=d("10"), min_order=d("500.00"), valid_days=60),
        Rebate(
            "quarterly-rebate",
            "volume",
            (Step(d("50000"), d("1")), Step(d("100000"), d("2.5"))),
            "points",
            personalised={"champions": (Step(d("50000"), d("2")), Step(d("100000"), d("4")))},
        ),
        Rebate("frequent-buyer", "count", (Step(d("12"), d("500.00")),), "cash", fixed=True),
        ThresholdGift("big-order-gift", "order", d("20000"), "espresso-machine"),
        TierUpgradeGift("upgrade-gift", frozenset({"Gold", "Platinum"})),
    ),
    targets=(Target("sales_uplift_pct", d("15")), Target("nps", d("50"))),
    target_group=TargetGroup(
        tiers=frozenset({"Gold", "Platinum"}),
        rfm_segments=frozenset({"champions", "big-spenders"}),
        min_spend=d("50000.00"),
        min_orders=6,
        months=12,
        members=frozenset({"acme-gmbh"}),
    ),
    control_share=d("0.1"),
)


def document(**changes: Any) -> dict[str, Any]:
    """DOCUMENT with top-level fields replaced (None deletes)."""
    changed = copy.deepcopy(DOCUMENT)
    for key, value in changes.items():
        if value is None:
            del changed[key]
        else:
            changed[key] = value
    return changed


def with_part(part: str, **changes: Any) -> dict[str, Any]:
    """DOCUMENT with fields of ``part`` (target_group, schedule, budget) changed (None sets null)."""
    changed = copy.deepcopy(DOCUMENT)
    changed[part].update(changes)
    return changed


def with_measure(index: int, **changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(DOCUMENT)
    changed["measures"][index].update(changes)
    return changed


def without_in(part: str, key: str, index: int | None = None) -> dict[str, Any]:
    changed = copy.deepcopy(DOCUMENT)
    holder = changed[part] if index is None else changed[part][index]
    del holder[key]
    return changed


# --- reading ---------------------------------------------------------------------------------------


def test_the_document_is_valid_and_reads_into_the_program() -> None:
    assert validate_program(DOCUMENT) == []
    assert program_from_document(DOCUMENT) == PROGRAM


def test_the_program_document() -> None:
    assert program_document(PROGRAM) == DOCUMENT


def test_document_round_trips_exactly_through_json() -> None:
    text = json.dumps(program_document(PROGRAM))
    restored = program_from_document(json.loads(text))
    assert restored == PROGRAM
    assert json.dumps(program_document(restored)) == text
    rebate = restored.measure("quarterly-rebate")
    assert isinstance(rebate, Rebate)
    assert [str(s.value) for s in rebate.steps] == ["1", "2.5"]
    assert str(restored.budget.cap) == "250000.00"  # the spelling is kept, not only the value


def test_a_minimal_document_takes_the_defaults() -> None:
    minimal = {
        "name": "Thank you",
        "objective": "Retention",
        "measures": [{"id": "gift", "kind": "tier-upgrade-gift"}],
        "schedule": {"starts": "2026-01-01T00:00:00Z", "cycle": "none"},
        "budget": {"currency": "EUR", "cap": 1000},
    }
    assert validate_program(minimal) == []
    assert program_from_document(minimal) == Program(
        name="Thank you",
        objective="Retention",
        schedule=Schedule(datetime(2026, 1, 1, tzinfo=UTC), None, "none"),
        budget=Budget("EUR", d("1000")),
        measures=(TierUpgradeGift("gift"),),
    )
    assert program_document(program_from_document(minimal))["target_group"] == {
        "tiers": [],
        "rfm_segments": [],
        "min_spend": None,
        "min_orders": None,
        "months": 12,
        "members": [],
    }


def test_times_are_kept_in_utc() -> None:
    program = program_from_document(with_part("schedule", starts="2026-01-01T02:00:00+02:00"))
    assert program.schedule.starts == datetime(2026, 1, 1, tzinfo=UTC)
    assert program.schedule.starts.tzinfo is UTC
    assert program_document(program)["schedule"]["starts"] == "2026-01-01T00:00:00+00:00"


def test_an_amount_coupon() -> None:
    program = program_from_document(with_measure(2, percent=None, amount="25.00", min_order=None))
    assert program.measure("welcome-coupon") == OneTimeDiscount(
        "welcome-coupon", None, d("25.00"), d("0"), 60
    )


def test_measure_lookup() -> None:
    assert PROGRAM.measure("tier-discount") == TierDiscount("tier-discount")
    with pytest.raises(KeyError):
        PROGRAM.measure("nope")


def test_an_invalid_document_raises_with_every_problem() -> None:
    with pytest.raises(
        ValueError, match=r"invalid program document: name is required; budget.cap is required"
    ):
        program_from_document(without_in("budget", "cap") | {"name": None})


# --- validation: one rule at a time ------------------------------------------------------------


def _measures(*measures: dict[str, Any]) -> dict[str, Any]:
    return document(measures=list(measures))


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        # required fields
        (document(name=None), "name is required"),
        (document(objective=None), "objective is required"),
        (document(measures=None), "measures is required"),
        (document(schedule=None), "schedule is required"),
        (document(budget=None), "budget is required"),
        (document(nmae="x"), "unknown field 'nmae'"),
        # name and objective
        (document(name=""), "name must be text of 1 to 120 characters"),
        (document(name="   "), "name must be text of 1 to 120 characters"),
        (document(name="n" * 121), "name must be text of 1 to 120 characters"),
        (document(name=5), "name must be text of 1 to 120 characters"),
        (document(objective="o" * 2001), "objective must be text of 1 to 2000 characters"),
        # targets
        (document(targets="more sales"), "targets must be a list"),
        (
            document(targets=[{"metric": "profit", "target": "5"}]),
            "targets[0].metric must be one of sales_uplift_pct, nps, retention_pct, new_customers, got 'profit'",
        ),
        (document(targets=[{"metric": "nps"}]), "targets[0].target is required"),
        (
            document(targets=[{"metric": "nps", "target": 50.5}]),
            'targets[0].target must be a decimal string such as "1250.50", got 50.5',
        ),
        (
            document(targets=[{"metric": "nps", "target": "101"}]),
            "targets[0].target must be an NPS from -100 to 100, got 101",
        ),
        (
            document(targets=[{"metric": "sales_uplift_pct", "target": "0"}]),
            "targets[0].target must be an uplift above 0 %, got 0",
        ),
        (
            document(targets=[{"metric": "retention_pct", "target": "100.5"}]),
            "targets[0].target must be a percent above 0 and at most 100, got 100.5",
        ),
        (
            document(targets=[{"metric": "new_customers", "target": "2.5"}]),
            "targets[0].target must be a whole number from 1, got 2.5",
        ),
        (
            document(targets=[{"metric": "nps", "target": "1.234"}]),
            "targets[0].target takes at most 2 decimals, got 1.234",
        ),
        (
            document(targets=[{"metric": "nps", "target": "10"}, {"metric": "nps", "target": "20"}]),
            "targets[1]: the metric nps has a target already",
        ),
        (
            document(targets=[{"metric": "nps", "target": "1", "by": "2027"}]),
            "targets[0]: unknown field 'by'",
        ),
        # target group
        (document(target_group=[]), "target_group must be an object"),
        (
            with_part("target_group", tiers=["Gold!"]),
            "target_group.tiers[0] must be a tier name, got 'Gold!'",
        ),
        (with_part("target_group", tiers="Gold"), "target_group.tiers must be a list"),
        (
            with_part("target_group", rfm_segments=["vip"]),
            "target_group.rfm_segments[0] must be one of champions, loyal, big-spenders, new, at-risk, hibernating, others, got 'vip'",
        ),
        (
            with_part("target_group", min_spend="0"),
            "target_group.min_spend must be an amount above 0 with at most 2 decimals, got 0",
        ),
        (
            with_part("target_group", min_orders=0),
            "target_group.min_orders must be a whole number from 1 to 1000000, got 0",
        ),
        (
            with_part("target_group", min_orders="6"),
            "target_group.min_orders must be a whole number from 1 to 1000000, got '6'",
        ),
        (
            with_part("target_group", months=61),
            "target_group.months must be a whole number from 1 to 60, got 61",
        ),
        (
            with_part("target_group", members=[""]),
            "target_group.members[0] must be a member id of 1-64 characters, got ''",
        ),
        (with_part("target_group", segment="x"), "target_group: unknown field 'segment'"),
        # control share
        (
            document(control_share="0.6"),
            "control_share must be from 0 to 0.5 with at most 4 decimals, got 0.6",
        ),
        (
            document(control_share="-0.1"),
            "control_share must be from 0 to 0.5 with at most 4 decimals, got -0.1",
        ),
        (
            document(control_share="0.12345"),
            "control_share must be from 0 to 0.5 with at most 4 decimals, got 0.12345",
        ),
        (document(control_share=0.1), 'control_share must be a decimal string such as "1250.50", got 0.1'),
        # measures in general
        (document(measures=[]), "measures needs at least one measure"),
        (document(measures={"id": "x"}), "measures must be a list"),
        (document(measures=["rebate"]), "measures[0] must be an object"),
        (
            _measures({"id": "x", "kind": "bonus"}),
            "measures[0].kind must be one of ladder-discount, tier-discount, one-time-discount, rebate, threshold-gift, tier-upgrade-gift, honour-certificate, thank-you-letter, entitlement, got 'bonus'",
        ),
        (_measures({"id": "x"}), "measures[0].kind is required"),
        (_measures({"kind": "tier-discount"}), "measures[0].id is required"),
        (
            _measures({"id": "has space", "kind": "tier-discount"}),
            "measures[0].id must be 1-64 letters, digits, '.', '_' or '-', got 'has space'",
        ),
        (
            _measures({"id": "x", "kind": "tier-discount"}, {"id": "x", "kind": "tier-upgrade-gift"}),
            "measure id 'x' is used twice",
        ),
        (with_measure(1, rate="0.02"), "measures[1]: unknown field 'rate'"),
        # ladder discount
        (with_measure(0, basis="weight"), "measures[0].basis must be one of volume, frequency, got 'weight'"),
        (
            with_measure(0, applies="this-cycle"),
            "measures[0].applies must be one of next-cycle, got 'this-cycle'",
        ),
        (without_in("measures", "steps", 0), "measures[0].steps is required"),
        (with_measure(0, steps=[]), "measures[0].steps needs at least one step"),
        (with_measure(0, steps="3%"), "measures[0].steps must be a list of steps"),
        (with_measure(0, steps=[{"min": "1"}]), "measures[0].steps[0].value is required"),
        (
            with_measure(0, steps=[{"min": "1", "value": "3", "max": "9"}]),
            "measures[0].steps[0]: unknown field 'max'",
        ),
        (
            with_measure(0, steps=[{"min": "1e5", "value": "3"}]),
            "measures[0].steps[0].min must be a decimal string such as \"1250.50\", got '1e5'",
        ),
        (
            with_measure(0, steps=[{"min": "250000", "value": "3"}, {"min": "100000", "value": "4.5"}]),
            "measures[0].steps must be strictly ascending by min: measures[0].steps[1].min 100000 is not above 250000",
        ),
        (
            with_measure(0, steps=[{"min": "100000", "value": "130"}]),
            "measures[0].steps[0].value must be a percent above 0 and at most 100, at most 4 decimals",
        ),
        (
            with_measure(0, basis="frequency", steps=[{"min": "2.5", "value": "1"}]),
            "measures[0].steps[0].min must be a whole number of orders, at least 1",
        ),
        # one-time discount
        (with_measure(2, amount="5"), "measures[2] takes exactly one of percent and amount"),
        (with_measure(2, percent=None), "measures[2] takes exactly one of percent and amount"),
        (
            with_measure(2, percent="0"),
            "measures[2].percent must be a percent above 0 and at most 100, at most 4 decimals",
        ),
        (
            with_measure(2, percent=None, amount="0.001"),
            "measures[2].amount must be an amount above 0 with at most 2 decimals, got 0.001",
        ),
        (
            with_measure(2, min_order="-1"),
            "measures[2].min_order must be an amount of 0 or more with at most 2 decimals, got -1",
        ),
        (with_measure(2, valid_days=0), "measures[2].valid_days must be a whole number from 1 to 366, got 0"),
        # rebate
        (with_measure(3, basis="margin"), "measures[3].basis must be one of volume, count, got 'margin'"),
        (
            with_measure(3, pay_as="vouchers"),
            "measures[3].pay_as must be one of points, cash, got 'vouchers'",
        ),
        (without_in("measures", "pay_as", 3), "measures[3].pay_as is required"),
        (with_measure(3, fixed="no"), "measures[3].fixed must be true or false, got 'no'"),
        (
            with_measure(4, steps=[{"min": "12", "value": "500.001"}]),
            "measures[4].steps[0].value must be an amount above 0 with at most 2 decimals",
        ),
        (
            with_measure(3, personalised={"vip": [{"min": "1", "value": "5"}]}),
            "measures[3].personalised: 'vip' is not an RFM segment (champions, loyal, big-spenders, new, at-risk, hibernating, others)",
        ),
        (
            with_measure(
                3,
                personalised={"champions": [{"min": "100000", "value": "2"}, {"min": "50000", "value": "4"}]},
            ),
            "measures[3].personalised.champions must be strictly ascending by min: measures[3].personalised.champions[1].min 50000 is not above 100000",
        ),
        (
            with_measure(3, personalised=["champions"]),
            "measures[3].personalised must be an object of RFM segment: steps",
        ),
        # threshold gift
        (with_measure(5, basis="cycle"), "measures[5].basis must be one of order, cycle-spend, got 'cycle'"),
        (
            with_measure(5, min="0"),
            "measures[5].min must be an amount above 0 with at most 2 decimals, got 0",
        ),
        (with_measure(5, item=""), "measures[5].item must be text of 1 to 64 characters"),
        (without_in("measures", "item", 5), "measures[5].item is required"),
        # tier-upgrade gift
        (with_measure(6, tiers=[""]), "measures[6].tiers[0] must be a tier name, got ''"),
        # schedule
        (without_in("schedule", "starts"), "schedule.starts is required"),
        (without_in("schedule", "cycle"), "schedule.cycle is required"),
        (
            with_part("schedule", cycle="week"),
            "schedule.cycle must be one of none, month, quarter, year, got 'week'",
        ),
        (
            with_part("schedule", starts="2026-01-01T00:00:00"),
            "schedule.starts must be an ISO 8601 time with a UTC offset, such as \"2026-01-01T00:00:00+00:00\", got '2026-01-01T00:00:00'",
        ),
        (
            with_part("schedule", ends="next year"),
            "schedule.ends must be an ISO 8601 time with a UTC offset, such as \"2026-01-01T00:00:00+00:00\", got 'next year'",
        ),
        (
            with_part("schedule", ends="2026-01-01T00:00:00+00:00"),
            "schedule.ends must be after schedule.starts",
        ),
        (
            with_part("schedule", ends="2026-01-01T01:00:00+02:00"),
            "schedule.ends must be after schedule.starts",
        ),
        (document(schedule="2026"), "schedule must be an object"),
        # budget
        (with_part("budget", currency="eur"), "budget.currency must be three capital letters, got 'eur'"),
        (without_in("budget", "currency"), "budget.currency is required"),
        (with_part("budget", cap="0"), "budget.cap must be an amount above 0 with at most 2 decimals, got 0"),
        (
            with_part("budget", cap="100.001"),
            "budget.cap must be an amount above 0 with at most 2 decimals, got 100.001",
        ),
        (
            with_part("budget", per_member_cap="0"),
            "budget.per_member_cap must be an amount above 0 with at most 2 decimals, got 0",
        ),
        (
            with_part("budget", per_member_cap="250000.01"),
            "budget.per_member_cap 250000.01 cannot be above budget.cap 250000.00",
        ),
        (
            with_part("budget", point_value="0"),
            "budget.point_value must be above 0 with at most 6 decimals, got 0",
        ),
        (
            with_part("budget", point_value="0.0000001"),
            "budget.point_value must be above 0 with at most 6 decimals, got 1E-7",
        ),
        # what a measure needs of the schedule and the budget
        (
            with_part("budget", point_value=None),
            "measures[3] (rebate 'quarterly-rebate') pays points, so budget.point_value is required",
        ),
    ],
)
def test_each_problem_is_reported(candidate: dict[str, Any], problem: str) -> None:
    assert validate_program(candidate) == [problem]


@pytest.mark.parametrize(
    "candidate",
    [
        document(targets=None, target_group=None, control_share=None),
        document(targets=[]),
        document(control_share="0"),
        document(control_share="0.5"),
        document(target_group={}),
        with_part("target_group", min_spend=None, min_orders=None, tiers=[], rfm_segments=[], members=[]),
        with_part("schedule", ends=None),
        with_part("schedule", cycle="month"),
        with_part("schedule", cycle="none"),  # no ladder discount then; the rebates settle at the end
        with_part("budget", per_member_cap=None),
        with_part("budget", per_member_cap="250000.00"),
        with_part("budget", cap=250000),
        with_measure(3, fixed=None, personalised=None),
        with_measure(4, pay_as="points"),
        with_measure(5, basis="cycle-spend"),
        with_measure(6, tiers=[]),
        with_measure(0, basis="frequency", steps=[{"min": 6, "value": "1"}, {"min": "12", "value": "2"}]),
    ],
)
def test_valid_variants_have_no_problems(candidate: dict[str, Any]) -> None:
    problems = validate_program(candidate)
    if candidate["schedule"]["cycle"] == "none":  # a ladder discount needs a next cycle
        assert problems == [
            "measures[0] (ladder-discount 'volume-ladder') applies to the next cycle, so schedule.cycle cannot be 'none'"
        ]
    else:
        assert problems == []


def test_without_cycles_a_rebate_needs_an_end() -> None:
    candidate = with_part("schedule", cycle="none", ends=None)
    del candidate["measures"][0]  # the ladder discount
    assert validate_program(candidate) == [
        "measures[2] (rebate 'quarterly-rebate') settles at cycle close: give the schedule a cycle or an end",
        "measures[3] (rebate 'frequent-buyer') settles at cycle close: give the schedule a cycle or an end",
    ]


@pytest.mark.parametrize("candidate", [None, [], "program", 3])
def test_a_document_that_is_not_an_object(candidate: Any) -> None:
    assert validate_program(candidate) == ["a program document must be a JSON object"]


def test_an_empty_document() -> None:
    assert validate_program({}) == [
        "name is required",
        "objective is required",
        "measures is required",
        "schedule is required",
        "budget is required",
    ]


def test_all_problems_are_reported_together() -> None:
    broken = copy.deepcopy(DOCUMENT)
    broken["name"] = ""
    broken["colour"] = "blue"
    del broken["objective"]
    broken["targets"].append({"metric": "nps", "target": "x"})
    broken["target_group"]["rfm_segments"] = ["vip"]
    broken["control_share"] = "0.6"
    broken["measures"][0]["steps"][1]["min"] = "100000"
    broken["measures"][1]["kind"] = "bonus"
    broken["measures"][2]["amount"] = "5"
    broken["measures"][3]["steps"] = [{"min": "50000", "value": "0"}]
    broken["measures"][4]["id"] = "quarterly-rebate"
    broken["measures"][5]["min"] = 20000.5
    broken["measures"][6]["colour"] = "red"
    broken["schedule"]["ends"] = "2025-06-01T00:00:00+00:00"
    broken["budget"] = {"currency": "eur", "cap": "-1"}
    assert validate_program(broken) == [
        "objective is required",
        "unknown field 'colour'",
        "name must be text of 1 to 120 characters",
        "targets[2].target must be a decimal string such as \"1250.50\", got 'x'",
        "target_group.rfm_segments[0] must be one of champions, loyal, big-spenders, new, at-risk, hibernating, others, got 'vip'",
        "control_share must be from 0 to 0.5 with at most 4 decimals, got 0.6",
        "measures[0].steps must be strictly ascending by min: measures[0].steps[1].min 100000 is not above 100000",
        "measures[1].kind must be one of ladder-discount, tier-discount, one-time-discount, rebate, threshold-gift, tier-upgrade-gift, honour-certificate, thank-you-letter, entitlement, got 'bonus'",
        "measures[2] takes exactly one of percent and amount",
        "measures[3].steps[0].value must be a percent above 0 and at most 100, at most 4 decimals",
        "measure id 'quarterly-rebate' is used twice",
        'measures[5].min must be a decimal string such as "1250.50", got 20000.5',
        "measures[6]: unknown field 'colour'",
        "schedule.ends must be after schedule.starts",
        "budget.currency must be three capital letters, got 'eur'",
        "budget.cap must be an amount above 0 with at most 2 decimals, got -1",
        "measures[3] (rebate 'quarterly-rebate') pays points, so budget.point_value is required",
    ]


# --- lifecycle -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "action", "after"),
    [
        ("draft", "activate", "active"),
        ("active", "pause", "paused"),
        ("paused", "activate", "active"),
        ("active", "end", "ended"),
        ("paused", "end", "ended"),
    ],
)
def test_allowed_transitions(status: Any, action: Any, after: str) -> None:
    assert transition(status, action) == after


@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        ("draft", "pause", "cannot pause a draft program; a draft program can: activate"),
        ("draft", "end", "cannot end a draft program; a draft program can: activate"),
        ("active", "activate", "cannot activate an active program; an active program can: pause, end"),
        ("paused", "pause", "cannot pause a paused program; a paused program can: activate, end"),
        ("ended", "activate", "cannot activate an ended program: ended is final"),
        ("ended", "pause", "cannot pause an ended program: ended is final"),
        ("ended", "end", "cannot end an ended program: ended is final"),
        ("archived", "end", "unknown program status 'archived': one of draft, active, paused, ended"),
        ("draft", "delete", "unknown program action 'delete': one of activate, pause, end"),
    ],
)
def test_refused_transitions(status: Any, action: Any, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        transition(status, action)
    assert str(raised.value) == message


# --- an entitlement measure -------------------------------------------------------------------------

ENTITLEMENT = {
    "id": "early-access",
    "kind": "entitlement",
    "basis": "order",
    "min": "1000",
    "right": "priority-purchase",
    "name": "Early access to launches",
    "skus": ["X2", "X1"],
    "quota": 2,
    "valid_days": 60,
}


def test_an_entitlement_measure_reads_and_round_trips() -> None:
    from rewards_service.domain import EntitlementGrant

    document = copy.deepcopy(DOCUMENT)
    document["measures"].append(ENTITLEMENT)
    assert validate_program(document) == []
    program = program_from_document(document)
    right = program.measure("early-access")
    assert right == EntitlementGrant(
        "early-access",
        "order",
        d("1000"),
        "priority-purchase",
        "Early access to launches",
        skus=("X1", "X2"),
        quota=2,
        valid_days=60,
    )
    assert program_from_document(json.loads(json.dumps(program_document(program)))) == program


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"right": "gold-bar"}, "right must be one of priority-purchase, custom-service"),
        ({"right": "custom-service"}, "a custom-service entitlement names its service"),
        (
            {"service": "engineer"},
            "a priority-purchase entitlement is scoped by skus, categories or a launch",
        ),
        ({"quota": 0}, "quota must be a whole number from 1"),
        ({"valid_days": 0}, "valid_days must be a whole number from 1"),
        ({"min": "-5"}, "min must be an amount above 0"),
        ({"unit": "litres"}, "unit must be one of units, sessions, hours"),
    ],
)
def test_an_entitlement_measure_problems(change: dict[str, Any], problem: str) -> None:
    document = copy.deepcopy(DOCUMENT)
    document["measures"].append({**ENTITLEMENT, **change})
    problems = validate_program(document)
    assert any(problem in p for p in problems), problems
