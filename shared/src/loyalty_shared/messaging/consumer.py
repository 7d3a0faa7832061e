"""The consumer runner: effectively-once event handling on aiokafka and PostgreSQL.

One poll gives a batch; the batch is handled in ONE database transaction; each event's id goes into
the inbox in that transaction, so a redelivered or replayed event is skipped; the Kafka offsets are
committed only after the transaction committed. A crash at any point therefore either loses the
whole uncommitted batch (redelivered, then handled once) or finds it in the inbox (skipped).

Bad input never stops the consumer: bytes that are not a CloudEvent, an unknown type or data that
fails its schema go to the dead-letter topic at once; a handler that raises is retried a bounded
number of times inside a savepoint, then dead-lettered. When the database or the broker itself is
down, nothing is dead-lettered: the batch is rolled back, the partitions rewound, and the batch is
tried again after a pause.

A service's handler (``loyalty_shared.handling``) is called once per batch with the batch's new
events in offset order, sees a session inside the batch transaction, and nothing of Kafka. When it
raises, the batch is run again one event at a time, each in a savepoint (the per-event fallback).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import BaseModel, ValidationError
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import TextClause

from loyalty_shared import failpoints
from loyalty_shared.db import KitTables, deferred_mark, discard_deferred
from loyalty_shared.envelope import CloudEvent, InvalidEvent, describe_validation_error, parse_event
from loyalty_shared.events import EVENT_TYPES
from loyalty_shared.handling import BatchHandler, Delivery, PermanentEventError
from loyalty_shared.messaging.deadletters import dead_letter_headers, dead_letter_topic, dead_letter_value
from loyalty_shared.observability import BATCH_SECONDS, CONSUMER_LAG, EVENTS_CONSUMED
from loyalty_shared.settings import ConsumerSettings, KafkaSettings

log = logging.getLogger(__name__)


class InfrastructureError(Exception):
    """The database or broker is unavailable: retry the whole batch later, dead-letter nothing."""


@dataclass(frozen=True)
class _DeadLetter:
    record: Any
    error: str
    attempts: int
    event_type: str


class _HoldBatchesDuringRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Wait for the batch in hand to commit its transaction and offsets before giving partitions up.
        async with self._runner._lock:
            await self._runner._committed()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class ConsumerRunner:
    def __init__(
        self,
        *,
        name: str,
        topics: Sequence[str],
        event_types: Collection[str],
        handler: BatchHandler,
        sessions: async_sessionmaker[AsyncSession],
        kit: KitTables,
        producer: Any,
        kafka: KafkaSettings,
        settings: ConsumerSettings,
    ) -> None:
        unknown = set(event_types) - set(EVENT_TYPES)
        if unknown:
            raise ValueError(f"handling event types with no schema: {sorted(unknown)}")
        self.name = name
        self.topics = list(topics)
        self._event_types = frozenset(event_types)
        self._handler = handler
        self._sessions = sessions
        self._kit = kit
        self._producer = producer
        self._kafka = kafka
        self._settings = settings
        self._dlq_topic = dead_letter_topic(name)
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._commit: asyncio.Task[None] | None = None  # the offsets of the last batch, on their way

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **self._kafka.connection_kwargs(),
            group_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._settings.batch_max_records,
            session_timeout_ms=self._settings.session_timeout_ms,
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
            heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
            isolation_level="read_committed",
        )
        self._consumer.subscribe(self.topics, listener=_HoldBatchesDuringRebalance(self))
        await self._consumer.start()

    async def stop(self) -> None:
        """Finish the batch in hand, commit it, leave the group."""
        self._stopping.set()
        async with self._lock:
            await self._committed()
            if self._consumer is not None:
                await self._consumer.stop()
                self._consumer = None

    @property
    def ready(self) -> bool:
        return self._consumer is not None

    async def run(self) -> None:
        while not self._stopping.is_set():
            consumer = self._consumer
            if consumer is None:
                return
            try:
                batch = await consumer.getmany(
                    timeout_ms=self._settings.poll_timeout_ms,
                    max_records=self._settings.batch_max_records,
                )
            except KafkaError:
                log.exception("poll failed", extra={"consumer": self.name})
                await asyncio.sleep(self._settings.failure_backoff_ms / 1000)
                continue
            if not batch:
                continue
            async with self._lock:
                if self._stopping.is_set() and self._consumer is None:
                    return
                await self._handle_batch_or_rewind(consumer, batch)

    async def _handle_batch_or_rewind(
        self, consumer: AIOKafkaConsumer, batch: Mapping[TopicPartition, list[Any]]
    ) -> None:
        owned = consumer.assignment()
        batch = {tp: records for tp, records in batch.items() if tp in owned and records}
        if not batch:
            return
        started = time.perf_counter()
        try:
            await self.handle_batch(batch)
        except Exception:
            log.exception(
                "batch failed on infrastructure; rewinding to retry",
                extra={"consumer": self.name, "records": sum(len(r) for r in batch.values())},
            )
            for tp, records in batch.items():
                consumer.seek(tp, records[0].offset)
            await asyncio.sleep(self._settings.failure_backoff_ms / 1000)
            return
        failpoints.hit("consumer.after_db_commit")
        # The offsets go to the broker while the next batch is polled and handled: they only save
        # redelivery (the inbox dedupes what a lost commit redelivers), so nothing waits for them
        # but the next commit, a rebalance and stop, which keep them in order and complete.
        await self._committed()
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        self._commit = asyncio.create_task(self._commit_offsets(consumer, offsets))
        BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        for tp, records in batch.items():
            high = consumer.highwater(tp)
            if high is not None:
                CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(
                    max(0, high - (records[-1].offset + 1))
                )

    async def _commit_offsets(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Partitions moved to another member; it will redeliver and its inbox dedupes.
            log.warning("offset commit refused: %s", exc, extra={"consumer": self.name})
        except KafkaError:
            log.exception("offset commit failed; the next commit covers it", extra={"consumer": self.name})

    async def _committed(self) -> None:
        """Wait for the offsets in flight, if any."""
        if self._commit is not None:
            commit, self._commit = self._commit, None
            await commit

    async def handle_batch(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Handle every record of one poll in one transaction; dead letters are published before it
        commits. Raises when the database or broker failed (nothing of the batch is kept then).

        The fast path runs every handler straight in the batch transaction. Should one raise, the
        whole transaction is rolled back and the batch is run again with each event in a savepoint
        of its own, so the failing event is retried and dead-lettered alone."""
        try:
            outcomes = await self._run_batch(batch, isolate=False)
        except _HandlerFailed:
            outcomes = await self._run_batch(batch, isolate=True)
        for event_type, result in outcomes:
            EVENTS_CONSUMED.labels(self.name, event_type, result).inc()

    async def _run_batch(
        self, batch: Mapping[TopicPartition, Sequence[Any]], *, isolate: bool
    ) -> list[tuple[str, str]]:
        dead: list[_DeadLetter] = []
        outcomes: list[tuple[str, str]] = []
        decoded: list[tuple[Any, Delivery] | _DeadLetter] = []
        for records in batch.values():
            for record in records:
                item = self._decode_or_quarantine(record)
                if isinstance(item, _NotOurs):
                    outcomes.append((item.event_type, "skipped"))
                else:
                    decoded.append(item)
        async with self._sessions() as session, session.begin():
            if isolate:
                for item in decoded:
                    letter: _DeadLetter | None
                    if isinstance(item, _DeadLetter):
                        outcome, letter = (item.event_type, "dead_lettered"), item
                    else:
                        outcome, letter = await self._handle_isolated(session, *item)
                    outcomes.append(outcome)
                    if letter is not None:
                        dead.append(letter)
            else:
                outcomes += await self._handle_in_batch(session, decoded)
                dead = [item for item in decoded if isinstance(item, _DeadLetter)]
            if dead:
                await self._publish_dead_letters(dead)
        return outcomes

    async def _handle_in_batch(
        self, session: AsyncSession, decoded: Sequence[tuple[Any, Delivery] | _DeadLetter]
    ) -> list[tuple[str, str]]:
        """The fast path: the batch's event ids into the inbox in one statement, then the handler
        once with the new events, in offset order."""
        events = [item for item in decoded if not isinstance(item, _DeadLetter)]
        fresh = await self._record_in_inbox(session, events) if events else set()
        outcomes: list[tuple[str, str]] = []
        deliveries: list[Delivery] = []
        for item in decoded:
            if isinstance(item, _DeadLetter):
                outcomes.append((item.event_type, "dead_lettered"))
            elif item[1].event.id in fresh:
                fresh.discard(item[1].event.id)  # the same event twice in one batch: once
                deliveries.append(item[1])
                outcomes.append((item[1].type, "processed"))
            else:
                outcomes.append((item[1].type, "duplicate"))
        if deliveries:
            try:
                await self._handler(session, deliveries)
            except Exception as exc:
                await self._ensure_database_alive(exc)
                raise _HandlerFailed from exc
        return outcomes

    def _decode_or_quarantine(self, record: Any) -> tuple[Any, Delivery] | _DeadLetter | _NotOurs:
        try:
            event, data = self._decode(record)
        except _NotOurs as skipped:
            return skipped
        except (InvalidEvent, _UnknownType) as exc:
            kind = exc.event_type if isinstance(exc, _UnknownType) else "invalid"
            return _DeadLetter(record, str(exc), 0, kind)
        return record, Delivery(event, data)

    async def _handle_isolated(
        self, session: AsyncSession, record: Any, delivery: Delivery
    ) -> tuple[tuple[str, str], _DeadLetter | None]:
        """One savepoint per attempt: a failing event is retried, then dead-lettered, alone."""
        event = delivery.event
        attempt = 0
        while True:
            attempt += 1
            mark = deferred_mark(session)
            try:
                async with session.begin_nested():
                    if not await self._record_in_inbox(session, [(record, delivery)]):
                        return (event.type, "duplicate"), None
                    await self._handler(session, [delivery])
                return (event.type, "processed"), None
            except PermanentEventError as exc:
                discard_deferred(session, mark)
                await self._ensure_database_alive()
                return (event.type, "dead_lettered"), _DeadLetter(
                    record, f"{type(exc).__name__}: {exc}", attempt, event.type
                )
            except Exception as exc:
                discard_deferred(session, mark)
                await self._ensure_database_alive(exc)
                if attempt >= self._settings.max_attempts:
                    log.warning(
                        "handler failed %s times; dead-lettering",
                        attempt,
                        extra={"consumer": self.name, "event_id": event.id, "event_type": event.type},
                        exc_info=True,
                    )
                    return (event.type, "dead_lettered"), _DeadLetter(
                        record, f"{type(exc).__name__}: {exc}", attempt, event.type
                    )
                await asyncio.sleep(self._settings.retry_backoff_ms / 1000 * 2 ** (attempt - 1))

    def _decode(self, record: Any) -> tuple[CloudEvent, BaseModel]:
        event = parse_event(record.value)
        model = EVENT_TYPES.get(event.type)
        if model is None:
            raise _UnknownType(event.type)
        if event.type not in self._event_types and record.topic.endswith(model.topic):
            # A platform event this service has nothing to do with, on a topic it reads for others
            # (points reads ``loyalty.rewards`` for rebates, not for gifts): valid, and not its own.
            raise _NotOurs(event.type)
        if event.type not in self._event_types:
            raise _UnknownType(event.type)
        try:
            data = model.model_validate(event.data)
        except ValidationError as exc:
            raise InvalidEvent(
                f"{event.type} data does not match its schema: {describe_validation_error(exc)}"
            ) from exc
        return event, data

    async def _record_in_inbox(
        self, session: AsyncSession, events: Sequence[tuple[Any, Delivery]]
    ) -> set[str]:
        """Insert the event ids; returns those that were not there yet (the rest are duplicates)."""
        rows: dict[str, tuple[str, Any]] = {}
        for record, delivery in events:  # an event twice in one batch: recorded at its first offset
            rows.setdefault(delivery.event.id, (delivery.type, record))
        inserted = await session.execute(
            _inbox_insert(self._kit),
            {
                "consumer": self.name,
                "ids": list(rows),
                "types": [event_type for event_type, _ in rows.values()],
                "topics": [record.topic for _, record in rows.values()],
                "partitions": [record.partition for _, record in rows.values()],
                "offsets": [record.offset for _, record in rows.values()],
            },
        )
        return set(inserted.scalars())

    async def _ensure_database_alive(self, cause: Exception | None = None) -> None:
        """A failure caused by a lost connection must not dead-letter a good event.

        The probe takes a connection of its own: the batch's transaction may be aborted by the very
        statement that failed (an SQL error in a handler), which says nothing about the database."""
        if isinstance(cause, DBAPIError) and cause.connection_invalidated:
            raise InfrastructureError("database connection lost") from cause
        try:
            async with self._sessions() as probe:
                await probe.execute(select(text("1")))
        except Exception as exc:
            raise InfrastructureError("database unavailable") from exc

    async def _publish_dead_letters(self, dead: Sequence[_DeadLetter]) -> None:
        sends = []
        for letter in dead:
            record = letter.record
            value, cut = dead_letter_value(record.value)
            headers = dead_letter_headers(
                original_headers=[*(record.headers or ()), *cut],
                error=letter.error,
                attempts=letter.attempts,
                consumer=self.name,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
            sends.append(
                await self._producer.send(self._dlq_topic, value=value, key=record.key, headers=headers)
            )
            log.warning(
                "dead-lettered %s at %s[%s]@%s: %s",
                letter.event_type,
                record.topic,
                record.partition,
                record.offset,
                letter.error,
                extra={"consumer": self.name},
            )
        await asyncio.gather(*sends)


@functools.cache
def _inbox_insert(kit: KitTables) -> TextClause:
    """One statement for a whole batch's event ids, built (and compiled) once."""
    return text(
        f'INSERT INTO {kit.inbox.name} (consumer, event_id, event_type, topic, "partition", "offset") '
        "SELECT CAST(:consumer AS text), * FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[]), "
        "CAST(:topics AS text[]), CAST(:partitions AS bigint[]), CAST(:offsets AS bigint[])) "
        "ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id"
    )


class _HandlerFailed(Exception):
    """A handler raised on the fast path: rerun the batch with one savepoint per event."""


class _NotOurs(Exception):
    def __init__(self, event_type: str) -> None:
        super().__init__(f"{event_type} is not handled by this consumer")
        self.event_type = event_type


class _UnknownType(Exception):
    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown event type {event_type!r} for this consumer")
        self.event_type = event_type
