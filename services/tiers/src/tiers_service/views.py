"""What the CRM sees: a member's tier with the figures and rule behind it, progress to the next
tier, what keeping the tier takes at the next evaluation, and the history of changes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.db import ReadConnection
from loyalty_shared.events import TierBenefits
from loyalty_shared.pagination import keyset_page
from tiers_service import domain
from tiers_service.evaluations import FiguresOf, run_due_steps
from tiers_service.models import TierHistory
from tiers_service.standings import benefits, standing_from_row


class Requirement(BaseModel):
    tier: str
    rule: str = Field(description="the tier's qualification rule in words")
    requires: Literal["any", "all"] = Field(description="with both thresholds: either one, or both")
    met: bool
    missing_spend: str | None = Field(description="qualifying spend still missing (decimal string)")
    missing_orders: int | None = Field(description="qualifying orders still missing")
    qualifying_spend: str = Field(description="what counts towards it so far")
    qualifying_orders: int
    counted_from: datetime = Field(description="orders paid after this count")
    deadline: datetime | None = Field(description="when it is judged (next evaluation or end of grace)")


class OverrideView(BaseModel):
    tier: str
    reason: str
    set_by: str
    set_at: datetime
    until: datetime | None


class DecidedBy(BaseModel):
    """The change that put the member on the tier in force, with the figures and rule it was judged on."""

    at: datetime
    reason: str
    from_tier: str | None
    rule: str | None
    qualifying_spend: str | None
    qualifying_orders: int | None
    outcome: str | None = None
    actor: str | None = None


class MemberTier(BaseModel):
    member_id: str
    known: bool = Field(description="false for a member with no order or override yet (entry tier shown)")
    tier: str
    rank: int
    since: datetime | None
    earned_tier: str = Field(description="the tier the member's figures hold; below the tier when overridden")
    earned_since: datetime | None
    override: OverrideView | None
    status: Literal["secure", "at-risk", "in-grace"] = Field(
        description="secure: the earned tier is kept at the next evaluation on the figures so far"
    )
    currency: str
    window: str
    window_start: datetime
    qualifying_spend: str
    qualifying_orders: int
    next_tier: Requirement | None
    keep: Requirement | None = Field(
        description="what keeping the earned tier takes; none for the entry tier"
    )
    next_evaluation_at: datetime | None
    grace_until: datetime | None
    benefits: TierBenefits
    ladder_version: int
    decided_by: DecidedBy | None = Field(description="the change that put the member on this tier")
    explanation: str


def requirement(
    tier: domain.Tier, ladder: domain.Ladder, fig: domain.Figures, deadline: datetime | None
) -> Requirement:
    gap = domain.shortfall(tier, fig)
    return Requirement(
        tier=tier.name,
        rule=tier.rule(ladder.currency),
        requires=tier.requires,
        met=gap.met,
        missing_spend=None if gap.spend is None else f"{gap.spend:.2f}",
        missing_orders=gap.orders,
        qualifying_spend=f"{fig.spend:.2f}",
        qualifying_orders=fig.orders,
        counted_from=fig.start,
        deadline=deadline,
    )


def _next_tier(ladder: domain.Ladder, earned: str) -> domain.Tier | None:
    above = [t for t in ladder.qualifying_tiers if t.rank > domain.rank(ladder, earned)]
    return above[0] if above else None


def _gap_words(req: Requirement, currency: str) -> str:
    parts = []
    if req.missing_spend is not None:
        parts.append(f"{req.missing_spend} {currency} more qualifying spend")
    if req.missing_orders is not None:
        parts.append(f"{req.missing_orders} more qualifying orders")
    return (" or " if req.requires == "any" else " and ").join(parts)


def explain(view: MemberTier) -> str:
    """The view in words: which figures and which rule put the member here, and what comes next."""
    c = view.currency
    orders = f"{view.qualifying_orders} qualifying order" + ("" if view.qualifying_orders == 1 else "s")
    figures_words = (
        f"{view.qualifying_spend} {c} qualifying spend and {orders} in "
        f"{view.window} (since {view.window_start.date().isoformat()})"
    )
    if not view.known:
        text = f"No orders yet: {view.member_id} starts at {view.tier}, the entry tier."
    elif view.override is not None and view.override.tier == view.tier and view.tier != view.earned_tier:
        until = f" until {view.override.until.date().isoformat()}" if view.override.until else ""
        text = (
            f"{view.tier} by CRM override{until} ({view.override.reason}); the figures hold "
            f"{view.earned_tier}: {figures_words}."
        )
    elif view.decided_by is not None and view.decided_by.qualifying_spend is not None:
        d = view.decided_by
        judged = "at evaluation" if d.reason == "evaluated" else d.reason.replace("-", " ")
        n = d.qualifying_orders
        then = f"{d.qualifying_spend} {c} qualifying spend and {n} qualifying order" + ("" if n == 1 else "s")
        outcome = f"; {d.outcome}" if d.outcome else ""
        text = (
            f"{view.tier} since {d.at.date().isoformat()} ({judged}: {then}, against {d.rule}{outcome}). "
            f"Now {figures_words}."
        )
    else:
        text = f"{view.tier} on {figures_words}."
    if view.keep is not None and view.keep.deadline is not None:
        judged = "at the end of grace" if view.status == "in-grace" else "at the evaluation"
        on = view.keep.deadline.date().isoformat()
        if view.keep.met:
            text += f" {view.earned_tier} is kept {judged} on {on}: {view.keep.rule}, met."
        else:
            missing = _gap_words(view.keep, c)
            text += f" To keep {view.earned_tier} {judged} on {on} ({view.keep.rule}): {missing}."
    if view.next_tier is not None:
        text += f" Next: {view.next_tier.rule}; missing {_gap_words(view.next_tier, c)}."
    return text


# A member's tier in one statement (one round trip): the ladder version in force, the standing, the
# newest history row, and the member's counted orders (not cancelled) far enough back for every
# window the view can ask about (the current one, the steps falling due, shown ahead, keeping the
# tier, a grace period's make-up): paid after the earliest of $2 (the current window's start), the
# grace period's start and each scheduled step's time less the longest window ($3).
_TIER = """
    SELECT (SELECT max(version) FROM ladders) AS ladder_version, m.*,
           h.at AS h_at, h.reason AS h_reason, h.from_tier AS h_from_tier, h.to_tier AS h_to_tier,
           h.figures::text AS h_figures, h.actor AS h_actor,
           o.since, o.paid_at, o.net, o.currency
    FROM (SELECT 1) AS one
    LEFT JOIN members m ON m.member_id = $1
    LEFT JOIN LATERAL (
        SELECT * FROM tier_history WHERE member_id = $1 ORDER BY id DESC LIMIT 1
    ) AS h ON true
    CROSS JOIN LATERAL (
        SELECT s.since,
               array_agg(q.paid_at) FILTER (WHERE q.order_id IS NOT NULL) AS paid_at,
               array_agg(q.qualifying - q.refunded) FILTER (WHERE q.order_id IS NOT NULL) AS net,
               array_agg(q.currency) FILTER (WHERE q.order_id IS NOT NULL) AS currency
        FROM (
            SELECT LEAST(
                $2::timestamptz, m.grace_from, m.next_evaluation_at - $3::interval,
                m.override_until - $3::interval, m.grace_until - $3::interval
            ) AS since
        ) AS s
        LEFT JOIN qualifying_orders q
            ON q.member_id = $1 AND q.cancelled_at IS NULL AND q.paid_at > s.since
        GROUP BY s.since
    ) AS o
"""
_LADDER = "SELECT document::text FROM ladders WHERE version = $1"


class _NotLoaded(Exception):
    def __init__(self, start: datetime) -> None:
        self.start = start


async def read_member_tier(connection: ReadConnection, member_id: str, now: datetime) -> MemberTier:
    """The member's tier at ``now``, read in one round trip (two when the ladder changed since this
    process last read it, or when a window reaches further back than the statement guessed)."""
    ladder = LADDERS.newest
    since = domain.window_start(ladder.window, now)
    while True:
        row = await connection.fetchrow(_TIER, member_id, since, domain.longest_window(ladder.window))
        assert row is not None  # one row, always
        if row["ladder_version"] != LADDERS.newest_version:
            ladder = await LADDERS.load(connection, row["ladder_version"])
            since = min(since, domain.window_start(ladder.window, now))
            continue
        try:
            return await _view_of_row(row, ladder, member_id, now)
        except _NotLoaded as short:
            since = short.start


async def _view_of_row(row: Any, ladder: domain.Ladder, member_id: str, now: datetime) -> MemberTier:
    orders = zip(row["paid_at"] or (), row["net"] or (), row["currency"] or (), strict=True)
    counted = [(paid_at, net) for paid_at, net, currency in orders if currency == ladder.currency]
    loaded_from: datetime = row["since"]

    async def figures_of(member: str, start: datetime, end: datetime | None) -> domain.Figures:
        if start < loaded_from:
            raise _NotLoaded(start)
        return domain.window_figures(counted, start, end)

    standing = None if row["member_id"] is None else standing_from_row(row)
    last = None
    if row["h_at"] is not None:
        last = {
            "at": row["h_at"],
            "reason": row["h_reason"],
            "from_tier": row["h_from_tier"],
            "to_tier": row["h_to_tier"],
            "figures": json.loads(row["h_figures"]),
            "actor": row["h_actor"],
        }
    return await tier_view(ladder, member_id, standing, last, figures_of, now)


class Ladders:
    """The ladder versions this process has read (a version never changes once stored)."""

    def __init__(self) -> None:
        self.newest_version: int | None = None
        self._by_version: dict[int | None, domain.Ladder] = {None: domain.DEFAULT_LADDER}

    @property
    def newest(self) -> domain.Ladder:
        return self._by_version[self.newest_version]

    async def load(self, connection: ReadConnection, version: int | None) -> domain.Ladder:
        if version not in self._by_version:
            assert version is not None  # no stored version: the default ladder, known already
            document = await connection.fetchval(_LADDER, version)
            self._by_version[version] = domain.ladder_from_document(version, json.loads(document))
        self.newest_version = version
        return self._by_version[version]


LADDERS = Ladders()


async def tier_view(
    ladder: domain.Ladder,
    member_id: str,
    standing: domain.Standing | None,
    last: Mapping[str, Any] | None,
    figures_of: FiguresOf,
    now: datetime,
) -> MemberTier:
    """The view of a member (``standing`` None: never seen) with the newest history row ``last``."""
    if standing is not None:
        # What the next evaluation run will record (an override that ran out, a period end): shown now.
        standing = await run_due_steps(None, ladder, standing, now, record=False, figures_of=figures_of)
    current = await figures_of(member_id, *domain.current_window(ladder, now))
    earned = ladder.entry if standing is None else ladder.tier(standing.earned)
    tier = earned if standing is None else ladder.tier(standing.tier)
    keep: Requirement | None = None
    status: Literal["secure", "at-risk", "in-grace"] = "secure"
    if standing is not None and earned.name != ladder.entry.name:
        if standing.grace_until is not None and standing.grace_from is not None:
            makeup = await figures_of(member_id, standing.grace_from, None)
            keep = requirement(earned, ladder, makeup, standing.grace_until)
            status = "in-grace"
        else:
            deadline = standing.next_evaluation_at
            staying = await figures_of(member_id, domain.window_start(ladder.window, deadline), None)
            keep = requirement(earned, ladder, staying, deadline)
            status = "secure" if keep.met else "at-risk"
    above = _next_tier(ladder, earned.name)
    override = None if standing is None else standing.override
    view = MemberTier(
        member_id=member_id,
        known=standing is not None,
        tier=tier.name,
        rank=tier.rank,
        since=None if standing is None else standing.tier_since,
        earned_tier=earned.name,
        earned_since=None if standing is None else standing.earned_since,
        override=None if override is None else OverrideView(**override.__dict__),
        status=status,
        currency=ladder.currency,
        window=ladder.window.describe(),
        window_start=current.start,
        qualifying_spend=f"{current.spend:.2f}",
        qualifying_orders=current.orders,
        next_tier=None if above is None else requirement(above, ladder, current, None),
        keep=keep,
        next_evaluation_at=None if standing is None else standing.next_evaluation_at,
        grace_until=None if standing is None else standing.grace_until,
        benefits=benefits(ladder, tier.name),
        ladder_version=ladder.version,
        decided_by=None if standing is None else _decided_by(last, tier.name),
        explanation="",
    )
    return view.model_copy(update={"explanation": explain(view)})


def _decided_by(last: Mapping[str, Any] | None, tier: str) -> DecidedBy | None:
    if last is None or last["to_tier"] != tier:
        return None  # a change the next evaluation run will record (shown ahead) has no history yet
    figures = last["figures"]
    return DecidedBy(
        at=last["at"],
        reason=last["reason"],
        from_tier=last["from_tier"],
        rule=figures.get("rule"),
        qualifying_spend=figures.get("qualifying_spend"),
        qualifying_orders=figures.get("qualifying_orders"),
        outcome=figures.get("outcome"),
        actor=last["actor"],
    )


class HistoryItem(BaseModel):
    at: datetime
    from_tier: str | None
    to_tier: str
    direction: str
    reason: str
    figures: dict[str, Any]
    ladder_version: int
    actor: str | None
    event_id: str


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    next_cursor: str | None


async def history_page(session: AsyncSession, member_id: str, cursor: str | None, limit: int) -> HistoryPage:
    """Newest first; ``next_cursor`` continues after the last item of this page."""
    query = select(TierHistory).where(TierHistory.member_id == member_id)
    page, next_cursor = await keyset_page(session, query, TierHistory.id, "tier-history", cursor, limit)
    return HistoryPage(
        items=[HistoryItem.model_validate(r, from_attributes=True) for r in page], next_cursor=next_cursor
    )
