"""Gatherings (training courses and customer exchange events): the lifecycle of an invitation and the
seats it holds. Pure functions, no IO.

An invitation is ``invited`` → ``accepted`` (a seat was free) | ``waitlisted`` (none was) |
``declined``. An accepted member who declines gives their seat back and the first waitlisted member
moves up (``accepted``); a waitlisted member who declines leaves the waitlist; a member who declined
may change their mind and accept again (a seat, or the end of the waitlist). At check-in an accepted
member becomes ``attended`` (final; the seat stays taken).

Refused: any change once the gathering is cancelled; an answer (accept, decline) once it has
started; a check-in outside its window (``CHECK_IN_OPENS`` before the start until its end, by the
service clock) or of a member without a seat; anything after ``attended``; cancelling a gathering
that has started. Giving an answer already given (accept when accepted or waitlisted, decline when
declined, check in when attended) changes nothing: a retry is harmless.

Seats: ``taken`` counts accepted and attended members, never above the capacity. A free seat and a
waiting member never coexist: every seat freed is offered to the waitlist at once, in waitlist
order, so an acceptance never overtakes the waitlist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

Kind = Literal["training", "exchange"]
KINDS: tuple[Kind, ...] = ("training", "exchange")
GatheringStatus = Literal["scheduled", "cancelled"]
Status = Literal["invited", "accepted", "waitlisted", "declined", "attended"]
STATUSES: tuple[Status, ...] = ("invited", "accepted", "waitlisted", "declined", "attended")
Action = Literal["accept", "decline", "check-in"]

CHECK_IN_OPENS = timedelta(hours=1)  # check-in opens this long before the start, closes at the end
LONGEST = timedelta(days=31)  # a gathering lasts at most this long


class Refused(ValueError):
    """A change the rules do not allow: ``code`` says which rule (the problem type), ``str`` why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Seats:
    """A gathering's seats: its capacity and how many accepted or attended members hold one."""

    capacity: int
    taken: int = 0

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"a gathering has at least one seat, not {self.capacity}")
        if not 0 <= self.taken <= self.capacity:
            raise ValueError(f"{self.taken} seats taken of {self.capacity}: out of range")

    @property
    def left(self) -> int:
        return self.capacity - self.taken

    @property
    def full(self) -> bool:
        return self.taken >= self.capacity

    def take(self) -> Seats:
        if self.full:
            raise ValueError(f"all {self.capacity} seats are taken")
        return replace(self, taken=self.taken + 1)

    def give_back(self) -> Seats:
        if self.taken == 0:
            raise ValueError("no seat is taken: none to give back")
        return replace(self, taken=self.taken - 1)


@dataclass(frozen=True)
class Gathering:
    """What the rules judge a change on: the gathering as it stands under its lock."""

    status: GatheringStatus
    starts_at: datetime
    ends_at: datetime
    seats: Seats

    def started(self, now: datetime) -> bool:
        return now >= self.starts_at

    @property
    def check_in_opens(self) -> datetime:
        return self.starts_at - CHECK_IN_OPENS


@dataclass(frozen=True)
class Step:
    """What an action does to one invitation: its status after, the seats after, whether anything
    changed (False: a retry of an answer already given; nothing to write or publish), whether it
    freed a seat (then ``moving_up`` says how many waitlisted members take one)."""

    status: Status
    seats: Seats
    changed: bool
    freed_seat: bool = False


def schedule_problem(starts_at: datetime, ends_at: datetime, now: datetime) -> str | None:
    """Why a gathering cannot be scheduled at these times, or None: it starts in the future and
    ends after it starts, at most ``LONGEST`` later."""
    if ends_at <= starts_at:
        return "ends_at must be after starts_at"
    if ends_at - starts_at > LONGEST:
        return f"a gathering lasts at most {LONGEST.days} days"
    if starts_at <= now:
        return "starts_at must be in the future"
    return None


def _open(gathering: Gathering) -> None:
    if gathering.status == "cancelled":
        raise Refused("gathering-cancelled", "the gathering is cancelled: nothing about it changes any more")


def _answers_open(gathering: Gathering, now: datetime) -> None:
    if gathering.started(now):
        raise Refused(
            "gathering-started",
            f"the gathering started at {gathering.starts_at.isoformat()}: answers are closed",
        )


def invitable(gathering: Gathering, now: datetime) -> None:
    """Members may be invited: the gathering is scheduled and has not started. Refused otherwise."""
    _open(gathering)
    _answers_open(gathering, now)


def accept(gathering: Gathering, status: Status, now: datetime) -> Step:
    """The member accepts: a seat when one is free, else the end of the waitlist."""
    _open(gathering)
    if status == "attended":
        raise Refused("already-attended", "the member has attended: that is final")
    if status in ("accepted", "waitlisted"):
        return Step(status, gathering.seats, changed=False)
    _answers_open(gathering, now)
    if gathering.seats.full:
        return Step("waitlisted", gathering.seats, changed=True)
    return Step("accepted", gathering.seats.take(), changed=True)


def decline(gathering: Gathering, status: Status, now: datetime) -> Step:
    """The member declines: an accepted member's seat is given back (and offered to the waitlist),
    a waitlisted member leaves the waitlist."""
    _open(gathering)
    if status == "attended":
        raise Refused("already-attended", "the member has attended: that is final")
    if status == "declined":
        return Step(status, gathering.seats, changed=False)
    _answers_open(gathering, now)
    if status == "accepted":
        return Step("declined", gathering.seats.give_back(), changed=True, freed_seat=True)
    return Step("declined", gathering.seats, changed=True)


def check_in(gathering: Gathering, status: Status, now: datetime) -> Step:
    """The member is checked in: only with a seat (accepted), only within the gathering's window."""
    _open(gathering)
    if status == "attended":
        return Step(status, gathering.seats, changed=False)
    if status != "accepted":
        raise Refused("no-seat", f"only a member with a seat (accepted) is checked in; this one is {status}")
    if now < gathering.check_in_opens:
        raise Refused("check-in-not-open", f"check-in opens at {gathering.check_in_opens.isoformat()}")
    if now >= gathering.ends_at:
        raise Refused("check-in-closed", f"the gathering ended at {gathering.ends_at.isoformat()}")
    return Step("attended", gathering.seats, changed=True)


ACTIONS = {"accept": accept, "decline": decline, "check-in": check_in}


def step(gathering: Gathering, status: Status, action: Action, now: datetime) -> Step:
    """What ``action`` does to an invitation in ``status``; ``Refused`` when the rules forbid it."""
    return ACTIONS[action](gathering, status, now)


def moving_up(seats: Seats, waiting: int) -> int:
    """How many waitlisted members take a seat now: as many as there are free seats and waiting."""
    return max(0, min(seats.left, waiting))


def cancel(gathering: Gathering, now: datetime) -> bool:
    """Whether cancelling changes anything (False: cancelled already); refused once it has started."""
    if gathering.status == "cancelled":
        return False
    if gathering.started(now):
        raise Refused(
            "gathering-started",
            f"the gathering started at {gathering.starts_at.isoformat()}: it can no longer be cancelled",
        )
    return True


def waitlist_positions(sequence: Iterable[int]) -> dict[int, int]:
    """Each waitlisted member's position (1, 2, …, no gaps) from their place in the order answers
    committed in (their waitlist sequence numbers, which may have gaps: members left or moved up)."""
    return {seq: position for position, seq in enumerate(sorted(set(sequence)), start=1)}
