"""Windows (start, end] and evaluation points: rolling months, calendar periods, anniversaries."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from loyalty_shared.dates import add_months
from tiers_service.domain import Evaluation, Window, next_evaluation, window_start

TICK = timedelta(microseconds=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- window_start -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("months", "end", "start"),
    [
        (12, utc(2024, 6, 15, 12, 30), utc(2023, 6, 15, 12, 30)),
        (12, utc(2024, 2, 29, 8), utc(2023, 2, 28, 8)),
        (3, utc(2024, 5, 31), utc(2024, 2, 29)),  # month-end clamped, leap year
        (3, utc(2023, 5, 31, 23, 59, 59), utc(2023, 2, 28, 23, 59, 59)),
        (1, utc(2024, 3, 31), utc(2024, 2, 29)),
        (1, utc(2024, 1, 15), utc(2023, 12, 15)),
        (6, utc(2024, 8, 31), utc(2024, 2, 29)),
        (24, utc(2024, 1, 1), utc(2022, 1, 1)),
        (60, utc(2024, 2, 29), utc(2019, 2, 28)),
    ],
)
def test_rolling_window_starts_whole_months_earlier(months: int, end: datetime, start: datetime) -> None:
    assert window_start(Window("rolling-months", months), end) == start


def test_rolling_window_keeps_the_end_time_zone_and_microseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    end = datetime(2024, 5, 31, 23, 30, 0, 250, tzinfo=plus_two)
    start = window_start(Window("rolling-months", 3), end)
    assert start == datetime(2024, 2, 29, 23, 30, 0, 250, tzinfo=plus_two)
    assert start.tzinfo is plus_two


@pytest.mark.parametrize(
    ("end", "start"),
    [
        (utc(2024, 6, 15, 12), utc(2024, 1, 1)),
        (utc(2024, 12, 31, 23, 59, 59), utc(2024, 1, 1)),
        (utc(2025, 1, 1), utc(2024, 1, 1)),  # exactly on the boundary: the year that just ended
        (utc(2025, 1, 1) + TICK, utc(2025, 1, 1)),
        (utc(2024, 1, 1), utc(2023, 1, 1)),
        (utc(2024, 1, 1) - TICK, utc(2023, 1, 1)),
    ],
)
def test_calendar_year_window(end: datetime, start: datetime) -> None:
    assert window_start(Window("calendar-year"), end) == start


@pytest.mark.parametrize(
    ("end", "start"),
    [
        (utc(2024, 5, 15), utc(2024, 4, 1)),
        (utc(2024, 4, 1) + TICK, utc(2024, 4, 1)),
        (utc(2024, 7, 1), utc(2024, 4, 1)),  # exactly on the boundary: the quarter that just ended
        (utc(2024, 7, 1) + TICK, utc(2024, 7, 1)),
        (utc(2024, 1, 1), utc(2023, 10, 1)),
        (utc(2024, 2, 29, 12), utc(2024, 1, 1)),
        (utc(2024, 3, 31, 23, 59, 59), utc(2024, 1, 1)),
        (utc(2024, 4, 1), utc(2024, 1, 1)),
        (utc(2024, 10, 1), utc(2024, 7, 1)),
        (utc(2024, 12, 31), utc(2024, 10, 1)),
    ],
)
def test_calendar_quarter_window(end: datetime, start: datetime) -> None:
    assert window_start(Window("calendar-quarter"), end) == start


def test_consecutive_calendar_windows_meet_without_overlap() -> None:
    # (2024-01-01, 2025-01-01] then (2025-01-01, 2026-01-01]: the boundary instant belongs to the first
    year = Window("calendar-year")
    assert window_start(year, utc(2026, 1, 1)) == utc(2025, 1, 1)
    assert window_start(year, utc(2025, 1, 1)) == utc(2024, 1, 1)


def test_calendar_windows_are_cut_in_utc() -> None:
    plus_one = timezone(timedelta(hours=1))
    end = datetime(2025, 1, 1, 0, 30, tzinfo=plus_one)  # 2024-12-31 23:30 UTC
    start = window_start(Window("calendar-year"), end)
    assert start == utc(2024, 1, 1)
    assert start.tzinfo is UTC
    minus_five = timezone(timedelta(hours=-5))
    end = datetime(2024, 3, 31, 20, 0, tzinfo=minus_five)  # 2024-04-01 01:00 UTC
    assert window_start(Window("calendar-quarter"), end) == utc(2024, 4, 1)


@pytest.mark.parametrize("kind", ["rolling-months", "calendar-year", "calendar-quarter"])
def test_window_start_refuses_a_naive_end(kind: str) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        window_start(Window(kind), datetime(2024, 6, 1))  # type: ignore[arg-type]


# --- next_evaluation: period end --------------------------------------------------------------

JOINED = utc(2023, 3, 10, 9)


@pytest.mark.parametrize(
    ("period", "after", "expected"),
    [
        ("year", utc(2024, 6, 15, 12), utc(2025, 1, 1)),
        ("year", utc(2025, 1, 1) - TICK, utc(2025, 1, 1)),
        ("year", utc(2025, 1, 1), utc(2026, 1, 1)),  # strictly after
        ("year", utc(2025, 1, 1) + TICK, utc(2026, 1, 1)),
        ("year", utc(2023, 3, 10, 9), utc(2024, 1, 1)),
        ("quarter", utc(2024, 2, 10), utc(2024, 4, 1)),
        ("quarter", utc(2024, 4, 1) - TICK, utc(2024, 4, 1)),
        ("quarter", utc(2024, 4, 1), utc(2024, 7, 1)),
        ("quarter", utc(2024, 10, 1), utc(2025, 1, 1)),
        ("quarter", utc(2024, 11, 30), utc(2025, 1, 1)),
        ("month", utc(2024, 1, 31, 23, 59, 59), utc(2024, 2, 1)),
        ("month", utc(2024, 2, 1) - TICK, utc(2024, 2, 1)),
        ("month", utc(2024, 2, 1), utc(2024, 3, 1)),
        ("month", utc(2024, 2, 29, 12), utc(2024, 3, 1)),
        ("month", utc(2024, 12, 15), utc(2025, 1, 1)),
        ("month", utc(2024, 12, 31, 23, 59, 59), utc(2025, 1, 1)),
    ],
)
def test_next_period_end(period: str, after: datetime, expected: datetime) -> None:
    evaluation = Evaluation("period-end", period)  # type: ignore[arg-type]
    assert next_evaluation(evaluation, JOINED, after) == expected


def test_period_end_does_not_depend_on_the_join_date() -> None:
    evaluation = Evaluation("period-end", "quarter")
    after = utc(2024, 5, 5)
    assert next_evaluation(evaluation, utc(2020, 11, 30), after) == utc(2024, 7, 1)
    assert next_evaluation(evaluation, utc(2024, 5, 4), after) == utc(2024, 7, 1)


def test_period_ends_are_utc_boundaries() -> None:
    minus_two = timezone(timedelta(hours=-2))
    after = datetime(2024, 12, 31, 23, 30, tzinfo=minus_two)  # 2025-01-01 01:30 UTC
    result = next_evaluation(Evaluation("period-end", "year"), JOINED, after)
    assert result == utc(2026, 1, 1)
    assert result.tzinfo is UTC
    plus_three = timezone(timedelta(hours=3))
    after = datetime(2025, 1, 1, 2, 0, tzinfo=plus_three)  # 2024-12-31 23:00 UTC
    assert next_evaluation(Evaluation("period-end", "month"), JOINED, after) == utc(2025, 1, 1)


def test_period_end_evaluation_points_follow_each_other() -> None:
    evaluation = Evaluation("period-end", "month")
    point = utc(2024, 1, 1)
    points = []
    for _ in range(14):
        point = next_evaluation(evaluation, JOINED, point)
        points.append(point)
    assert points == [utc(2024, m, 1) for m in range(2, 13)] + [
        utc(2025, 1, 1),
        utc(2025, 2, 1),
        utc(2025, 3, 1),
    ]


# --- next_evaluation: anniversary -------------------------------------------------------------

ANNIVERSARY = Evaluation("anniversary")


@pytest.mark.parametrize(
    ("joined", "after", "expected"),
    [
        (JOINED, JOINED, utc(2024, 3, 10, 9)),  # at the join instant: the first anniversary
        (JOINED, utc(2023, 12, 31), utc(2024, 3, 10, 9)),
        (JOINED, utc(2024, 1, 5), utc(2024, 3, 10, 9)),
        (JOINED, utc(2024, 3, 10, 9) - TICK, utc(2024, 3, 10, 9)),
        (JOINED, utc(2024, 3, 10, 9), utc(2025, 3, 10, 9)),  # exactly on an anniversary: the next one
        (JOINED, utc(2024, 12, 31), utc(2025, 3, 10, 9)),
        (JOINED, utc(2025, 1, 5), utc(2025, 3, 10, 9)),
        (JOINED, utc(2040, 3, 9), utc(2040, 3, 10, 9)),  # many years later
        (JOINED, utc(2040, 3, 10, 9), utc(2041, 3, 10, 9)),
        (JOINED, utc(2040, 12, 1), utc(2041, 3, 10, 9)),
        (utc(2020, 12, 31, 22), utc(2021, 1, 5), utc(2021, 12, 31, 22)),
        (utc(2020, 1, 1), utc(2021, 12, 31), utc(2022, 1, 1)),
        # joined on 29 February: 28 February in common years, 29 February in leap years
        (utc(2024, 2, 29, 12), utc(2024, 6, 1), utc(2025, 2, 28, 12)),
        (utc(2024, 2, 29, 12), utc(2025, 2, 28, 12) - TICK, utc(2025, 2, 28, 12)),
        (utc(2024, 2, 29, 12), utc(2025, 2, 28, 12), utc(2026, 2, 28, 12)),
        (utc(2024, 2, 29, 12), utc(2027, 3, 1), utc(2028, 2, 29, 12)),
        (utc(2024, 2, 29, 12), utc(2028, 2, 28, 12), utc(2028, 2, 29, 12)),
        (utc(2024, 2, 29, 12), utc(2028, 2, 29, 11, 59), utc(2028, 2, 29, 12)),
        (utc(2024, 2, 29, 12), utc(2028, 2, 29, 12), utc(2029, 2, 28, 12)),
        (utc(2024, 2, 29, 12), utc(2099, 12, 31), utc(2100, 2, 28, 12)),  # 2100 is no leap year
    ],
)
def test_next_anniversary(joined: datetime, after: datetime, expected: datetime) -> None:
    assert next_evaluation(ANNIVERSARY, joined, after) == expected


def test_anniversary_ignores_the_period() -> None:
    for period in ("year", "quarter", "month"):
        evaluation = Evaluation("anniversary", period)
        assert next_evaluation(evaluation, JOINED, utc(2024, 6, 1)) == utc(2025, 3, 10, 9)


def test_next_anniversary_compares_instants_across_time_zones() -> None:
    joined = utc(2020, 12, 31, 20)
    # New Year in UTC+14 is still 2023 in UTC, before that day's anniversary
    after = datetime(2024, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=14)))  # 2023-12-31 10:30 UTC
    assert next_evaluation(ANNIVERSARY, joined, after) == utc(2023, 12, 31, 20)
    # New Year's Eve in UTC-10 is already past 2024's anniversary in UTC
    joined = utc(2020, 1, 1, 3)
    after = datetime(2023, 12, 31, 20, 0, tzinfo=timezone(timedelta(hours=-10)))  # 2024-01-01 06:00 UTC
    assert next_evaluation(ANNIVERSARY, joined, after) == utc(2025, 1, 1, 3)


def test_next_anniversary_matches_a_brute_force_search_day_by_day() -> None:
    joined = utc(2024, 2, 29, 6)
    anniversaries = [add_months(joined, 12 * years) for years in range(1, 10)]
    after = joined
    while after < utc(2032, 6, 1):
        expected = min(a for a in anniversaries if a > after)
        assert next_evaluation(ANNIVERSARY, joined, after) == expected, after
        after += timedelta(hours=23)  # drifts through every hour of the day


def test_next_evaluation_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_evaluation(ANNIVERSARY, datetime(2024, 1, 1), utc(2024, 6, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        next_evaluation(Evaluation(), utc(2024, 1, 1), datetime(2024, 6, 1))
