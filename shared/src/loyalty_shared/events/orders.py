"""Order events, produced by the e-commerce backend on topic ``orders`` (key = member id)."""

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from loyalty_shared.events.types import Currency, EventData, MemberId, Money, PositiveMoney

ORDERS_TOPIC = "orders"
# The most lines an order event may carry (an order with more is dead-lettered); with the byte limit
# of every event (loyalty_shared.envelope.MAX_EVENT_BYTES) it bounds what one event costs to handle.
MAX_ORDER_LINES = 500


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    category: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0)
    unit_price: Money


class _OrderEvent(EventData):
    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=64)
    member_id: MemberId
    currency: Currency
    lines: list[OrderLine] = Field(default_factory=list, max_length=MAX_ORDER_LINES)
    channel: str = Field(default="web", max_length=32)


class OrderPaid(_OrderEvent):
    """An order was paid; ``amount`` is what the member paid."""

    event_type: ClassVar[str] = "order.paid"
    topic: ClassVar[str] = ORDERS_TOPIC

    amount: PositiveMoney


class OrderRefunded(_OrderEvent):
    """Part or all of an order was refunded; ``amount`` is this refund's amount."""

    event_type: ClassVar[str] = "order.refunded"
    topic: ClassVar[str] = ORDERS_TOPIC

    refund_id: str = Field(min_length=1, max_length=64)
    amount: PositiveMoney = Field(description="this refund's amount")


class OrderCancelled(_OrderEvent):
    """The whole order was cancelled; everything it earned is reversed."""

    event_type: ClassVar[str] = "order.cancelled"
    topic: ClassVar[str] = ORDERS_TOPIC

    amount: Money = Field(description="the order's amount, for the record")
