"""A member's standing: qualification, joining, promotion on orders, scheduled evaluations with grace
and demotion, and CRM overrides as a floor."""

from collections.abc import Sequence
from dataclasses import FrozenInstanceError, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tiers_service.domain import (
    DEFAULT_LADDER,
    Change,
    Due,
    Evaluation,
    Figures,
    Ladder,
    Override,
    Shortfall,
    Standing,
    Tier,
    Window,
    apply_due,
    current_window,
    demotion_target,
    due,
    due_window,
    end_override,
    in_force,
    join,
    meets,
    on_order,
    qualified_tier,
    rank,
    set_override,
    shortfall,
)

TICK = timedelta(microseconds=1)
LADDER = DEFAULT_LADDER  # Standard 10 < Silver 20 < Gold 30 < Platinum 40 < Ambassador 50 (invitation)
SILVER_ALL = replace(
    LADDER, tiers=tuple(replace(t, requires="all") if t.name == "Silver" else t for t in LADDER.tiers)
)
GOLD_RULE = "Gold: 200000.00 EUR qualifying spend or 60 qualifying orders"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


JOINED = utc(2023, 3, 10, 9)
SINCE = utc(2024, 2, 1, 8)
NOW = utc(2024, 6, 15, 12)
START = utc(2023, 6, 15, 12)  # the rolling 12-month window that ends at NOW
EVAL = utc(2025, 1, 1)  # the next year end after NOW
EVAL_START = utc(2024, 1, 1)  # the rolling 12-month window that ends at EVAL
GRACE_END = utc(2025, 1, 31)  # EVAL + 30 days


def figures(
    spend: str | int = "0", orders: int = 0, start: datetime = START, end: datetime | None = None
) -> Figures:
    return Figures(Decimal(spend), orders, start, end)


def member(earned: str = "Silver", **changes: Any) -> Standing:
    """A member standing on ``earned`` since SINCE, next evaluated at EVAL."""
    standing = Standing(
        member_id="m-1",
        tier=earned,
        tier_since=SINCE,
        earned=earned,
        earned_since=SINCE,
        joined_at=JOINED,
        next_evaluation_at=EVAL,
    )
    return replace(standing, **changes)


def in_grace(earned: str = "Gold", **changes: Any) -> Standing:
    """Below ``earned`` at EVAL: grace until GRACE_END, makeup counted from EVAL_START."""
    defaults: dict[str, Any] = {
        "last_evaluation_at": EVAL,
        "next_evaluation_at": utc(2026, 1, 1),
        "grace_until": GRACE_END,
        "grace_from": EVAL_START,
    }
    return member(earned, **{**defaults, **changes})


def override(tier: str, until: datetime | None = None) -> Override:
    return Override(tier=tier, reason="key account", set_by="crm:alice", set_at=NOW, until=until)


def with_steps(steps: int, ladder: Ladder = LADDER) -> Ladder:
    return replace(ladder, evaluation=replace(ladder.evaluation, max_demotion_steps=steps))


def with_grace_days(days: int) -> Ladder:
    return replace(LADDER, evaluation=replace(LADDER.evaluation, grace_days=days))


def with_partner(ladder: Ladder = LADDER) -> Ladder:
    """``ladder`` with an invitation-only Partner (25) between Silver and Gold."""
    tiers = list(ladder.tiers)
    tiers.insert(2, Tier("Partner", 25, invitation_only=True))
    return replace(ladder, tiers=tuple(tiers))


def summary(change: Change | None) -> tuple[str | None, str, str, str, datetime] | None:
    if change is None:
        return None
    return change.from_tier, change.to_tier, change.direction, change.reason, change.at


# --- meets, qualified_tier, shortfall ---------------------------------------------------------


@pytest.mark.parametrize(
    ("ladder", "tier", "spend", "orders", "expected"),
    [
        (LADDER, "Standard", "0", 0, True),
        (LADDER, "Silver", "49999.99", 23, False),
        (LADDER, "Silver", "50000", 0, True),  # requires any: spend alone
        (LADDER, "Silver", "0", 24, True),  # requires any: orders alone
        (SILVER_ALL, "Silver", "50000", 23, False),
        (SILVER_ALL, "Silver", "49999.99", 24, False),
        (SILVER_ALL, "Silver", "50000", 24, True),
        (LADDER, "Platinum", "999999.99", 10_000, False),  # spend only: orders do not count
        (LADDER, "Platinum", "1000000", 0, True),
        (LADDER, "Ambassador", "99999999", 99_999, False),  # never by figures
    ],
)
def test_meets(ladder: Ladder, tier: str, spend: str, orders: int, expected: bool) -> None:
    assert meets(ladder.tier(tier), figures(spend, orders)) is expected


@pytest.mark.parametrize(("orders", "expected"), [(9, False), (10, True)])
def test_meets_an_orders_only_tier(orders: int, expected: bool) -> None:
    busy = Tier("Busy", 20, min_orders=10)
    assert meets(busy, figures("999999999", orders)) is expected


@pytest.mark.parametrize(
    ("ladder", "spend", "orders", "expected"),
    [
        (LADDER, "0", 0, "Standard"),
        (LADDER, "49999.99", 23, "Standard"),
        (LADDER, "50000", 0, "Silver"),
        (LADDER, "0", 24, "Silver"),
        (LADDER, "199999.99", 59, "Silver"),
        (LADDER, "200000", 0, "Gold"),  # skips Silver
        (LADDER, "0", 60, "Gold"),
        (LADDER, "0", 100_000, "Gold"),  # Platinum needs spend
        (LADDER, "1000000", 0, "Platinum"),
        (LADDER, "99999999", 99_999, "Platinum"),  # never the invitation-only tier
        (SILVER_ALL, "50000", 23, "Standard"),
        (SILVER_ALL, "50000", 24, "Silver"),
        (SILVER_ALL, "0", 60, "Gold"),  # the highest tier met, even when a lower one is not
    ],
)
def test_qualified_tier(ladder: Ladder, spend: str, orders: int, expected: str) -> None:
    assert qualified_tier(ladder, figures(spend, orders)).name == expected


@pytest.mark.parametrize(
    ("ladder", "tier", "spend", "orders", "expected"),
    [
        (LADDER, "Silver", "30000", 10, Shortfall("Silver", False, Decimal("20000"), 14)),
        (LADDER, "Silver", "60000", 10, Shortfall("Silver", True, Decimal("0"), 14)),
        (LADDER, "Silver", "1.5", 30, Shortfall("Silver", True, Decimal("49998.5"), 0)),
        (SILVER_ALL, "Silver", "60000", 10, Shortfall("Silver", False, Decimal("0"), 14)),
        (LADDER, "Platinum", "250000.5", 3, Shortfall("Platinum", False, Decimal("749999.5"), None)),
        (LADDER, "Standard", "0", 0, Shortfall("Standard", True, None, None)),
        (LADDER, "Ambassador", "0", 0, Shortfall("Ambassador", False, None, None)),
    ],
)
def test_shortfall(ladder: Ladder, tier: str, spend: str, orders: int, expected: Shortfall) -> None:
    assert shortfall(ladder.tier(tier), figures(spend, orders)) == expected


def test_rank() -> None:
    assert [rank(LADDER, name) for name in ("Standard", "Silver", "Ambassador")] == [10, 20, 50]
    with pytest.raises(KeyError):
        rank(LADDER, "Bronze")


def test_an_override_is_active_until_its_end() -> None:
    until = utc(2024, 9, 1)
    assert override("Gold", until).active(until - TICK) is True
    assert override("Gold", until).active(until) is False
    assert override("Gold").active(utc(2099, 1, 1)) is True


@pytest.mark.parametrize(
    ("earned", "floor", "at", "expected"),
    [
        ("Silver", None, NOW, "Silver"),
        ("Silver", override("Gold"), NOW, "Gold"),
        ("Silver", override("Ambassador"), NOW, "Ambassador"),
        ("Gold", override("Silver"), NOW, "Gold"),  # a floor, not a cap
        ("Gold", override("Gold"), NOW, "Gold"),
        ("Silver", override("Gold", until=NOW + TICK), NOW, "Gold"),
        ("Silver", override("Gold", until=NOW), NOW, "Silver"),  # ended
    ],
)
def test_in_force(earned: str, floor: Override | None, at: datetime, expected: str) -> None:
    assert in_force(LADDER, earned, floor, at) == expected


def test_standing_is_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        member().tier = "Gold"  # type: ignore[misc]


# --- join -------------------------------------------------------------------------------------


def test_join_at_the_entry_tier() -> None:
    standing, change = join(LADDER, "m-1", figures("1200.5", 1), NOW, joined_at=NOW)
    assert standing == Standing(
        member_id="m-1",
        tier="Standard",
        tier_since=NOW,
        earned="Standard",
        earned_since=NOW,
        joined_at=NOW,
        next_evaluation_at=EVAL,
    )
    assert change == Change(
        from_tier=None,
        to_tier="Standard",
        direction="up",
        reason="qualified",
        at=NOW,
        figures={
            "ladder_version": 0,
            "currency": "EUR",
            "window": "the rolling 12 months",
            "window_start": "2023-06-15T12:00:00+00:00",
            "window_end": None,
            "qualifying_spend": "1200.50",
            "qualifying_orders": 1,
            "rule": "Standard: the entry tier, no threshold",
        },
    )


def test_join_directly_at_a_higher_tier() -> None:
    standing, change = join(LADDER, "m-2", figures("250000", 3), NOW, joined_at=JOINED)
    assert (standing.tier, standing.earned, standing.tier_since, standing.earned_since) == (
        "Gold",
        "Gold",
        NOW,
        NOW,
    )
    assert standing.joined_at == JOINED
    assert summary(change) == (None, "Gold", "up", "qualified", NOW)
    assert change is not None
    assert change.figures["rule"] == GOLD_RULE
    assert change.figures["qualifying_spend"] == "250000.00"
    assert change.figures["qualifying_orders"] == 3


@pytest.mark.parametrize(
    ("evaluation", "expected"),
    [
        (Evaluation("period-end", "year"), utc(2025, 1, 1)),
        (Evaluation("period-end", "quarter"), utc(2024, 7, 1)),
        (Evaluation("period-end", "month"), utc(2024, 7, 1)),
        (Evaluation("anniversary"), utc(2025, 3, 10, 9)),  # the next anniversary of JOINED after NOW
    ],
)
def test_join_sets_the_next_evaluation(evaluation: Evaluation, expected: datetime) -> None:
    ladder = replace(LADDER, evaluation=evaluation)
    standing, _ = join(ladder, "m-1", figures(), NOW, joined_at=JOINED)
    assert standing.next_evaluation_at == expected
    assert standing.last_evaluation_at is None
    assert (standing.grace_until, standing.grace_from, standing.override) == (None, None, None)


def test_current_window() -> None:
    assert current_window(LADDER, NOW) == (START, None)
    quarterly = replace(LADDER, window=Window("calendar-quarter"))
    assert current_window(quarterly, NOW) == (utc(2024, 4, 1), None)


# --- on_order ---------------------------------------------------------------------------------


def test_an_order_promotes_skipping_tiers() -> None:
    before = member("Standard")
    standing, change = on_order(LADDER, before, figures("200000", 5), NOW, order_id="o-9")
    assert standing == replace(before, tier="Gold", tier_since=NOW, earned="Gold", earned_since=NOW)
    assert change == Change(
        "Standard",
        "Gold",
        "up",
        "qualified",
        NOW,
        {
            "ladder_version": 0,
            "currency": "EUR",
            "window": "the rolling 12 months",
            "window_start": "2023-06-15T12:00:00+00:00",
            "window_end": None,
            "qualifying_spend": "200000.00",
            "qualifying_orders": 5,
            "rule": GOLD_RULE,
            "order_id": "o-9",
        },
    )


def test_a_promotion_clears_grace() -> None:
    before = in_grace("Silver")
    standing, change = on_order(LADDER, before, figures("200000"), NOW)
    assert (standing.earned, standing.tier, standing.grace_until, standing.grace_from) == (
        "Gold",
        "Gold",
        None,
        None,
    )
    assert summary(change) == ("Silver", "Gold", "up", "qualified", NOW)


@pytest.mark.parametrize(("spend", "orders"), [("0", 0), ("60000", 3), ("199999.99", 59), ("200000", 0)])
def test_no_change_when_the_figures_do_not_qualify_higher(spend: str, orders: int) -> None:
    before = member("Gold")
    assert on_order(LADDER, before, figures(spend, orders), NOW) == (before, None)


def test_in_grace_a_makeup_that_meets_the_tier_clears_grace_without_a_change() -> None:
    before = in_grace("Gold")
    makeup = figures("200000", 7, start=EVAL_START)
    standing, change = on_order(LADDER, before, figures("150000"), utc(2025, 1, 20), makeup=makeup)
    assert standing == replace(before, grace_until=None, grace_from=None)
    assert change is None


def test_in_grace_a_makeup_by_orders_clears_grace() -> None:
    before = in_grace("Gold")
    makeup = figures("1000", 60, start=EVAL_START)
    assert on_order(LADDER, before, figures("1000"), utc(2025, 1, 20), makeup=makeup) == (
        replace(before, grace_until=None, grace_from=None),
        None,
    )


def test_in_grace_a_makeup_still_short_changes_nothing() -> None:
    before = in_grace("Gold")
    makeup = figures("199999.99", 59, start=EVAL_START)
    assert on_order(LADDER, before, figures("150000"), utc(2025, 1, 20), makeup=makeup) == (before, None)
    assert on_order(LADDER, before, figures("150000"), utc(2025, 1, 20)) == (before, None)


def test_a_makeup_outside_grace_is_ignored() -> None:
    before = member("Gold")
    makeup = figures("500000", 99, start=EVAL_START)
    assert on_order(LADDER, before, figures("0"), NOW, makeup=makeup) == (before, None)


# --- due and due_window -----------------------------------------------------------------------


def test_nothing_is_due_before_its_time() -> None:
    standing = in_grace(
        "Gold", override=override("Platinum", until=utc(2025, 1, 10)), next_evaluation_at=EVAL
    )
    assert due(standing, EVAL - TICK) is None
    assert due(standing, EVAL) == Due("evaluation", EVAL)
    assert due(standing, utc(2025, 12, 31)) == Due("evaluation", EVAL)  # the earliest first


def test_the_earliest_step_comes_first() -> None:
    standing = in_grace(
        "Gold", next_evaluation_at=utc(2025, 2, 1), override=override("Gold", utc(2025, 3, 1))
    )
    assert due(standing, utc(2025, 6, 1)) == Due("grace-end", GRACE_END)
    standing = replace(standing, grace_until=None, grace_from=None)
    assert due(standing, utc(2025, 6, 1)) == Due("evaluation", utc(2025, 2, 1))
    standing = replace(standing, next_evaluation_at=utc(2026, 1, 1))
    assert due(standing, utc(2025, 6, 1)) == Due("override-end", utc(2025, 3, 1))


def test_at_the_same_instant_override_end_then_evaluation_then_grace_end() -> None:
    at = utc(2025, 1, 31)
    standing = in_grace("Gold", next_evaluation_at=at, override=override("Platinum", until=at))
    assert due(standing, at) == Due("override-end", at)
    standing = replace(standing, override=None)
    assert due(standing, at) == Due("evaluation", at)
    standing = replace(standing, next_evaluation_at=utc(2026, 1, 1))
    assert due(standing, at) == Due("grace-end", at)
    assert due(standing, at - TICK) is None


def test_an_open_ended_override_is_never_due() -> None:
    standing = member("Silver", override=override("Gold"))
    assert due(standing, EVAL - TICK) is None
    assert due(standing, utc(2099, 1, 1)) == Due("evaluation", EVAL)


def test_due_windows() -> None:
    assert due_window(LADDER, member(), Due("evaluation", EVAL)) == (EVAL_START, EVAL)
    assert due_window(LADDER, in_grace(), Due("grace-end", GRACE_END)) == (EVAL_START, GRACE_END)
    until = utc(2024, 9, 1)
    standing = member(override=override("Gold", until))
    assert due_window(LADDER, standing, Due("override-end", until)) == (utc(2023, 9, 1), until)
    quarterly = replace(LADDER, window=Window("calendar-quarter"))
    assert due_window(quarterly, member(), Due("evaluation", utc(2024, 7, 1))) == (
        utc(2024, 4, 1),
        utc(2024, 7, 1),
    )


# --- apply_due: evaluation --------------------------------------------------------------------


def evaluation_figures(spend: str = "0", orders: int = 0) -> Figures:
    return figures(spend, orders, start=EVAL_START, end=EVAL)


def test_evaluation_keeps_a_member_who_meets_the_tier() -> None:
    before = member("Gold")
    after = apply_due(LADDER, before, Due("evaluation", EVAL), evaluation_figures("200000"))
    assert after == (replace(before, last_evaluation_at=EVAL, next_evaluation_at=utc(2026, 1, 1)), None)


def test_evaluation_below_the_tier_opens_grace() -> None:
    before = member("Gold")
    after = apply_due(LADDER, before, Due("evaluation", EVAL), evaluation_figures("150000", 59))
    assert after == (
        replace(
            before,
            last_evaluation_at=EVAL,
            next_evaluation_at=utc(2026, 1, 1),
            grace_until=GRACE_END,
            grace_from=EVAL_START,
        ),
        None,
    )


def test_grace_lasts_grace_days() -> None:
    before = member("Gold")
    standing, _ = apply_due(with_grace_days(366), before, Due("evaluation", EVAL), evaluation_figures())
    assert standing.grace_until == utc(2026, 1, 2)
    assert standing.tier == "Gold"


def test_evaluation_with_no_grace_demotes_at_once() -> None:
    before = member("Gold")
    standing, change = apply_due(with_grace_days(0), before, Due("evaluation", EVAL), evaluation_figures())
    assert standing == replace(
        before,
        tier="Silver",
        tier_since=EVAL,
        earned="Silver",
        earned_since=EVAL,
        last_evaluation_at=EVAL,
        next_evaluation_at=utc(2026, 1, 1),
    )
    assert change == Change(
        "Gold",
        "Silver",
        "down",
        "evaluated",
        EVAL,
        {
            "ladder_version": 0,
            "currency": "EUR",
            "window": "the rolling 12 months",
            "window_start": "2024-01-01T00:00:00+00:00",
            "window_end": "2025-01-01T00:00:00+00:00",
            "qualifying_spend": "0.00",
            "qualifying_orders": 0,
            "rule": GOLD_RULE,
            "outcome": "below the tier at evaluation",
            "demoted_to": "Silver",
        },
    )


def test_evaluation_with_no_grace_drops_max_demotion_steps_but_not_below_the_figures() -> None:
    ladder = with_steps(3, with_grace_days(0))
    before = member("Platinum")
    standing, change = apply_due(ladder, before, Due("evaluation", EVAL), evaluation_figures("60000"))
    assert (standing.tier, standing.earned) == ("Silver", "Silver")
    assert summary(change) == ("Platinum", "Silver", "down", "evaluated", EVAL)


def test_evaluation_promotes_when_the_figures_qualify_higher() -> None:
    before = in_grace("Silver", next_evaluation_at=EVAL, last_evaluation_at=None)
    standing, change = apply_due(LADDER, before, Due("evaluation", EVAL), evaluation_figures("1000000"))
    assert standing == replace(
        before,
        tier="Platinum",
        tier_since=EVAL,
        earned="Platinum",
        earned_since=EVAL,
        last_evaluation_at=EVAL,
        next_evaluation_at=utc(2026, 1, 1),
        grace_until=None,
        grace_from=None,
    )
    assert summary(change) == ("Silver", "Platinum", "up", "evaluated", EVAL)
    assert change is not None
    assert change.figures["outcome"] == "qualifies higher at evaluation"
    assert change.figures["rule"] == "Platinum: 1000000.00 EUR qualifying spend"


MONTHLY = replace(LADDER, evaluation=Evaluation("period-end", "month", grace_days=45))


def test_an_evaluation_during_an_earlier_grace_leaves_the_grace_running() -> None:
    before = member(
        "Gold", next_evaluation_at=utc(2024, 7, 1), grace_until=utc(2024, 7, 16), grace_from=utc(2023, 6, 1)
    )
    at = utc(2024, 7, 1)
    after = apply_due(MONTHLY, before, Due("evaluation", at), figures("10", 1, utc(2023, 7, 1), at))
    assert after == (replace(before, last_evaluation_at=at, next_evaluation_at=utc(2024, 8, 1)), None)


def test_an_evaluation_during_grace_that_meets_the_tier_clears_it() -> None:
    before = member(
        "Gold", next_evaluation_at=utc(2024, 7, 1), grace_until=utc(2024, 7, 16), grace_from=utc(2023, 6, 1)
    )
    at = utc(2024, 7, 1)
    after = apply_due(MONTHLY, before, Due("evaluation", at), figures("200000", 1, utc(2023, 7, 1), at))
    assert after == (
        replace(
            before,
            last_evaluation_at=at,
            next_evaluation_at=utc(2024, 8, 1),
            grace_until=None,
            grace_from=None,
        ),
        None,
    )


def test_an_anniversary_evaluation_moves_to_the_next_anniversary() -> None:
    ladder = replace(LADDER, evaluation=Evaluation("anniversary"))
    at = utc(2025, 3, 10, 9)
    before = member("Gold", next_evaluation_at=at)
    standing, change = apply_due(
        ladder, before, Due("evaluation", at), figures("200000", 0, utc(2024, 3, 10, 9), at)
    )
    assert (standing.last_evaluation_at, standing.next_evaluation_at) == (at, utc(2026, 3, 10, 9))
    assert change is None


# --- apply_due: grace end ---------------------------------------------------------------------


def grace_figures(spend: str = "0", orders: int = 0) -> Figures:
    return figures(spend, orders, start=EVAL_START, end=GRACE_END)


@pytest.mark.parametrize(("spend", "orders"), [("200000", 0), ("0", 60)])
def test_grace_end_with_the_shortfall_made_up_keeps_the_tier(spend: str, orders: int) -> None:
    before = in_grace("Gold")
    after = apply_due(LADDER, before, Due("grace-end", GRACE_END), grace_figures(spend, orders))
    assert after == (replace(before, grace_until=None, grace_from=None), None)


def test_grace_end_below_the_tier_demotes_one_tier_by_default() -> None:
    before = in_grace("Gold")
    # the figures only qualify for Standard, yet one step at most: Silver
    standing, change = apply_due(LADDER, before, Due("grace-end", GRACE_END), grace_figures("1000", 2))
    assert standing == replace(
        before,
        tier="Silver",
        tier_since=GRACE_END,
        earned="Silver",
        earned_since=GRACE_END,
        grace_until=None,
        grace_from=None,
    )
    assert change == Change(
        "Gold",
        "Silver",
        "down",
        "evaluated",
        GRACE_END,
        {
            "ladder_version": 0,
            "currency": "EUR",
            "window": "the rolling 12 months",
            "window_start": "2024-01-01T00:00:00+00:00",
            "window_end": "2025-01-31T00:00:00+00:00",
            "qualifying_spend": "1000.00",
            "qualifying_orders": 2,
            "rule": GOLD_RULE,
            "outcome": "grace ended below the tier",
            "demoted_to": "Silver",
        },
    )


@pytest.mark.parametrize(
    ("steps", "earned", "spend", "expected"),
    [
        (1, "Platinum", "0", "Gold"),
        (1, "Platinum", "250000", "Gold"),
        (1, "Silver", "0", "Standard"),
        (2, "Platinum", "0", "Silver"),
        (3, "Platinum", "0", "Standard"),  # straight to the qualified tier
        (3, "Platinum", "60000", "Silver"),  # never below the qualified tier
        (3, "Platinum", "250000", "Gold"),
        (4, "Gold", "0", "Standard"),
        (4, "Gold", "50000", "Silver"),
    ],
)
def test_grace_end_demotion_steps(steps: int, earned: str, spend: str, expected: str) -> None:
    standing, change = apply_due(
        with_steps(steps), in_grace(earned), Due("grace-end", GRACE_END), grace_figures(spend)
    )
    assert (standing.tier, standing.earned) == (expected, expected)
    assert summary(change) == (earned, expected, "down", "evaluated", GRACE_END)


def test_invitation_only_tiers_are_skipped_on_the_way_down() -> None:
    ladder = with_partner()
    standing, change = apply_due(ladder, in_grace("Gold"), Due("grace-end", GRACE_END), grace_figures())
    assert (standing.tier, standing.earned) == ("Silver", "Silver")
    assert summary(change) == ("Gold", "Silver", "down", "evaluated", GRACE_END)
    ladder = with_steps(2, with_partner())
    standing, _ = apply_due(ladder, in_grace("Platinum"), Due("grace-end", GRACE_END), grace_figures())
    assert standing.earned == "Silver"


@pytest.mark.parametrize(
    ("ladder", "earned", "qualified", "expected"),
    [
        (LADDER, "Gold", "Standard", "Silver"),
        (LADDER, "Gold", "Silver", "Silver"),
        (LADDER, "Standard", "Standard", "Standard"),
        (with_steps(2), "Platinum", "Standard", "Silver"),
        (with_steps(4), "Platinum", "Standard", "Standard"),
        (with_steps(4), "Platinum", "Gold", "Gold"),
        (with_partner(), "Gold", "Standard", "Silver"),
        (with_steps(3, with_partner()), "Platinum", "Standard", "Standard"),
    ],
)
def test_demotion_target(ladder: Ladder, earned: str, qualified: str, expected: str) -> None:
    assert demotion_target(ladder, earned, ladder.tier(qualified)).name == expected


# --- a full scenario --------------------------------------------------------------------------

Orders = Sequence[tuple[datetime, Decimal]]


def tally(orders: Orders, start: datetime, end: datetime | None) -> Figures:
    """Qualifying spend and orders paid in (start, end]; ``end`` None: every order given."""
    paid = [amount for paid_at, amount in orders if start < paid_at and (end is None or paid_at <= end)]
    return Figures(sum(paid, Decimal("0")), len(paid), start, end)


def run_due(
    ladder: Ladder, standing: Standing, orders: Orders, now: datetime
) -> tuple[Standing, list[Change]]:
    """What the scheduler does: every step due by ``now``, in time order, on its own window."""
    changes: list[Change] = []
    for _ in range(50):
        step = due(standing, now)
        if step is None:
            return standing, changes
        start, end = due_window(ladder, standing, step)
        standing, change = apply_due(ladder, standing, step, tally(orders, start, end))
        if change is not None:
            changes.append(change)
    raise AssertionError("the due steps never settle")


def replay(
    ladder: Ladder, orders: Orders, now: datetime
) -> tuple[Standing, list[tuple[str | None, str, str, str, datetime] | None]]:
    """Orders one by one (scheduled steps first), then the steps due by ``now``."""
    standing: Standing | None = None
    changes: list[Change | None] = []
    seen: list[tuple[datetime, Decimal]] = []
    for paid_at, amount in orders:
        if standing is not None:
            standing, steps = run_due(ladder, standing, seen, paid_at)
            changes.extend(steps)
        seen.append((paid_at, amount))
        start, end = current_window(ladder, paid_at)
        current = tally(seen, start, end)
        if standing is None:
            standing, change = join(ladder, "m-7", current, paid_at, joined_at=paid_at)
        else:
            makeup = None if standing.grace_from is None else tally(seen, standing.grace_from, None)
            standing, change = on_order(ladder, standing, current, paid_at, makeup=makeup)
        changes.append(change)
    assert standing is not None
    standing, steps = run_due(ladder, standing, seen, now)
    changes.extend(steps)
    return standing, [summary(c) for c in changes if c is not None]


SCENARIO = [
    (utc(2024, 2, 10, 10), Decimal("30000")),  # joins: Standard
    (utc(2024, 3, 15), Decimal("30000")),  # 60000 in the window: Silver
    (utc(2024, 6, 20), Decimal("150000")),  # 210000: Gold
    # 2025-01-01: 210000 in (2024-01-01, 2025-01-01]: Gold is kept
    (utc(2025, 3, 1), Decimal("20000")),
    # 2026-01-01: 20000 in (2025-01-01, 2026-01-01]: grace until 2026-01-31
]
END = utc(2026, 3, 1)


def test_scenario_over_two_years_demoted_after_grace() -> None:
    orders = [*SCENARIO, (utc(2026, 1, 20), Decimal("100000"))]  # makeup 120000: not enough for Gold
    standing, changes = replay(LADDER, orders, END)
    assert changes == [
        (None, "Standard", "up", "qualified", utc(2024, 2, 10, 10)),
        ("Standard", "Silver", "up", "qualified", utc(2024, 3, 15)),
        ("Silver", "Gold", "up", "qualified", utc(2024, 6, 20)),
        ("Gold", "Silver", "down", "evaluated", utc(2026, 1, 31)),
    ]
    assert standing == Standing(
        member_id="m-7",
        tier="Silver",
        tier_since=utc(2026, 1, 31),
        earned="Silver",
        earned_since=utc(2026, 1, 31),
        joined_at=utc(2024, 2, 10, 10),
        next_evaluation_at=utc(2027, 1, 1),
        last_evaluation_at=utc(2026, 1, 1),
    )
    # idempotent: the same steps at the same `now` find nothing more to do
    assert run_due(LADDER, standing, orders, END) == (standing, [])


def test_scenario_over_two_years_made_up_in_grace() -> None:
    orders = [*SCENARIO, (utc(2026, 1, 20), Decimal("180000"))]  # makeup 200000: Gold is kept
    standing, changes = replay(LADDER, orders, END)
    assert changes == [
        (None, "Standard", "up", "qualified", utc(2024, 2, 10, 10)),
        ("Standard", "Silver", "up", "qualified", utc(2024, 3, 15)),
        ("Silver", "Gold", "up", "qualified", utc(2024, 6, 20)),
    ]
    assert standing == Standing(
        member_id="m-7",
        tier="Gold",
        tier_since=utc(2024, 6, 20),
        earned="Gold",
        earned_since=utc(2024, 6, 20),
        joined_at=utc(2024, 2, 10, 10),
        next_evaluation_at=utc(2027, 1, 1),
        last_evaluation_at=utc(2026, 1, 1),
    )
    assert run_due(LADDER, standing, orders, END) == (standing, [])


def test_scenario_catching_up_runs_the_steps_in_time_order() -> None:
    # no order after 2024: the scheduler, first run in 2026, evaluates 2025-01-01 (kept), then
    # 2026-01-01 (grace), then the grace end (one step down)
    orders = SCENARIO[:3]
    standing, changes = replay(LADDER, orders, END)
    assert changes[-1] == ("Gold", "Silver", "down", "evaluated", utc(2026, 1, 31))
    assert (standing.last_evaluation_at, standing.next_evaluation_at) == (utc(2026, 1, 1), utc(2027, 1, 1))
    assert (standing.grace_until, standing.grace_from) == (None, None)
    # another year on: 2027-01-01 finds nothing in the window, grace, then Standard at 2027-01-31
    later, more = run_due(LADDER, standing, orders, utc(2027, 6, 1))
    assert [summary(c) for c in more] == [("Silver", "Standard", "down", "evaluated", utc(2027, 1, 31))]
    assert later.tier == "Standard"
    assert run_due(LADDER, later, orders, utc(2027, 6, 1)) == (later, [])


# --- overrides --------------------------------------------------------------------------------


def test_an_override_above_the_earned_tier_raises_the_tier_in_force() -> None:
    before = member("Silver")
    floor = override("Gold", until=utc(2024, 9, 1))
    standing, change = set_override(LADDER, before, floor, NOW)
    assert standing == replace(before, tier="Gold", tier_since=NOW, override=floor)
    assert change == Change(
        "Silver",
        "Gold",
        "up",
        "override",
        NOW,
        {
            "ladder_version": 0,
            "override_tier": "Gold",
            "override_reason": "key account",
            "override_until": "2024-09-01T00:00:00+00:00",
            "earned_tier": "Silver",
            "set_by": "crm:alice",
        },
    )


def test_an_override_to_an_invitation_only_tier() -> None:
    standing, change = set_override(LADDER, member("Platinum"), override("Ambassador"), NOW)
    assert (standing.tier, standing.earned) == ("Ambassador", "Platinum")
    assert summary(change) == ("Platinum", "Ambassador", "up", "override", NOW)


def test_an_override_below_the_earned_tier_changes_nothing_in_force() -> None:
    before = member("Gold")
    floor = override("Silver")
    assert set_override(LADDER, before, floor, NOW) == (replace(before, override=floor), None)


def test_a_lower_override_replacing_a_higher_one_lowers_the_tier_in_force() -> None:
    before = member("Silver", tier="Platinum", override=override("Platinum"))
    standing, change = set_override(LADDER, before, override("Gold"), NOW)
    assert (standing.tier, standing.earned, standing.override) == ("Gold", "Silver", override("Gold"))
    assert summary(change) == ("Platinum", "Gold", "down", "override", NOW)


def test_an_override_that_has_already_ended_changes_nothing_in_force() -> None:
    before = member("Silver")
    floor = override("Gold", until=NOW)
    assert set_override(LADDER, before, floor, NOW) == (replace(before, override=floor), None)


def test_under_an_override_a_promotion_of_the_earned_tier_publishes_nothing() -> None:
    before = member("Silver", tier="Platinum", override=override("Platinum"))
    standing, change = on_order(LADDER, before, figures("200000"), NOW)
    assert standing == replace(before, earned="Gold", earned_since=NOW)
    assert change is None


def test_under_an_override_a_promotion_above_it_is_published() -> None:
    before = member("Silver", tier="Gold", override=override("Gold"))
    standing, change = on_order(LADDER, before, figures("1000000"), NOW)
    assert (standing.tier, standing.earned, standing.tier_since) == ("Platinum", "Platinum", NOW)
    assert summary(change) == ("Gold", "Platinum", "up", "qualified", NOW)


def test_under_an_override_a_demotion_of_the_earned_tier_publishes_nothing() -> None:
    before = in_grace("Gold", tier="Platinum", override=override("Platinum"))
    standing, change = apply_due(LADDER, before, Due("grace-end", GRACE_END), grace_figures())
    assert standing == replace(
        before, earned="Silver", earned_since=GRACE_END, grace_until=None, grace_from=None
    )
    assert change is None


def test_under_an_override_evaluations_go_on() -> None:
    before = member("Gold", tier="Platinum", override=override("Platinum"))
    standing, change = apply_due(LADDER, before, Due("evaluation", EVAL), evaluation_figures())
    assert (standing.tier, standing.earned, standing.grace_until) == ("Platinum", "Gold", GRACE_END)
    assert change is None


def test_ending_an_override_returns_to_the_earned_tier() -> None:
    before = member("Silver", tier="Gold", override=override("Gold"))
    standing, change = end_override(LADDER, before, figures("60000", 3), NOW)
    assert standing == replace(before, tier="Silver", tier_since=NOW, override=None)
    assert change == Change(
        "Gold",
        "Silver",
        "down",
        "override-ended",
        NOW,
        {
            "ladder_version": 0,
            "currency": "EUR",
            "window": "the rolling 12 months",
            "window_start": "2023-06-15T12:00:00+00:00",
            "window_end": None,
            "qualifying_spend": "60000.00",
            "qualifying_orders": 3,
            "rule": "Silver: 50000.00 EUR qualifying spend or 24 qualifying orders",
            "earned_tier": "Silver",
            "override_tier": "Gold",
            "override_reason": "key account",
        },
    )


def test_ending_an_override_promotes_when_the_figures_qualify_higher() -> None:
    before = member("Silver", tier="Gold", override=override("Gold"))
    standing, change = end_override(LADDER, before, figures("1000000"), NOW)
    assert standing == replace(
        before, tier="Platinum", tier_since=NOW, earned="Platinum", earned_since=NOW, override=None
    )
    assert summary(change) == ("Gold", "Platinum", "up", "override-ended", NOW)
    assert change is not None
    assert change.figures["earned_tier"] == "Platinum"


def test_ending_an_override_promotion_under_it_clears_grace() -> None:
    before = in_grace("Silver", tier="Platinum", override=override("Platinum"))
    standing, change = end_override(LADDER, before, figures("200000"), NOW)
    assert (standing.tier, standing.earned, standing.grace_until, standing.grace_from) == (
        "Gold",
        "Gold",
        None,
        None,
    )
    assert summary(change) == ("Platinum", "Gold", "down", "override-ended", NOW)


def test_ending_an_override_without_promotion_keeps_grace() -> None:
    before = in_grace("Gold", tier="Platinum", override=override("Platinum"))
    standing, _ = end_override(LADDER, before, figures("0"), NOW)
    assert (standing.tier, standing.grace_until, standing.grace_from) == ("Gold", GRACE_END, EVAL_START)


def test_ending_an_override_below_the_earned_tier_publishes_nothing() -> None:
    before = member("Gold", override=override("Silver"))
    assert end_override(LADDER, before, figures("0"), NOW) == (replace(before, override=None), None)


def test_an_override_with_an_end_runs_out_through_due() -> None:
    until = utc(2024, 9, 1)
    before, _ = set_override(LADDER, member("Silver"), override("Gold", until), NOW)
    assert before.tier == "Gold"
    assert due(before, until - TICK) is None
    step = due(before, utc(2024, 12, 31))
    assert step == Due("override-end", until)
    assert due_window(LADDER, before, step) == (utc(2023, 9, 1), until)
    standing, change = apply_due(LADDER, before, step, figures("60000", 3, utc(2023, 9, 1), until))
    assert standing == replace(before, tier="Silver", tier_since=until, override=None)
    assert summary(change) == ("Gold", "Silver", "down", "override-ended", until)
    assert due(standing, utc(2024, 12, 31)) is None


def test_an_override_ending_at_an_evaluation_runs_first() -> None:
    orders = [(utc(2024, 3, 1), Decimal("60000"))]  # Silver figures at the year end
    before, _ = set_override(LADDER, member("Gold"), override("Platinum", until=EVAL), NOW)
    standing, changes = run_due(LADDER, before, orders, EVAL)
    assert [summary(c) for c in changes] == [("Platinum", "Gold", "down", "override-ended", EVAL)]
    assert (standing.tier, standing.earned, standing.override) == ("Gold", "Gold", None)
    assert (standing.grace_until, standing.grace_from, standing.last_evaluation_at) == (
        GRACE_END,
        EVAL_START,
        EVAL,
    )


def test_grace_end_below_on_one_threshold_but_above_on_another_promotes() -> None:
    # Silver on spend only, Gold on orders only: a Silver member in grace with no spend but 60 orders.
    tiers = list(LADDER.tiers)
    tiers[1] = replace(tiers[1], min_orders=None)
    tiers[2] = replace(tiers[2], min_spend=None)
    odd = replace(LADDER, tiers=tuple(tiers))
    standing, change = apply_due(odd, in_grace("Silver"), Due("grace-end", GRACE_END), grace_figures("0", 60))
    assert (standing.earned, standing.grace_until, standing.grace_from) == ("Gold", None, None)
    assert summary(change) == ("Silver", "Gold", "up", "evaluated", GRACE_END)
    assert change is not None and change.figures["outcome"] == "qualifies higher at the end of grace"


def test_a_late_order_dates_its_promotion_no_earlier_than_the_previous_change() -> None:
    # The member's last change took effect at SINCE; an order paid before it, processed now, promotes
    # from SINCE on (the changes stay in sequence), not from its own payment.
    before = member("Silver")
    late = SINCE - timedelta(days=3)
    standing, change = on_order(LADDER, before, figures("200000", 5), late)
    assert summary(change) == ("Silver", "Gold", "up", "qualified", SINCE)
    assert standing.tier_since == SINCE


def test_a_promotion_takes_effect_at_the_order_time_after_the_previous_change() -> None:
    before = member("Silver")
    paid = SINCE + timedelta(hours=2)
    _, change = on_order(LADDER, before, figures("200000", 5), paid)
    assert summary(change) == ("Silver", "Gold", "up", "qualified", paid)
