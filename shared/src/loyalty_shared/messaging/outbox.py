"""Transactional outbox: events are written in the state change's transaction; a relay publishes.

``publish`` is called by a service inside its unit of work. ``OutboxRelay`` publishes unpublished
rows in id order and marks them only after the broker acknowledged them, so a crash anywhere delays
an event but never drops it (consumers dedupe the occasional re-publish by event id).

The relay learns of new rows at once, from whichever process wrote them: a transaction that wrote
outbox rows sends ``NOTIFY loyalty_outbox`` (delivered when it commits) and the relay LISTENs on a
connection of its own. Should that connection be lost, the relay polls every ``poll_ms`` until it
is back, so a relay in another replica (``LOYALTY_RUN_RELAY``) is woken like one in the same process.

Per-member order: a service writes a member's outbox rows after taking that member's row lock, so
ids follow commit order for one member; a single relay at a time (a PostgreSQL advisory lock) sends
them in id order with the member id as the Kafka key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import event, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from loyalty_shared import failpoints
from loyalty_shared.clock import now as clock_now
from loyalty_shared.db import KitTables, defer_insert
from loyalty_shared.envelope import CONTENT_TYPE, CloudEvent, new_event
from loyalty_shared.events import EventData, schema_uri
from loyalty_shared.observability import OUTBOX_BACKLOG, OUTBOX_PUBLISHED

log = logging.getLogger(__name__)

CHANNEL = "loyalty_outbox"  # NOTIFY channel of a database's outbox
_NOTIFY = text(f"NOTIFY {CHANNEL}")
_WROTE = "loyalty.outbox_written"  # session.info flag: this transaction wrote outbox rows


def publish(session: AsyncSession, data: EventData, subject: str) -> CloudEvent:
    """Emit an event from inside a unit of work: a CloudEvent of ``data``'s type (at the service's
    clock, from the service's source) written to the outbox, at commit, with the state change.
    ``subject`` is the member id (the Kafka key that keeps one member's events in order)."""
    if not subject:
        raise ValueError("an outgoing event needs a subject (the member id, used as Kafka key)")
    service: ServiceTag = session.info["service"]
    event = new_event(
        data.event_type,
        service.source,
        subject,
        data,
        time=clock_now(session),
        dataschema=schema_uri(data.event_type),
    )
    defer_insert(
        session,
        service.kit.outbox,
        {
            "topic": data.topic,
            "key": subject,
            "event_id": event.id,
            "event_type": event.type,
            "payload": event.to_bytes(),
            "headers": {"content-type": CONTENT_TYPE, "ce_type": event.type},
        },
    )
    session.info[_WROTE] = True
    return event


@event.listens_for(Session, "before_commit")
def _notify_relay(session: Session) -> None:
    # (a row discarded with its savepoint leaves the flag set: the relay then wakes for nothing)
    if session.info.pop(_WROTE, False):
        session.execute(_NOTIFY)


@dataclass(frozen=True)
class ServiceTag:
    """What a session knows of the service that opened it (``session.info["service"]``)."""

    source: str  # the CloudEvent source of what it emits, e.g. urn:loyalty:points
    kit: KitTables


class OutboxRelay:
    def __init__(
        self,
        *,
        service: str,
        sessions: async_sessionmaker[AsyncSession],
        kit: KitTables,
        producer: Any,
        listen_dsn: str | None = None,
        topic_prefix: str = "",
        poll_ms: int = 100,
        batch_size: int = 500,
    ) -> None:
        self._service = service
        self._topic_prefix = topic_prefix
        self._sessions = sessions
        self._kit = kit
        self._producer = producer
        self._poll = poll_ms / 1000
        self._batch_size = batch_size
        self._listen_dsn = listen_dsn  # asyncpg DSN of the database, for LISTEN; None: poll only
        self._lock_key = zlib.crc32(f"outbox-relay:{service}".encode())
        self._wakeup = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Publish soon: a transaction just committed outbox rows."""
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen(), name="outbox-listener")
        try:
            while not self._stopping:
                try:
                    published = await self.publish_pending()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("outbox relay failed; retrying", extra={"service": self._service})
                    published = 0
                    await asyncio.sleep(1.0)
                if published < self._batch_size:
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self) -> None:
        """Wake on every NOTIFY of the outbox; after a lost connection, connect again (the poll
        covers the gap)."""
        if self._listen_dsn is None:
            return
        while not self._stopping:
            try:
                await self._listen_once(self._listen_dsn)
            except Exception as exc:  # whatever it was (refused, timed out, lost): poll, then try again
                log.warning("outbox relay cannot LISTEN (%s); polling", exc, extra={"service": self._service})
            await asyncio.sleep(1.0)

    async def _listen_once(self, dsn: str) -> None:
        """LISTEN on one connection until it is lost."""
        lost = asyncio.Event()
        connection = await asyncpg.connect(dsn)
        try:
            connection.add_termination_listener(lambda _: lost.set())
            await connection.add_listener(CHANNEL, lambda *_: self.wake())
            self.wake()  # rows may have been written while no one listened
            await lost.wait()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(connection.close(timeout=2))

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished rows; returns how many were published."""
        outbox = self._kit.outbox
        async with self._sessions() as session, session.begin():
            if not await session.scalar(select(func.pg_try_advisory_xact_lock(self._lock_key))):
                return 0  # another replica's relay is publishing
            rows = (
                await session.execute(
                    select(
                        outbox.c.id,
                        outbox.c.topic,
                        outbox.c.key,
                        outbox.c.payload,
                        outbox.c.headers,
                    )
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.id)
                    .limit(self._batch_size)
                )
            ).all()
            if not rows:
                OUTBOX_BACKLOG.labels(self._service).set(0)
                return 0
            failpoints.hit("relay.before_publish")
            sends = [
                await self._producer.send(
                    self._topic_prefix + row.topic,
                    value=row.payload,
                    key=row.key.encode(),
                    headers=[(k, str(v).encode()) for k, v in row.headers.items()],
                )
                for row in rows
            ]
            await asyncio.gather(*sends)
            failpoints.hit("relay.after_publish")
            await session.execute(
                update(outbox)
                .where(outbox.c.id.in_([row.id for row in rows]))
                .values(published_at=func.now())
            )
            backlog = await session.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            )
        OUTBOX_PUBLISHED.labels(self._service).inc(len(rows))
        OUTBOX_BACKLOG.labels(self._service).set(backlog or 0)
        return len(rows)
