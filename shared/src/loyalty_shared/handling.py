"""The handler contract: how a service applies the events it consumes.

A service has one batch handler, ``async def handle(session, deliveries)``. The consumer runner
calls it with every new event of one poll that the service handles, in offset order (so one
member's events keep their order), inside the batch's database transaction, after the events' ids
went into the inbox; duplicates are already gone. The handler applies them with a few set-based
statements per table (load what the batch touches, apply each event in memory, write back), and
adds what it emits to the outbox through ``loyalty_shared.messaging.outbox.publish``.

Batched equals sequential: handling a batch must give exactly what handling its events one by one
gives. That is also the kit's fallback: when the handler raises, the runner rolls the batch back
and calls it again with one event at a time, each in a savepoint of its own, so a failing event is
retried and dead-lettered alone. ``PermanentEventError`` says an event can never succeed as it is:
it is dead-lettered at once, without retries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.envelope import CloudEvent


class PermanentEventError(Exception):
    """The event can never succeed as it is (e.g. a refund of an unknown order): dead-letter it now."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One consumed event: its envelope and its typed data (the model of its type)."""

    event: CloudEvent
    data: Any

    @property
    def type(self) -> str:
        return self.event.type


BatchHandler = Callable[[AsyncSession, Sequence[Delivery]], Awaitable[None]]
