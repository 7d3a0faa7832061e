"""An incentive program: the document the CRM sends, kept as JSON (one version per edit), and its
lifecycle.

A program has a name and an objective with measurable targets, a target group and the share of it held
out as a control group, its measures (reward rules), a schedule and a budget. Every amount is in the
budget's currency. ``validate_program`` lists every problem of a candidate document (the CRM gets them
all at once); ``program_from_document``/``program_document`` are the JSON form kept in the database
and served over REST: money as decimal strings, times ISO 8601 with their offset (UTC).

Lifecycle: draft → active ⇄ paused → ended (``transition``); ended is final.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from rewards_service.domain.budget import Budget
from rewards_service.domain.cycles import CYCLE_KINDS, Schedule
from rewards_service.domain.documents import (
    CERTIFICATE_TRIGGERS,
    LETTER_TRIGGERS,
    MAX_FIELD,
    MAX_TOP,
    HonourCertificate,
    ThankYouLetter,
)
from rewards_service.domain.entitlements import Scope, grant_problems
from rewards_service.domain.groups import TargetGroup
from rewards_service.domain.ladders import Step, Steps, validate_steps
from rewards_service.domain.measures import (
    APPLIES,
    DISCOUNT_BASES,
    GIFT_BASES,
    MEASURE_KINDS,
    PAY_AS,
    REBATE_BASES,
    RIGHT_KINDS,
    RIGHT_UNITS,
    EntitlementGrant,
    LadderDiscount,
    Measure,
    OneTimeDiscount,
    Rebate,
    ThresholdGift,
    TierDiscount,
    TierUpgradeGift,
)
from rewards_service.domain.money import decimal_places, is_amount, is_percent
from rewards_service.domain.rfm import SEGMENTS

Metric = Literal["sales_uplift_pct", "nps", "retention_pct", "new_customers"]
METRICS: tuple[Metric, ...] = ("sales_uplift_pct", "nps", "retention_pct", "new_customers")
Status = Literal["draft", "active", "paused", "ended"]
STATUSES: tuple[Status, ...] = ("draft", "active", "paused", "ended")
Action = Literal["activate", "pause", "end"]
ACTIONS: tuple[Action, ...] = ("activate", "pause", "end")
MAX_CONTROL_SHARE = Decimal("0.5")


@dataclass(frozen=True)
class Target:
    """A measurable target of the objective, shown later by the evaluation: "+15 % sales" is
    ``Target("sales_uplift_pct", Decimal("15"))``."""

    metric: Metric
    target: Decimal


@dataclass(frozen=True)
class Program:
    name: str
    objective: str
    schedule: Schedule
    budget: Budget
    measures: tuple[Measure, ...]
    targets: tuple[Target, ...] = ()
    target_group: TargetGroup = field(default_factory=TargetGroup)
    control_share: Decimal = Decimal(0)  # the share of the target group held out as the control group

    def measure(self, measure_id: str) -> Measure:
        for measure in self.measures:
            if measure.id == measure_id:
                return measure
        raise KeyError(measure_id)


# --- lifecycle -------------------------------------------------------------------------------------

_TRANSITIONS: dict[tuple[Status, Action], Status] = {
    ("draft", "activate"): "active",
    ("paused", "activate"): "active",
    ("active", "pause"): "paused",
    ("active", "end"): "ended",
    ("paused", "end"): "ended",
}


def transition(status: Status, action: Action) -> Status:
    """The status after ``action``; ValueError when ``action`` is not allowed from ``status``."""
    if status not in STATUSES:
        raise ValueError(f"unknown program status {status!r}: one of {', '.join(STATUSES)}")
    if action not in ACTIONS:
        raise ValueError(f"unknown program action {action!r}: one of {', '.join(ACTIONS)}")
    after = _TRANSITIONS.get((status, action))
    if after is None:
        if status == "ended":
            raise ValueError(f"cannot {action} an ended program: ended is final")
        allowed = ", ".join(a for (s, a) in _TRANSITIONS if s == status)
        program = f"{'an' if status == 'active' else 'a'} {status} program"
        raise ValueError(f"cannot {action} {program}; {program} can: {allowed}")
    return after


# --- the JSON document (database and REST) ---------------------------------------------------------


def _steps_document(steps: Steps) -> list[dict[str, str]]:
    return [{"min": str(step.min), "value": str(step.value)} for step in steps]


def _optional(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _measure_document(measure: Measure) -> dict[str, Any]:
    head: dict[str, Any] = {"id": measure.id, "kind": measure.kind}
    if isinstance(measure, LadderDiscount):
        return {
            **head,
            "basis": measure.basis,
            "steps": _steps_document(measure.steps),
            "applies": measure.applies,
        }
    if isinstance(measure, TierDiscount):
        return head
    if isinstance(measure, OneTimeDiscount):
        return {
            **head,
            "percent": _optional(measure.percent),
            "amount": _optional(measure.amount),
            "min_order": str(measure.min_order),
            "valid_days": measure.valid_days,
        }
    if isinstance(measure, Rebate):
        return {
            **head,
            "basis": measure.basis,
            "steps": _steps_document(measure.steps),
            "fixed": measure.fixed,
            "pay_as": measure.pay_as,
            "personalised": {segment: _steps_document(s) for segment, s in measure.personalised.items()},
        }
    if isinstance(measure, ThresholdGift):
        return {**head, "basis": measure.basis, "min": str(measure.min), "item": measure.item}
    if isinstance(measure, HonourCertificate | ThankYouLetter):
        return _document_measure_document(measure, head)
    if isinstance(measure, EntitlementGrant):
        return {
            **head,
            "basis": measure.basis,
            "min": str(measure.min),
            "right": measure.right,
            "name": measure.name,
            "skus": list(measure.skus),
            "categories": list(measure.categories),
            "launch_id": measure.launch_id,
            "service": measure.service,
            "unit": measure.unit,
            "quota": measure.quota,
            "valid_days": measure.valid_days,
        }
    return {**head, "tiers": sorted(measure.tiers)}


def program_document(program: Program) -> dict[str, Any]:
    """``program`` as JSON: money and shares as decimal strings, times ISO 8601 in UTC."""
    group, schedule, budget = program.target_group, program.schedule, program.budget
    return {
        "name": program.name,
        "objective": program.objective,
        "targets": [{"metric": t.metric, "target": str(t.target)} for t in program.targets],
        "target_group": {
            "tiers": sorted(group.tiers),
            "rfm_segments": sorted(group.rfm_segments),
            "min_spend": _optional(group.min_spend),
            "min_orders": group.min_orders,
            "months": group.months,
            "members": sorted(group.members),
        },
        "control_share": str(program.control_share),
        "measures": [_measure_document(m) for m in program.measures],
        "schedule": {
            "starts": schedule.starts.astimezone(UTC).isoformat(),
            "ends": None if schedule.ends is None else schedule.ends.astimezone(UTC).isoformat(),
            "cycle": schedule.cycle,
        },
        "budget": {
            "currency": budget.currency,
            "cap": str(budget.cap),
            "per_member_cap": _optional(budget.per_member_cap),
            "point_value": _optional(budget.point_value),
        },
    }


def validate_program(document: Any) -> list[str]:
    """Every problem with a candidate program ``document``; empty when it is a valid program."""
    return _read_program(document)[1]


def program_from_document(document: Mapping[str, Any]) -> Program:
    """The program of a valid ``document`` (raises ValueError listing every problem otherwise)."""
    program, problems = _read_program(document)
    if program is None or problems:
        raise ValueError("invalid program document: " + "; ".join(problems))
    return program


# --- reading a document, noting every problem ------------------------------------------------------

_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_TIER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9 ._-]{0,31}")  # as the tiers ladder allows them
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_PROGRAM_FIELDS = ("name", "objective", "measures", "schedule", "budget")
_PROGRAM_OPTIONAL = ("targets", "target_group", "control_share")
_GROUP_FIELDS = ("tiers", "rfm_segments", "min_spend", "min_orders", "months", "members")
_MEASURE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # kind: (required, optional)
    "ladder-discount": (("basis", "steps"), ("applies",)),
    "tier-discount": ((), ()),
    "one-time-discount": ((), ("percent", "amount", "min_order", "valid_days")),
    "rebate": (("basis", "steps", "pay_as"), ("fixed", "personalised")),
    "threshold-gift": (("basis", "min", "item"), ()),
    "tier-upgrade-gift": ((), ("tiers",)),
    "honour-certificate": (("template", "trigger"), ("top", "tier", "years", "achievement")),
    "thank-you-letter": (("template", "trigger"), ("min_spend", "achievement")),
    "entitlement": (
        ("basis", "min", "right", "name"),
        ("skus", "categories", "launch_id", "service", "unit", "quota", "valid_days"),
    ),
}
_AMOUNT = "an amount above 0 with at most 2 decimals"
_T = TypeVar("_T", bound=str)


def _is_tier_name(name: str) -> bool:
    return _TIER_NAME.fullmatch(name) is not None


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class _Reader:
    """Reads values out of a JSON document, noting a problem for each bad one (and giving None)."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def note(self, problem: str) -> None:
        self.problems.append(problem)

    def fields(
        self, value: Any, where: str, required: Sequence[str], optional: Sequence[str] = ()
    ) -> Mapping[str, Any] | None:
        """``value`` as an object, noting required fields missing (or null) and unknown ones."""
        if not isinstance(value, Mapping):
            self.note(f"{where} must be an object")
            return None
        for key in required:
            if value.get(key) is None:
                self.note(f"{_at(where, key)} is required")
        for key in value:
            if key not in required and key not in optional:
                self.note(f"{where + ': ' if where else ''}unknown field {key!r}")
        return value

    def items(self, obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.note(f"{_at(where, key)} must be a list")
            return []
        return value

    def text(self, obj: Mapping[str, Any], key: str, where: str, max_length: int) -> str | None:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > max_length:
            self.note(f"{_at(where, key)} must be text of 1 to {max_length} characters")
            return None
        return value

    def decimal(self, obj: Mapping[str, Any], key: str, where: str) -> Decimal | None:
        value = obj.get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return Decimal(value)
        if isinstance(value, str) and _DECIMAL.fullmatch(value):
            return Decimal(value)
        self.note(f'{_at(where, key)} must be a decimal string such as "1250.50", got {value!r}')
        return None

    def amount(self, obj: Mapping[str, Any], key: str, where: str, *, zero: bool = False) -> Decimal | None:
        value = self.decimal(obj, key, where)
        if value is not None and not is_amount(value, zero=zero):
            what = "an amount of 0 or more with at most 2 decimals" if zero else _AMOUNT
            self.note(f"{_at(where, key)} must be {what}, got {value}")
            return None
        return value

    def whole(self, obj: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int | None:
        value = obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.note(f"{_at(where, key)} must be a whole number from {low} to {high}, got {value!r}")
            return None
        return value

    def flag(self, obj: Mapping[str, Any], key: str, where: str) -> bool | None:
        value = obj.get(key)
        if value is None or isinstance(value, bool):
            return value
        self.note(f"{_at(where, key)} must be true or false, got {value!r}")
        return None

    def moment(self, obj: Mapping[str, Any], key: str, where: str) -> datetime | None:
        value = obj.get(key)
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
            if moment is not None and moment.utcoffset() is not None:
                return moment.astimezone(UTC)
        except (ValueError, OverflowError):
            pass
        self.note(
            f"{_at(where, key)} must be an ISO 8601 time with a UTC offset, "
            f'such as "2026-01-01T00:00:00+00:00", got {value!r}'
        )
        return None

    def choice(self, obj: Mapping[str, Any], key: str, where: str, choices: Sequence[_T]) -> _T | None:
        value = obj.get(key)
        if value is None:
            return None
        for choice in choices:
            if value == choice:
                return choice
        self.note(f"{_at(where, key)} must be one of {', '.join(choices)}, got {value!r}")
        return None

    def names(
        self, obj: Mapping[str, Any], key: str, where: str, ok: Callable[[str], bool], what: str
    ) -> frozenset[str]:
        names: set[str] = set()
        for index, value in enumerate(self.items(obj, key, where)):
            if isinstance(value, str) and ok(value):
                names.add(value)
            else:
                self.note(f"{_at(where, key)}[{index}] must be {what}, got {value!r}")
        return frozenset(names)

    def steps(self, value: Any, where: str, counts: bool | None, percent: bool | None) -> Steps | None:
        """A step ladder; checked by ``validate_steps`` once its basis and kind of value are known."""
        if not isinstance(value, list):
            self.note(f"{where} must be a list of steps")
            return None
        before = len(self.problems)
        steps: list[Step] = []
        for index, item in enumerate(value):
            step = self.fields(item, f"{where}[{index}]", ("min", "value"))
            if step is None:
                continue
            low = self.decimal(step, "min", f"{where}[{index}]")
            figure = self.decimal(step, "value", f"{where}[{index}]")
            if low is not None and figure is not None:
                steps.append(Step(low, figure))
        if len(self.problems) > before:
            return None
        if counts is not None and percent is not None:
            problems = validate_steps(steps, where, counts=counts, percent=percent)
            self.problems.extend(problems)
            if problems:
                return None
        return tuple(steps)


def _read_program(document: Any) -> tuple[Program | None, list[str]]:
    r = _Reader()
    if not isinstance(document, Mapping):
        return None, ["a program document must be a JSON object"]
    doc = document
    r.fields(doc, "", _PROGRAM_FIELDS, _PROGRAM_OPTIONAL)
    name = r.text(doc, "name", "", 120)
    objective = r.text(doc, "objective", "", 2000)
    targets = _read_targets(r, doc)
    group = _read_target_group(r, doc.get("target_group"))
    share = r.decimal(doc, "control_share", "")
    if share is not None and (not Decimal(0) <= share <= MAX_CONTROL_SHARE or decimal_places(share) > 4):
        r.note(f"control_share must be from 0 to {MAX_CONTROL_SHARE} with at most 4 decimals, got {share}")
        share = None
    measures = _read_measures(r, doc)
    schedule = _read_schedule(r, doc.get("schedule"))
    budget = _read_budget(r, doc.get("budget"))
    raw_budget = doc.get("budget")
    point_value = raw_budget.get("point_value") is not None if isinstance(raw_budget, Mapping) else None
    raw_measures = doc.get("measures")
    for index, item in enumerate(raw_measures if isinstance(raw_measures, list) else []):
        if isinstance(item, Mapping):
            _cross_check(r, f"measures[{index}]", item, schedule, point_value)
    if r.problems or name is None or objective is None or group is None:
        return None, r.problems
    if schedule is None or budget is None:
        return None, r.problems
    program = Program(
        name=name,
        objective=objective,
        schedule=schedule,
        budget=budget,
        measures=tuple(measures),
        targets=targets,
        target_group=group,
        control_share=Decimal(0) if share is None else share,
    )
    return program, []


def _read_targets(r: _Reader, doc: Mapping[str, Any]) -> tuple[Target, ...]:
    targets: list[Target] = []
    for index, item in enumerate(r.items(doc, "targets", "")):
        where = f"targets[{index}]"
        target = r.fields(item, where, ("metric", "target"))
        if target is None:
            continue
        metric = r.choice(target, "metric", where, METRICS)
        value = r.decimal(target, "target", where)
        if metric is None or value is None:
            continue
        if any(t.metric == metric for t in targets):
            r.note(f"{where}: the metric {metric} has a target already")
        elif problem := _target_problem(metric, value):
            r.note(f"{where}.target {problem}, got {value}")
        else:
            targets.append(Target(metric, value))
    return tuple(targets)


def _target_problem(metric: Metric, value: Decimal) -> str | None:
    if decimal_places(value) > 2:
        return "takes at most 2 decimals"
    if metric == "new_customers":
        return None if value >= 1 and value == value.to_integral_value() else "must be a whole number from 1"
    if metric == "nps":
        return None if Decimal(-100) <= value <= Decimal(100) else "must be an NPS from -100 to 100"
    if metric == "retention_pct":
        return None if Decimal(0) < value <= Decimal(100) else "must be a percent above 0 and at most 100"
    return None if value > 0 else "must be an uplift above 0 %"


def _read_target_group(r: _Reader, value: Any) -> TargetGroup | None:
    if value is None:
        return TargetGroup()
    group = r.fields(value, "target_group", (), _GROUP_FIELDS)
    if group is None:
        return None
    before = len(r.problems)
    where = "target_group"
    tiers = r.names(group, "tiers", where, _is_tier_name, "a tier name")
    segments = r.names(group, "rfm_segments", where, SEGMENTS.__contains__, f"one of {', '.join(SEGMENTS)}")
    min_spend = r.amount(group, "min_spend", where)
    min_orders = r.whole(group, "min_orders", where, 1, 1_000_000)
    months = r.whole(group, "months", where, 1, 60)
    members = r.names(group, "members", where, lambda m: 0 < len(m) <= 64, "a member id of 1-64 characters")
    if len(r.problems) > before:
        return None
    return TargetGroup(tiers, segments, min_spend, min_orders, 12 if months is None else months, members)


def _read_measures(r: _Reader, doc: Mapping[str, Any]) -> list[Measure]:
    items = r.items(doc, "measures", "")
    if "measures" in doc and isinstance(doc["measures"], list) and not items:
        r.note("measures needs at least one measure")
    measures: list[Measure] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"measures[{index}]"
        if not isinstance(item, Mapping):
            r.note(f"{where} must be an object")
            continue
        measure_id = r.text(item, "id", where, 64)
        if measure_id is not None and not _ID.fullmatch(measure_id):
            r.note(f"{where}.id must be 1-64 letters, digits, '.', '_' or '-', got {measure_id!r}")
        elif measure_id is not None and measure_id in seen:
            r.note(f"measure id {measure_id!r} is used twice")
        if measure_id is not None:
            seen.add(measure_id)
        kind = r.choice(item, "kind", where, MEASURE_KINDS)
        if kind is None:  # a bad kind is noted; its fields cannot be checked
            for key in ("id", "kind"):
                if item.get(key) is None:
                    r.note(f"{where}.{key} is required")
            continue
        required, optional = _MEASURE_FIELDS[kind]
        r.fields(item, where, ("id", "kind", *required), optional)
        measure = _read_measure(r, item, where, kind, measure_id or "")
        if measure is not None:
            measures.append(measure)
    return measures


def _read_measure(
    r: _Reader, item: Mapping[str, Any], where: str, kind: str, measure_id: str
) -> Measure | None:
    before = len(r.problems)
    measure: Measure | None = None
    if kind == "ladder-discount":
        discount_basis = r.choice(item, "basis", where, DISCOUNT_BASES)
        counts = None if discount_basis is None else discount_basis == "frequency"
        steps = r.steps(item.get("steps"), f"{where}.steps", counts, True) if "steps" in item else None
        applies = r.choice(item, "applies", where, APPLIES) or "next-cycle"
        if discount_basis is not None and steps is not None:
            measure = LadderDiscount(measure_id, discount_basis, steps, applies)
    elif kind == "tier-discount":
        measure = TierDiscount(measure_id)
    elif kind == "one-time-discount":
        measure = _read_one_time_discount(r, item, where, measure_id)
    elif kind == "rebate":
        measure = _read_rebate(r, item, where, measure_id)
    elif kind == "threshold-gift":
        gift_basis = r.choice(item, "basis", where, GIFT_BASES)
        low = r.amount(item, "min", where)
        gift = r.text(item, "item", where, 64)
        if gift_basis is not None and low is not None and gift is not None:
            measure = ThresholdGift(measure_id, gift_basis, low, gift)
    elif kind in ("honour-certificate", "thank-you-letter"):
        measure = _read_document_measure(r, item, where, kind, measure_id)
    elif kind == "entitlement":
        measure = _read_entitlement(r, item, where, measure_id)
    else:
        tiers = r.names(item, "tiers", where, _is_tier_name, "a tier name")
        measure = TierUpgradeGift(measure_id, tiers)
    return measure if len(r.problems) == before else None


def _read_entitlement(
    r: _Reader, item: Mapping[str, Any], where: str, measure_id: str
) -> EntitlementGrant | None:
    basis = r.choice(item, "basis", where, GIFT_BASES)
    low = r.amount(item, "min", where)
    right = r.choice(item, "right", where, RIGHT_KINDS)
    name = r.text(item, "name", where, 200)
    skus = tuple(sorted(r.names(item, "skus", where, _is_code, "a SKU of 1 to 64 characters")))
    categories = tuple(
        sorted(r.names(item, "categories", where, _is_code, "a category of 1 to 64 characters"))
    )
    launch_id = r.text(item, "launch_id", where, 36)
    service = r.text(item, "service", where, 64)
    unit = r.choice(item, "unit", where, RIGHT_UNITS) or "units"
    quota = r.whole(item, "quota", where, 1, 1_000_000)
    valid_days = r.whole(item, "valid_days", where, 1, 3660)
    if right is not None:
        scope = Scope(skus, categories, launch_id, service)
        for problem in grant_problems(right, scope, quota, _EPOCH, None):
            r.note(f"{where}: {problem}")
    if basis is None or low is None or right is None or name is None:
        return None
    return EntitlementGrant(
        measure_id,
        basis,
        low,
        right,
        name,
        skus,
        categories,
        launch_id,
        service,
        unit,
        quota,
        90 if valid_days is None else valid_days,
    )


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # a right's window starts at its order: any start checks the scope


def _is_code(value: str) -> bool:
    return 0 < len(value) <= 64 and value.strip() == value and "\x00" not in value


def _read_one_time_discount(
    r: _Reader, item: Mapping[str, Any], where: str, measure_id: str
) -> OneTimeDiscount | None:
    percent = r.decimal(item, "percent", where)
    if percent is not None and not is_percent(percent):
        r.note(f"{where}.percent must be a percent above 0 and at most 100, at most 4 decimals")
    amount = r.amount(item, "amount", where)
    if ("percent" in item and item["percent"] is not None) == (
        "amount" in item and item["amount"] is not None
    ):
        r.note(f"{where} takes exactly one of percent and amount")
    min_order = r.amount(item, "min_order", where, zero=True)
    valid_days = r.whole(item, "valid_days", where, 1, 366)
    return OneTimeDiscount(
        measure_id,
        percent,
        amount,
        Decimal(0) if min_order is None else min_order,
        30 if valid_days is None else valid_days,
    )


def _read_rebate(r: _Reader, item: Mapping[str, Any], where: str, measure_id: str) -> Rebate | None:
    basis = r.choice(item, "basis", where, REBATE_BASES)
    pay_as = r.choice(item, "pay_as", where, PAY_AS)
    fixed = r.flag(item, "fixed", where)
    is_fixed = False if item.get("fixed") is None else fixed
    counts = None if basis is None else basis == "count"
    percent = None if is_fixed is None else not is_fixed
    steps = r.steps(item.get("steps"), f"{where}.steps", counts, percent) if "steps" in item else None
    personalised: dict[str, Steps] = {}
    extra = item.get("personalised")
    if extra is not None and not isinstance(extra, Mapping):
        r.note(f"{where}.personalised must be an object of RFM segment: steps")
    elif extra is not None:
        for segment, alternative in extra.items():
            if segment not in SEGMENTS:
                r.note(f"{where}.personalised: {segment!r} is not an RFM segment ({', '.join(SEGMENTS)})")
                continue
            segment_steps = r.steps(alternative, f"{where}.personalised.{segment}", counts, percent)
            if segment_steps is not None:
                personalised[segment] = segment_steps
    if basis is None or pay_as is None or steps is None or is_fixed is None:
        return None
    return Rebate(measure_id, basis, steps, pay_as, is_fixed, personalised)


def _read_schedule(r: _Reader, value: Any) -> Schedule | None:
    if value is None:
        return None  # reported as required
    schedule = r.fields(value, "schedule", ("starts", "cycle"), ("ends",))
    if schedule is None:
        return None
    starts = r.moment(schedule, "starts", "schedule")
    ends = r.moment(schedule, "ends", "schedule")
    cycle = r.choice(schedule, "cycle", "schedule", CYCLE_KINDS)
    if starts is not None and ends is not None and ends <= starts:
        r.note("schedule.ends must be after schedule.starts")
        return None
    if (
        starts is None
        or cycle is None
        or ("ends" in schedule and schedule["ends"] is not None and ends is None)
    ):
        return None
    return Schedule(starts, ends, cycle)


def _read_budget(r: _Reader, value: Any) -> Budget | None:
    if value is None:
        return None  # reported as required
    budget = r.fields(value, "budget", ("currency", "cap"), ("per_member_cap", "point_value"))
    if budget is None:
        return None
    before = len(r.problems)
    currency = budget.get("currency")
    if currency is not None and not (isinstance(currency, str) and _CURRENCY.fullmatch(currency)):
        r.note(f"budget.currency must be three capital letters, got {currency!r}")
    cap = r.amount(budget, "cap", "budget")
    per_member_cap = r.amount(budget, "per_member_cap", "budget")
    if cap is not None and per_member_cap is not None and per_member_cap > cap:
        r.note(f"budget.per_member_cap {per_member_cap} cannot be above budget.cap {cap}")
    point_value = r.decimal(budget, "point_value", "budget")
    if point_value is not None and (point_value <= 0 or decimal_places(point_value) > 6):
        r.note(f"budget.point_value must be above 0 with at most 6 decimals, got {point_value}")
    if len(r.problems) > before or not isinstance(currency, str) or cap is None:
        return None
    return Budget(currency, cap, per_member_cap, point_value)


def _cross_check(
    r: _Reader, where: str, item: Mapping[str, Any], schedule: Schedule | None, point_value: bool | None
) -> None:
    """What a measure needs of the schedule (when that is valid) and of the budget (when given)."""
    kind = item.get("kind")
    label = f"{where} ({kind} {item.get('id')!r})"
    if kind == "ladder-discount" and schedule is not None and schedule.cycle == "none":
        r.note(f"{label} applies to the next cycle, so schedule.cycle cannot be 'none'")
    if kind == "rebate":
        if schedule is not None and schedule.cycle == "none" and schedule.ends is None:
            r.note(f"{label} settles at cycle close: give the schedule a cycle or an end")
        if item.get("pay_as") == "points" and point_value is False:
            r.note(f"{label} pays points, so budget.point_value is required")
    open_ended = schedule is not None and schedule.cycle == "none" and schedule.ends is None
    at_close = kind in ("honour-certificate", "thank-you-letter") and item.get("trigger") != "tier-reached"
    if at_close and open_ended:
        r.note(f"{label} issues at cycle close: give the schedule a cycle or an end")


# --- documents: honour certificates and thank-you letters ------------------------------------------

_TEMPLATE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TRIGGER_FIELDS = {  # trigger: the one field it takes (None: none)
    "cycle-close-top-spend": "top",
    "tier-reached": "tier",
    "years-of-partnership": "years",
    "cycle-close": None,
    "milestone": "min_spend",
}


def _document_measure_document(
    measure: HonourCertificate | ThankYouLetter, head: dict[str, Any]
) -> dict[str, Any]:
    document: dict[str, Any] = {**head, "template": measure.template, "trigger": measure.trigger}
    if isinstance(measure, HonourCertificate):
        extra = {"top": measure.top, "tier": measure.tier, "years": measure.years}
    else:
        extra = {"min_spend": _optional(measure.min_spend)}
    document |= {k: v for k, v in extra.items() if v is not None}
    if measure.achievement is not None:
        document["achievement"] = measure.achievement
    return document


def _read_document_measure(
    r: _Reader, item: Mapping[str, Any], where: str, kind: str, measure_id: str
) -> HonourCertificate | ThankYouLetter | None:
    template = item.get("template")
    if template is not None and not (isinstance(template, str) and _TEMPLATE_ID.fullmatch(template)):
        r.note(f"{where}.template must be a document template's id (a lower-case UUID), got {template!r}")
        template = None
    achievement = r.text(item, "achievement", where, MAX_FIELD)
    trigger: str | None
    if kind == "honour-certificate":
        trigger = certificate = r.choice(item, "trigger", where, CERTIFICATE_TRIGGERS)
        letter = None
    else:
        trigger = letter = r.choice(item, "trigger", where, LETTER_TRIGGERS)
        certificate = None
    if trigger is not None:
        wanted = _TRIGGER_FIELDS[trigger]
        for key in ("top", "tier", "years") if certificate is not None else ("min_spend",):
            if key == wanted and item.get(key) is None:
                r.note(f"{_at(where, key)} is required with trigger {trigger}")
            elif key != wanted and item.get(key) is not None:
                r.note(f"{where}: {key} does not go with trigger {trigger}")
    top = r.whole(item, "top", where, 1, MAX_TOP)
    years = r.whole(item, "years", where, 1, 100)
    min_spend = r.amount(item, "min_spend", where)
    tier = item.get("tier")
    if tier is not None and not (isinstance(tier, str) and _is_tier_name(tier)):
        r.note(f"{where}.tier must be a tier name, got {tier!r}")
        tier = None
    if not isinstance(template, str):
        return None
    if certificate is not None:
        return HonourCertificate(measure_id, template, certificate, top, tier, years, achievement)
    if letter is not None:
        return ThankYouLetter(measure_id, template, letter, min_spend, achievement)
    return None
