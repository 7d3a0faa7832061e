"""What points does with the rewards service's events (both exactly once: the event id is in the
inbox, and rewards publishes each once per statement and per redemption):

- a ``rebate.settled`` paid as points credits a lot at once (available now, expiring like any
  points), with the program as the ledger reason;
- a ``redemption.failed`` (the catalog could not fulfil it, or its gift was cancelled) gives the
  redemption's points back: a lot of that many points, available now, expiring like a credit
  (the lots the redemption took may have expired since), a ``restore`` ledger entry.
"""

from __future__ import annotations

from loyalty_shared.events import PointsAdjusted, RebateSettled, RedemptionFailed
from loyalty_shared.handling import Delivery
from loyalty_shared.messaging.outbox import publish
from points_service import domain
from points_service.workset import Workset

ACTOR = "rewards"


def credit_rebate(ws: Workset, delivery: Delivery) -> None:
    rebate = delivery.data
    assert isinstance(rebate, RebateSettled)
    if rebate.pay_as != "points" or not rebate.points:
        return  # a cash rebate is store credit in the rewards wallet
    at = delivery.event.time
    account = ws.account(rebate.member_id)
    lot_id, repaid = ws.add_lot(
        account,
        rebate.points,
        source="rebate",
        earned_at=at,
        available_at=at,
        expires_at=domain.add_months(at, ws.rules.expiry_months),
    )
    reason = f"rebate of program {rebate.program_name!r} ({rebate.program_id}) for {rebate.cycle}"
    if repaid:
        reason += f"; {repaid} points paid an outstanding debt"
    ws.append_entry(
        member_id=rebate.member_id,
        entry_type="adjust",
        points=rebate.points,
        reason=reason,
        adjustment_id=rebate.reward_id,
        lot_id=lot_id,
        actor=ACTOR,
        event_id=delivery.event.id,
    )
    publish(
        ws.session,
        PointsAdjusted(
            member_id=rebate.member_id,
            adjustment_id=rebate.reward_id,
            points=rebate.points,
            reason=reason,
            actor=ACTOR,
        ),
        rebate.member_id,
    )


def restore_redemption(ws: Workset, delivery: Delivery) -> None:
    failed = delivery.data
    assert isinstance(failed, RedemptionFailed)
    at = delivery.event.time
    account = ws.account(failed.member_id)
    lot_id, repaid = ws.add_lot(
        account,
        failed.points,
        source="restore",
        earned_at=at,
        available_at=at,
        expires_at=domain.add_months(at, ws.rules.expiry_months),
    )
    reason = f"redemption {failed.redemption_id} given back: {failed.reason}"
    if repaid:
        reason += f"; {repaid} points paid an outstanding debt"
    ws.append_entry(
        member_id=failed.member_id,
        entry_type="restore",
        points=failed.points,
        reason=reason,
        redemption_id=failed.redemption_id,
        lot_id=lot_id,
        actor=ACTOR,
        event_id=delivery.event.id,
    )
    publish(
        ws.session,
        PointsAdjusted(
            member_id=failed.member_id,
            adjustment_id=failed.redemption_id,
            points=failed.points,
            reason=reason,
            actor=ACTOR,
        ),
        failed.member_id,
    )
