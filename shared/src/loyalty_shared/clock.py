"""The time a service acts at. Production reads the system clock; a settable clock (never in
production) lets tests and demos move a running service's time forward, for evaluations, expiries
and schedules that are due at period ends.

Domain functions never read a clock: they are given ``now``. Services read ``Runtime.clock``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.auth import AuthenticatedRoute, Principal, require
from loyalty_shared.errors import Unprocessable, problem_responses


class Clock:
    """UTC now, shifted by an offset that only a settable clock may change."""

    def __init__(self, settable: bool = False) -> None:
        self.settable = settable
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    @property
    def offset(self) -> timedelta:
        return self._offset

    def set(self, moment: datetime) -> None:
        """Make ``now()`` read ``moment`` (and run on from there). Time never goes back."""
        if not self.settable:
            raise RuntimeError("this clock is the system clock; it cannot be set")
        if moment.tzinfo is None:
            raise ValueError("the clock takes timezone-aware times")
        offset = moment - datetime.now(UTC)
        if offset < self._offset:
            raise ValueError("the clock only moves forward")
        self._offset = offset


SYSTEM_CLOCK = Clock()


def now(session: AsyncSession) -> datetime:
    """The time of the service that opened ``session`` (its sessions carry its clock)."""
    clock = session.info.get("clock", SYSTEM_CLOCK)
    assert isinstance(clock, Clock)
    return clock.now()


class ClockView(BaseModel):
    now: datetime
    offset_seconds: float = Field(description="how far this service's clock is ahead of the system clock")


class ClockChange(BaseModel):
    now: AwareDatetime = Field(description="the time the service's clock should read from now on")


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.runtime.clock
    return clock


def _view(clock: Clock) -> ClockView:
    return ClockView(now=clock.now(), offset_seconds=clock.offset.total_seconds())


clock_router = APIRouter(
    prefix="/v1/clock", tags=["settable clock (never in production)"], route_class=AuthenticatedRoute
)


@clock_router.get("", response_model=ClockView)
async def get_clock(
    clock: Annotated[Clock, Depends(_clock)], _: Annotated[Principal, Depends(require("crm"))]
) -> ClockView:
    return _view(clock)


@clock_router.put("", response_model=ClockView, responses=problem_responses(400, 422))
async def put_clock(
    body: ClockChange,
    clock: Annotated[Clock, Depends(_clock)],
    _: Annotated[Principal, Depends(require("crm"))],
) -> ClockView:
    """Move this process's clock forward (a settable clock only, one worker process)."""
    try:
        clock.set(body.now)
    except ValueError as exc:
        raise Unprocessable(str(exc), code="clock-backwards", title="The clock only moves forward") from exc
    return _view(clock)
