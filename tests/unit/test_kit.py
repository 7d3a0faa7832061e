"""Unit tests for the shared kit's pure parts: envelope parsing, API keys, settings, problems."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from loyalty_shared.auth import ApiKeys
from loyalty_shared.clock import Clock
from loyalty_shared.envelope import InvalidEvent, new_event, parse_event
from loyalty_shared.errors import Conflict
from loyalty_shared.events import OrderPaid
from loyalty_shared.messaging.deadletters import MAX_DEAD_LETTER_BYTES, dead_letter_value
from loyalty_shared.observability import JsonFormatter
from loyalty_shared.settings import KafkaSettings, ServiceSettings


def order() -> OrderPaid:
    return OrderPaid.model_validate(
        {"order_id": "O-1", "member_id": "M-1", "currency": "EUR", "amount": "10.00"}
    )


def test_an_event_round_trips_through_bytes() -> None:
    event = new_event("order.paid", "urn:test", "M-1", order())
    parsed = parse_event(event.to_bytes())
    assert parsed == event
    assert parsed.time.tzinfo is not None


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (None, "tombstone"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"specversion": "0.3"}', "not a CloudEvent"),
        (
            json.dumps(
                {
                    "specversion": "1.0",
                    "id": "x",
                    "source": "s",
                    "type": "t",
                    "time": "2026-01-01T00:00:00",
                    "data": {},
                }
            ).encode(),
            "time",
        ),
    ],
)
def test_bad_bytes_are_invalid_events_saying_why(raw: bytes | None, why: str) -> None:
    with pytest.raises(InvalidEvent, match=why):
        parse_event(raw)


def test_api_keys_are_parsed_with_scopes_and_partner_ids() -> None:
    keys = ApiKeys("k1:crm, k2:ecommerce ,k3:partner:P-9")
    assert len(keys) == 3
    crm, shop, partner = keys.authenticate("k1"), keys.authenticate("k2"), keys.authenticate("k3")
    assert crm is not None and crm.scope == "crm" and crm.partner_id is None
    assert shop is not None and shop.scope == "ecommerce"
    assert partner is not None and partner.scope == "partner" and partner.partner_id == "P-9"
    assert keys.authenticate("k4") is None
    assert keys.authenticate("") is None


def test_api_keys_are_never_shown() -> None:
    keys = ApiKeys("super-secret-key:crm")
    assert "super-secret" not in repr(keys)
    principal = keys.authenticate("super-secret-key")
    assert principal is not None and "super-secret" not in repr(principal)


@pytest.mark.parametrize("spec", ["k1:admin", "k1", ":crm", "k1:partner"])
def test_bad_api_key_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        ApiKeys(spec)


def test_production_refuses_to_start_without_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("LOYALTY_ENVIRONMENT", "production")
    monkeypatch.delenv("LOYALTY_API_KEYS", raising=False)
    with pytest.raises(ValidationError, match="LOYALTY_API_KEYS"):
        ServiceSettings()
    monkeypatch.setenv("LOYALTY_API_KEYS", "k:crm")
    settings = ServiceSettings()
    assert settings.database_url == "postgresql+asyncpg://u@h/db"
    assert "k:crm" not in repr(settings)


def test_production_refuses_a_settable_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("LOYALTY_API_KEYS", "k:crm")
    monkeypatch.setenv("LOYALTY_SETTABLE_CLOCK", "true")
    monkeypatch.setenv("LOYALTY_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="LOYALTY_SETTABLE_CLOCK is refused in production"):
        ServiceSettings()
    monkeypatch.setenv("LOYALTY_ENVIRONMENT", "test")
    assert ServiceSettings().settable_clock is True


def test_only_a_settable_clock_moves_and_only_forward() -> None:
    with pytest.raises(RuntimeError, match="cannot be set"):
        Clock().set(datetime.now(UTC) + timedelta(days=1))
    clock = Clock(settable=True)
    later = datetime.now(UTC) + timedelta(days=400)
    clock.set(later)
    assert later <= clock.now() < later + timedelta(seconds=5)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.set(later - timedelta(days=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2030, 1, 1))


def test_database_url_must_be_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", "sqlite:///x.db")
    with pytest.raises(ValidationError, match="PostgreSQL"):
        ServiceSettings()


@pytest.fixture(autouse=True)
def no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings tests see only what they set: no LOYALTY_* variable of the shell or of CI."""
    for name in [name for name in os.environ if name.startswith("LOYALTY_")]:
        monkeypatch.delenv(name)


def test_producer_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert KafkaSettings().producer_kwargs()["enable_idempotence"] is True
    assert KafkaSettings().producer_kwargs()["acks"] == "all"
    monkeypatch.setenv("LOYALTY_KAFKA_ENABLE_IDEMPOTENCE", "false")
    monkeypatch.setenv("LOYALTY_KAFKA_ACKS", "1")
    kwargs = KafkaSettings().producer_kwargs()
    assert kwargs["enable_idempotence"] is False and kwargs["acks"] == 1


def test_problem_bodies_follow_rfc_9457() -> None:
    body = Conflict("not enough points", available=3).body("/v1/x")
    assert body == {
        "type": "urn:loyalty:problem:conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "not enough points",
        "instance": "/v1/x",
        "available": 3,
    }


def test_json_logs_are_one_object_per_line_with_extras() -> None:
    record = logging.makeLogRecord(
        {"name": "t", "levelname": "INFO", "msg": "hello %s", "args": ("world",), "consumer": "c1"}
    )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["message"] == "hello world" and entry["consumer"] == "c1" and entry["level"] == "INFO"


def test_a_dead_letter_keeps_the_first_bytes_of_an_event_too_big_for_the_broker() -> None:
    small = b"x" * 100
    assert dead_letter_value(small) == (small, [])
    assert dead_letter_value(None) == (None, [])
    huge = b"y" * (MAX_DEAD_LETTER_BYTES + 10)
    value, headers = dead_letter_value(huge)
    assert value == huge[:MAX_DEAD_LETTER_BYTES]
    assert headers == [("dlq.original.bytes", str(len(huge)).encode())]
