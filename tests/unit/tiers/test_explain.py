"""The tier view's explanation joins what is missing by the tier's rule (either threshold, or both)."""

from datetime import UTC, datetime
from typing import Literal

import pytest

from loyalty_shared.events import TierBenefits
from tiers_service.views import MemberTier, Requirement, explain

AT = datetime(2026, 6, 1, tzinfo=UTC)


def view(requires: Literal["any", "all"]) -> MemberTier:
    # A tier name with " or " in it: the joiner must come from the rule's kind, not its wording.
    name = "Gold or Better"
    rule = (
        f"{name}: 200000.00 EUR qualifying spend "
        + ("or" if requires == "any" else "and")
        + " 60 qualifying orders"
    )
    following = Requirement(
        tier=name,
        rule=rule,
        requires=requires,
        met=False,
        missing_spend="150000.00",
        missing_orders=59,
        qualifying_spend="50000.00",
        qualifying_orders=1,
        counted_from=AT,
        deadline=None,
    )
    return MemberTier(
        member_id="m-1",
        known=False,
        tier="Standard",
        rank=10,
        since=None,
        earned_tier="Standard",
        earned_since=None,
        override=None,
        status="secure",
        currency="EUR",
        window="the rolling 12 months",
        window_start=AT,
        qualifying_spend="50000.00",
        qualifying_orders=1,
        next_tier=following,
        keep=None,
        next_evaluation_at=None,
        grace_until=None,
        benefits=TierBenefits(points_multiplier="1", discount_rate="0", service_level="standard"),
        ladder_version=0,
        decided_by=None,
        explanation="",
    )


@pytest.mark.parametrize(("requires", "joiner"), [("any", "or"), ("all", "and")])
def test_missing_figures_are_joined_by_the_rule_kind(requires: Literal["any", "all"], joiner: str) -> None:
    assert explain(view(requires)).endswith(
        f"missing 150000.00 EUR more qualifying spend {joiner} 59 more qualifying orders."
    )
