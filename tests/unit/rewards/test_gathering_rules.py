"""Gatherings: an invitation's lifecycle (invited → accepted | waitlisted | declined; a freed seat
moves the waitlist up; check-in), what is refused, and the seat arithmetic."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from rewards_service.domain.gatherings import (
    CHECK_IN_OPENS,
    STATUSES,
    Gathering,
    Refused,
    Seats,
    Status,
    accept,
    cancel,
    check_in,
    decline,
    invitable,
    moving_up,
    schedule_problem,
    step,
    waitlist_positions,
)

STARTS = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)
ENDS = STARTS + timedelta(hours=8)
BEFORE = STARTS - timedelta(days=3)
DURING = STARTS + timedelta(hours=2)


def gathering(capacity: int = 2, taken: int = 0, *, status: str = "scheduled") -> Gathering:
    return Gathering(status, STARTS, ENDS, Seats(capacity, taken))  # type: ignore[arg-type]


@contextlib.contextmanager
def refused(code: str) -> Iterator[None]:
    """The block raises ``Refused`` with this code."""
    with pytest.raises(Refused) as caught:
        yield
    assert caught.value.code == code, (caught.value.code, str(caught.value))


# --- seats -----------------------------------------------------------------------------------------


def test_seats_are_taken_and_given_back_within_the_capacity() -> None:
    seats = Seats(2)
    assert (seats.left, seats.full) == (2, False)
    seats = seats.take().take()
    assert (seats.taken, seats.left, seats.full) == (2, 0, True)
    with pytest.raises(ValueError, match="all 2 seats are taken"):
        seats.take()
    seats = seats.give_back().give_back()
    assert seats == Seats(2, 0)
    with pytest.raises(ValueError, match="none to give back"):
        seats.give_back()


@pytest.mark.parametrize(("capacity", "taken"), [(0, 0), (-1, 0), (2, 3), (2, -1)])
def test_impossible_seats_are_refused(capacity: int, taken: int) -> None:
    with pytest.raises(ValueError):
        Seats(capacity, taken)


@pytest.mark.parametrize(
    ("capacity", "taken", "waiting", "moving"),
    [(40, 39, 5, 1), (40, 40, 5, 0), (40, 38, 1, 1), (40, 37, 10, 3), (40, 39, 0, 0), (1, 0, 3, 1)],
)
def test_as_many_move_up_as_there_are_seats_and_waiting_members(
    capacity: int, taken: int, waiting: int, moving: int
) -> None:
    assert moving_up(Seats(capacity, taken), waiting) == moving


def test_forty_seats_three_hundred_acceptances_forty_seated_the_rest_waitlisted() -> None:
    state = gathering(40)
    outcomes = []
    for _ in range(300):
        done = accept(state, "invited", BEFORE)
        outcomes.append(done.status)
        state = Gathering(state.status, state.starts_at, state.ends_at, done.seats)
    assert outcomes == ["accepted"] * 40 + ["waitlisted"] * 260
    assert state.seats == Seats(40, 40)


def test_waitlist_positions_follow_the_commit_order_without_gaps() -> None:
    assert waitlist_positions([]) == {}
    assert waitlist_positions([7, 3, 12, 4]) == {3: 1, 4: 2, 7: 3, 12: 4}
    assert list(waitlist_positions(range(1, 261)).values()) == list(range(1, 261))


# --- the lifecycle ----------------------------------------------------------------------------------


def test_invited_accepts_a_free_seat() -> None:
    done = accept(gathering(2, 1), "invited", BEFORE)
    assert (done.status, done.seats, done.changed, done.freed_seat) == ("accepted", Seats(2, 2), True, False)


def test_invited_accepting_when_full_is_waitlisted_and_takes_no_seat() -> None:
    done = accept(gathering(2, 2), "invited", BEFORE)
    assert (done.status, done.seats, done.changed) == ("waitlisted", Seats(2, 2), True)


def test_invited_declines_without_touching_the_seats() -> None:
    done = decline(gathering(2, 1), "invited", BEFORE)
    assert (done.status, done.seats, done.freed_seat) == ("declined", Seats(2, 1), False)


def test_accepted_declining_frees_a_seat_and_the_first_waitlisted_moves_up() -> None:
    done = decline(gathering(2, 2), "accepted", BEFORE)
    assert (done.status, done.seats, done.freed_seat) == ("declined", Seats(2, 1), True)
    assert moving_up(done.seats, waiting=3) == 1
    after = done.seats.take()  # the first waitlisted one takes it
    assert after.full


def test_waitlisted_declining_leaves_the_waitlist_and_frees_nothing() -> None:
    done = decline(gathering(2, 2), "waitlisted", BEFORE)
    assert (done.status, done.seats, done.freed_seat) == ("declined", Seats(2, 2), False)


def test_declined_may_change_their_mind_before_the_start() -> None:
    assert accept(gathering(2, 1), "declined", BEFORE).status == "accepted"
    assert accept(gathering(2, 2), "declined", BEFORE).status == "waitlisted"


def test_accepted_is_checked_in_during_the_window_and_keeps_the_seat() -> None:
    for moment in (STARTS - CHECK_IN_OPENS, STARTS, DURING, ENDS - timedelta(seconds=1)):
        done = check_in(gathering(2, 2), "accepted", moment)
        assert (done.status, done.seats, done.changed) == ("attended", Seats(2, 2), True)


@pytest.mark.parametrize(
    ("status", "action", "moment"),
    [
        ("accepted", "accept", BEFORE),
        ("waitlisted", "accept", BEFORE),
        ("declined", "decline", BEFORE),
        ("attended", "check-in", DURING),
        ("accepted", "accept", DURING),  # a retry is harmless even once it has started
        ("declined", "decline", ENDS + timedelta(days=1)),
        ("attended", "check-in", ENDS + timedelta(days=1)),
    ],
)
def test_an_answer_given_already_changes_nothing(status: Status, action: str, moment: datetime) -> None:
    state = gathering(2, 1)
    done = step(state, status, action, moment)  # type: ignore[arg-type]
    assert (done.status, done.seats, done.changed, done.freed_seat) == (status, state.seats, False, False)


# --- what is refused --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["invited", "declined"])
@pytest.mark.parametrize("moment", [STARTS, DURING, ENDS + timedelta(days=1)])
def test_no_acceptance_once_the_gathering_started(status: Status, moment: datetime) -> None:
    with refused("gathering-started"):
        accept(gathering(), status, moment)


@pytest.mark.parametrize("status", ["invited", "accepted", "waitlisted"])
def test_no_decline_once_the_gathering_started(status: Status) -> None:
    with refused("gathering-started"):
        decline(gathering(2, 1), status, DURING)


@pytest.mark.parametrize("status", ["invited", "waitlisted", "declined"])
def test_only_a_member_with_a_seat_is_checked_in(status: Status) -> None:
    with refused("no-seat"):
        check_in(gathering(2, 2), status, DURING)


def test_check_in_only_within_the_window() -> None:
    with refused("check-in-not-open"):
        check_in(gathering(2, 1), "accepted", STARTS - CHECK_IN_OPENS - timedelta(seconds=1))
    with refused("check-in-not-open"):
        check_in(gathering(2, 1), "accepted", BEFORE)
    with refused("check-in-closed"):
        check_in(gathering(2, 1), "accepted", ENDS)


@pytest.mark.parametrize("action", ["accept", "decline"])
def test_attended_is_final(action: str) -> None:
    with refused("already-attended"):
        step(gathering(2, 1), "attended", action, DURING)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", ["accept", "decline", "check-in"])
def test_nothing_changes_once_the_gathering_is_cancelled(status: Status, action: str) -> None:
    with refused("gathering-cancelled"):
        step(gathering(2, 1, status="cancelled"), status, action, BEFORE)  # type: ignore[arg-type]
    with refused("gathering-cancelled"):
        invitable(gathering(status="cancelled"), BEFORE)


def test_invitations_only_before_the_start() -> None:
    invitable(gathering(), BEFORE)
    with refused("gathering-started"):
        invitable(gathering(), STARTS)


def test_a_gathering_is_cancelled_once_and_only_before_it_starts() -> None:
    assert cancel(gathering(), BEFORE) is True
    assert cancel(gathering(status="cancelled"), BEFORE) is False
    assert cancel(gathering(status="cancelled"), DURING) is False
    with refused("gathering-started"):
        cancel(gathering(), STARTS)


def test_the_schedule_starts_in_the_future_and_ends_after_the_start() -> None:
    assert schedule_problem(STARTS, ENDS, BEFORE) is None
    assert schedule_problem(STARTS, STARTS + timedelta(days=31), BEFORE) is None
    assert schedule_problem(STARTS, STARTS, BEFORE) == "ends_at must be after starts_at"
    assert schedule_problem(STARTS, STARTS - timedelta(hours=1), BEFORE) == "ends_at must be after starts_at"
    assert (
        schedule_problem(STARTS, STARTS + timedelta(days=32), BEFORE) == "a gathering lasts at most 31 days"
    )
    assert schedule_problem(STARTS, ENDS, STARTS) == "starts_at must be in the future"
