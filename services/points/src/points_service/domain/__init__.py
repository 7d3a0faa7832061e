"""The points service's business rules: pure functions and values, no IO."""

from loyalty_shared.dates import add_months
from points_service.domain.accrual import Accrual, PricedLine, accrual_of, accrue_points, earning_schedule
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
    Rerating,
    rerate,
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
    "Accrual",
    "Balance",
    "DebitPlan",
    "DebtPolicy",
    "EarningRules",
    "Lot",
    "PricedLine",
    "RefundExceedsPaid",
    "Rerating",
    "Take",
    "accrual_of",
    "accrue_points",
    "add_months",
    "due_for_expiry",
    "earning_schedule",
    "is_available",
    "is_pending",
    "plan_redemption",
    "plan_reversal",
    "rerate",
    "resolve_shortfall",
    "reversal_due",
    "settle_debt",
    "summarize",
    "validate_rules",
]
