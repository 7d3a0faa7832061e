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


EntitlementKind = Literal["priority-purchase", "custom-service"]


class EntitlementGranted(EventData):
    """A member was given a right: a priority purchase right (``skus``, ``categories`` or
    ``launch_id``; none of them: every launch) or a custom service (``service``), for
    ``[valid_from, valid_until)``, with a quota (None: no limit). ``source`` says who gave it: a
    tier's benefit (``tier``), a program rule (``program_id``) or the CRM."""

    event_type: ClassVar[str] = "entitlement.granted"
    topic: ClassVar[str] = REWARDS_TOPIC

    entitlement_id: str
    member_id: MemberId
    kind: EntitlementKind
    name: str = Field(max_length=200)
    skus: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    launch_id: str | None = None
    service: str | None = Field(default=None, max_length=64)
    unit: Literal["units", "sessions", "hours"]
    quota: int | None = Field(default=None, ge=1)
    valid_from: AwareDatetime
    valid_until: AwareDatetime | None = None
    source: Literal["tier", "program", "crm"]
    tier: str | None = None
    program_id: str | None = None
    granted_at: AwareDatetime


class EntitlementEnded(EventData):
    """A right ended before its time: the tier that gave it was left (at the tier change's
    ``effective_at``) or the CRM revoked it."""

    event_type: ClassVar[str] = "entitlement.ended"
    topic: ClassVar[str] = REWARDS_TOPIC

    entitlement_id: str
    member_id: MemberId
    kind: EntitlementKind
    reason: Literal["tier-changed", "revoked"]
    ends_at: AwareDatetime = Field(description="the instant the right stops being in force")


class EntitlementConsumed(EventData):
    event_type: ClassVar[str] = "entitlement.consumed"
    topic: ClassVar[str] = REWARDS_TOPIC

    entitlement_id: str
    member_id: MemberId
    kind: EntitlementKind
    quantity: int = Field(ge=1)
    sku: str | None = None
    order_id: str | None = None
    launch_id: str | None = None
    remaining: int | None = Field(description="what is left of the quota; None: no limit")
    consumed_at: AwareDatetime


class EntitlementReturned(EventData):
    """Units of a right given back: the order they were used for was cancelled or refunded in full."""

    event_type: ClassVar[str] = "entitlement.returned"
    topic: ClassVar[str] = REWARDS_TOPIC

    entitlement_id: str
    member_id: MemberId
    quantity: int = Field(ge=1)
    order_id: str
    reason: Literal["order-cancelled", "order-refunded"]
    returned_at: AwareDatetime
