"""Windows and evaluation points. Windows are half-open, (start, end]: an order paid exactly at a
period boundary belongs to the period that ends there. Every boundary is in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loyalty_shared.dates import add_months, require_aware
from tiers_service.domain.ladder import Evaluation, Window

_TICK = timedelta(microseconds=1)
_PERIOD_MONTHS = {"year": 12, "quarter": 3, "month": 1}


def window_start(window: Window, end: datetime) -> datetime:
    """The (exclusive) start of the window that ends at ``end``."""
    require_aware(end, "end")
    if window.kind == "rolling-months":
        return add_months(end, -window.months)
    return _period_start(end - _TICK, 12 if window.kind == "calendar-year" else 3)


def longest_window(window: Window) -> timedelta:
    """No window is longer: ``window_start(window, end) >= end - longest_window(window)``."""
    months = (
        window.months if window.kind == "rolling-months" else (12 if window.kind == "calendar-year" else 3)
    )
    return timedelta(days=31 * months + 1)


def _period_start(moment: datetime, months: int) -> datetime:
    """The start of the calendar period of ``months`` months (12, 3 or 1) that holds ``moment``."""
    at = moment.astimezone(UTC)
    first_month = (at.month - 1) // months * months + 1
    return datetime(at.year, first_month, 1, tzinfo=UTC)


def next_evaluation(evaluation: Evaluation, joined_at: datetime, after: datetime) -> datetime:
    """The first evaluation point strictly after ``after``: the next period end, or the next
    anniversary of ``joined_at``."""
    require_aware(joined_at, "joined_at")
    require_aware(after, "after")
    if evaluation.at == "period-end":
        months = _PERIOD_MONTHS[evaluation.period]
        return add_months(_period_start(after, months), months)
    years = max(1, after.year - joined_at.year)
    point = add_months(joined_at, 12 * years)
    while point <= after:
        years += 1
        point = add_months(joined_at, 12 * years)
    while years > 1 and add_months(joined_at, 12 * (years - 1)) > after:
        years -= 1
        point = add_months(joined_at, 12 * years)
    return point
