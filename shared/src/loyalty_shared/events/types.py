"""Field types every event shares: exact money as decimal strings, member ids, currencies."""

import re
from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import BaseModel, BeforeValidator, PlainSerializer, StringConstraints, WithJsonSchema

MEMBER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
MemberId = Annotated[str, StringConstraints(pattern=MEMBER_ID_PATTERN)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

MONEY_PATTERN = r"^[0-9]{1,14}(\.[0-9]{1,4})?$"
POSITIVE_MONEY_PATTERN = r"^(?=.*[1-9])[0-9]{1,14}(\.[0-9]{1,4})?$"
_MONEY = re.compile(MONEY_PATTERN)


def _parse_money(value: object) -> Decimal:
    """Money travels as a plain decimal string ("129.90"): never a JSON number, never "1e3"."""
    if isinstance(value, Decimal) and value.is_finite() and _MONEY.match(format(value, "f")):
        return value
    if not isinstance(value, str):
        raise ValueError('money must be a decimal string such as "129.90", not a JSON number')
    if not _MONEY.match(value):
        raise ValueError('money must look like "129.90": digits, optionally up to 4 decimals')
    return Decimal(value)


SIGNED_MONEY_PATTERN = r"^-?[0-9]{1,14}(\.[0-9]{1,4})?$"
_SIGNED_MONEY = re.compile(SIGNED_MONEY_PATTERN)


def _parse_signed_money(value: object) -> Decimal:
    """Money that may be below zero (an adjustment, a shortfall): "-30.00"."""
    if isinstance(value, Decimal) and value.is_finite() and _SIGNED_MONEY.match(format(value, "f")):
        return value
    if not isinstance(value, str) or not _SIGNED_MONEY.match(value):
        raise ValueError('signed money must look like "-30.00": a decimal string, up to 4 decimals')
    return Decimal(value)


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


_SERIALIZE = PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json")

Money = Annotated[
    Decimal,
    BeforeValidator(_parse_money),
    _SERIALIZE,
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN}),
]
SignedMoney = Annotated[
    Decimal,
    BeforeValidator(_parse_signed_money),
    _SERIALIZE,
    WithJsonSchema({"type": "string", "pattern": SIGNED_MONEY_PATTERN}),
]
PositiveMoney = Annotated[
    Decimal,
    BeforeValidator(lambda v: _positive(_parse_money(v))),
    _SERIALIZE,
    WithJsonSchema({"type": "string", "pattern": POSITIVE_MONEY_PATTERN}),
]


def money_text(amount: Decimal) -> str:
    """Money as a person writes it, whatever the column's scale: 100.0000 -> 100.00, 1.2340 -> 1.234."""
    cents = amount.quantize(Decimal("0.01"))
    return format(cents if cents == amount else amount.normalize(), "f")


# Money in REST answers, written as a person writes it whatever the column's scale ("25.00", not
# "25.0000"); read like Money.
_AS_TEXT = PlainSerializer(money_text, return_type=str, when_used="json")
Amount = Annotated[
    Decimal,
    BeforeValidator(_parse_money),
    _AS_TEXT,
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN}),
]
SignedAmount = Annotated[
    Decimal,
    BeforeValidator(_parse_signed_money),
    _AS_TEXT,
    WithJsonSchema({"type": "string", "pattern": SIGNED_MONEY_PATTERN}),
]


class EventData(BaseModel):
    """The ``data`` of one event type; the class knows its CloudEvent type and its topic."""

    event_type: ClassVar[str]
    topic: ClassVar[str]
