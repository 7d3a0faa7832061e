"""The earning rules: one document, the rules in force, changing them. Every change is a new
version; nothing is overwritten."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.errors import Unprocessable
from points_service import domain
from points_service.models import EarningRuleSet


# The earning rules as one document: the API's body and view, the figures of an ``earning_rules``
# row and ``domain.EarningRules`` are all mapped through it, here and nowhere else.
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

    def to_domain(self, version: int) -> domain.EarningRules:
        return domain.EarningRules(version=version, **self.model_dump())

    def to_row(self, version: int, actor: str) -> EarningRuleSet:
        figures = self.model_dump()
        # JSONB: the multipliers as decimal strings, exact
        figures["category_multipliers"] = {k: str(v) for k, v in self.category_multipliers.items()}
        return EarningRuleSet(version=version, created_by=actor, **figures)


class RulesView(RulesBody):
    version: int
    created_by: str | None = None
    created_at: datetime | None = None


def rules_from_row(row: EarningRuleSet) -> domain.EarningRules:
    return RulesBody.model_validate(row, from_attributes=True).to_domain(row.version)


async def current_rules(session: AsyncSession) -> domain.EarningRules:
    """The earning rules in force: the newest version (cached for the transaction)."""
    cached = session.info.get("earning_rules")
    if isinstance(cached, domain.EarningRules):
        return cached
    row = await session.scalar(select(EarningRuleSet).order_by(EarningRuleSet.version.desc()).limit(1))
    rules = domain.DEFAULT_RULES if row is None else rules_from_row(row)
    session.info["earning_rules"] = rules
    return rules


async def rules_in_force(session: AsyncSession) -> RulesView:
    rules = await current_rules(session)
    row = await session.get(EarningRuleSet, rules.version)
    return RulesView.model_validate(rules if row is None else row, from_attributes=True)


async def change_rules(session: AsyncSession, body: RulesBody, actor: str) -> RulesView:
    # One writer at a time: the version number is the newest plus one.
    await session.execute(select(func.pg_advisory_xact_lock(7_000_001)))
    newest = await session.scalar(select(func.max(EarningRuleSet.version)))
    version = (newest or 0) + 1
    problems = domain.validate_rules(body.to_domain(version))
    if problems:
        raise Unprocessable(
            "; ".join(problems), code="invalid-rules", title="Invalid earning rules", problems=problems
        )
    row = body.to_row(version, actor)
    session.add(row)
    await session.flush()
    return RulesView.model_validate(row, from_attributes=True)
