"""The points service's business rules: pure functions and values, no IO."""

from loyalty_shared.dates import add_months
from points_service.domain.accrual import PricedLine, accrue_points, earning_schedule
from points_service.domain.lots import (
    Balance,
    DebitPlan,
    Lot,
    Take,
    due_for_expiry,
    is_available,
    is_pending,
    plan_redemption,
    plan_reversal,
    resolve_shortfall,
    settle_debt,
    summarize,
)
from points_service.domain.reversal import (
    RefundExceedsPaid,
    reversal_due,
)
from points_service.domain.rules import (
    DEFAULT_RULES,
    DebtPolicy,
    EarningRules,
    validate_rules,
)

__all__ = [
    "DEFAULT_RULES",
    "Balance",
    "DebitPlan",
    "DebtPolicy",
    "EarningRules",
    "Lot",
    "PricedLine",
    "RefundExceedsPaid",
    "Take",
    "accrue_points",
    "add_months",
    "due_for_expiry",
    "earning_schedule",
    "is_available",
    "is_pending",
    "plan_redemption",
    "plan_reversal",
    "resolve_shortfall",
    "reversal_due",
    "settle_debt",
    "summarize",
    "validate_rules",
]
