"""CloudEvents 1.0 envelope in structured JSON mode.

One event is one JSON object: the context attributes plus ``data``. The ``id`` is the dedupe key for
every consumer; the Kafka key is the ``subject`` (the member id), which keeps one member's events in
order on one partition.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
# The largest event (its bytes on the topic) a consumer takes; a bigger one is dead-lettered unread.
MAX_EVENT_BYTES = 256 * 1024


class InvalidEvent(ValueError):
    """The bytes are not a CloudEvent this platform accepts (bad JSON, bad envelope, bad data)."""


class CloudEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1, max_length=200)
    time: AwareDatetime
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def new_event(
    type: str,
    source: str,
    subject: str,
    data: BaseModel | dict[str, Any],
    *,
    id: str | None = None,
    time: datetime | None = None,
    dataschema: str | None = None,
) -> CloudEvent:
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    return CloudEvent(
        id=id or str(uuid.uuid4()),
        source=source,
        type=type,
        time=time or datetime.now(UTC),
        subject=subject,
        dataschema=dataschema,
        data=payload,
    )


def parse_event(raw: bytes | None) -> CloudEvent:
    """Parse structured-mode bytes into a CloudEvent, or raise InvalidEvent saying why."""
    if raw is None:
        raise InvalidEvent("empty message (tombstone)")
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event of {len(raw)} bytes; the limit is {MAX_EVENT_BYTES} bytes")
    try:
        return CloudEvent.model_validate_json(raw)  # parsed and checked in one pass
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise InvalidEvent(f"not JSON: {first['msg']}") from exc
        if first["type"] == "model_type" and not first["loc"]:
            raise InvalidEvent("not a JSON object") from exc
        raise InvalidEvent(f"not a CloudEvent 1.0: {_short(exc)}") from exc


def _short(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )


def describe_validation_error(exc: ValidationError) -> str:
    return _short(exc)
