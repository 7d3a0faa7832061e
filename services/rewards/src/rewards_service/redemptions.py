"""Catalog redemptions, the rewards side of the saga (no distributed transaction):

1. the member's points are debited by the points service (``POST /v1/members/{id}/redemptions``
   with the reference ``catalog:<item id>``, idempotent, never overdrawn);
2. its ``points.redeemed`` reaches rewards, which fulfils it from the item's stock under the item's
   lock (a gift, ``reward.issued``) or records why it cannot and publishes ``redemption.failed``;
3. points consumes ``redemption.failed`` and gives the points back, once (``points.adjusted``);
   rewards sees that and marks the redemption refunded.

A redemption's gift cancelled by the CRM fails the redemption the same way. Each step is keyed by
the points service's redemption id, so a redelivered event changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.clock import now as clock_now
from loyalty_shared.db import columns_of, unnest_insert
from loyalty_shared.events import PointsAdjusted, PointsRedeemed, RedemptionFailed, RewardIssued
from loyalty_shared.handling import Delivery
from loyalty_shared.messaging.outbox import publish
from rewards_service.domain.issuing import once_key
from rewards_service.domain.redemption import Redeemable, catalog_item_of, redemption_problem
from rewards_service.facts import Facts
from rewards_service.issuing import REWARD_COLUMNS, ItemRow
from rewards_service.models import Redemption, Reward, table

_KNOWN = text("SELECT redemption_id FROM redemptions WHERE redemption_id = ANY(CAST(:ids AS text[]))")
_REDEMPTION_COLUMNS = (
    "redemption_id",
    "member_id",
    "item_id",
    "points",
    "status",
    "reason",
    "reward_id",
    "at",
    "refunded_at",
)
_INSERT_REDEMPTIONS = unnest_insert(table(Redemption), _REDEMPTION_COLUMNS)
_INSERT_REWARDS = unnest_insert(table(Reward), REWARD_COLUMNS)
_REFUNDED = text(
    "UPDATE redemptions SET status = 'refunded', refunded_at = :at "
    "WHERE redemption_id = ANY(CAST(:ids AS text[])) AND status = 'failed'"
)


def redeemed_items(deliveries: Sequence[Delivery]) -> set[str]:
    """The catalog items a batch's redemptions name."""
    items = set()
    for delivery in deliveries:
        if isinstance(delivery.data, PointsRedeemed):
            item = catalog_item_of(delivery.data.reference)
            if item is not None:
                items.add(item)
    return items


@dataclass
class Redeemer:
    session: AsyncSession
    now: datetime
    items: dict[str, ItemRow]
    known: set[str]
    redemptions: list[dict[str, Any]] = field(default_factory=list)
    rewards: list[dict[str, Any]] = field(default_factory=list)
    refunded: list[str] = field(default_factory=list)

    @classmethod
    async def load(
        cls, session: AsyncSession, deliveries: Sequence[Delivery], items: dict[str, ItemRow]
    ) -> Redeemer:
        ids = [d.data.redemption_id for d in deliveries if isinstance(d.data, PointsRedeemed)]
        known = set(await session.scalars(_KNOWN, {"ids": ids})) if ids else set()
        return cls(session, clock_now(session), items, known)

    def on_redeemed(self, facts: Facts, redeemed: PointsRedeemed) -> None:
        item_id = catalog_item_of(redeemed.reference)
        if item_id is None or redeemed.redemption_id in self.known:
            return  # not a catalog redemption, or handled already
        self.known.add(redeemed.redemption_id)
        item = self.items.get(item_id)
        facts_row = facts.members[redeemed.member_id]
        judged = None
        if item is not None:
            judged = Redeemable(
                item.status, item.points_price, item.stock, item.tiers, item.valid_from, item.valid_until
            )
        problem = redemption_problem(judged, redeemed.points, facts_row.tier, self.now)
        row = {
            "redemption_id": redeemed.redemption_id,
            "member_id": redeemed.member_id,
            "item_id": item_id,
            "points": redeemed.points,
            "status": "failed" if problem else "fulfilled",
            "reason": problem,
            "reward_id": None,
            "at": self.now,
            "refunded_at": None,
        }
        self.redemptions.append(row)
        if problem is not None:
            fail(
                self.session,
                redeemed.redemption_id,
                redeemed.member_id,
                redeemed.points,
                item_id,
                problem,
                self.now,
            )
            return
        assert item is not None
        item.stock, item.dirty = item.stock - 1, True
        reward_id = row["reward_id"] = str(uuid.uuid4())
        reason = f"redeemed for {redeemed.points} points (redemption {redeemed.redemption_id})"
        self.rewards.append(
            {
                "reward_id": reward_id,
                "member_id": redeemed.member_id,
                "program_id": None,
                "version": None,
                "measure_id": None,
                "kind": "gift",
                "cycle": None,
                "item_id": item_id,
                "points": redeemed.points,
                "amount": None,
                "currency": item.currency,
                "cost": item.value,
                "status": "issued",
                "reason": reason,
                "dedupe": once_key("redemption", redeemed.redemption_id),
                "request_hash": None,
                "issued_at": self.now,
                "status_changed_at": self.now,
            }
        )
        publish(
            self.session,
            RewardIssued(
                reward_id=reward_id,
                program_id=None,
                member_id=redeemed.member_id,
                kind="gift",
                item_id=item_id,
                points=redeemed.points,
                currency=item.currency,
                cost=item.value,
                reason=reason,
                issued_at=self.now,
            ),
            redeemed.member_id,
        )

    def on_adjusted(self, adjusted: PointsAdjusted) -> None:
        """Points gave a failed redemption's points back."""
        if adjusted.actor == "rewards" and adjusted.points > 0:
            self.refunded.append(adjusted.adjustment_id)

    async def flush(self) -> None:
        execute = self.session.execute
        if self.redemptions:
            await execute(
                _INSERT_REDEMPTIONS, columns_of(table(Redemption), self.redemptions, _REDEMPTION_COLUMNS)
            )
        if self.rewards:
            await execute(_INSERT_REWARDS, columns_of(table(Reward), self.rewards, REWARD_COLUMNS))
        if self.refunded:
            await execute(_REFUNDED, {"ids": self.refunded, "at": self.now})


def fail(
    session: AsyncSession,
    redemption_id: str,
    member_id: str,
    points: int,
    item_id: str | None,
    reason: str,
    at: datetime,
) -> None:
    publish(
        session,
        RedemptionFailed(
            redemption_id=redemption_id,
            member_id=member_id,
            points=points,
            item_id=item_id,
            reason=reason,
            failed_at=at,
        ),
        member_id,
    )


class RedemptionView(BaseModel):
    redemption_id: str
    member_id: str
    item_id: str
    points: int
    status: str
    reason: str | None
    reward_id: str | None
    at: datetime
    refunded_at: datetime | None


class RedemptionList(BaseModel):
    items: list[RedemptionView]


async def member_redemptions(session: AsyncSession, member_id: str) -> RedemptionList:
    rows = await session.scalars(
        select(Redemption)
        .where(Redemption.member_id == member_id)
        .order_by(Redemption.at, Redemption.redemption_id)
    )
    return RedemptionList(
        items=[
            RedemptionView(
                redemption_id=r.redemption_id,
                member_id=r.member_id,
                item_id=r.item_id,
                points=r.points,
                status=r.status,
                reason=r.reason,
                reward_id=r.reward_id,
                at=r.at,
                refunded_at=r.refunded_at,
            )
            for r in rows
        ]
    )
