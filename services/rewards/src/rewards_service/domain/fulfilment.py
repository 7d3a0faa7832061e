"""A gift's fulfilment: issued → shipped → delivered, or cancelled before it is delivered.

Delivered consumes what the gift committed of its program's budget (spent); cancelled gives it back
(released) and returns the unit to the catalog's stock.
"""

from __future__ import annotations

from typing import Literal

Fulfilment = Literal["issued", "shipped", "delivered", "cancelled"]
FULFILMENT: tuple[Fulfilment, ...] = ("issued", "shipped", "delivered", "cancelled")
Effect = Literal["spend", "release"] | None

_STEPS: dict[tuple[str, str], Effect] = {
    ("issued", "shipped"): None,
    ("issued", "delivered"): "spend",
    ("shipped", "delivered"): "spend",
    ("issued", "cancelled"): "release",
    ("shipped", "cancelled"): "release",
}


def fulfilment_step(status: str, to: str) -> Effect:
    """What moving a gift from ``status`` to ``to`` does to its budget; ValueError when not allowed."""
    if (status, to) not in _STEPS:
        if status in ("delivered", "cancelled"):
            raise ValueError(f"the gift is {status}: that is final")
        allowed = ", ".join(t for (s, t) in _STEPS if s == status) or "nothing"
        raise ValueError(f"a gift that is {status} can become {allowed}, not {to}")
    return _STEPS[(status, to)]
