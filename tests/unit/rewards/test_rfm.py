"""RFM scores and the named segments, one rule at a time, first matching rule wins."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from rewards_service.domain import (
    DEFAULT_RFM_SCHEME,
    SEGMENTS,
    MemberFacts,
    Rfm,
    RfmScheme,
    rfm_of,
    segment_of,
)

NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)


def d(value: str) -> Decimal:
    return Decimal(value)


def member(*orders: tuple[int, str]) -> MemberFacts:
    """A member with orders (days ago, net amount)."""
    return MemberFacts("m", None, tuple((NOW - timedelta(days=days), d(net)) for days, net in orders))


def every(days: range, net: str) -> list[tuple[int, str]]:
    return [(day, net) for day in days]


def test_the_default_scheme_suits_key_accounts() -> None:
    scheme = DEFAULT_RFM_SCHEME
    assert (scheme.months, scheme.recency_days, scheme.frequency) == (12, (30, 90), (6, 24))
    assert scheme.monetary == (d("20000"), d("100000"))
    assert SEGMENTS == ("champions", "loyal", "big-spenders", "new", "at-risk", "hibernating", "others")


def test_scores() -> None:
    facts = member((5, "60000"), (45, "50000"), (400, "999999"))
    assert rfm_of(facts, NOW) == Rfm(recency_days=5, frequency=2, monetary=d("110000"), r=3, f=1, m=3)
    assert rfm_of(member(), NOW) == Rfm(None, 0, d("0"), 1, 1, 1)


@pytest.mark.parametrize(("days", "r"), [(0, 3), (30, 3), (31, 2), (90, 2), (91, 1), (365, 1), (800, 1)])
def test_recency_score_boundaries(days: int, r: int) -> None:
    assert rfm_of(member((days, "10")), NOW).r == r


@pytest.mark.parametrize(("orders", "f"), [(0, 1), (5, 1), (6, 2), (23, 2), (24, 3), (60, 3)])
def test_frequency_score_boundaries(orders: int, f: int) -> None:
    assert rfm_of(member(*every(range(1, orders + 1), "1")), NOW).f == f


@pytest.mark.parametrize(
    ("spend", "m"), [("0", 1), ("19999.99", 1), ("20000", 2), ("99999.99", 2), ("100000", 3)]
)
def test_monetary_score_boundaries(spend: str, m: int) -> None:
    assert rfm_of(member((3, spend)), NOW).m == m


def test_cancelled_orders_do_not_count_for_recency_or_frequency() -> None:
    facts = member((2, "0"), (200, "500"))
    assert rfm_of(facts, NOW) == Rfm(200, 1, d("500"), 1, 1, 1)


def test_frequency_and_monetary_use_the_scheme_window() -> None:
    facts = member((10, "30000"), (200, "30000"))
    assert rfm_of(facts, NOW, RfmScheme(months=3)).monetary == d("30000")
    assert rfm_of(facts, NOW).monetary == d("60000")


# --- segments --------------------------------------------------------------------------------------


SPREAD = range(5, 360, 14)  # 26 orders over the year, the last 5 days ago, the first 355 days ago


@pytest.mark.parametrize(
    ("facts", "segment"),
    [
        # R3 F3 M3
        (member(*every(SPREAD, "5000")), "champions"),
        # F3 and R2: frequent, still active, not big
        (member(*every(range(40, 360, 12), "500")), "loyal"),
        # F3 with R3 but M2: loyal rather than champion
        (member(*every(SPREAD, "1000")), "loyal"),
        # M3 and R ≥ 2 without F3
        (member((20, "80000"), (300, "70000")), "big-spenders"),
        (member((60, "150000"), (250, "1000")), "big-spenders"),
        # everything within 90 days
        (member((3, "4000")), "new"),
        (member((10, "9000"), (85, "12000")), "new"),
        # R1 with F2 or M2
        (member(*every(range(100, 300, 20), "100")), "at-risk"),
        (member((200, "50000")), "at-risk"),
        # R1, little
        (member((200, "500")), "hibernating"),
        (member((500, "90000")), "hibernating"),  # big, but over a year ago
        # the rest
        (member(), "others"),
        (member((50, "30000"), (200, "1000")), "others"),
        (member(*every(range(20, 300, 40), "3000")), "others"),
    ],
)
def test_each_segment(facts: MemberFacts, segment: str) -> None:
    assert segment_of(facts, NOW) == segment


def test_a_big_new_member_is_a_big_spender_first() -> None:
    assert segment_of(member((3, "120000")), NOW) == "big-spenders"


def test_segments_follow_the_scheme() -> None:
    facts = member((3, "4000"), (200, "4000"))
    assert segment_of(facts, NOW) == "others"
    small = RfmScheme(monetary=(d("1000"), d("5000")))
    assert segment_of(facts, NOW, small) == "big-spenders"


def test_every_segment_is_in_segments() -> None:
    cases = [member(*every(SPREAD, "5000")), member(), member((3, "1")), member((200, "1"))]
    assert {segment_of(c, NOW) for c in cases} <= set(SEGMENTS)
