"""RFM segmentation from a member's orders.

- **Recency**: whole days since the member's last counted order (None: never ordered).
- **Frequency**: counted orders in the last ``months`` months.
- **Monetary**: net spend (refunds and cancellations deducted) in the last ``months`` months.

Each is scored 1 (low) to 3 (high) against the scheme's two thresholds. The segment is the first of
these rules that holds (``SEGMENTS`` lists them in this order):

1. ``champions``: R3, F3 and M3 — buys recently, often and a lot;
2. ``loyal``: F3 and R ≥ 2 — buys often and is still active;
3. ``big-spenders``: M3 and R ≥ 2 — spends a lot and is still active;
4. ``new``: the first counted order is at most ``recency_days[1]`` days old — everything is recent;
5. ``at-risk``: R1 with F ≥ 2 or M ≥ 2 — used to buy a fair amount, nothing lately;
6. ``hibernating``: R1 — bought a little, long ago;
7. ``others``: everyone else, including members who never ordered.

The defaults suit B2B key accounts over a 12-month window: R3 within 30 days, R2 within 90; F2 from
6 orders, F3 from 24 (about two a month); M2 from 20,000, M3 from 100,000 in the program's currency.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from rewards_service.domain.groups import MemberFacts, order_dates, recent_figures

SEGMENTS: tuple[str, ...] = (
    "champions",
    "loyal",
    "big-spenders",
    "new",
    "at-risk",
    "hibernating",
    "others",
)


@dataclass(frozen=True)
class RfmScheme:
    months: int = 12  # the window of frequency and monetary
    recency_days: tuple[int, int] = (30, 90)  # R3 at most the first, R2 at most the second, else R1
    frequency: tuple[int, int] = (6, 24)  # F2 from the first, F3 from the second
    monetary: tuple[Decimal, Decimal] = (Decimal("20000"), Decimal("100000"))  # M2 from, M3 from


DEFAULT_RFM_SCHEME = RfmScheme()


@dataclass(frozen=True)
class Rfm:
    recency_days: int | None  # None: never ordered
    frequency: int
    monetary: Decimal
    r: int
    f: int
    m: int


def _score_at_least(value: Decimal | int, thresholds: tuple[Decimal, Decimal] | tuple[int, int]) -> int:
    return 3 if value >= thresholds[1] else 2 if value >= thresholds[0] else 1


def rfm_of(facts: MemberFacts, now: datetime, scheme: RfmScheme = DEFAULT_RFM_SCHEME) -> Rfm:
    dates = order_dates(facts, now)
    recent = recent_figures(facts, now, scheme.months)
    recency = None if not dates else (now - dates[-1]).days
    if recency is None or recency > scheme.recency_days[1]:
        r = 1
    else:
        r = 3 if recency <= scheme.recency_days[0] else 2
    return Rfm(
        recency_days=recency,
        frequency=recent.orders,
        monetary=recent.spend,
        r=r,
        f=_score_at_least(recent.orders, scheme.frequency),
        m=_score_at_least(recent.spend, scheme.monetary),
    )


def segment_of(facts: MemberFacts, now: datetime, scheme: RfmScheme = DEFAULT_RFM_SCHEME) -> str:
    """The member's segment at ``now`` (one of ``SEGMENTS``)."""
    scores = rfm_of(facts, now, scheme)
    r, f, m = scores.r, scores.f, scores.m
    if (r, f, m) == (3, 3, 3):
        return "champions"
    if f == 3 and r >= 2:
        return "loyal"
    if m == 3 and r >= 2:
        return "big-spenders"
    dates = order_dates(facts, now)
    if dates and (now - dates[0]).days <= scheme.recency_days[1]:
        return "new"
    if r == 1 and scores.recency_days is not None:
        return "at-risk" if f >= 2 or m >= 2 else "hibernating"
    return "others"
