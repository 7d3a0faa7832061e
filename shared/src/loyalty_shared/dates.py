"""Calendar arithmetic every service's rules use: aware instants, whole months later or earlier."""

from __future__ import annotations

import calendar
from datetime import datetime


def require_aware(moment: datetime, name: str = "moment") -> datetime:
    """Refuse a datetime without a time zone: every instant the platform keeps is unambiguous."""
    if not isinstance(moment, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return moment


def add_months(moment: datetime, months: int) -> datetime:
    """The same wall-clock time ``months`` calendar months later (earlier when negative).

    A day that does not exist in the target month moves to that month's last day,
    so 31 January plus one month is 28 or 29 February. The time zone is kept.
    """
    require_aware(moment, "moment")
    if not isinstance(months, int) or isinstance(months, bool):
        raise ValueError(f"months must be a whole number, got {months!r}")
    year, month_index = divmod(moment.year * 12 + (moment.month - 1) + months, 12)
    if not 1 <= year <= 9999:
        raise ValueError(f"{moment.isoformat()} plus {months} months is out of the calendar")
    month = month_index + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)
