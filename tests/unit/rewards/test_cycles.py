"""Schedules and cycles: calendar cycles in UTC, half-open, clipped to the schedule."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewards_service.domain import (
    Cycle,
    Schedule,
    closed_cycles,
    cycle_of,
    cycles_between,
    next_cycle,
    previous_cycle,
)

TICK = timedelta(microseconds=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


QUARTERLY = Schedule(utc(2026, 1, 1), None, "quarter")


# --- cycle_of ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cycle", "moment", "expected"),
    [
        ("month", utc(2026, 7, 15, 12), Cycle(utc(2026, 7, 1), utc(2026, 8, 1), "2026-07")),
        ("month", utc(2026, 12, 31, 23, 59), Cycle(utc(2026, 12, 1), utc(2027, 1, 1), "2026-12")),
        ("quarter", utc(2026, 8, 15), Cycle(utc(2026, 7, 1), utc(2026, 10, 1), "2026-Q3")),
        ("quarter", utc(2026, 1, 1), Cycle(utc(2026, 1, 1), utc(2026, 4, 1), "2026-Q1")),
        ("quarter", utc(2026, 12, 31), Cycle(utc(2026, 10, 1), utc(2027, 1, 1), "2026-Q4")),
        ("quarter", utc(2027, 5, 5), Cycle(utc(2027, 4, 1), utc(2027, 7, 1), "2027-Q2")),
        ("year", utc(2027, 3, 3), Cycle(utc(2027, 1, 1), utc(2028, 1, 1), "2027")),
        ("none", utc(2030, 3, 3), Cycle(utc(2026, 1, 1), None, "all")),
    ],
)
def test_the_calendar_cycle_of_a_moment(cycle: str, moment: datetime, expected: Cycle) -> None:
    schedule = Schedule(utc(2026, 1, 1), None, cycle)  # type: ignore[arg-type]
    assert cycle_of(schedule, moment) == expected


def test_a_moment_on_a_boundary_belongs_to_the_new_cycle() -> None:
    assert cycle_of(QUARTERLY, utc(2026, 4, 1)) == Cycle(utc(2026, 4, 1), utc(2026, 7, 1), "2026-Q2")
    assert cycle_of(QUARTERLY, utc(2026, 4, 1) - TICK) == Cycle(utc(2026, 1, 1), utc(2026, 4, 1), "2026-Q1")


def test_leap_years() -> None:
    monthly = Schedule(utc(2024, 1, 1), None, "month")
    february = Cycle(utc(2024, 2, 1), utc(2024, 3, 1), "2024-02")
    assert cycle_of(monthly, utc(2024, 2, 29, 23, 59)) == february
    assert cycle_of(monthly, utc(2024, 3, 1)) == Cycle(utc(2024, 3, 1), utc(2024, 4, 1), "2024-03")
    assert cycle_of(monthly, utc(2025, 2, 28, 12)) == Cycle(utc(2025, 2, 1), utc(2025, 3, 1), "2025-02")
    yearly = Schedule(utc(2024, 1, 1), None, "year")
    assert cycle_of(yearly, utc(2024, 12, 31, 23, 59)) == Cycle(utc(2024, 1, 1), utc(2025, 1, 1), "2024")


def test_outside_the_schedule_there_is_no_cycle() -> None:
    schedule = Schedule(utc(2026, 2, 15), utc(2026, 11, 15), "quarter")
    assert cycle_of(schedule, utc(2026, 2, 15) - TICK) is None
    assert cycle_of(schedule, utc(2026, 11, 15)) is None  # ends is exclusive
    assert cycle_of(schedule, utc(2027, 1, 1)) is None
    assert cycle_of(schedule, utc(2026, 11, 15) - TICK) is not None


def test_the_first_and_last_cycles_are_clipped_to_the_schedule() -> None:
    schedule = Schedule(utc(2026, 8, 15), utc(2027, 2, 10, 12), "quarter")
    assert cycle_of(schedule, utc(2026, 8, 15)) == Cycle(utc(2026, 8, 15), utc(2026, 10, 1), "2026-Q3")
    assert cycle_of(schedule, utc(2026, 11, 1)) == Cycle(utc(2026, 10, 1), utc(2027, 1, 1), "2026-Q4")
    assert cycle_of(schedule, utc(2027, 1, 2)) == Cycle(utc(2027, 1, 1), utc(2027, 2, 10, 12), "2027-Q1")


def test_a_schedule_inside_one_period_has_one_clipped_cycle() -> None:
    schedule = Schedule(utc(2026, 5, 10), utc(2026, 5, 20), "quarter")
    assert cycles_between(schedule, utc(2020, 1, 1), utc(2030, 1, 1)) == [
        Cycle(utc(2026, 5, 10), utc(2026, 5, 20), "2026-Q2")
    ]


def test_a_program_without_cycles_is_one_cycle() -> None:
    schedule = Schedule(utc(2026, 3, 10), utc(2026, 9, 1), "none")
    assert cycle_of(schedule, utc(2026, 5, 1)) == Cycle(utc(2026, 3, 10), utc(2026, 9, 1), "all")
    assert previous_cycle(schedule, Cycle(utc(2026, 3, 10), utc(2026, 9, 1), "all")) is None
    assert next_cycle(schedule, Cycle(utc(2026, 3, 10), utc(2026, 9, 1), "all")) is None


def test_cycles_are_in_utc_whatever_the_offsets_given() -> None:
    plus_two = timezone(timedelta(hours=2))
    # 1 January 01:00 at +02:00 is still 31 December in UTC: the program starts in 2025-Q4
    starts = datetime(2026, 1, 1, 1, 0, tzinfo=plus_two)
    schedule = Schedule(starts, None, "quarter")
    first = cycle_of(schedule, starts)
    assert first == Cycle(utc(2025, 12, 31, 23), utc(2026, 1, 1), "2025-Q4")
    assert first is not None and first.start.tzinfo is UTC
    # 1 April 01:00 at +02:00 is still 31 March in UTC: the first quarter of 2026
    second = cycle_of(schedule, datetime(2026, 4, 1, 1, 0, tzinfo=plus_two))
    assert second == Cycle(utc(2026, 1, 1), utc(2026, 4, 1), "2026-Q1")


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Schedule(datetime(2026, 1, 1), None, "month")
    with pytest.raises(ValueError, match="timezone-aware"):
        Schedule(utc(2026, 1, 1), datetime(2027, 1, 1), "month")
    with pytest.raises(ValueError, match="timezone-aware"):
        cycle_of(QUARTERLY, datetime(2026, 5, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        closed_cycles(QUARTERLY, datetime(2026, 5, 1))


# --- cycles_between, closed_cycles, previous and next --------------------------------------------


def test_cycles_between_lists_the_overlapping_cycles_in_order() -> None:
    cycles = cycles_between(QUARTERLY, utc(2026, 2, 1), utc(2026, 10, 1))
    assert [c.label for c in cycles] == ["2026-Q1", "2026-Q2", "2026-Q3"]  # until is exclusive
    cycles = cycles_between(QUARTERLY, utc(2026, 2, 1), utc(2026, 10, 1) + TICK)
    assert [c.label for c in cycles] == ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
    assert cycles_between(QUARTERLY, utc(2025, 1, 1), utc(2026, 1, 1)) == []
    assert cycles_between(QUARTERLY, utc(2026, 5, 1), utc(2026, 5, 1)) == []


def test_closed_cycles_are_those_ended_by_now() -> None:
    assert closed_cycles(QUARTERLY, utc(2026, 3, 31)) == []
    assert [c.label for c in closed_cycles(QUARTERLY, utc(2026, 4, 1))] == ["2026-Q1"]  # end ≤ now
    assert [c.label for c in closed_cycles(QUARTERLY, utc(2026, 12, 31))] == ["2026-Q1", "2026-Q2", "2026-Q3"]
    assert closed_cycles(QUARTERLY, utc(2025, 6, 1)) == []


def test_closed_cycles_of_an_ended_schedule_include_the_clipped_last_cycle() -> None:
    schedule = Schedule(utc(2026, 1, 1), utc(2026, 5, 15), "quarter")
    assert [c.end for c in closed_cycles(schedule, utc(2026, 5, 15))] == [utc(2026, 4, 1), utc(2026, 5, 15)]
    assert [c.end for c in closed_cycles(schedule, utc(2027, 1, 1))] == [utc(2026, 4, 1), utc(2026, 5, 15)]
    whole = Schedule(utc(2026, 1, 1), utc(2026, 5, 15), "none")
    assert closed_cycles(whole, utc(2026, 5, 14)) == []
    assert closed_cycles(whole, utc(2026, 5, 15)) == [Cycle(utc(2026, 1, 1), utc(2026, 5, 15), "all")]
    assert closed_cycles(Schedule(utc(2026, 1, 1)), utc(2099, 1, 1)) == []  # open, no cycles: never closes


def test_previous_and_next_cycle() -> None:
    q2 = Cycle(utc(2026, 4, 1), utc(2026, 7, 1), "2026-Q2")
    assert previous_cycle(QUARTERLY, q2) == Cycle(utc(2026, 1, 1), utc(2026, 4, 1), "2026-Q1")
    assert next_cycle(QUARTERLY, q2) == Cycle(utc(2026, 7, 1), utc(2026, 10, 1), "2026-Q3")
    q1 = Cycle(utc(2026, 1, 1), utc(2026, 4, 1), "2026-Q1")
    assert previous_cycle(QUARTERLY, q1) is None
    q4 = Cycle(utc(2026, 10, 1), utc(2027, 1, 1), "2026-Q4")
    assert next_cycle(QUARTERLY, q4) == Cycle(utc(2027, 1, 1), utc(2027, 4, 1), "2027-Q1")
    ending = Schedule(utc(2026, 1, 1), utc(2027, 1, 1), "quarter")
    assert next_cycle(ending, q4) is None


def test_a_ladder_discount_earned_in_one_quarter_is_read_in_the_next() -> None:
    order_at = utc(2026, 8, 3)
    current = cycle_of(QUARTERLY, order_at)
    assert current is not None
    earned_in = previous_cycle(QUARTERLY, current)
    assert earned_in is not None and earned_in.label == "2026-Q2"


@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(["month", "quarter", "year"]),
)
def test_every_moment_is_in_exactly_its_cycle_and_the_cycles_tile(moment: datetime, kind: str) -> None:
    schedule = Schedule(utc(2020, 1, 1), None, kind)  # type: ignore[arg-type]
    cycle = cycle_of(schedule, moment)
    assert cycle is not None and cycle.end is not None
    assert cycle.start <= moment < cycle.end
    assert cycle.holds(moment)
    following = next_cycle(schedule, cycle)
    assert following is not None and following.start == cycle.end
    before = previous_cycle(schedule, cycle)
    assert before is None or before.end == cycle.start
