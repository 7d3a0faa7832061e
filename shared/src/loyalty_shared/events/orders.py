"""Order events, produced by the e-commerce backend on topic ``orders`` (key = member id)."""

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loyalty_shared.events.types import Currency, MemberId, Money

ORDERS_TOPIC = "orders"


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    category: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0)
    unit_price: Money

    @field_validator("unit_price", mode="before")
    @classmethod
    def _no_float(cls, v: object) -> object:
        return _reject_float(v)


class _OrderEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=64)
    member_id: MemberId
    currency: Currency
    amount: Money
    lines: list[OrderLine] = Field(default_factory=list)
    channel: str = Field(default="web", max_length=32)

    @field_validator("amount", mode="before")
    @classmethod
    def _no_float(cls, v: object) -> object:
        return _reject_float(v)


class OrderPaid(_OrderEvent):
    """An order was paid; ``amount`` is what the member paid."""

    @field_validator("amount")
    @classmethod
    def _positive(cls, v: Decimal) -> Decimal:
        if v <= 0:
            raise ValueError("a paid order's amount must be greater than 0")
        return v


class OrderRefunded(_OrderEvent):
    """Part or all of an order was refunded; ``amount`` is this refund's amount."""

    refund_id: str = Field(min_length=1, max_length=64)

    @field_validator("amount")
    @classmethod
    def _positive(cls, v: Decimal) -> Decimal:
        if v <= 0:
            raise ValueError("a refund's amount must be greater than 0")
        return v


class OrderCancelled(_OrderEvent):
    """The whole order was cancelled; everything it earned is reversed."""


def _reject_float(v: object) -> object:
    if isinstance(v, float):
        raise ValueError("money must be a decimal string, not a JSON number")
    return v
