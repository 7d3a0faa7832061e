"""``loyalty dlq list|replay``: see what a consumer quarantined, and send it back once fixed."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from aiokafka import AIOKafkaProducer

from loyalty_cli.services import SERVICES
from loyalty_shared.messaging.deadletters import DeadLetter, read_dead_letters, replay
from loyalty_shared.settings import KafkaSettings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("dlq", help="list or replay dead-lettered events")
    parser.add_argument("action", choices=["list", "replay"])
    parser.add_argument(
        "--service",
        default="points",
        choices=[spec.name for spec in SERVICES],
        help="the consumer's service (default: points)",
    )
    parser.add_argument("--bootstrap", help="Kafka bootstrap (default: LOYALTY_KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--topic-prefix", default=os.environ.get("LOYALTY_TOPIC_PREFIX", ""))
    parser.add_argument("--offset", type=int, action="append", help="replay only these DLQ offsets")
    parser.add_argument("--json", action="store_true", help="list as JSON lines")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def _kafka(args: argparse.Namespace) -> KafkaSettings:
    kafka = KafkaSettings()
    if args.bootstrap:
        kafka = kafka.model_copy(update={"bootstrap_servers": args.bootstrap})
    return kafka


async def _run(args: argparse.Namespace) -> int:
    kafka = _kafka(args)
    consumer = f"{args.topic_prefix}loyalty-{args.service}"
    letters = await read_dead_letters(kafka.connection_kwargs(), consumer)
    if args.offset:
        letters = [d for d in letters if d.offset in set(args.offset)]
    if args.action == "list":
        for letter in letters:
            print(json.dumps(_describe(letter)) if args.json else _line(letter))
        if not args.json:
            print(f"{len(letters)} dead letter(s) for {consumer}")
        return 0
    producer = AIOKafkaProducer(**kafka.producer_kwargs())
    await producer.start()
    try:
        count = await replay(producer, letters)
    finally:
        await producer.stop()
    print(f"replayed {count} dead letter(s) to their original topics")
    return 0


def _describe(letter: DeadLetter) -> dict[str, Any]:
    return {
        "dlq_offset": letter.offset,
        "dlq_partition": letter.partition,
        "original": f"{letter.original_topic}[{letter.original_partition}]@{letter.original_offset}",
        "attempts": letter.attempts,
        "failed_at": letter.failed_at,
        "error": letter.error,
        "key": (letter.key or b"").decode(errors="replace"),
        "value": (letter.value or b"").decode(errors="replace")[:2000],
    }


def _line(letter: DeadLetter) -> str:
    d = _describe(letter)
    return f"#{d['dlq_partition']}/{d['dlq_offset']} {d['original']} attempts={d['attempts']} {d['error']}"
