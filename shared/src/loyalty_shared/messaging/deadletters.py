"""Dead letters: an event that cannot be processed is quarantined on a dead-letter topic.

The dead letter keeps the original bytes, key and headers untouched and adds ``dlq.*`` headers saying
where it came from, why it failed and after how many attempts. ``read_dead_letters`` lists them;
``replay`` publishes the original bytes back to the original topic, where the consumer's inbox makes
a replay of an already-processed event harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

ERROR_LIMIT = 2000
# A dead letter must fit the broker's message size limit (Apache Kafka's default is 1 MB); an original
# bigger than this (it can only be a dead letter: see envelope.MAX_EVENT_BYTES) keeps its first bytes,
# and the header dlq.original.bytes says how many it had. Such a letter cannot be replayed.
MAX_DEAD_LETTER_BYTES = 512 * 1024


def dead_letter_topic(consumer: str) -> str:
    return f"{consumer}.dlq"


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    error: str
    attempts: int
    original_topic: str
    original_partition: int
    original_offset: int
    failed_at: str
    original_bytes: int | None = None  # set when the value kept only the first bytes of the original

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith("dlq.")]


def dead_letter_value(value: bytes | None) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The value a dead letter carries (the original, or its first bytes) and the header saying
    it was cut."""
    if value is None or len(value) <= MAX_DEAD_LETTER_BYTES:
        return value, []
    return value[:MAX_DEAD_LETTER_BYTES], [("dlq.original.bytes", str(len(value)).encode())]


def dead_letter_headers(
    *,
    original_headers: Sequence[tuple[str, bytes]],
    error: str,
    attempts: int,
    consumer: str,
    topic: str,
    partition: int,
    offset: int,
) -> list[tuple[str, bytes]]:
    return [
        *original_headers,
        ("dlq.error", error[:ERROR_LIMIT].encode()),
        ("dlq.attempts", str(attempts).encode()),
        ("dlq.consumer", consumer.encode()),
        ("dlq.original.topic", topic.encode()),
        ("dlq.original.partition", str(partition).encode()),
        ("dlq.original.offset", str(offset).encode()),
        ("dlq.failed_at", datetime.now(UTC).isoformat().encode()),
    ]


def _from_record(record: Any) -> DeadLetter:
    headers = tuple((k, bytes(v or b"")) for k, v in (record.headers or ()))
    h = {k: v.decode(errors="replace") for k, v in headers}
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=headers,
        error=h.get("dlq.error", ""),
        attempts=int(h.get("dlq.attempts", "0") or 0),
        original_topic=h.get("dlq.original.topic", ""),
        original_partition=int(h.get("dlq.original.partition", "-1") or -1),
        original_offset=int(h.get("dlq.original.offset", "-1") or -1),
        failed_at=h.get("dlq.failed_at", ""),
        original_bytes=int(h["dlq.original.bytes"]) if h.get("dlq.original.bytes") else None,
    )


async def read_dead_letters(
    connection: dict[str, Any], consumer: str, *, timeout_s: float = 10.0
) -> list[DeadLetter]:
    """Every dead letter of a consumer, read from the start of its topic (no consumer group)."""
    topic = dead_letter_topic(consumer)
    reader = AIOKafkaConsumer(
        **connection, enable_auto_commit=False, auto_offset_reset="earliest", group_id=None
    )
    await reader.start()
    try:
        if topic not in await reader.topics():
            return []
        reader.subscribe([topic])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not reader.assignment():
            if loop.time() > deadline:
                raise TimeoutError(f"could not get the partitions of {topic} in {timeout_s}s")
            await reader.getmany(timeout_ms=100)
        tps = list(reader.assignment())
        ends = await reader.end_offsets(tps)
        letters: list[DeadLetter] = []
        for tp in tps:
            await reader.seek_to_beginning(tp)
        while any([await reader.position(tp) < ends[tp] for tp in tps]):
            if loop.time() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout_s}s")
            batch = await reader.getmany(timeout_ms=200)
            for records in batch.values():
                letters.extend(_from_record(r) for r in records)
        return sorted(letters, key=lambda d: (d.failed_at, d.partition, d.offset))
    finally:
        await reader.stop()


async def replay(producer: Any, letters: Sequence[DeadLetter]) -> int:
    """Publish each dead letter's original bytes, key and headers back to its original topic."""
    for letter in letters:
        if not letter.original_topic:
            raise ValueError(f"dead letter at offset {letter.offset} names no original topic")
        if letter.original_bytes is not None:
            raise ValueError(
                f"dead letter at offset {letter.offset} kept only the first bytes of an event of "
                f"{letter.original_bytes} bytes; it cannot be replayed"
            )
        await producer.send_and_wait(
            letter.original_topic,
            value=letter.value,
            key=letter.key,
            headers=letter.original_headers,
        )
    return len(letters)
