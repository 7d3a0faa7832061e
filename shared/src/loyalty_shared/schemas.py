"""Published event contracts: a JSON Schema per event type and an AsyncAPI document for the topics.

Everything here is derived from ``EVENT_TYPES`` (the pydantic model of each type's ``data``) and
``TOPICS``; nothing is hand-written per event. ``export_all`` writes the files that are committed
under ``schemas/`` at the repository root (``loyalty schemas`` regenerates them, ``loyalty schemas
--check`` fails CI when they are stale).

Each JSON Schema (draft 2020-12) describes the *whole* CloudEvent in structured JSON mode, so a
producer can validate exactly the bytes it puts on the topic: envelope attributes plus ``data``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from loyalty_shared.envelope import MAX_EVENT_BYTES
from loyalty_shared.events import EVENT_TYPES, SCHEMA_VERSION, TOPICS, schema_uri
from loyalty_shared.events.orders import ORDERS_TOPIC

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
MESSAGE_CONTENT_TYPE = "application/cloudevents+json"
KAFKA_BINDING_VERSION = "0.4.0"

# RFC 3339 date-time with a mandatory offset. ``format: date-time`` alone is only an annotation in
# 2020-12 (most validators, Python's jsonschema included, do not assert it by default), so the
# pattern is what actually rejects a naive timestamp such as "2025-03-01T10:00:00".
TIME_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# CloudEvents 1.0: attribute names (including extensions) MUST be lower-case ASCII letters or digits.
ATTRIBUTE_NAME_PATTERN = r"^[a-z0-9]+$"

_DEFS_PREFIX = "#/$defs/"


def event_schema(event_type: str) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a whole CloudEvent of ``event_type``, structured JSON mode."""
    model = EVENT_TYPES.get(event_type)
    if model is None:
        raise KeyError(f"unknown event type {event_type!r}; known: {sorted(EVENT_TYPES)}")
    data = copy.deepcopy(model.model_json_schema(mode="validation"))
    _require_offsets(data)
    defs: dict[str, Any] = data.pop("$defs", {})
    title: str = data.get("title", model.__name__)
    doc: str = data.get("description", "")
    member_id = data.get("properties", {}).get("member_id", {})
    subject: dict[str, Any] = {"type": "string", "minLength": 1}
    if "pattern" in member_id:
        subject["pattern"] = member_id["pattern"]
    subject["description"] = (
        "The member id, equal to data.member_id. It is also the Kafka message key, which keeps "
        "one member's events in order on one partition."
    )

    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_uri(event_type),
        "title": title,
        "description": (doc + "\n\n" if doc else "")
        + (
            f"A CloudEvents 1.0 event of type {event_type!r} in structured JSON mode "
            f"(content type {MESSAGE_CONTENT_TYPE}), schema version {SCHEMA_VERSION}, at most "
            f"{MAX_EVENT_BYTES} bytes: a consumer dead-letters a bigger event unread."
        ),
        "type": "object",
        "properties": {
            "specversion": {"type": "string", "const": "1.0"},
            "id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": (
                    "Globally unique per event (e.g. a UUID): the dedupe key. Re-sending an "
                    "event with the same id is safe (it is processed once); a different event "
                    "must have a new id."
                ),
            },
            "source": {
                "type": "string",
                "minLength": 1,
                "format": "uri-reference",
                "description": "Who produced the event, e.g. 'urn:shop:checkout' or '/points'.",
            },
            "type": {"type": "string", "const": event_type},
            "time": {
                "type": "string",
                "format": "date-time",
                "pattern": TIME_PATTERN,
                "description": "When it happened, RFC 3339 with an explicit UTC offset.",
            },
            "subject": subject,
            "datacontenttype": {"type": "string", "const": "application/json"},
            "dataschema": {
                "type": "string",
                "minLength": 1,
                "format": "uri",
                "description": f"Optional; when set, e.g. {schema_uri(event_type)!r}.",
            },
            "data": data,
        },
        "required": ["specversion", "id", "source", "type", "time", "subject", "data"],
        "propertyNames": {"pattern": ATTRIBUTE_NAME_PATTERN},
    }
    if defs:
        # Hoisted so that the "#/$defs/..." references pydantic emits inside ``data`` resolve.
        schema["$defs"] = defs
    return schema


def asyncapi_document() -> dict[str, Any]:
    """AsyncAPI 3.0.0 document: one channel per Kafka topic, one message per event type."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic, event_types in TOPICS.items():
        received = topic == ORDERS_TOPIC
        channels[topic] = {
            "address": topic,
            "description": (
                f"Kafka topic {topic!r}. Key: the member id. Value: one CloudEvent ({MESSAGE_CONTENT_TYPE})."
            ),
            "messages": {event_type: _message(event_type) for event_type in event_types},
        }
        channel_ref = "#/channels/" + _pointer_token(topic)
        action = "receive" if received else "send"
        operations[f"{action}_{_identifier(topic)}"] = {
            "action": action,
            "channel": {"$ref": channel_ref},
            "summary": (
                f"The e-commerce backend publishes order events to {topic!r}; the platform consumes them."
                if received
                else f"The platform publishes to {topic!r}."
            ),
            "messages": [
                {"$ref": f"{channel_ref}/messages/{_pointer_token(event_type)}"} for event_type in event_types
            ],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Loyalty platform events",
            "version": SCHEMA_VERSION,
            "description": (
                "Events of the loyalty platform, as CloudEvents 1.0 in structured JSON mode "
                f"({MESSAGE_CONTENT_TYPE}). The Kafka message key is the member id (also the "
                "CloudEvent subject), so one member's events stay in order on one partition. "
                "The CloudEvent `id` is the dedupe key: consumers process an id once, so "
                "re-sending an event after an uncertain publish is safe. Money amounts are "
                "decimal strings, never JSON numbers; points are integers. Each message payload "
                "is the published JSON Schema of the whole event (see json/*.schema.json), with "
                "references inlined."
            ),
        },
        "defaultContentType": MESSAGE_CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
    }


def export_all(out_dir: Path) -> list[Path]:
    """Write every event schema and the AsyncAPI document under ``out_dir``; return the paths.

    Files: ``json/<type>.v<SCHEMA_VERSION>.schema.json`` per event type and ``asyncapi.json``
    (JSON is valid YAML, so YAML tooling reads it as is). Output is deterministic. Files of other
    schema versions already in ``out_dir`` are left alone: old versions stay published.
    """
    documents: list[tuple[Path, dict[str, Any]]] = [
        (out_dir / "json" / schema_filename(event_type), event_schema(event_type))
        for event_type in sorted(EVENT_TYPES)
    ]
    documents.append((out_dir / "asyncapi.json", asyncapi_document()))
    written: list[Path] = []
    for path, document in documents:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render(document))
        written.append(path)
    return written


def schema_filename(event_type: str) -> str:
    return f"{event_type}.v{SCHEMA_VERSION}.schema.json"


def render(document: dict[str, Any]) -> bytes:
    """The exact bytes ``export_all`` writes for ``document``."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def _message(event_type: str) -> dict[str, Any]:
    schema = event_schema(event_type)
    key: dict[str, Any] = dict(schema["properties"]["subject"])
    key["description"] = "The member id (same value as the CloudEvent subject)."
    doc: str = schema["properties"]["data"].get("description", "")
    payload = _inline_refs(schema)
    payload.pop("$schema", None)  # the payload is an AsyncAPI Schema Object
    return {
        "name": event_type,
        "title": schema["title"],
        "summary": doc.split("\n", 1)[0] if doc else f"A {event_type} event.",
        "contentType": MESSAGE_CONTENT_TYPE,
        "payload": payload,
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _require_offsets(node: Any) -> None:
    """Give every ``format: date-time`` string the offset-requiring ``TIME_PATTERN``, in place.

    The platform's models use aware datetimes; without the pattern a validator that treats
    ``format`` as an annotation would accept a naive timestamp the platform rejects.
    """
    if isinstance(node, list):
        for item in node:
            _require_offsets(item)
    elif isinstance(node, dict):
        if node.get("format") == "date-time" and node.get("type") == "string":
            node.setdefault("pattern", TIME_PATTERN)
        for value in node.values():
            _require_offsets(value)


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` with every local ``#/$defs/...`` reference replaced by its target.

    AsyncAPI tools resolve ``#/...`` against the AsyncAPI document root, not the embedded schema,
    so an embedded payload must not carry local references.
    """
    defs: dict[str, Any] = schema.get("$defs", {})

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS_PREFIX):
            name = ref.removeprefix(_DEFS_PREFIX)
            if name in seen:
                raise ValueError(f"recursive schema {name!r} cannot be inlined")
            target = walk(copy.deepcopy(defs[name]), (*seen, name))
            siblings = {k: walk(v, seen) for k, v in node.items() if k != "$ref"}
            return {**target, **siblings}
        return {k: walk(v, seen) for k, v in node.items() if k != "$defs"}

    result: dict[str, Any] = walk(schema, ())
    return result


def _pointer_token(key: str) -> str:
    """Escape a key for a JSON Pointer (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _identifier(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)
