"""Step ladders: "from 100,000 EUR in the quarter, 3 %". A rebate or ladder discount gives the value of
the highest step whose ``min`` the member's figure reaches.

``min`` is an amount of net spend or a count of orders, depending on the measure's basis; ``value`` is
a percent, or a fixed amount (a fixed rebate). ``validate_steps`` lists every problem of a ladder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise

from rewards_service.domain.money import is_amount, is_percent


@dataclass(frozen=True)
class Step:
    min: Decimal  # reached when the figure is at least this
    value: Decimal  # a percent (3 = 3 %) or a fixed amount


Steps = tuple[Step, ...]


def step_for(steps: Sequence[Step], x: Decimal) -> Step | None:
    """The highest step with ``min`` ≤ ``x``; None below the first."""
    return max((step for step in steps if step.min <= x), key=lambda step: step.min, default=None)


def validate_steps(steps: Sequence[Step], where: str, *, counts: bool, percent: bool) -> list[str]:
    """Every problem of ``steps`` (named ``where`` in the messages): at least one step, each ``min`` an
    amount above 0 (a whole number of orders from 1 with ``counts``), each ``value`` a percent above 0
    and at most 100 (an amount above 0 unless ``percent``), ``min`` strictly ascending."""
    if not steps:
        return [f"{where} needs at least one step"]
    problems: list[str] = []
    for index, step in enumerate(steps):
        at = f"{where}[{index}]"
        if counts:
            if not step.min.is_finite() or step.min < 1 or step.min != step.min.to_integral_value():
                problems.append(f"{at}.min must be a whole number of orders, at least 1")
        elif not is_amount(step.min):
            problems.append(f"{at}.min must be an amount above 0 with at most 2 decimals")
        if percent and not is_percent(step.value):
            problems.append(f"{at}.value must be a percent above 0 and at most 100, at most 4 decimals")
        elif not percent and not is_amount(step.value):
            problems.append(f"{at}.value must be an amount above 0 with at most 2 decimals")
    for index, (lower, higher) in enumerate(pairwise(steps), start=1):
        if lower.min.is_finite() and higher.min.is_finite() and higher.min <= lower.min:
            problems.append(
                f"{where} must be strictly ascending by min: {where}[{index}].min {higher.min} "
                f"is not above {lower.min}"
            )
    return problems
