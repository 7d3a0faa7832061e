"""Field types every event shares: exact money as decimal strings, member ids, currencies."""

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field, PlainSerializer, StringConstraints, WithJsonSchema

MemberId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


def _finite_scale(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite decimal")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        raise ValueError("at most 4 decimal places")
    return value


# Money travels as a decimal string ("129.90"), never a float; it serialises back to a string.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18),
    AfterValidator(_finite_scale),
    PlainSerializer(lambda v: str(v), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,14}(\.\d{1,4})?$"}),
]
Points = Annotated[int, Field(strict=True)]
