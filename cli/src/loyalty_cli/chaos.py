"""``loyalty chaos``: the committed fault run.

Runs the embedded platform (``DevStack``: PostgreSQL, tansu, every service as a real process) in
a fresh data directory, publishes seeded realistic orders (``simulate.generate_orders``: paid,
refunded, cancelled), SIGKILLs a random service at random moments while they arrive (the
supervisor restarts it), waits until every consumer has caught up and every outbox is published,
then checks every invariant from the databases and the topics:

- each paid order earned what the points domain gives (the rules in force, the tier multiplier the
  order recorded), and that multiplier is the one of the tier the tiers service had decided for the
  moment of payment; points' tier periods are tiers' history;
- each refund reversed floor(P × R / A) minus what was already reversed, a cancel the rest;
- every member's Σ ledger = Σ lots remaining − debt, and = what the events add up to;
- every event applied once: one inbox row per event and service, one effect per order, refund and
  cancel, in every service (rewards: each order counted once, net of its refunds, cancelled or not);
- every outbox row published and on its topic, no effect published under two event ids;
- tiers' qualifying spend and orders per order, per refund and per member, and its tier changes,
  recomputed from the order events with the tiers domain; no dead letters.

The checks are pure functions of what was read (``Observed`` → a list of ``Mismatch``); the run
and the reading are the IO around them. The last line of output is the figures; the exit status is
0 only when nothing is lost, duplicated or wrong and at least one kill happened.

The services run with a short consumer session (2 s, as the integration tests do on tansu) unless
the environment sets one, so that a restarted consumer rejoins its group quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TextIO

from loyalty_cli.dev import DevError, DevStack, RunningService
from loyalty_cli.embedded import free_port, tail
from loyalty_cli.services import SERVICES
from loyalty_cli.simulate import Progress, PublishError, _positive_int, generate_orders, publish
from loyalty_shared.db import SCALE
from loyalty_shared.envelope import CloudEvent, InvalidEvent, parse_event
from loyalty_shared.events import (
    ORDERS_TOPIC,
    POINTS_TOPIC,
    TIERS_TOPIC,
    OrderCancelled,
    OrderPaid,
    OrderRefunded,
)
from points_service import domain as points_domain
from tiers_service import domain as tiers_domain

DEFAULT_ORDERS = 2000
DEFAULT_MEMBERS = 50
DEFAULT_RATE = 100.0
DEFAULT_KILL_EVERY_S = 3.0
DEFAULT_TIMEOUT_S = 300.0
SHOWN_MISMATCHES = 10
LOOP_S = 0.2
SETTLE_LOOK_S = 0.5
SETTLED_LOOKS = 2  # nothing left twice in a row: nothing arrived between two looks
FAST_REJOIN = {"LOYALTY_CONSUMER_SESSION_TIMEOUT_MS": "2000", "LOYALTY_CONSUMER_HEARTBEAT_INTERVAL_MS": "500"}

Row = Mapping[str, Any]
Kind = Literal["lost", "duplicated", "mismatch"]


# --- what was read, and what is wrong with it (pure) -------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """One invariant that does not hold: ``lost`` (an effect that should be there is not),
    ``duplicated`` (an effect is there twice), ``mismatch`` (a figure is wrong)."""

    kind: Kind
    what: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.what}"


@dataclass(frozen=True)
class Record:
    """One event read back from a topic."""

    topic: str
    partition: int
    offset: int
    event: CloudEvent


@dataclass(frozen=True)
class PointsState:
    """The points database's rows (each table as a list of column → value mappings)."""

    rules: Mapping[int, points_domain.EarningRules]  # every version, the newest in force
    orders: Sequence[Row]
    refunds: Sequence[Row]
    ledger: Sequence[Row]
    lots: Sequence[Row]
    accounts: Sequence[Row]
    tier_periods: Sequence[Row]
    inbox: Sequence[Row]
    outbox: Sequence[Row]  # with "event" (the payload parsed) and "published" (bool)


@dataclass(frozen=True)
class TiersState:
    ladder: tiers_domain.Ladder  # in force
    orders: Sequence[Row]  # qualifying_orders
    refunds: Sequence[Row]  # qualifying_refunds
    history: Sequence[Row]  # tier_history, by id
    inbox: Sequence[Row]
    outbox: Sequence[Row]


@dataclass(frozen=True)
class RewardsState:
    orders: Sequence[Row]  # the member facts' orders: amount, refunded, cancelled_at
    inbox: Sequence[Row]


@dataclass(frozen=True)
class Observed:
    published: Sequence[CloudEvent]  # the order events this run sent
    orders_topic: Sequence[Record]
    points_topic: Sequence[Record]
    tiers_topic: Sequence[Record]
    points: PointsState
    tiers: TiersState
    checked_at: datetime
    dead_letters: Sequence[str] = ()  # one line per dead letter of any consumer
    unreadable: Sequence[str] = ()  # records on the topics that are not CloudEvents
    rewards: RewardsState | None = None  # None: not observed (nothing of rewards is checked)


@dataclass
class OrderHistory:
    """One order as the order events tell it, in topic order."""

    paid: OrderPaid
    paid_at: datetime
    event_id: str
    after: list[OrderRefunded | OrderCancelled] = field(default_factory=list)


def check(seen: Observed) -> list[Mismatch]:
    """Every invariant of the run, from what was read; empty when all hold."""
    history, mismatches = order_histories(seen.orders_topic)
    changes = _group(seen.tiers.history, lambda r: r["member_id"])  # member -> tier changes
    mismatches += check_orders_topic(seen.published, seen.orders_topic)
    mismatches += check_inboxes(seen)
    tier_events = frozenset(r["event_id"] for r in seen.tiers.outbox if r.get("event_type") == "tier.changed")
    earned_at = {
        r.event.data["order_id"]: Decimal(r.event.data["tier_multiplier"])
        for r in seen.points_topic
        if r.event.type == "points.earned"
    }
    mismatches += check_points_orders(
        history, seen.points, seen.tiers.ladder, changes, tier_events, earned_at
    )
    mismatches += check_balances(history, seen.points)
    mismatches += check_tier_periods(seen.points, seen.tiers)
    mismatches += check_qualifying(history, seen.tiers, seen.checked_at)
    mismatches += check_tier_changes(seen.orders_topic, seen.tiers, seen.checked_at)
    mismatches += check_outbox("points", seen.points.outbox, seen.points_topic)
    mismatches += check_outbox("tiers", seen.tiers.outbox, seen.tiers_topic)
    mismatches += check_points_events(seen.points, seen.points_topic)
    if seen.rewards is not None:
        mismatches += check_rewards_orders(history, seen.rewards)
    mismatches += [Mismatch("mismatch", f"dead letter: {letter}") for letter in seen.dead_letters]
    mismatches += [Mismatch("mismatch", f"unreadable record: {what}") for what in seen.unreadable]
    return mismatches


def figures(mismatches: Iterable[Mismatch]) -> Counter[str]:
    return Counter(m.kind for m in mismatches)


def _group(rows: Iterable[Row], key: Callable[[Row], Any]) -> dict[Any, list[Row]]:
    grouped: dict[Any, list[Row]] = defaultdict(list)
    for row in rows:
        grouped[key(row)].append(row)
    return grouped


def _once(records: Sequence[Record]) -> list[Record]:
    """Each event once (a redelivered copy carries the same id), in topic order."""
    seen: set[str] = set()
    once: list[Record] = []
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        if record.event.id not in seen:
            seen.add(record.event.id)
            once.append(record)
    return once


def _later(event: CloudEvent) -> OrderRefunded | OrderCancelled:
    """A refund or a cancel, from its event."""
    if event.type == OrderRefunded.event_type:
        return OrderRefunded.model_validate(event.data)
    return OrderCancelled.model_validate(event.data)


def check_rewards_orders(history: Mapping[str, OrderHistory], rewards: RewardsState) -> list[Mismatch]:
    """Rewards counts every order once: its amount, its refunds (each refund id once, none after a
    cancel), cancelled or not."""
    problems: list[Mismatch] = []
    rows: dict[str, list[Row]] = {}
    for row in rewards.orders:
        rows.setdefault(row["order_id"], []).append(row)
    for order_id, told in history.items():
        found = rows.get(order_id, [])
        if not found:
            problems.append(Mismatch("lost", f"rewards never counted order {order_id}"))
            continue
        if len(found) > 1:
            problems.append(Mismatch("duplicated", f"rewards counted order {order_id} {len(found)} times"))
        refunded, cancelled, refund_ids = Decimal(0), False, set()
        for later in told.after:
            if isinstance(later, OrderCancelled):
                cancelled = True
            elif later.refund_id not in refund_ids:
                refund_ids.add(later.refund_id)
                refunded += Decimal(0) if cancelled else later.amount
        row = found[0]
        figures = (row["amount"], row["refunded"], row["cancelled_at"] is not None)
        if figures != (told.paid.amount, refunded, cancelled):
            problems.append(
                Mismatch(
                    "mismatch",
                    f"rewards order {order_id}: amount, refunded, cancelled {figures} where the events say "
                    f"{(told.paid.amount, refunded, cancelled)}",
                )
            )
    return problems


def order_histories(records: Sequence[Record]) -> tuple[dict[str, OrderHistory], list[Mismatch]]:
    """Each order's events from the orders topic; a refund or cancel of an order never paid is a
    mismatch (the generator never makes one)."""
    history: dict[str, OrderHistory] = {}
    problems: list[Mismatch] = []
    for record in _once(records):
        event = record.event
        if event.type == OrderPaid.event_type:
            paid = OrderPaid.model_validate(event.data)
            if paid.order_id in history:
                problems.append(Mismatch("mismatch", f"order {paid.order_id} paid twice on the topic"))
                continue
            history[paid.order_id] = OrderHistory(paid, event.time, event.id)
            continue
        later = _later(event)
        if later.order_id not in history:
            problems.append(Mismatch("mismatch", f"{event.type} {event.id} of an order never paid"))
            continue
        history[later.order_id].after.append(later)
    return history, problems


def check_orders_topic(published: Sequence[CloudEvent], records: Sequence[Record]) -> list[Mismatch]:
    on_topic = {r.event.id for r in records}
    sent = {e.id for e in published}
    problems = [
        Mismatch(
            "lost",
            f"{e.type} {e.id} (order {e.data.get('order_id')}) was published but is not on '{ORDERS_TOPIC}'",
        )
        for e in published
        if e.id not in on_topic
    ]
    problems += [
        Mismatch(
            "mismatch", f"{r.event.type} {r.event.id} is on '{ORDERS_TOPIC}' but this run did not publish it"
        )
        for r in _once(records)
        if r.event.id not in sent
    ]
    return problems


def check_inboxes(seen: Observed) -> list[Mismatch]:
    """Every event a service consumes is in its inbox exactly once."""
    problems: list[Mismatch] = []
    order_ids = [r.event.id for r in _once(seen.orders_topic)]
    tier_ids = [r.event.id for r in _once(seen.tiers_topic)]
    inboxes = [("points", seen.points.inbox, order_ids + tier_ids), ("tiers", seen.tiers.inbox, order_ids)]
    if seen.rewards is not None:
        inboxes.append(("rewards", seen.rewards.inbox, order_ids + tier_ids))
    for service, inbox, expected in inboxes:
        counted = Counter((row["consumer"], row["event_id"]) for row in inbox)
        problems += [
            Mismatch("duplicated", f"{service} inbox holds event {event_id} {n} times for {consumer}")
            for (consumer, event_id), n in counted.items()
            if n > 1
        ]
        ids = {event_id for _, event_id in counted}
        problems += [
            Mismatch("lost", f"{service} never consumed event {event_id} (not in its inbox)")
            for event_id in expected
            if event_id not in ids
        ]
    return problems


def tier_multiplier_at(
    ladder: tiers_domain.Ladder, changes: Sequence[Row], paid_at: datetime
) -> tuple[str | None, Decimal]:
    """The tier (and its points multiplier) tiers had decided for an order paid at ``paid_at``: the
    latest change in force before the payment (a change applies to orders paid after it)."""
    before = [row for row in changes if row["at"] < paid_at]
    if not before:
        return None, Decimal(1)
    tier = max(before, key=lambda row: (row["at"], row["id"]))["to_tier"]
    return tier, ladder.tier(tier).benefits.points_multiplier


@dataclass(frozen=True)
class Reversal:
    refund_id: str | None  # None: the cancel
    amount: Decimal  # refunded by this event (the order's amount for a cancel)
    due: int  # points this event takes back


def expected_reversals(points_earned: int, history: OrderHistory) -> list[Reversal]:
    """What each refund and cancel of an order takes back, with the points domain's rule: after
    refunds totalling R of amount A that earned P, floor(P × R / A) in all; a cancel the rest; a
    refund id counts once; nothing after a cancel."""
    amount = history.paid.amount
    refunded, reversed_, cancelled = Decimal(0), 0, False
    seen: set[str] = set()
    result: list[Reversal] = []
    for later in history.after:
        if isinstance(later, OrderRefunded):
            if later.refund_id in seen:
                continue
            seen.add(later.refund_id)
            refunded += later.amount
            due = 0 if cancelled else points_domain.reversal_due(points_earned, amount, refunded, reversed_)
            result.append(Reversal(later.refund_id, later.amount, due))
        elif not cancelled:
            cancelled = True
            due = points_earned - reversed_
            result.append(Reversal(None, amount, due))
        else:
            continue
        reversed_ += due
    return result


def earned_points(history: OrderHistory, rules: points_domain.EarningRules, multiplier: Decimal) -> int:
    lines = [
        points_domain.PricedLine(line.category, line.quantity, line.unit_price) for line in history.paid.lines
    ]
    return points_domain.accrue_points(history.paid.amount, lines, rules, multiplier)


def check_points_orders(
    history: Mapping[str, OrderHistory],
    points: PointsState,
    ladder: tiers_domain.Ladder,
    changes: Mapping[str, Sequence[Row]],
    tier_events: frozenset[str] = frozenset(),
    earned_at: Mapping[str, Decimal] | None = None,
) -> list[Mismatch]:
    """Per order: one order row, one earning of the right points at the tier tiers decided, each
    refund and cancel reversed once by the right amount.

    An order points earned before the tier change covering it arrived is re-rated when it does:
    its ledger then holds corrections (entries of the ``tier.changed`` event, ``tier_events``), at
    most one per order and change, and its entries add up to what the order holds at the tier of
    its payment; its first earning and reversals were at the tier known then (``earned_at``: the
    multiplier each ``points.earned`` said). One that held nothing either way (cancelled, refunded
    in full) is re-rated with no correction."""
    problems: list[Mismatch] = []
    rows = _group(points.orders, lambda r: r["order_id"])
    refunds = _group(points.refunds, lambda r: (r["order_id"], r["refund_id"]))
    of_orders = [e for e in points.ledger if e.get("event_id") not in tier_events]
    entries = _group(of_orders, lambda r: (r["entry_type"], r["order_id"], r["refund_id"]))
    corrected = [e for e in points.ledger if e.get("event_id") in tier_events]
    corrections = _group(corrected, lambda r: (r["order_id"], r["event_id"]))
    problems += [
        Mismatch("duplicated", f"{len(found)} corrections of order {order_id} for tier change {event_id}")
        for (order_id, event_id), found in corrections.items()
        if len(found) > 1
    ]
    rerated = {order_id for order_id, _ in corrections}
    held = Counter[str]()
    for entry in points.ledger:
        if entry["order_id"] is not None:
            held[entry["order_id"]] += entry["points"]
    newest = max(points.rules)
    for order_id, one in history.items():
        found = rows.get(order_id, [])
        if len(found) != 1:
            kind: Kind = "lost" if not found else "duplicated"
            problems.append(Mismatch(kind, f"points holds {len(found)} rows for order {order_id}"))
            continue
        row = found[0]
        rules = points.rules.get(row["rule_version"])
        if rules is None or row["rule_version"] != newest:
            problems.append(
                Mismatch(
                    "mismatch", f"order {order_id} earned at rules v{row['rule_version']}, in force v{newest}"
                )
            )
            continue
        expected = earned_points(one, rules, row["tier_multiplier"])
        if row["points_earned"] != expected:
            problems.append(
                Mismatch(
                    "mismatch",
                    f"order {order_id} ({one.paid.amount} {one.paid.currency}, tier multiplier "
                    f"{row['tier_multiplier']}) earned {row['points_earned']} points, the rules give "
                    f"{expected}",
                )
            )
        tier, multiplier = tier_multiplier_at(ladder, changes.get(one.paid.member_id, ()), one.paid_at)
        if row["tier_multiplier"] != multiplier:
            problems.append(
                Mismatch(
                    "mismatch",
                    f"order {order_id} of {one.paid.member_id} paid at {one.paid_at.isoformat()} earned at "
                    f"multiplier {row['tier_multiplier']}; tiers had {tier or 'no tier'} "
                    f"(x{multiplier}) in force then",
                )
            )
        earns = entries.get(("earn", order_id, None), [])
        # a re-rated order's first entries were at another tier; their sum is checked instead
        first = (earned_at or {}).get(order_id, row["tier_multiplier"])
        exactly = order_id not in rerated and first == row["tier_multiplier"]
        problems += _one_entry(
            earns, row["points_earned"] if exactly else None, f"earning of order {order_id}"
        )
        reversals = expected_reversals(row["points_earned"], one)
        debt_policy = rules.debt_policy
        if not exactly and debt_policy == "debt":
            should = row["points_earned"] - sum(r.due for r in reversals)
            if held[order_id] != should:
                problems.append(
                    Mismatch(
                        "mismatch",
                        f"re-rated order {order_id}: its ledger entries add up to {held[order_id]}, "
                        f"it holds {should}",
                    )
                )
        for reversal in reversals:
            what = (
                f"refund {reversal.refund_id} of order {order_id}"
                if reversal.refund_id
                else f"cancel of order {order_id}"
            )
            if reversal.refund_id is not None:
                stored = refunds.get((order_id, reversal.refund_id), [])
                if len(stored) != 1:
                    kind = "lost" if not stored else "duplicated"
                    problems.append(Mismatch(kind, f"points holds {len(stored)} refund rows for {what}"))
                elif exactly and stored[0]["points_reversed"] != reversal.due:
                    problems.append(
                        Mismatch(
                            "mismatch",
                            f"{what} recorded {stored[0]['points_reversed']} points reversed, "
                            f"the rule gives {reversal.due}",
                        )
                    )
            found_entries = entries.get(("reverse", order_id, reversal.refund_id), [])
            if not exactly:
                if len(found_entries) > 1:
                    problems += _one_entry(found_entries, None, what)
                continue
            if reversal.due == 0:
                if found_entries:
                    problems.append(Mismatch("duplicated", f"{what} reverses nothing but has ledger entries"))
                continue
            exact = -reversal.due if debt_policy == "debt" else None  # "forgive" writes part off
            problems += _one_entry(found_entries, exact, what, at_least=-reversal.due)
        refunded = sum((r.amount for r in reversals if r.refund_id is not None), Decimal(0))
        cancelled = any(r.refund_id is None for r in reversals)
        reversed_total = sum(r.due for r in reversals)
        if (row["refunded_total"], row["points_reversed"], row["cancelled"]) != (
            refunded,
            reversed_total,
            cancelled,
        ):
            problems.append(
                Mismatch(
                    "mismatch",
                    f"order {order_id}: points has refunded {row['refunded_total']}, reversed "
                    f"{row['points_reversed']}, cancelled {row['cancelled']}; the events give {refunded}, "
                    f"{reversed_total}, {cancelled}",
                )
            )
    problems += [
        Mismatch("mismatch", f"points holds order {order_id}, which no event paid")
        for order_id in rows
        if order_id not in history
    ]
    return problems


def _one_entry(
    entries: Sequence[Row], points: int | None, what: str, at_least: int | None = None
) -> list[Mismatch]:
    if not entries:
        return [Mismatch("lost", f"no ledger entry for the {what}")]
    if len(entries) > 1:
        shown = ", ".join(str(e["points"]) for e in entries)
        return [Mismatch("duplicated", f"{len(entries)} ledger entries ({shown}) for the {what}")]
    got = entries[0]["points"]
    if (points is not None and got != points) or (at_least is not None and not at_least <= got <= 0):
        return [
            Mismatch(
                "mismatch", f"the ledger entry for the {what} moves {got} points, the rule gives {points}"
            )
        ]
    return []


def check_balances(history: Mapping[str, OrderHistory], points: PointsState) -> list[Mismatch]:
    """Per member: Σ ledger = Σ lots remaining − debt (README guarantee 4), and Σ ledger = what the
    member's order events add up to (earnings recomputed, minus their reversals)."""
    ledger: Counter[str] = Counter()
    for row in points.ledger:
        ledger[row["member_id"]] += row["points"]
    lots: Counter[str] = Counter()
    for row in points.lots:
        lots[row["member_id"]] += row["remaining"]
    debt = {row["member_id"]: row["debt"] for row in points.accounts}
    rules = points.rules[max(points.rules)]
    multipliers = {row["order_id"]: row["tier_multiplier"] for row in points.orders}
    expected: Counter[str] = Counter()
    for order_id, one in history.items():
        if order_id not in multipliers:
            continue  # reported per order
        earned = earned_points(one, rules, multipliers[order_id])
        expected[one.paid.member_id] += earned - sum(r.due for r in expected_reversals(earned, one))
    problems: list[Mismatch] = []
    for member in sorted(set(ledger) | set(lots) | set(debt) | set(expected)):
        held = lots[member] - debt.get(member, 0)
        if ledger[member] != held:
            problems.append(
                Mismatch(
                    "mismatch",
                    f"{member}: Σ ledger {ledger[member]} ≠ Σ lots remaining {lots[member]} − debt "
                    f"{debt.get(member, 0)} = {held}",
                )
            )
        if rules.debt_policy == "debt" and ledger[member] != expected[member]:
            problems.append(
                Mismatch(
                    "mismatch",
                    f"{member}: Σ ledger {ledger[member]}, the order events give {expected[member]}",
                )
            )
    return problems


def check_tier_periods(points: PointsState, tiers: TiersState) -> list[Mismatch]:
    """Points' tier periods are tiers' history: each change, from when, at which multiplier."""
    decided = {
        (row["member_id"], row["at"]): (
            row["to_tier"],
            tiers.ladder.tier(row["to_tier"]).benefits.points_multiplier,
        )
        for row in tiers.history
    }
    projected = {
        (row["member_id"], row["effective_at"]): (row["tier"], row["tier_multiplier"])
        for row in points.tier_periods
    }
    problems = [
        Mismatch("lost", f"points has no tier period for {member}: {tier} from {at.isoformat()}")
        for (member, at), (tier, _) in sorted(decided.items())
        if (member, at) not in projected
    ]
    for key, (tier, multiplier) in sorted(projected.items()):
        if decided.get(key) != (tier, multiplier):
            problems.append(
                Mismatch(
                    "mismatch",
                    f"points has {key[0]} at {tier} x{multiplier} from {key[1].isoformat()}; "
                    f"tiers decided {decided.get(key)}",
                )
            )
    return problems


@dataclass
class _Qualifying:
    member_id: str
    currency: str
    amount: Decimal
    qualifying: Decimal
    paid_at: datetime
    refunded: Decimal = Decimal(0)
    refunded_amount: Decimal = Decimal(0)
    cancelled: bool = False
    refunds: dict[str, Decimal] = field(default_factory=dict)

    @property
    def net(self) -> Decimal:
        return self.qualifying - self.refunded


def _tier_lines(lines: Iterable[Any]) -> list[tiers_domain.Line]:
    return [tiers_domain.Line(line.category, line.quantity, line.unit_price) for line in lines]


def _qualify(ladder: tiers_domain.Ladder, paid: OrderPaid, paid_at: datetime) -> _Qualifying:
    qualifying = tiers_domain.order_qualifying(
        paid.amount, _tier_lines(paid.lines), ladder.excluded_categories
    )
    if paid.currency != ladder.currency:
        qualifying = Decimal(0)
    return _Qualifying(paid.member_id, paid.currency, paid.amount, qualifying.quantize(SCALE), paid_at)


def _unqualify(
    ladder: tiers_domain.Ladder, order: _Qualifying, later: OrderRefunded | OrderCancelled
) -> None:
    """A refund or cancel as the tiers service applies it (a refund id counts once)."""
    if isinstance(later, OrderCancelled):
        order.cancelled = True
        return
    if later.refund_id in order.refunds:
        return
    taken = tiers_domain.refund_qualifying(
        later.amount,
        _tier_lines(later.lines),
        order.amount,
        order.qualifying,
        order.net,
        ladder.excluded_categories,
    ).quantize(SCALE)
    order.refunds[later.refund_id] = taken
    order.refunded += taken
    order.refunded_amount += later.amount


def member_figures(
    ladder: tiers_domain.Ladder, orders: Iterable[_Qualifying], start: datetime
) -> dict[str, tuple[Decimal, int]]:
    """Qualifying spend and orders per member in the window after ``start`` (the service's rule:
    net of refunds, cancelled orders and other currencies out, an order counts while it has spend)."""
    result: dict[str, tuple[Decimal, int]] = {}
    for order in orders:
        spend, count = result.get(order.member_id, (Decimal(0), 0))
        if order.currency == ladder.currency and not order.cancelled and order.paid_at > start:
            spend, count = spend + order.net, count + (order.net > 0)
        result[order.member_id] = (spend, count)
    return result


def check_qualifying(history: Mapping[str, OrderHistory], tiers: TiersState, now: datetime) -> list[Mismatch]:
    """Tiers' qualifying spend per order and refund, and its figures per member, recomputed."""
    ladder = tiers.ladder
    expected: dict[str, _Qualifying] = {}
    for order_id, one in history.items():
        order = expected[order_id] = _qualify(ladder, one.paid, one.paid_at)
        for later in one.after:
            _unqualify(ladder, order, later)
    rows = _group(tiers.orders, lambda r: r["order_id"])
    refunds = _group(tiers.refunds, lambda r: (r["order_id"], r["refund_id"]))
    problems: list[Mismatch] = []
    stored: list[_Qualifying] = []
    for order_id, order in expected.items():
        found = rows.get(order_id, [])
        if len(found) != 1:
            kind: Kind = "lost" if not found else "duplicated"
            problems.append(Mismatch(kind, f"tiers holds {len(found)} rows for order {order_id}"))
            continue
        row = found[0]
        stored.append(
            _Qualifying(
                row["member_id"],
                row["currency"],
                row["amount"],
                row["qualifying"],
                row["paid_at"],
                row["refunded"],
                row["refunded_amount"],
                row["cancelled_at"] is not None,
            )
        )
        got = (row["qualifying"], row["refunded"], row["refunded_amount"], row["cancelled_at"] is not None)
        want = (order.qualifying, order.refunded, order.refunded_amount, order.cancelled)
        if got != want:
            problems.append(
                Mismatch(
                    "mismatch",
                    f"tiers order {order_id}: (qualifying, refunded, refunded amount, cancelled) "
                    f"= {got}; the events give {want}",
                )
            )
        for refund_id, taken in order.refunds.items():
            kept = refunds.get((order_id, refund_id), [])
            if len(kept) != 1:
                kind = "lost" if not kept else "duplicated"
                problems.append(
                    Mismatch(kind, f"tiers holds {len(kept)} rows for refund {refund_id} of {order_id}")
                )
            elif kept[0]["qualifying"] != taken:
                problems.append(
                    Mismatch(
                        "mismatch",
                        f"tiers refund {refund_id} of {order_id} took {kept[0]['qualifying']} "
                        f"qualifying spend; the rule gives {taken}",
                    )
                )
    problems += [
        Mismatch("mismatch", f"tiers holds order {order_id}, which no event paid")
        for order_id in rows
        if order_id not in history
    ]
    start = tiers_domain.window_start(ladder.window, now)
    want_figures = member_figures(ladder, expected.values(), start)
    got_figures = member_figures(ladder, stored, start)
    for member, (spend, count) in sorted(want_figures.items()):
        if got_figures.get(member) != (spend, count):
            problems.append(
                Mismatch(
                    "mismatch",
                    f"tiers {member}: qualifying spend and orders {got_figures.get(member)}; "
                    f"the events give ({spend}, {count})",
                )
            )
    return problems


def expected_tier_changes(
    ladder: tiers_domain.Ladder, records: Sequence[Record], now: datetime
) -> dict[str, list[tuple[str | None, str, datetime]]]:
    """The tier changes tiers should have made, replayed with its domain in topic order (one member's
    events are on one partition): a member joins at their first order, each later order may promote
    them on the figures up to then. (No evaluation step falls due within a run.)"""
    start = tiers_domain.window_start(ladder.window, now)
    orders: dict[str, _Qualifying] = {}
    by_member: dict[str, list[_Qualifying]] = defaultdict(list)
    standings: dict[str, tiers_domain.Standing] = {}
    changes: dict[str, list[tuple[str | None, str, datetime]]] = defaultdict(list)
    for record in _once(records):
        event = record.event
        if event.type != OrderPaid.event_type:
            later = _later(event)
            if later.order_id in orders:
                _unqualify(ladder, orders[later.order_id], later)
            continue
        paid = OrderPaid.model_validate(event.data)
        if paid.order_id in orders:
            continue
        order = orders[paid.order_id] = _qualify(ladder, paid, event.time)
        member = paid.member_id
        by_member[member].append(order)
        spend, count = member_figures(ladder, by_member[member], start)[member]
        current = tiers_domain.Figures(spend, count, start, None)
        paid_at = min(event.time, now)
        standing = standings.get(member)
        if standing is None:
            standing, change = tiers_domain.join(ladder, member, current, paid_at, joined_at=paid_at)
        else:
            standing, change = tiers_domain.on_order(ladder, standing, current, paid_at)
        standings[member] = standing
        if change is not None:
            changes[member].append((change.from_tier, change.to_tier, change.at))
    return changes


def check_tier_changes(records: Sequence[Record], tiers: TiersState, now: datetime) -> list[Mismatch]:
    expected = expected_tier_changes(tiers.ladder, records, now)
    made = {
        member: [(r["from_tier"], r["to_tier"], r["at"]) for r in sorted(rows, key=lambda r: r["id"])]
        for member, rows in _group(tiers.history, lambda r: r["member_id"]).items()
    }
    problems: list[Mismatch] = []
    for member in sorted(set(expected) | set(made)):
        want, got = expected.get(member, []), made.get(member, [])
        if want == got:
            continue
        kind: Kind = "lost" if len(got) < len(want) else "duplicated" if len(got) > len(want) else "mismatch"
        first = next(
            (i for i, (w, g) in enumerate(zip(want, got, strict=False)) if w != g), min(len(want), len(got))
        )
        problems.append(
            Mismatch(
                kind,
                f"tiers {member}: {len(got)} tier changes, the events give {len(want)}; first difference "
                f"at #{first + 1}: {_change(got, first)} instead of {_change(want, first)}",
            )
        )
    return problems


def _change(changes: Sequence[tuple[str | None, str, datetime]], index: int) -> str:
    if index >= len(changes):
        return "none"
    before, after, at = changes[index]
    return f"{before or '-'} → {after} at {at.isoformat()}"


def effect(event: CloudEvent) -> tuple[Any, ...] | None:
    """What an emitted event does, whatever its id: two ids for one effect is a duplicate."""
    data = event.data
    if event.type == "points.earned":
        return (event.type, data.get("order_id"))
    if event.type == "points.reversed":
        return (event.type, data.get("order_id"), data.get("refund_id"))
    if event.type == "points.adjusted":
        return (event.type, data.get("adjustment_id"))
    if event.type == "tier.changed":
        return (event.type, data.get("member_id"), data.get("effective_at"), data.get("to_tier"))
    return None


def check_outbox(service: str, outbox: Sequence[Row], records: Sequence[Record]) -> list[Mismatch]:
    """Every outbox row published and on its topic; nothing on the topic the outbox did not hold;
    no effect under two event ids (the same id twice on the topic is a harmless re-publish)."""
    on_topic = {r.event.id for r in records}
    in_outbox = {row["event_id"] for row in outbox}
    problems: list[Mismatch] = []
    for row in outbox:
        what = f"{service} outbox row {row['event_id']} ({row['event_type']})"
        if not row["published"]:
            problems.append(Mismatch("lost", f"{what} is not published"))
        elif row["event_id"] not in on_topic:
            problems.append(Mismatch("lost", f"{what} is marked published but is not on '{row['topic']}'"))
    problems += [
        Mismatch("mismatch", f"{r.event.type} {r.event.id} is on '{r.topic}' but not in the {service} outbox")
        for r in _once(records)
        if r.event.id not in in_outbox
    ]
    events = {row["event_id"]: row["event"] for row in outbox} | {r.event.id: r.event for r in records}
    ids_by_effect: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for event_id, event in events.items():
        key = effect(event)
        if key is not None:
            ids_by_effect[key].append(event_id)
    problems += [
        Mismatch(
            "duplicated", f"{service} emitted {key} under {len(ids)} event ids: {', '.join(sorted(ids))}"
        )
        for key, ids in ids_by_effect.items()
        if len(ids) > 1
    ]
    return problems


def check_points_events(points: PointsState, records: Sequence[Record]) -> list[Mismatch]:
    """What ``points.earned`` says is what the order earned."""
    earned = {row["order_id"]: row["points_earned"] for row in points.orders}
    multipliers = {row["order_id"]: row.get("tier_multiplier") for row in points.orders}
    problems: list[Mismatch] = []
    for record in _once(records):
        data = record.event.data
        if record.event.type != "points.earned":
            continue
        held_at = multipliers.get(data["order_id"])
        if held_at is not None and Decimal(data["tier_multiplier"]) != held_at:
            continue  # earned at the tier known then, re-rated since (points.adjusted says by how much)
        if earned.get(data["order_id"]) != data["points"]:
            problems.append(
                Mismatch(
                    "mismatch",
                    f"points.earned {record.event.id} says {data['points']} points for order "
                    f"{data['order_id']}; the order earned {earned.get(data['order_id'])}",
                )
            )
    return problems


# --- the command -------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "chaos",
        help="the fault run: publish orders, SIGKILL services at random, check every invariant",
        description="Run the embedded platform in a fresh data directory, publish seeded realistic "
        "orders (refunds, cancels), SIGKILL a random service at random moments while they arrive (the "
        "supervisor restarts it), wait until everything is consumed and published, then check every "
        "invariant from the databases and the topics. Exits 0 only when nothing is lost, duplicated "
        "or wrong and at least one kill happened.",
    )
    parser.add_argument("--orders", type=_positive_int, default=DEFAULT_ORDERS, help="default: %(default)s")
    parser.add_argument("--members", type=_positive_int, default=DEFAULT_MEMBERS, help="default: %(default)s")
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed of the orders and the kills (default: new)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help="paid orders published per second (default: %(default)g)",
    )
    parser.add_argument(
        "--kill-every",
        type=float,
        default=DEFAULT_KILL_EVERY_S,
        metavar="SECONDS",
        help="mean time between two kills while orders arrive (default: %(default)g)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="after the last order is published, wait at most this long for the services to catch "
        "up (default: %(default)g)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="an empty or new directory (default: a temporary one)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directory (databases, logs)")
    parser.add_argument(
        "--show", type=int, default=SHOWN_MISMATCHES, help="mismatches shown in detail (default: %(default)s)"
    )
    parser.set_defaults(func=run)


def note(text: str) -> None:
    print(f"chaos: {text}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    kills: Counter[str] = field(default_factory=Counter)
    settled: bool = False
    left: str = ""  # what was still to do when the timeout ran out


def run(args: argparse.Namespace) -> int:
    if args.rate <= 0 or args.kill_every <= 0 or args.timeout <= 0:
        print("--rate, --kill-every and --timeout must be more than 0", file=sys.stderr)
        return 2
    own_dir = args.data_dir is None
    data_dir = (
        Path(tempfile.mkdtemp(prefix="loyalty-chaos-")) if own_dir else args.data_dir.expanduser().absolute()
    )
    if not own_dir and data_dir.exists() and any(data_dir.iterdir()):
        print(f"--data-dir {data_dir} is not empty: the checks need a fresh platform", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    for name, value in FAST_REJOIN.items():
        os.environ.setdefault(name, value)
    out = sys.stdout
    try:
        return _run(args, data_dir, seed, out)
    finally:
        if args.keep:
            note(f"data kept in {data_dir}")
        elif own_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


def _run(args: argparse.Namespace, data_dir: Path, seed: int, out: TextIO) -> int:
    started = time.monotonic()
    events = generate_orders(members=args.members, orders=args.orders, seed=seed)
    log_path = data_dir / "logs" / "chaos-platform.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stack = DevStack(
        data_dir=data_dir,
        pg_port=free_port(),
        postgres_url=None,
        kafka_port=free_port(),
        kafka_bootstrap=None,
        ports={spec.name: free_port() for spec in SERVICES},
    )
    note(
        f"seed {seed}: {len(events)} events for {args.orders} orders, {args.members} members; "
        f"platform in {data_dir}"
    )
    with log_path.open("a") as log:
        try:
            with contextlib.redirect_stdout(log):  # the platform's own output: to its log
                try:
                    stack.start()
                    note(f"platform up after {time.monotonic() - started:.0f} s (its output: {log_path})")
                    rng = random.Random(seed)
                    outcome = asyncio.run(_drive(stack, events, args, rng))
                    note("checking ...")
                    seen = asyncio.run(observe(stack, [event for _, event in events]))
                finally:
                    stack.shutdown()
        except (DevError, PublishError) as exc:
            print(f"error: {exc}\n--- {log_path} ---\n{tail(log_path)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    mismatches = check(seen)
    if not outcome.settled:
        mismatches.insert(
            0, Mismatch("lost", f"not settled {args.timeout:g} s after publishing: {outcome.left}")
        )
    counted = figures(mismatches)
    for mismatch in mismatches[: args.show]:
        print(f"  {mismatch}", file=out)
    if len(mismatches) > args.show:
        print(f"  ... and {len(mismatches) - args.show} more", file=out)
    kills = sum(outcome.kills.values())
    by_service = ", ".join(f"{spec.name} {outcome.kills[spec.name]}" for spec in SERVICES)
    print(
        f"chaos: orders={args.orders} events={len(events)} kills={kills} ({by_service}) "
        f"lost={counted['lost']} duplicated={counted['duplicated']} mismatches={counted['mismatch']} "
        f"in {time.monotonic() - started:.0f} s",
        file=out,
        flush=True,
    )
    return 0 if not mismatches and kills else 1


async def _drive(
    stack: DevStack, events: list[tuple[str, CloudEvent]], args: argparse.Namespace, rng: random.Random
) -> Outcome:
    """Publish at the rate asked while killing a random ready service now and then (the supervisor,
    run here every round, restarts it); then wait until nothing is left to consume or publish."""
    outcome = Outcome()
    started = time.monotonic()
    progress = Progress(len(events), draw=False)
    publishing = asyncio.create_task(publish(events, stack.bootstrap, args.rate, False, progress=progress))
    next_kill = started + rng.expovariate(1 / args.kill_every)
    while not publishing.done():
        await asyncio.to_thread(stack.supervise)
        now = time.monotonic()
        if now >= next_kill:
            victim = _kill_one(stack.services, rng)
            if victim is not None:
                outcome.kills[victim.spec.name] += 1
                note(
                    f"[{now - started:5.1f} s] SIGKILL {victim.spec.name} (pid {victim.pid}), "
                    f"{progress.done}/{len(events)} events published"
                )
            next_kill = now + rng.expovariate(1 / args.kill_every)
        await asyncio.sleep(LOOP_S)
    await publishing
    note(
        f"[{time.monotonic() - started:5.1f} s] published {len(events)} events; "
        "waiting for the services to catch up"
    )
    deadline = time.monotonic() + args.timeout
    quiet = 0
    while quiet < SETTLED_LOOKS:
        if time.monotonic() > deadline:
            return outcome
        await asyncio.to_thread(stack.supervise)
        up = all(s.ready and s.proc is not None and s.proc.poll() is None for s in stack.services)
        try:
            left = await asyncio.to_thread(stack.backlog)
            outcome.left = str(left) if up else f"{left}; a service is restarting"
            empty = up and left.total == 0
        except Exception as exc:  # a service's database or the broker not answering right now
            outcome.left, empty = f"cannot measure the backlog ({exc!r})", False
        quiet = quiet + 1 if empty else 0
        await asyncio.sleep(SETTLE_LOOK_S)
    outcome.settled = True
    note(f"[{time.monotonic() - started:5.1f} s] settled: every event consumed, every outbox published")
    return outcome


def _kill_one(services: Sequence[RunningService], rng: random.Random) -> RunningService | None:
    """SIGKILL a random service that is up and ready; None when none is."""
    ready = [s for s in services if s.ready and s.proc is not None and s.proc.poll() is None]
    if not ready:
        return None
    victim = rng.choice(ready)
    assert victim.pid is not None
    # A deliberate kill is not a crash loop: the supervisor restarts it after its first back-off.
    victim.quick_exits = 0
    os.kill(victim.pid, signal.SIGKILL)
    return victim


# --- reading the databases and the topics ------------------------------------------------------------


async def _rows(url: str, queries: Mapping[str, str]) -> dict[str, list[Row]]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return {
                name: [dict(r) for r in (await conn.execute(text(sql))).mappings()]
                for name, sql in queries.items()
            }
    finally:
        await engine.dispose()


OUTBOX_QUERY = (
    "SELECT event_id, topic, event_type, payload, published_at IS NOT NULL AS published FROM outbox"
)
POINTS_QUERIES = {
    "orders": "SELECT order_id, member_id, amount, points_earned, refunded_total, points_reversed, "
    "cancelled, rule_version, tier_multiplier, paid_at FROM orders",
    "refunds": "SELECT order_id, refund_id, amount, points_reversed FROM refunds",
    "ledger": "SELECT member_id, entry_type, points, order_id, refund_id, event_id FROM ledger_entries",
    "lots": "SELECT member_id, source, order_id, points, remaining FROM lots",
    "accounts": "SELECT member_id, debt FROM accounts",
    "tier_periods": "SELECT member_id, effective_at, tier, tier_multiplier FROM tier_periods",
    "inbox": "SELECT consumer, event_id FROM inbox",
    "outbox": OUTBOX_QUERY,
}
REWARDS_QUERIES = {
    "orders": "SELECT order_id, amount, refunded, cancelled_at FROM orders",
    "inbox": "SELECT consumer, event_id FROM inbox",
}
TIERS_QUERIES = {
    "orders": "SELECT order_id, member_id, currency, amount, qualifying, refunded, refunded_amount, paid_at, "
    "cancelled_at FROM qualifying_orders",
    "refunds": "SELECT order_id, refund_id, amount, qualifying FROM qualifying_refunds",
    "history": "SELECT id, member_id, at, from_tier, to_tier, event_id FROM tier_history ORDER BY id",
    "ladders": "SELECT version, document FROM ladders ORDER BY version DESC LIMIT 1",
    "inbox": "SELECT consumer, event_id FROM inbox",
    "outbox": OUTBOX_QUERY,
}


async def _earning_rules(url: str) -> dict[int, points_domain.EarningRules]:
    """Every version of the earning rules, read the way the service reads them."""
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.pool import NullPool

    from points_service.earning_rules import rules_from_row
    from points_service.models import EarningRuleSet

    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with AsyncSession(engine) as session:
            rows = (await session.scalars(select(EarningRuleSet))).all()
            return {row.version: rules_from_row(row) for row in rows} or {
                points_domain.DEFAULT_RULES.version: points_domain.DEFAULT_RULES
            }
    finally:
        await engine.dispose()


def _parsed_outbox(rows: list[Row]) -> list[Row]:
    return [{**row, "event": parse_event(bytes(row["payload"]))} for row in rows]


async def partitions(bootstrap: str, topics: Sequence[str]) -> dict[str, list[int]]:
    """Each topic's partitions, as the broker describes them now."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    found = {
        t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described if t["error_code"] == 0
    }
    missing = [topic for topic in topics if not found.get(topic)]
    if missing:
        raise RuntimeError(f"the broker does not describe the topics {missing}")
    return found


async def read_topic(
    bootstrap: str, topic: str, numbers: Sequence[int], unreadable: list[str], timeout_s: float = 60.0
) -> list[Record]:
    """Every record of ``topic`` (partitions ``numbers``) from its start to its end now."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", group_id=None
    )
    await reader.start()
    try:
        tps = [TopicPartition(topic, number) for number in numbers]
        reader.assign(tps)
        starts, ends = await reader.beginning_offsets(tps), await reader.end_offsets(tps)
        for tp in tps:
            reader.seek(tp, starts[tp])
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while [tp for tp in tps if await reader.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout_s:g} s")
            for found in (await reader.getmany(timeout_ms=500, max_records=10_000)).values():
                for r in found:
                    try:
                        records.append(Record(topic, r.partition, r.offset, parse_event(r.value)))
                    except InvalidEvent as exc:
                        unreadable.append(f"{topic}[{r.partition}]@{r.offset}: {exc}")
        return records
    finally:
        await reader.stop()


async def observe(stack: DevStack, published: list[CloudEvent]) -> Observed:
    from loyalty_shared.messaging.deadletters import read_dead_letters

    points_url, tiers_url = stack.database_url("points"), stack.database_url("tiers")
    p = await _rows(points_url, POINTS_QUERIES)
    t = await _rows(tiers_url, TIERS_QUERIES)
    r = await _rows(stack.database_url("rewards"), REWARDS_QUERIES)
    ladder = tiers_domain.DEFAULT_LADDER
    if t["ladders"]:
        ladder = tiers_domain.ladder_from_document(t["ladders"][0]["version"], t["ladders"][0]["document"])
    unreadable: list[str] = []
    names = (ORDERS_TOPIC, POINTS_TOPIC, TIERS_TOPIC)
    numbers = await partitions(stack.bootstrap, names)
    topics = {name: await read_topic(stack.bootstrap, name, numbers[name], unreadable) for name in names}
    letters = []
    for spec in SERVICES:
        for letter in await read_dead_letters({"bootstrap_servers": stack.bootstrap}, spec.consumer_group):
            letters.append(
                f"{spec.name}: {letter.original_topic}[{letter.original_partition}]"
                f"@{letter.original_offset} {letter.error}"
            )
    return Observed(
        published=published,
        orders_topic=topics[ORDERS_TOPIC],
        points_topic=topics[POINTS_TOPIC],
        tiers_topic=topics[TIERS_TOPIC],
        points=PointsState(
            rules=await _earning_rules(points_url),
            orders=p["orders"],
            refunds=p["refunds"],
            ledger=p["ledger"],
            lots=p["lots"],
            accounts=p["accounts"],
            tier_periods=p["tier_periods"],
            inbox=p["inbox"],
            outbox=_parsed_outbox(p["outbox"]),
        ),
        tiers=TiersState(
            ladder=ladder,
            orders=t["orders"],
            refunds=t["refunds"],
            history=t["history"],
            inbox=t["inbox"],
            outbox=_parsed_outbox(t["outbox"]),
        ),
        checked_at=datetime.now().astimezone(),
        dead_letters=letters,
        unreadable=unreadable,
        rewards=RewardsState(orders=r["orders"], inbox=r["inbox"]),
    )
