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


# --- entitlements ----------------------------------------------------------------------------------

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


# --- documents -------------------------------------------------------------------------------------

DocumentIssuer = Literal["program", "crm"]


class CertificateIssued(EventData):
    """An honour certificate was issued to a member: by a program rule (once per program, measure,
    cycle and member) or by the CRM. Its PDF is rendered after; anyone can confirm it with its
    verification code (``GET /v1/certificates/{code}``)."""

    event_type: ClassVar[str] = "certificate.issued"
    topic: ClassVar[str] = REWARDS_TOPIC

    document_id: str
    member_id: MemberId
    template_id: str
    template_version: int = Field(ge=1)
    title: str = Field(description="the certificate's title as it reads")
    issued_by: DocumentIssuer
    program_id: str | None = Field(default=None, description="the program whose rule issued it")
    program_version: int | None = None
    measure_id: str | None = None
    cycle: str | None = None
    code_hint: str = Field(description="the verification code's last four characters")
    reason: str
    issued_at: AwareDatetime


class LetterIssued(EventData):
    """A thank-you letter was issued to a member: by a program rule or by the CRM."""

    event_type: ClassVar[str] = "letter.issued"
    topic: ClassVar[str] = REWARDS_TOPIC

    document_id: str
    member_id: MemberId
    template_id: str
    template_version: int = Field(ge=1)
    title: str
    issued_by: DocumentIssuer
    program_id: str | None = None
    program_version: int | None = None
    measure_id: str | None = None
    cycle: str | None = None
    reason: str
    issued_at: AwareDatetime


class DocumentRevoked(EventData):
    """The CRM revoked a certificate or letter (final): a certificate's code then shows it revoked."""

    event_type: ClassVar[str] = "document.revoked"
    topic: ClassVar[str] = REWARDS_TOPIC

    document_id: str
    member_id: MemberId
    kind: Literal["certificate", "letter"]
    reason: str
    revoked_at: AwareDatetime


# --- gatherings ------------------------------------------------------------------------------------

# A gathering is a training course or a customer exchange event the CRM invites members to. Its
# member events are keyed by the member and in order per member and gathering (every change of a
# gathering's invitations holds the gathering's lock); ``gathering.cancelled`` is keyed by
# ``gathering:<id>``.

GatheringKind = Literal["training", "exchange"]
AnswerChannel = Literal["crm", "link"]


class _GatheringMemberEvent(EventData):
    """What every member event of a gathering says about the gathering."""

    gathering_id: str
    kind: GatheringKind
    title: str = Field(max_length=200)
    program_id: str | None = Field(description="the program whose target group it is for; None: none")
    member_id: MemberId
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class GatheringInvited(_GatheringMemberEvent):
    """A member was invited (once per gathering and member: a repeated invitation publishes nothing)."""

    event_type: ClassVar[str] = "gathering.invited"
    topic: ClassVar[str] = REWARDS_TOPIC

    invited_at: AwareDatetime


class GatheringAccepted(_GatheringMemberEvent):
    """A member has a seat: they accepted while one was free, or (``from_waitlist``) a seat was
    freed and they were first on the waitlist."""

    event_type: ClassVar[str] = "gathering.accepted"
    topic: ClassVar[str] = REWARDS_TOPIC

    via: Literal["crm", "link", "waitlist"] = Field(
        description="the member's answer by the CRM or their link; waitlist: moved up from it"
    )
    from_waitlist: bool
    accepted_at: AwareDatetime


class GatheringWaitlisted(_GatheringMemberEvent):
    """A member accepted when every seat was taken: they wait, at ``position`` (1 is next)."""

    event_type: ClassVar[str] = "gathering.waitlisted"
    topic: ClassVar[str] = REWARDS_TOPIC

    via: AnswerChannel
    position: int = Field(ge=1)
    waitlisted_at: AwareDatetime


class GatheringDeclined(_GatheringMemberEvent):
    """A member declined: an invitation not answered yet, a seat (given back: ``freed_seat``) or a
    place on the waitlist."""

    event_type: ClassVar[str] = "gathering.declined"
    topic: ClassVar[str] = REWARDS_TOPIC

    via: AnswerChannel
    previous_status: Literal["invited", "accepted", "waitlisted"]
    freed_seat: bool
    declined_at: AwareDatetime


class GatheringAttended(_GatheringMemberEvent):
    """A member was checked in at the gathering: the feedback service's cue for a post-event survey
    (after ``ends_at``)."""

    event_type: ClassVar[str] = "gathering.attended"
    topic: ClassVar[str] = REWARDS_TOPIC

    attended_at: AwareDatetime


class GatheringCancelled(EventData):
    """A gathering was cancelled before it started; its invitations stay as they were answered."""

    event_type: ClassVar[str] = "gathering.cancelled"
    topic: ClassVar[str] = REWARDS_TOPIC

    gathering_id: str
    kind: GatheringKind
    title: str = Field(max_length=200)
    program_id: str | None = None
    starts_at: AwareDatetime
    accepted: int = Field(ge=0, description="members who had a seat")
    waitlisted: int = Field(ge=0)
    note: str | None = None
    cancelled_at: AwareDatetime
