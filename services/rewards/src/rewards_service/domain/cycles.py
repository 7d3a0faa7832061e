"""A program's schedule and its cycles.

A schedule runs from ``starts`` up to ``ends`` (None: open-ended) and is cut into calendar cycles in
UTC: months, quarters or years, or a single cycle for the whole program (``cycle == "none"``, label
"all"). Cycles are half-open, [start, end): a moment exactly on a boundary belongs to the cycle that
begins there, and ``ends`` itself is outside the program. The first and last cycles are clipped to the
schedule: a quarterly program starting on 15 August 2026 has a first cycle from 15 August to
1 October, labelled "2026-Q3". Every boundary a ``Cycle`` carries is in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from loyalty_shared.dates import add_months, require_aware

CycleKind = Literal["none", "month", "quarter", "year"]
CYCLE_KINDS: tuple[CycleKind, ...] = ("none", "month", "quarter", "year")

_MONTHS = {"month": 1, "quarter": 3, "year": 12}
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Schedule:
    starts: datetime
    ends: datetime | None = None  # exclusive; None: runs until the program is ended
    cycle: CycleKind = "none"

    def __post_init__(self) -> None:
        require_aware(self.starts, "starts")
        if self.ends is not None:
            require_aware(self.ends, "ends")

    def holds(self, moment: datetime) -> bool:
        """Whether ``moment`` falls in [starts, ends)."""
        require_aware(moment, "moment")
        return self.starts <= moment and (self.ends is None or moment < self.ends)


@dataclass(frozen=True)
class Cycle:
    start: datetime
    end: datetime | None  # None only for the single cycle of an open-ended program without cycles
    label: str  # "2026-07", "2026-Q3", "2026", or "all"

    def holds(self, moment: datetime) -> bool:
        require_aware(moment, "moment")
        return self.start <= moment and (self.end is None or moment < self.end)


def _period_start(moment: datetime, months: int) -> datetime:
    """The start of the calendar period of ``months`` months (12, 3 or 1) that holds ``moment``."""
    at = moment.astimezone(UTC)
    first_month = (at.month - 1) // months * months + 1
    return datetime(at.year, first_month, 1, tzinfo=UTC)


def _label(start: datetime, cycle: CycleKind) -> str:
    if cycle == "month":
        return f"{start.year:04d}-{start.month:02d}"
    if cycle == "quarter":
        return f"{start.year:04d}-Q{(start.month - 1) // 3 + 1}"
    return f"{start.year:04d}"


def cycle_of(schedule: Schedule, moment: datetime) -> Cycle | None:
    """The cycle that holds ``moment``; None outside the schedule."""
    if not schedule.holds(moment):
        return None
    starts = schedule.starts.astimezone(UTC)
    ends = None if schedule.ends is None else schedule.ends.astimezone(UTC)
    if schedule.cycle == "none":
        return Cycle(starts, ends, "all")
    months = _MONTHS[schedule.cycle]
    start = _period_start(moment, months)
    end = add_months(start, months)
    return Cycle(max(start, starts), end if ends is None else min(end, ends), _label(start, schedule.cycle))


def cycles_between(schedule: Schedule, since: datetime, until: datetime) -> list[Cycle]:
    """The cycles that overlap [since, until), in order."""
    require_aware(since, "since")
    require_aware(until, "until")
    cycles: list[Cycle] = []
    moment = max(since, schedule.starts)
    while moment < until:
        cycle = cycle_of(schedule, moment)
        if cycle is None:
            break
        cycles.append(cycle)
        if cycle.end is None:
            break
        moment = cycle.end
    return cycles


def closed_cycles(schedule: Schedule, now: datetime) -> list[Cycle]:
    """The cycles that have ended by ``now`` (end ≤ now), in order: what settlement at cycle close
    handles (idempotently: the service keys each settlement by program, cycle and member)."""
    require_aware(now, "now")
    return [
        cycle
        for cycle in cycles_between(schedule, schedule.starts, now)
        if cycle.end is not None and cycle.end <= now
    ]


def previous_cycle(schedule: Schedule, cycle: Cycle) -> Cycle | None:
    """The cycle before ``cycle``; None for the first one."""
    return cycle_of(schedule, cycle.start - _TICK)


def next_cycle(schedule: Schedule, cycle: Cycle) -> Cycle | None:
    """The cycle after ``cycle``; None for the last one."""
    return None if cycle.end is None else cycle_of(schedule, cycle.end)
