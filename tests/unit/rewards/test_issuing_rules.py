"""Whom a program reaches (its schedule, its target group, its control group, RFM segments), the gifts
an order or a promotion earns with the key that makes each "once", and a gift's fulfilment steps."""

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from itertools import product

import pytest

from rewards_service.domain import (
    Budget,
    LadderDiscount,
    MemberFacts,
    Program,
    Schedule,
    Step,
    TargetGroup,
    ThresholdGift,
    TierUpgradeGift,
    holdout,
    segment_of,
)
from rewards_service.domain import issuing as issuing_module
from rewards_service.domain.fulfilment import FULFILMENT, fulfilment_step
from rewards_service.domain.issuing import (
    gifts_for_order,
    gifts_for_promotion,
    needs_segment,
    once_key,
    reach,
)


def d(value: str) -> Decimal:
    return Decimal(value)


STARTS = datetime(2026, 1, 1, tzinfo=UTC)
ENDS = datetime(2027, 1, 1, tzinfo=UTC)
Q1 = datetime(2026, 2, 10, 12, tzinfo=UTC)
Q2 = datetime(2026, 5, 10, 12, tzinfo=UTC)
PID = "8f0c1f4e-0000-4000-8000-000000000001"
OTHER_PID = "8f0c1f4e-0000-4000-8000-000000000002"

BIG_ORDER = ThresholdGift("big-order", "order", d("1000"), "mug")
QUARTER_SPEND = ThresholdGift("quarter-spend", "cycle-spend", d("5000"), "hamper")
PROGRAM = Program(
    name="Big orders",
    objective="more big orders",
    schedule=Schedule(STARTS, ENDS, "quarter"),
    budget=Budget("EUR", d("10000")),
    measures=(BIG_ORDER,),
)


def with_measures(*measures: ThresholdGift | TierUpgradeGift | LadderDiscount) -> Program:
    return replace(PROGRAM, measures=measures)


def member(member_id: str = "m-1", *orders: tuple[datetime, str], tier: str | None = None) -> MemberFacts:
    return MemberFacts(member_id, tier, tuple((at, d(net)) for at, net in orders))


# --- reach ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "where"),
    [
        (STARTS - timedelta(microseconds=1), "outside"),
        (STARTS, "treatment"),
        (ENDS - timedelta(microseconds=1), "treatment"),
        (ENDS, "outside"),  # ends is exclusive
        (ENDS + timedelta(days=400), "outside"),
    ],
)
def test_a_program_reaches_nobody_outside_its_schedule(at: datetime, where: str) -> None:
    assert reach(PID, PROGRAM, member(), at) == where


def test_a_program_reaches_nobody_outside_its_target_group() -> None:
    gold_only = replace(PROGRAM, target_group=TargetGroup(tiers=frozenset({"Gold"})))
    assert reach(PID, gold_only, member(tier="Gold"), Q1) == "treatment"
    assert reach(PID, gold_only, member(tier="Silver"), Q1) == "outside"
    assert reach(PID, gold_only, member(tier=None), Q1) == "outside"  # no tier yet
    listed = replace(PROGRAM, target_group=TargetGroup(members=frozenset({"acme"})))
    assert reach(PID, listed, member("acme"), Q1) == "treatment"
    assert reach(PID, listed, member("other"), Q1) == "outside"
    spenders = replace(PROGRAM, target_group=TargetGroup(min_spend=d("500"), months=1))
    assert reach(PID, spenders, member("m", (Q1 - timedelta(days=3), "500")), Q1) == "treatment"
    assert reach(PID, spenders, member("m", (Q1 - timedelta(days=40), "500")), Q1) == "outside"


def test_the_control_group_is_drawn_deterministically_per_program_and_member() -> None:
    half = replace(PROGRAM, control_share=d("0.5"))
    members = [f"m-{i}" for i in range(60)]
    split = {m: reach(PID, half, member(m), Q1) for m in members}
    assert split == {m: ("control" if holdout(PID, m, d("0.5")) else "treatment") for m in members}
    assert {m: reach(PID, half, member(m), Q2) for m in members} == split  # the same at any moment
    assert 0 < sum(g == "control" for g in split.values()) < len(members)
    other = {m: reach(OTHER_PID, half, member(m), Q1) for m in members}
    assert other != split  # another program splits the same members independently
    assert {reach(PID, PROGRAM, member(m), Q1) for m in members} == {"treatment"}  # share 0: nobody held out


def test_outside_comes_before_the_control_group() -> None:
    half = replace(PROGRAM, control_share=d("0.5"), target_group=TargetGroup(tiers=frozenset({"Gold"})))
    control = next(f"m-{i}" for i in range(100) if holdout(PID, f"m-{i}", d("0.5")))
    assert reach(PID, half, member(control, tier="Gold"), Q1) == "control"
    assert reach(PID, half, member(control, tier="Silver"), Q1) == "outside"  # not recorded as control
    assert reach(PID, half, member(control, tier="Gold"), ENDS) == "outside"


def champion(at: datetime) -> MemberFacts:
    """24 orders of 5,000 in the 24 days up to ``at``: R3, F3, M3."""
    return member("champ", *((at - timedelta(days=day), "5000") for day in range(24)))


def test_rfm_segment_targeting_decides_on_the_segment_at_the_moment() -> None:
    champions = replace(PROGRAM, target_group=TargetGroup(rfm_segments=frozenset({"champions"})))
    assert needs_segment(champions) and not needs_segment(PROGRAM)
    facts = champion(Q1)
    assert segment_of(facts, Q1) == "champions"
    assert reach(PID, champions, facts, Q1) == "treatment"
    later = Q1 + timedelta(days=120)  # nothing since: no longer recent
    assert segment_of(facts, later) != "champions"
    assert reach(PID, champions, facts, later) == "outside"
    newcomer = member("new", (Q1 - timedelta(days=2), "100"))
    assert segment_of(newcomer, Q1) == "new"
    assert reach(PID, champions, newcomer, Q1) == "outside"
    newcomers = replace(PROGRAM, target_group=TargetGroup(rfm_segments=frozenset({"new", "champions"})))
    assert reach(PID, newcomers, newcomer, Q1) == reach(PID, newcomers, facts, Q1) == "treatment"


def test_the_segment_is_computed_only_when_the_target_group_names_segments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_segment(*_: object) -> str:
        raise AssertionError("segment_of called for a program without RFM segments")

    monkeypatch.setattr(issuing_module, "segment_of", no_segment)
    assert reach(PID, PROGRAM, champion(Q1), Q1) == "treatment"


# --- gifts for an order ----------------------------------------------------------------------------


def test_an_order_of_at_least_the_minimum_earns_the_order_gift() -> None:
    facts = member("m-1", (Q1, "1000"))
    (due,) = gifts_for_order(PID, PROGRAM, facts, "O-1", d("1000"), Q1)
    assert (due.measure_id, due.item_id, due.cycle) == ("big-order", "mug", "2026-Q1")
    assert due.key == once_key("threshold-gift", PID, "big-order", "m-1", "2026-Q1")
    assert due.reason == "order O-1 of 1000 reached 1000"
    small = member("m-1", (Q1, "999.99"))
    assert gifts_for_order(PID, PROGRAM, small, "O-2", d("999.99"), Q1) == []


def test_only_threshold_gifts_are_due_on_an_order() -> None:
    ladder = LadderDiscount("ladder", "volume", (Step(d("100"), d("3")),))
    upgrade = TierUpgradeGift("welcome")
    program = with_measures(ladder, upgrade, BIG_ORDER)
    dues = gifts_for_order(PID, program, member("m", (Q1, "5000")), "O", d("5000"), Q1)
    assert [due.measure_id for due in dues] == ["big-order"]


@pytest.mark.parametrize(
    ("earlier", "amount", "due"),
    [
        ((), "4999.99", False),  # 0 → 4999.99
        ((), "5000", True),  # 0 → 5000: min ≤ after
        ((), "7000", True),  # one order past it
        (("3000",), "2000", True),  # 3000 → 5000
        (("4999.99",), "0.01", True),
        (("5000",), "100", False),  # 5000 → 5100: crossed before (before < min fails)
        (("2000", "3500"), "1", False),  # 5500 → 5501
        (("1000", "1000"), "2999.99", False),  # 2000 → 4999.99
    ],
)
def test_the_cycle_spend_gift_is_due_when_the_order_crosses_the_minimum(
    earlier: tuple[str, ...], amount: str, due: bool
) -> None:
    program = with_measures(QUARTER_SPEND)
    before = tuple((Q1 - timedelta(days=i + 1), net) for i, net in enumerate(earlier))
    facts = member("m-1", *before, (Q1, amount))
    dues = gifts_for_order(PID, program, facts, "O-9", d(amount), Q1)
    assert [(x.measure_id, x.item_id, x.cycle) for x in dues] == (
        [("quarter-spend", "hamper", "2026-Q1")] if due else []
    )
    if due:
        after = sum((d(net) for net in (*earlier, amount)), d("0"))
        assert dues[0].reason == f"spend of {after} in 2026-Q1 with order O-9 reached 5000"


def test_the_cycle_spend_gift_is_due_once_as_orders_add_up() -> None:
    program = with_measures(QUARTER_SPEND)
    orders: list[tuple[datetime, str]] = []
    due_on: list[int] = []
    for index in range(6):  # 2,000 each: 2000, 4000, 6000 (crossed), 8000, ...
        at = Q1 + timedelta(days=index)
        orders.append((at, "2000"))
        if gifts_for_order(PID, program, member("m-1", *orders), f"O-{index}", d("2000"), at):
            due_on.append(index)
    assert due_on == [2]


def test_the_cycle_spend_counts_the_orders_of_this_cycle_only() -> None:
    program = with_measures(QUARTER_SPEND)
    facts = member("m-1", (Q1, "4000"), (Q2, "2000"))  # Q1's spend is not Q2's
    assert gifts_for_order(PID, program, facts, "O-2", d("2000"), Q2) == []
    kept = member("m-1", (Q2 - timedelta(days=1), "3000"), (Q2, "2000"))
    assert len(gifts_for_order(PID, program, kept, "O-3", d("2000"), Q2)) == 1
    refunded = member("m-1", (Q2 - timedelta(days=1), "0"), (Q2, "2000"))  # wholly refunded: counts 0
    assert gifts_for_order(PID, program, refunded, "O-3", d("2000"), Q2) == []


@pytest.mark.parametrize("at", [STARTS - timedelta(microseconds=1), ENDS, ENDS + timedelta(days=1)], ids=str)
def test_an_order_outside_the_schedule_earns_nothing(at: datetime) -> None:
    program = with_measures(BIG_ORDER, QUARTER_SPEND)
    facts = member("m-1", (at, "9000"))
    assert gifts_for_order(PID, program, facts, "O-1", d("9000"), at) == []


def test_the_once_key_is_one_per_program_measure_member_and_cycle() -> None:
    def key(program_id: str, member_id: str, at: datetime, order: str) -> str:
        facts = member(member_id, (at, "1500"))
        (due,) = gifts_for_order(program_id, PROGRAM, facts, order, d("1500"), at)
        return due.key

    first = key(PID, "m-1", Q1, "O-1")
    assert key(PID, "m-1", Q1 + timedelta(days=20), "O-2") == first  # same cycle: the same key
    assert (
        len({first, key(PID, "m-1", Q2, "O-3"), key(PID, "m-2", Q1, "O-4"), key(OTHER_PID, "m-1", Q1, "O-5")})
        == 4
    )
    both = with_measures(BIG_ORDER, replace(BIG_ORDER, id="big-order-2"))
    dues = gifts_for_order(PID, both, member("m-1", (Q1, "1500")), "O-1", d("1500"), Q1)
    assert len({due.key for due in dues}) == 2  # one per measure
    assert all(re.fullmatch(r"[0-9a-f]{64}", due.key) for due in dues)


def test_a_program_without_cycles_has_one_key_for_its_whole_schedule() -> None:
    program = replace(PROGRAM, schedule=Schedule(STARTS, None, "none"))
    keys = set()
    for at in (Q1, Q2, ENDS + timedelta(days=500)):
        (due,) = gifts_for_order(PID, program, member("m-1", (at, "1000")), "O", d("1000"), at)
        assert due.cycle == "all"
        keys.add(due.key)
    assert len(keys) == 1


# --- gifts for a promotion -------------------------------------------------------------------------

WELCOME_GOLD = TierUpgradeGift("welcome-gold", frozenset({"Gold"}))
UPGRADES = with_measures(WELCOME_GOLD)


def promoted(
    program: Program = UPGRADES,
    *,
    direction: str = "up",
    to_tier: str = "Gold",
    gift: str | None = "gold-box",
    at: datetime = Q1,
    member_id: str = "m-1",
    program_id: str = PID,
) -> list[tuple[str | None, str | None, str | None, str, str]]:
    dues = gifts_for_promotion(program_id, program, member_id, direction, to_tier, gift, at)
    return [(due.measure_id, due.item_id, due.cycle, due.key, due.reason) for due in dues]


def test_a_promotion_earns_the_new_tiers_upgrade_gift() -> None:
    key = once_key("upgrade-gift", PID, "welcome-gold", "m-1", "Gold", Q1.isoformat())
    assert promoted() == [("welcome-gold", "gold-box", "2026-Q1", key, "promoted to Gold")]


@pytest.mark.parametrize("direction", ["down", "same"])
def test_only_a_promotion_earns_an_upgrade_gift(direction: str) -> None:
    assert promoted(direction=direction) == []


def test_the_upgrade_gift_is_for_the_measures_tiers_or_any_when_it_names_none() -> None:
    assert promoted(to_tier="Silver") == []
    anyone = with_measures(TierUpgradeGift("welcome"))
    assert [due[:2] for due in promoted(anyone, to_tier="Silver")] == [("welcome", "gold-box")]
    both = with_measures(WELCOME_GOLD, TierUpgradeGift("welcome"), BIG_ORDER)
    assert [due[0] for due in promoted(both)] == ["welcome-gold", "welcome"]


@pytest.mark.parametrize("gift", [None, ""])
def test_no_upgrade_gift_benefit_earns_nothing(gift: str | None) -> None:
    assert promoted(gift=gift) == []


def test_the_upgrade_gift_key_is_one_per_promotion() -> None:
    (first,) = promoted()
    assert promoted() == [first]  # the same promotion again: the same key
    later = Q1 + timedelta(seconds=1)
    keys = {
        first[3],
        promoted(at=later)[0][3],
        promoted(member_id="m-2")[0][3],
        promoted(program_id=OTHER_PID)[0][3],
        promoted(with_measures(TierUpgradeGift("welcome")), to_tier="Gold")[0][3],
    }
    assert len(keys) == 5


def test_a_promotion_outside_the_schedule_has_no_cycle() -> None:
    # whether the program reaches the member at all is ``reach``'s to decide
    assert [due[2] for due in promoted(at=ENDS + timedelta(days=1))] == [None]


def test_the_upgrade_gift_key_is_the_same_for_the_same_moment_in_any_offset() -> None:
    elsewhere = Q1.astimezone(timezone(timedelta(hours=2)))
    assert elsewhere == Q1
    assert promoted(at=elsewhere) == promoted(at=Q1)


# --- fulfilment ------------------------------------------------------------------------------------

ALLOWED = {
    ("issued", "shipped"): None,
    ("issued", "delivered"): "spend",
    ("shipped", "delivered"): "spend",
    ("issued", "cancelled"): "release",
    ("shipped", "cancelled"): "release",
}


def test_the_fulfilment_statuses() -> None:
    assert FULFILMENT == ("issued", "shipped", "delivered", "cancelled")


@pytest.mark.parametrize(("status", "to"), list(ALLOWED))
def test_every_allowed_fulfilment_step_and_its_effect_on_the_budget(status: str, to: str) -> None:
    assert fulfilment_step(status, to) == ALLOWED[(status, to)]


REFUSED = [step for step in product(FULFILMENT, FULFILMENT) if step not in ALLOWED]


def test_every_other_step_is_refused() -> None:
    assert len(REFUSED) == 16 - 5


@pytest.mark.parametrize(("status", "to"), REFUSED)
def test_a_refused_step_says_why(status: str, to: str) -> None:
    if status in ("delivered", "cancelled"):
        message = f"the gift is {status}: that is final"
    elif status == "issued":
        message = f"a gift that is issued can become shipped, delivered, cancelled, not {to}"
    else:
        message = f"a gift that is shipped can become delivered, cancelled, not {to}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        fulfilment_step(status, to)


def test_unknown_statuses_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^a gift that is lost can become nothing, not shipped$"):
        fulfilment_step("lost", "shipped")
    with pytest.raises(
        ValueError, match=r"^a gift that is issued can become shipped, delivered, cancelled, not returned$"
    ):
        fulfilment_step("issued", "returned")
    with pytest.raises(ValueError, match=r"^the gift is delivered: that is final$"):
        fulfilment_step("delivered", "returned")
