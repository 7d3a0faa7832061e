"""Target groups (criteria combined with AND; empty means everyone) and the deterministic control group."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from rewards_service.domain import (
    Figures,
    MemberFacts,
    TargetGroup,
    figures,
    holdout,
    holdout_draw,
    in_target,
    order_dates,
    recent_figures,
)

NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)


def d(value: str) -> Decimal:
    return Decimal(value)


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


FACTS = MemberFacts(
    "m-1",
    "Gold",
    (
        (ago(10), d("30000")),
        (ago(40), d("25000.50")),
        (ago(100), d("0")),  # cancelled: no spend, not an order
        (ago(200), d("45000")),
        (ago(400), d("90000")),  # outside a 12-month window
    ),
)


# --- figures -----------------------------------------------------------------------------------


def test_recent_figures_are_the_last_months_up_to_now() -> None:
    assert recent_figures(FACTS, NOW, 12) == Figures(d("100000.50"), 3)
    assert recent_figures(FACTS, NOW, 1) == Figures(d("30000"), 1)
    assert recent_figures(FACTS, NOW, 24) == Figures(d("190000.50"), 4)


def test_recent_figures_window_is_open_at_the_start_and_closed_at_now() -> None:
    start = datetime(2025, 6, 30, 12, tzinfo=UTC)
    facts = MemberFacts(
        "m", None, ((start, d("10")), (start + timedelta(microseconds=1), d("20")), (NOW, d("40")))
    )
    assert recent_figures(facts, NOW, 12) == Figures(d("60"), 2)
    later = MemberFacts("m", None, ((NOW + timedelta(seconds=1), d("5")),))
    assert recent_figures(later, NOW, 12) == Figures(d("0"), 0)  # not paid yet at now


def test_cycle_figures_are_half_open() -> None:
    start, end = datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)
    facts = MemberFacts(
        "m", None, ((start, d("1")), (end - timedelta(microseconds=1), d("2")), (end, d("4")))
    )
    assert figures(facts, start, end) == Figures(d("3"), 2)
    assert figures(facts, start, None) == Figures(d("7"), 3)


def test_a_partly_refunded_order_counts_its_net() -> None:
    facts = MemberFacts("m", None, ((ago(1), d("70")), (ago(2), d("0")), (ago(3), d("0.01"))))
    assert recent_figures(facts, NOW, 12) == Figures(d("70.01"), 2)


def test_order_dates_are_the_counted_orders_oldest_first() -> None:
    assert order_dates(FACTS, NOW) == [ago(400), ago(200), ago(40), ago(10)]
    assert order_dates(MemberFacts("m"), NOW) == []


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        recent_figures(FACTS, datetime(2026, 6, 30), 12)
    with pytest.raises(ValueError, match="timezone-aware"):
        in_target(TargetGroup(), FACTS, datetime(2026, 6, 30))


# --- the target group ----------------------------------------------------------------------------


def test_an_empty_target_group_is_everyone() -> None:
    assert TargetGroup().everyone is True
    assert in_target(TargetGroup(), MemberFacts("nobody"), NOW) is True
    assert TargetGroup(min_orders=1).everyone is False


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (TargetGroup(tiers=frozenset({"Gold", "Platinum"})), True),
        (TargetGroup(tiers=frozenset({"Silver"})), False),
        (TargetGroup(min_spend=d("100000.50")), True),
        (TargetGroup(min_spend=d("100000.51")), False),
        (TargetGroup(min_spend=d("150000"), months=24), True),
        (TargetGroup(min_orders=3), True),
        (TargetGroup(min_orders=4), False),
        (TargetGroup(min_orders=4, months=24), True),
        (TargetGroup(members=frozenset({"m-1", "m-2"})), True),
        (TargetGroup(members=frozenset({"m-2"})), False),
        (TargetGroup(rfm_segments=frozenset({"loyal", "champions"})), True),
        (TargetGroup(rfm_segments=frozenset({"at-risk"})), False),
    ],
)
def test_each_criterion(target: TargetGroup, expected: bool) -> None:
    assert in_target(target, FACTS, NOW, segment="champions") is expected


def test_criteria_are_combined_with_and() -> None:
    both = TargetGroup(tiers=frozenset({"Gold"}), min_spend=d("50000"))
    assert in_target(both, FACTS, NOW) is True
    assert in_target(both, MemberFacts("m-1", "Silver", FACTS.orders), NOW) is False
    assert in_target(both, MemberFacts("m-1", "Gold", FACTS.orders[:1]), NOW) is False
    listed = TargetGroup(tiers=frozenset({"Gold"}), members=frozenset({"m-1"}))
    assert in_target(listed, FACTS, NOW) is True
    assert in_target(listed, MemberFacts("m-1", "Silver"), NOW) is False
    everything = TargetGroup(
        tiers=frozenset({"Gold"}),
        rfm_segments=frozenset({"champions"}),
        min_spend=d("1"),
        min_orders=1,
        members=frozenset({"m-1"}),
    )
    assert in_target(everything, FACTS, NOW, "champions") is True
    assert in_target(everything, FACTS, NOW, "loyal") is False


def test_a_member_without_a_tier_is_in_no_tier() -> None:
    assert in_target(TargetGroup(tiers=frozenset({"Gold"})), MemberFacts("m", None), NOW) is False


def test_a_segment_criterion_needs_the_segment() -> None:
    with pytest.raises(ValueError, match="segment"):
        in_target(TargetGroup(rfm_segments=frozenset({"champions"})), FACTS, NOW)


# --- the control group -----------------------------------------------------------------------------


MEMBERS = [f"member-{n}" for n in range(10_000)]


def test_holdout_is_deterministic() -> None:
    first = [holdout("p-1", m, d("0.3")) for m in MEMBERS[:500]]
    second = [holdout("p-1", m, d("0.3")) for m in MEMBERS[:500]]
    assert first == second


def test_holdout_draws_are_pinned() -> None:
    # the first 8 bytes of sha256("p-1:member-0") are 68ba4013a40280ce: a change here would move
    # members between the groups of running programs
    assert holdout_draw("p-1", "member-0") == Fraction(0x68BA4013A40280CE, 2**64)
    draws = [holdout_draw("p-1", m) for m in ("member-0", "member-1", "member-2")]
    assert [f"{float(draw):.6f}" for draw in draws] == ["0.409092", "0.631196", "0.212832"]
    assert holdout("p-1", "member-0", d("0.4091")) is True
    assert holdout("p-1", "member-0", d("0.4090")) is False


def test_holdout_is_the_same_in_another_process() -> None:
    code = (
        "from decimal import Decimal\n"
        "from rewards_service.domain import holdout\n"
        "print(''.join('1' if holdout('p-1', f'member-{n}', Decimal('0.3')) else '0' for n in range(300)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # str hashes differ: the split must not
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    here = "".join("1" if holdout("p-1", f"member-{n}", d("0.3")) else "0" for n in range(300))
    assert other.stdout.strip() == here


@pytest.mark.parametrize("share", ["0.1", "0.3", "0.5"])
def test_the_control_share_is_close_to_the_configured_share(share: str) -> None:
    held = sum(holdout("spring-rebate", m, d(share)) for m in MEMBERS)
    assert abs(held / len(MEMBERS) - float(share)) <= 0.015


def test_share_zero_holds_out_nobody_and_one_everybody() -> None:
    assert not any(holdout("p", m, d("0")) for m in MEMBERS)
    assert all(holdout("p", m, d("1")) for m in MEMBERS[:1000])


def test_a_bigger_share_keeps_the_smaller_ones_control_members() -> None:
    small = {m for m in MEMBERS if holdout("p", m, d("0.1"))}
    large = {m for m in MEMBERS if holdout("p", m, d("0.3"))}
    assert small < large


def test_different_programs_split_members_near_independently() -> None:
    a = {m for m in MEMBERS if holdout("program-a", m, d("0.3"))}
    b = {m for m in MEMBERS if holdout("program-b", m, d("0.3"))}
    assert a != b
    assert abs(len(a & b) / len(MEMBERS) - 0.09) <= 0.015  # 0.3 × 0.3 if independent


@pytest.mark.parametrize("share", ["-0.01", "1.01", "NaN"])
def test_a_share_outside_zero_to_one_is_refused(share: str) -> None:
    with pytest.raises(ValueError, match="control share"):
        holdout("p", "m", d(share))
