"""Reading and changing the earning rules. Every change is a new version; nothing is overwritten."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.errors import Unprocessable
from points_service import domain
from points_service.ledger import current_rules
from points_service.models import EarningRuleSet


class RulesBody(BaseModel):
    points_per_unit: Decimal = Field(description="points per 1.00 of the paid amount")
    category_multipliers: dict[str, Decimal] = Field(default_factory=dict)
    return_window_days: int = Field(description="points stay pending this many days after payment")
    expiry_months: int = Field(description="each earning lot expires this many months after it vests")
    debt_policy: Literal["debt", "forgive"] = Field(
        description="refund of already-spent points: 'debt' (balance may go negative, later earnings "
        "pay it first) or 'forgive' (the spent part is written off)"
    )
    expiring_soon_days: int = Field(description="the window the balance reports as 'expiring soon'")


class RulesView(RulesBody):
    version: int
    created_by: str | None = None
    created_at: datetime | None = None


async def rules_in_force(session: AsyncSession) -> RulesView:
    rules = await current_rules(session)
    row = await session.get(EarningRuleSet, rules.version)
    return _view(rules, row)


async def change_rules(session: AsyncSession, body: RulesBody, actor: str) -> RulesView:
    # One writer at a time: the version number is the newest plus one.
    await session.execute(select(func.pg_advisory_xact_lock(7_000_001)))
    newest = await session.scalar(select(func.max(EarningRuleSet.version)))
    version = (newest or 0) + 1
    candidate = domain.EarningRules(
        version=version,
        points_per_unit=body.points_per_unit,
        category_multipliers=dict(body.category_multipliers),
        return_window_days=body.return_window_days,
        expiry_months=body.expiry_months,
        debt_policy=body.debt_policy,
        expiring_soon_days=body.expiring_soon_days,
    )
    problems = domain.validate_rules(candidate)
    if problems:
        raise Unprocessable(
            "; ".join(problems), code="invalid-rules", title="Invalid earning rules", problems=problems
        )
    row = EarningRuleSet(
        version=version,
        points_per_unit=body.points_per_unit,
        category_multipliers={k: str(v) for k, v in body.category_multipliers.items()},
        return_window_days=body.return_window_days,
        expiry_months=body.expiry_months,
        debt_policy=body.debt_policy,
        expiring_soon_days=body.expiring_soon_days,
        created_by=actor,
    )
    session.add(row)
    await session.flush()
    return _view(candidate, row)


def _view(rules: domain.EarningRules, row: EarningRuleSet | None) -> RulesView:
    return RulesView(
        version=rules.version,
        points_per_unit=rules.points_per_unit,
        category_multipliers=dict(rules.category_multipliers),
        return_window_days=rules.return_window_days,
        expiry_months=rules.expiry_months,
        debt_policy=rules.debt_policy,
        expiring_soon_days=rules.expiring_soon_days,
        created_by=row.created_by if row else None,
        created_at=row.created_at if row else None,
    )
