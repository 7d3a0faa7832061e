"""The published event contracts in ``schemas/``: JSON Schema per event type and AsyncAPI.

These tests fail when a model changes without ``loyalty schemas`` being re-run, and when the JSON
Schema and the pydantic models the platform actually validates with stop agreeing.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from pydantic import ValidationError

from loyalty_cli import schemas as schemas_cli
from loyalty_shared.envelope import InvalidEvent, new_event, parse_event
from loyalty_shared.events import EVENT_TYPES, SCHEMA_VERSION, TOPICS, schema_uri
from loyalty_shared.schemas import asyncapi_document, event_schema, export_all, render

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = REPO_ROOT / "schemas"

Event = dict[str, Any]

LINE = {"sku": "SKU-1", "category": "shoes", "quantity": 2, "unit_price": "64.95"}
ORDER = {
    "order_id": "o-1001",
    "member_id": "m-42",
    "currency": "EUR",
    "amount": "129.90",
    "lines": [LINE],
    "channel": "web",
}
GATHERING = {  # what every member event of a gathering says about it
    "gathering_id": "g-1",
    "kind": "training",
    "title": "Product training",
    "program_id": "p-1",
    "member_id": "m-42",
    "starts_at": "2027-03-10T09:00:00Z",
    "ends_at": "2027-03-10T17:00:00Z",
}
DATA: dict[str, dict[str, Any]] = {
    "order.paid": ORDER,
    "order.refunded": {**ORDER, "amount": "64.95", "refund_id": "r-1"},
    "order.cancelled": ORDER,
    "points.earned": {
        "member_id": "m-42",
        "order_id": "o-1001",
        "points": 129,
        "rule_version": 3,
        "tier": "gold",
        "tier_multiplier": "1.25",
        "available_at": "2025-03-15T10:00:00Z",
        "expires_at": "2026-03-01T10:00:00+01:00",
    },
    "points.reversed": {
        "member_id": "m-42",
        "order_id": "o-1001",
        "refund_id": "r-1",
        "reason": "refund",
        "points": 64,
        "reversed_total": 64,
    },
    "points.redeemed": {
        "member_id": "m-42",
        "redemption_id": "red-1",
        "points": 500,
        "description": "voucher",
    },
    "points.expired": {
        "member_id": "m-42",
        "lot_id": 7,
        "points": 20,
        "expired_at": "2026-03-01T00:00:00Z",
    },
    "points.adjusted": {
        "member_id": "m-42",
        "adjustment_id": "adj-1",
        "points": -15,
        "reason": "goodwill correction",
        "actor": "ops@example.com",
    },
    "tier.changed": {
        "member_id": "m-42",
        "from_tier": "silver",
        "to_tier": "gold",
        "direction": "up",
        "reason": "qualified",
        "points_multiplier": "1.25",
    },
    "partner.linked": {"partner_id": "P-1", "member_id": "m-42", "at": "2026-02-01T00:00:00Z"},
    "partner.unlinked": {"partner_id": "P-1", "member_id": "m-42", "at": "2026-02-02T00:00:00Z"},
    "program.member_enrolled": {
        "program_id": "p-1",
        "program_version": 1,
        "member_id": "m-42",
        "group": "treatment",
        "enrolled_at": "2026-02-01T00:00:00Z",
    },
    "reward.issued": {
        "reward_id": "r-1",
        "program_id": "p-1",
        "program_version": 1,
        "measure_id": "big-order",
        "member_id": "m-42",
        "kind": "gift",
        "cycle": "2026-Q1",
        "item_id": "mug",
        "currency": "EUR",
        "cost": "25.00",
        "reason": "order o-1001 of 1500.00 reached 1000",
        "issued_at": "2026-02-01T00:00:00Z",
    },
    "reward.fulfilment_changed": {
        "reward_id": "r-1",
        "program_id": "p-1",
        "member_id": "m-42",
        "item_id": "mug",
        "from_status": "issued",
        "to_status": "shipped",
        "changed_at": "2026-02-02T00:00:00Z",
    },
    "rebate.settled": {
        "statement_id": "s-1",
        "reward_id": "r-2",
        "program_id": "p-1",
        "program_name": "Quarterly volume rebate",
        "program_version": 1,
        "measure_id": "volume",
        "member_id": "m-42",
        "cycle": "2026-Q1",
        "pay_as": "points",
        "points": 19500,
        "amount": "195.00",
        "currency": "EUR",
        "cost": "195.00",
        "net_spend": "6500.00",
        "orders": 2,
        "settled_at": "2026-04-01T00:00:00Z",
    },
    "coupon.used": {
        "reward_id": "r-3",
        "program_id": "p-1",
        "member_id": "m-42",
        "code_hint": "Q2XA",
        "order_id": "o-1002",
        "discount": "10.00",
        "currency": "EUR",
        "used_at": "2026-04-02T00:00:00Z",
    },
    "redemption.failed": {
        "redemption_id": "red-1",
        "member_id": "m-42",
        "points": 500,
        "item_id": "mug",
        "reason": "out of stock",
        "failed_at": "2026-04-02T00:00:00Z",
    },
    "program.budget_exhausted": {
        "program_id": "p-1",
        "program_version": 1,
        "currency": "EUR",
        "cap": "75.00",
        "used": "75.00",
        "refused_cost": "25.00",
        "at": "2026-02-01T00:00:00Z",
    },
    # --- entitlements
    "entitlement.granted": {
        "entitlement_id": "e-1",
        "member_id": "m-42",
        "kind": "priority-purchase",
        "name": "Priority purchase (Gold)",
        "unit": "units",
        "valid_from": "2026-03-01T00:00:00Z",
        "source": "tier",
        "tier": "Gold",
        "granted_at": "2026-03-01T00:00:01Z",
    },
    "entitlement.ended": {
        "entitlement_id": "e-1",
        "member_id": "m-42",
        "kind": "priority-purchase",
        "reason": "tier-changed",
        "ends_at": "2026-09-01T00:00:00Z",
    },
    "entitlement.consumed": {
        "entitlement_id": "e-1",
        "member_id": "m-42",
        "kind": "priority-purchase",
        "quantity": 1,
        "sku": "X200",
        "order_id": "o-1",
        "launch_id": "l-1",
        "remaining": None,
        "consumed_at": "2026-03-02T00:00:00Z",
    },
    "entitlement.returned": {
        "entitlement_id": "e-1",
        "member_id": "m-42",
        "quantity": 1,
        "order_id": "o-1",
        "reason": "order-cancelled",
        "returned_at": "2026-03-03T00:00:00Z",
    },
    # --- documents
    "certificate.issued": {
        "document_id": "d-1",
        "member_id": "m-42",
        "template_id": "t-1",
        "template_version": 1,
        "title": "Key account of the year 2026",
        "issued_by": "program",
        "program_id": "p-1",
        "program_version": 1,
        "measure_id": "key-account",
        "cycle": "2026",
        "code_hint": "SQ4W",
        "reason": "top 3 by net spend in 2026: rank 1",
        "issued_at": "2027-01-01T00:00:00Z",
    },
    "letter.issued": {
        "document_id": "d-2",
        "member_id": "m-42",
        "template_id": "t-2",
        "template_version": 2,
        "title": "Thank you",
        "issued_by": "crm",
        "reason": "issued by the CRM (Quarterly thanks)",
        "issued_at": "2027-01-01T00:00:00Z",
    },
    "document.revoked": {
        "document_id": "d-1",
        "member_id": "m-42",
        "kind": "certificate",
        "reason": "issued in error",
        "revoked_at": "2027-01-02T00:00:00Z",
    },
    # --- gatherings
    "gathering.invited": {**GATHERING, "invited_at": "2027-02-01T00:00:00Z"},
    "gathering.accepted": {
        **GATHERING,
        "via": "waitlist",
        "from_waitlist": True,
        "accepted_at": "2027-02-02T00:00:00Z",
    },
    "gathering.waitlisted": {
        **GATHERING,
        "via": "link",
        "position": 3,
        "waitlisted_at": "2027-02-02T00:00:00Z",
    },
    "gathering.declined": {
        **GATHERING,
        "via": "crm",
        "previous_status": "accepted",
        "freed_seat": True,
        "declined_at": "2027-02-03T00:00:00Z",
    },
    "gathering.attended": {**GATHERING, "attended_at": "2027-03-10T09:05:00Z"},
    "gathering.cancelled": {
        "gathering_id": "g-1",
        "kind": "exchange",
        "title": "Key accounts meet-up",
        "program_id": None,
        "starts_at": "2027-03-10T09:00:00Z",
        "accepted": 12,
        "waitlisted": 0,
        "note": "venue closed",
        "cancelled_at": "2027-03-01T00:00:00Z",
    },
}
ORDER_TYPES = TOPICS["orders"]


def make_event(event_type: str, **data_changes: Any) -> Event:
    data = copy.deepcopy(DATA[event_type])
    data.update(data_changes)
    return {
        "specversion": "1.0",
        "id": f"evt-{event_type}-1",
        "source": "urn:shop:checkout",
        "type": event_type,
        "time": "2025-03-01T10:00:00Z",
        "subject": "m-42",
        "datacontenttype": "application/json",
        "data": data,
    }


def validator(event_type: str) -> Draft202012Validator:
    return Draft202012Validator(event_schema(event_type))


def schema_accepts(event_type: str, event: Event) -> bool:
    return bool(validator(event_type).is_valid(event))


def platform_accepts(event: Event) -> bool:
    """What the platform's consumer does with the bytes: parse the envelope, validate ``data``."""
    try:
        parsed = parse_event(json.dumps(event).encode())
    except InvalidEvent:
        return False
    model = EVENT_TYPES.get(parsed.type)
    if model is None:
        return False
    try:
        model.model_validate(parsed.data)
    except ValidationError:
        return False
    return True


# --- the committed files ---------------------------------------------------------------------


def test_committed_schemas_match_a_fresh_export(tmp_path: Path) -> None:
    written = export_all(tmp_path)
    stale = [
        str(path.relative_to(tmp_path))
        for path in written
        if not (COMMITTED / path.relative_to(tmp_path)).is_file()
        or (COMMITTED / path.relative_to(tmp_path)).read_bytes() != path.read_bytes()
    ]
    assert not stale, f"schemas/ is out of date, run `uv run loyalty schemas`: {stale}"


def test_export_writes_one_versioned_schema_per_type_and_the_asyncapi_document(
    tmp_path: Path,
) -> None:
    written = export_all(tmp_path)
    names = {path.relative_to(tmp_path).as_posix() for path in written}
    expected = {f"json/{t}.v{SCHEMA_VERSION}.schema.json" for t in EVENT_TYPES}
    assert names == expected | {"asyncapi.json"}
    for path in written:
        raw = path.read_bytes()
        assert raw.endswith(b"}\n")
        assert raw == render(json.loads(raw))  # sorted keys, indent 2: re-rendering is stable


def test_export_is_deterministic(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in export_all(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in export_all(tmp_path / "b")}
    assert first == second


def test_readme_example_is_a_valid_order_paid_event() -> None:
    text = (COMMITTED / "README.md").read_text()
    start = text.index("```json\n") + len("```json\n")
    example = json.loads(text[start : text.index("```", start)])
    assert schema_accepts("order.paid", example)
    assert platform_accepts(example)


# --- the JSON Schemas --------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_schema_is_valid_2020_12_and_identified(event_type: str) -> None:
    schema = event_schema(event_type)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == schema_uri(event_type)
    assert schema["title"] == EVENT_TYPES[event_type].__name__
    assert schema["properties"]["type"]["const"] == event_type


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_valid_example_event_validates(event_type: str) -> None:
    event = make_event(event_type)
    errors = [e.message for e in validator(event_type).iter_errors(event)]
    assert errors == []
    assert platform_accepts(event)


def test_optional_envelope_attributes_and_minimal_order() -> None:
    event = make_event("order.paid")
    del event["datacontenttype"]
    event["data"] = {k: v for k, v in event["data"].items() if k not in ("lines", "channel")}
    assert schema_accepts("order.paid", event)
    event["dataschema"] = schema_uri("order.paid")
    event["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert schema_accepts("order.paid", event)
    assert platform_accepts(event)


def _drop(key: str) -> Callable[[Event], None]:
    return lambda event: event.pop(key)


def _drop_data(key: str) -> Callable[[Event], None]:
    return lambda event: event["data"].pop(key)


def _set(key: str, value: Any) -> Callable[[Event], None]:
    return lambda event: event.__setitem__(key, value)


def _set_data(key: str, value: Any) -> Callable[[Event], None]:
    return lambda event: event["data"].__setitem__(key, value)


def _set_line(key: str, value: Any) -> Callable[[Event], None]:
    return lambda event: event["data"]["lines"][0].__setitem__(key, value)


INVALID_ORDER_EVENTS: dict[str, Callable[[Event], None]] = {
    "amount as a JSON float": _set_data("amount", 129.9),
    "amount as a JSON integer": _set_data("amount", 129),
    "amount with 5 decimals": _set_data("amount", "1.23456"),
    "negative amount": _set_data("amount", "-5.00"),
    "unit_price as a JSON number": _set_line("unit_price", 64.95),
    "missing member_id": _drop_data("member_id"),
    "missing amount": _drop_data("amount"),
    "bad member_id": _set_data("member_id", "m 42"),
    "lower-case currency": _set_data("currency", "eur"),
    "unknown data field": _set_data("coupon", "X"),
    "zero quantity": _set_line("quantity", 0),
    "wrong type": _set("type", "order.placed"),
    "naive time": _set("time", "2025-03-01T10:00:00"),
    "date only time": _set("time", "2025-03-01"),
    "absent time": _drop("time"),
    "absent id": _drop("id"),
    "empty id": _set("id", ""),
    "absent source": _drop("source"),
    "absent subject": _drop("subject"),
    "wrong specversion": _set("specversion", "0.3"),
    "wrong datacontenttype": _set("datacontenttype", "text/plain"),
    "data not an object": _set("data", "{}"),
    "absent data": _drop("data"),
    "upper-case extension attribute": _set("TraceParent", "x"),
}


@pytest.mark.parametrize("event_type", ORDER_TYPES)
@pytest.mark.parametrize("case", sorted(INVALID_ORDER_EVENTS))
def test_invalid_order_event_is_rejected(event_type: str, case: str) -> None:
    event = make_event(event_type)
    INVALID_ORDER_EVENTS[case](event)
    assert not schema_accepts(event_type, event)


def test_wrong_type_is_rejected_even_if_it_is_another_known_type() -> None:
    event = make_event("order.paid")
    event["type"] = "order.cancelled"
    assert not schema_accepts("order.paid", event)
    assert schema_accepts("order.cancelled", event)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_what_the_platform_produces_validates(event_type: str) -> None:
    """An event built the way services build them (model -> new_event -> bytes) passes its schema."""
    model = EVENT_TYPES[event_type].model_validate(DATA[event_type])
    produced = new_event(
        event_type,
        "/points",
        DATA[event_type].get("member_id", "program:p-1"),
        model,
        time=datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=UTC),
        dataschema=schema_uri(event_type),
    )
    event = json.loads(produced.to_bytes())
    errors = [e.message for e in validator(event_type).iter_errors(event)]
    assert errors == []


# --- the JSON Schema agrees with the pydantic models the platform validates with -------------------


AGREE: list[tuple[str, Event]] = [(t, make_event(t)) for t in sorted(EVENT_TYPES)] + [
    ("order.paid", make_event("order.paid", amount="0.5")),
    ("order.paid", make_event("order.paid", amount="99999999999999.9999")),
    ("order.paid", make_event("order.paid", lines=[])),
    ("order.refunded", make_event("order.refunded", amount="0.0001")),
    ("order.cancelled", make_event("order.cancelled", amount="0")),
    ("order.paid", {**make_event("order.paid"), "time": "2025-03-01T10:00:00.123+05:30"}),
    ("order.paid", {**make_event("order.paid"), "time": "2025-03-01t10:00:00z"}),
    ("points.adjusted", make_event("points.adjusted", points=0)),
    ("tier.changed", make_event("tier.changed", from_tier=None, direction="same")),
]
DISAGREE_NEVER_LAXER: list[tuple[str, Event]] = [
    ("order.paid", make_event("order.paid", amount=129.9)),
    ("order.paid", make_event("order.paid", amount="1.23456")),
    ("order.paid", make_event("order.paid", amount="-1")),
    ("order.paid", make_event("order.paid", currency="EURO")),
    ("order.refunded", {**make_event("order.refunded"), "data": ORDER}),  # no refund_id
    ("order.paid", make_event("order.paid", channel="x" * 33)),
    ("order.paid", make_event("order.paid", order_id="")),
    ("order.paid", {**make_event("order.paid"), "time": "2025-03-01T10:00:00"}),
    ("order.paid", {**make_event("order.paid"), "specversion": "0.3"}),
    ("points.earned", make_event("points.earned", points=-1)),
    ("points.earned", make_event("points.earned", available_at="2025-03-15T10:00:00")),
    ("points.redeemed", make_event("points.redeemed", points=0)),
    ("tier.changed", make_event("tier.changed", direction="sideways")),
    ("tier.changed", make_event("tier.changed", points_multiplier="1.25x")),
]


@pytest.mark.parametrize(("event_type", "event"), AGREE)
def test_schema_and_models_both_accept(event_type: str, event: Event) -> None:
    assert platform_accepts(event)
    assert schema_accepts(event_type, event)


@pytest.mark.parametrize(("event_type", "event"), DISAGREE_NEVER_LAXER)
def test_what_the_platform_rejects_the_schema_rejects(event_type: str, event: Event) -> None:
    assert not platform_accepts(event)
    assert not schema_accepts(event_type, event)


# The schema may be stricter than the platform (a producer that passes the schema is safe), never
# laxer. These are inputs the platform tolerates but the published contract does not allow.
SLOPPY_MONEY: list[tuple[str, Event]] = [
    ("order.paid", make_event("order.paid", amount=129)),  # JSON integer
    ("order.paid", make_event("order.paid", amount="1e3")),
    ("order.paid", make_event("order.paid", amount=" 12.5")),
    ("order.refunded", make_event("order.refunded", amount="+5")),
]


@pytest.mark.parametrize(("event_type", "event"), SLOPPY_MONEY)
def test_money_must_be_a_plain_decimal_string_for_schema_and_platform_alike(
    event_type: str, event: Event
) -> None:
    assert not platform_accepts(event)
    assert not schema_accepts(event_type, event)


STRICTER: list[tuple[str, Event]] = [
    ("order.paid", {**make_event("order.paid"), "time": "2025-03-01 10:00:00+0100"}),
    ("order.paid", {k: v for k, v in make_event("order.paid").items() if k != "subject"}),
    ("points.earned", make_event("points.earned", points="5")),
]


@pytest.mark.parametrize(("event_type", "event"), STRICTER)
def test_schema_is_stricter_than_the_platform_on_sloppy_input(event_type: str, event: Event) -> None:
    assert platform_accepts(event)
    assert not schema_accepts(event_type, event)


@pytest.mark.parametrize("event_type", ["order.paid", "order.refunded"])
def test_zero_amount_is_rejected_by_schema_as_by_the_platform(event_type: str) -> None:
    event = make_event(event_type, amount="0.00")
    assert not platform_accepts(event)
    assert not schema_accepts(event_type, event)


# --- AsyncAPI ----------------------------------------------------------------------------------


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for token in ref[2:].split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def test_asyncapi_names_every_topic_and_every_event_type() -> None:
    doc = asyncapi_document()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "Loyalty platform events"
    assert doc["info"]["version"] == SCHEMA_VERSION
    description = doc["info"]["description"]
    assert "member id" in description
    assert "dedupe key" in description
    assert {c["address"] for c in doc["channels"].values()} == set(TOPICS)
    for topic, event_types in TOPICS.items():
        assert set(doc["channels"][topic]["messages"]) == set(event_types)
    named = {m["name"] for c in doc["channels"].values() for m in c["messages"].values()}
    assert named == set(EVENT_TYPES)


def test_asyncapi_operations_reference_their_channel_and_messages() -> None:
    doc = asyncapi_document()
    actions: dict[str, str] = {}
    for operation in doc["operations"].values():
        channel = _resolve(doc, operation["channel"]["$ref"])
        actions[channel["address"]] = operation["action"]
        messages = [_resolve(doc, m["$ref"]) for m in operation["messages"]]
        assert {m["name"] for m in messages} == set(TOPICS[channel["address"]])
    assert actions == {t: "receive" if t == "orders" else "send" for t in TOPICS}


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_asyncapi_message_payload_is_the_event_schema(event_type: str) -> None:
    doc = asyncapi_document()
    (message,) = [
        m for c in doc["channels"].values() for m in c["messages"].values() if m["name"] == event_type
    ]
    assert message["contentType"] == "application/cloudevents+json"
    key = message["bindings"]["kafka"]["key"]
    assert key["type"] == "string"
    assert "member id" in key["description"]
    payload = message["payload"]
    assert "$ref" not in json.dumps(payload)  # AsyncAPI tools resolve #/ against the doc root
    assert payload["$id"] == schema_uri(event_type)
    Draft7Validator.check_schema(payload)  # the AsyncAPI Schema Object is a draft-07 superset
    # Same verdicts as the published JSON Schema, on valid and invalid events.
    events = [make_event(event_type)]
    if event_type in ORDER_TYPES:
        for mutate in INVALID_ORDER_EVENTS.values():
            event = make_event(event_type)
            mutate(event)
            events.append(event)
    inline = Draft202012Validator(payload)
    for event in events:
        assert inline.is_valid(event) == schema_accepts(event_type, event)


# --- the CLI -----------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="loyalty")
    schemas_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def test_cli_check_passes_on_the_committed_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["schemas", "--check", "--out", str(COMMITTED)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_cli_check_fails_on_a_tampered_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy_dir = tmp_path / "schemas"
    shutil.copytree(COMMITTED, copy_dir)
    paid = copy_dir / "json" / f"order.paid.v{SCHEMA_VERSION}.schema.json"
    paid.write_bytes(paid.read_bytes().replace(b'"minLength": 1', b'"minLength": 0', 1))
    (copy_dir / "json" / f"tier.changed.v{SCHEMA_VERSION}.schema.json").unlink()
    assert _cli(["schemas", "--check", "--out", str(copy_dir)]) == 1
    err = capsys.readouterr().err
    assert f"differs: {paid}" in err
    assert f"missing: {copy_dir / 'json' / f'tier.changed.v{SCHEMA_VERSION}.schema.json'}" in err
    assert "asyncapi.json" not in err


def test_cli_exports_to_out_and_then_checks_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _cli(["schemas"]) == 0  # default --out is ./schemas
    assert (tmp_path / "schemas" / "asyncapi.json").is_file()
    assert _cli(["schemas", "--check"]) == 0
