"""Events the rewards service publishes on ``loyalty.rewards`` (key = member id; a program's own
events, such as its budget running out, are keyed by ``program:<id>``).

The points service credits points rebates from ``reward.issued`` (``kind`` "rebate", ``points``
set); the feedback service evaluates programs from enrolments (treatment or control) and what was
issued and spent.
"""

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from loyalty_shared.events.types import Currency, EventData, MemberId, Money

REWARDS_TOPIC = "loyalty.rewards"

RewardKind = Literal["gift", "coupon", "rebate"]
Fulfilment = Literal["issued", "shipped", "delivered", "cancelled"]


class ProgramMemberEnrolled(EventData):
    """A member of a program's target group was reached for the first time and assigned to its
    treatment group (rewarded) or its control group (held out: receives nothing)."""

    event_type: ClassVar[str] = "program.member_enrolled"
    topic: ClassVar[str] = REWARDS_TOPIC

    program_id: str
    program_version: int = Field(ge=1)
    member_id: MemberId
    group: Literal["treatment", "control"]
    enrolled_at: AwareDatetime


class RewardIssued(EventData):
    event_type: ClassVar[str] = "reward.issued"
    topic: ClassVar[str] = REWARDS_TOPIC

    reward_id: str
    program_id: str | None = Field(description="None for a catalog redemption")
    program_version: int | None = None
    measure_id: str | None = Field(default=None, description="the program rule; None when the CRM issued it")
    member_id: MemberId
    kind: RewardKind
    cycle: str | None = Field(default=None, description="the program cycle it was earned in, e.g. 2026-Q3")
    item_id: str | None = Field(default=None, description="the catalog item of a gift")
    points: int | None = Field(default=None, ge=1, description="a points rebate: points credit these")
    amount: Money | None = Field(default=None, description="a cash rebate or coupon value")
    currency: Currency
    cost: Money = Field(description="what it cost the program's budget")
    reason: str
    issued_at: AwareDatetime


class RewardFulfilmentChanged(EventData):
    event_type: ClassVar[str] = "reward.fulfilment_changed"
    topic: ClassVar[str] = REWARDS_TOPIC

    reward_id: str
    program_id: str | None = None
    member_id: MemberId
    item_id: str | None = None
    from_status: Fulfilment
    to_status: Fulfilment
    changed_at: AwareDatetime


class ProgramBudgetExhausted(EventData):
    """Published once per program: the first issuance its budget refused."""

    event_type: ClassVar[str] = "program.budget_exhausted"
    topic: ClassVar[str] = REWARDS_TOPIC

    program_id: str
    program_version: int = Field(ge=1)
    currency: Currency
    cap: Money
    used: Money = Field(description="committed and spent when the refusal happened")
    refused_cost: Money = Field(description="the cost that did not fit")
    at: AwareDatetime


class RebateSettled(EventData):
    """A member's rebate for a program cycle, settled at its close (once per program, measure, cycle
    and member). Paid as points (the points service credits ``points`` once) or as cash (credited to
    the member's wallet in rewards)."""

    event_type: ClassVar[str] = "rebate.settled"
    topic: ClassVar[str] = REWARDS_TOPIC

    statement_id: str
    reward_id: str
    program_id: str
    program_name: str = Field(max_length=200)
    program_version: int = Field(ge=1)
    measure_id: str
    member_id: MemberId
    cycle: str
    pay_as: Literal["points", "cash"]
    points: int | None = Field(default=None, ge=1, description="a points rebate: what points credits")
    amount: Money = Field(description="what the statement pays, in the program's currency")
    currency: Currency
    cost: Money = Field(description="what it cost the program's budget")
    net_spend: Money = Field(description="the cycle's spend, refunds and cancels deducted")
    orders: int = Field(ge=0)
    settled_at: AwareDatetime


class CouponUsed(EventData):
    event_type: ClassVar[str] = "coupon.used"
    topic: ClassVar[str] = REWARDS_TOPIC

    reward_id: str
    program_id: str
    member_id: MemberId
    code_hint: str = Field(description="the code's last four characters (the code itself is a secret)")
    order_id: str
    discount: Money
    currency: Currency
    used_at: AwareDatetime


class RedemptionFailed(EventData):
    """A catalog redemption rewards could not fulfil (out of stock, withdrawn, not for this tier...)
    or whose gift was cancelled: the points service gives the points back, once."""

    event_type: ClassVar[str] = "redemption.failed"
    topic: ClassVar[str] = REWARDS_TOPIC

    redemption_id: str = Field(description="the points service's redemption")
    member_id: MemberId
    points: int = Field(gt=0)
    item_id: str | None = None
    reason: str
    failed_at: AwareDatetime
