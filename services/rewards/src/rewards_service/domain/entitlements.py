"""Entitlements: priority purchase rights and customised services, as pure rules.

An entitlement is a right a member holds for a while: a **priority purchase** right (buy a SKU of a
product launch before its public date) or a **custom service** (sessions or hours of a named
service, such as a dedicated engineer). It has a scope, a validity window ``[valid_from,
valid_until)``, a quota (None: no limit) and what was used of it.

A launch opens a priority window ``[opens_at, public_at)`` for a set of SKUs: inside it only members
with a right that covers the SKU may buy; before it nobody may; from ``public_at`` everybody may.
A right covers a SKU when its scope names the SKU, its category or the launch; a right with an open
scope (a tier's ``priority_purchase`` benefit) covers every launch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Kind = Literal["priority-purchase", "custom-service"]
Unit = Literal["units", "sessions", "hours"]
Source = Literal["tier", "program", "crm"]
State = Literal["scheduled", "active", "used-up", "expired", "ended", "revoked"]

KINDS: tuple[Kind, ...] = ("priority-purchase", "custom-service")
PRIORITY: Kind = "priority-purchase"
SERVICE: Kind = "custom-service"
STANDARD_SERVICE = "standard"  # the service level every tier has: no entitlement for it


@dataclass(frozen=True)
class Scope:
    """What a right covers: SKUs, categories, one launch (a priority purchase right), or the named
    service (a custom service). A priority right with none of them covers every launch."""

    skus: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    launch_id: str | None = None
    service: str | None = None

    @property
    def open(self) -> bool:
        return not (self.skus or self.categories or self.launch_id)


@dataclass(frozen=True)
class Right:
    entitlement_id: str
    kind: Kind
    scope: Scope
    quota: int | None
    used: int
    valid_from: datetime
    valid_until: datetime | None
    status: Literal["active", "ended", "revoked"] = "active"

    @property
    def remaining(self) -> int | None:
        return None if self.quota is None else self.quota - self.used

    def state(self, at: datetime) -> State:
        """Where the right stands at ``at``. An ended right (a demotion ended it at the tier change's
        ``effective_at``: its ``valid_until``) is still in force before that instant."""
        if self.status == "revoked":
            return "revoked"
        if at < self.valid_from:
            return "scheduled"
        if self.valid_until is not None and at >= self.valid_until:
            return "ended" if self.status == "ended" else "expired"
        if self.quota is not None and self.used >= self.quota:
            return "used-up"
        return "active"

    def in_force(self, at: datetime, quantity: int = 1) -> bool:
        """Usable at ``at`` for ``quantity`` more."""
        if self.state(at) != "active":
            return False
        return self.quota is None or self.used + quantity <= self.quota


@dataclass(frozen=True)
class Launch:
    launch_id: str
    skus: tuple[str, ...]
    opens_at: datetime
    public_at: datetime

    def phase(self, at: datetime) -> Literal["before", "priority", "public"]:
        if at < self.opens_at:
            return "before"
        return "priority" if at < self.public_at else "public"


def covers(right: Right, sku: str, category: str | None, launch: Launch | None) -> bool:
    """Whether a priority right's scope takes in ``sku`` (of ``category``, in ``launch`` if any)."""
    if right.kind != PRIORITY:
        return False
    scope = right.scope
    if scope.open:
        return launch is not None
    return (
        sku in scope.skus
        or (category is not None and category in scope.categories)
        or (launch is not None and scope.launch_id == launch.launch_id)
    )


def _narrowness(right: Right, sku: str, launch: Launch | None) -> int:
    """Which of several covering rights a purchase uses: the narrowest (a SKU's own right before a
    launch's, a launch's before a category's, an open one last), so a broad right is kept."""
    scope = right.scope
    if sku in scope.skus:
        return 0
    if launch is not None and scope.launch_id == launch.launch_id:
        return 1
    return 3 if scope.open else 2


def pick(
    rights: Iterable[Right],
    sku: str,
    category: str | None,
    launch: Launch | None,
    at: datetime,
    quantity: int,
) -> Right | None:
    """The right a purchase of ``quantity`` × ``sku`` at ``at`` uses: covering, in force with enough
    left; the narrowest, then the one ending first, then the oldest id (deterministic)."""
    usable = [r for r in rights if covers(r, sku, category, launch) and r.in_force(at, quantity)]
    if not usable:
        return None
    far = datetime.max.replace(tzinfo=at.tzinfo)
    return min(usable, key=lambda r: (_narrowness(r, sku, launch), r.valid_until or far, r.entitlement_id))


def launch_for(launches: Iterable[Launch], sku: str, at: datetime) -> Launch | None:
    """The launch that decides whether ``sku`` may be bought at ``at``: one whose window is open,
    else the next one still to open; None once every launch of the SKU is public."""
    pending = [launch for launch in launches if sku in launch.skus and launch.phase(at) != "public"]
    if not pending:
        return None
    open_now = [launch for launch in pending if launch.phase(at) == "priority"]
    return min(open_now or pending, key=lambda launch: (launch.public_at, launch.launch_id))


@dataclass(frozen=True)
class Decision:
    """May the member buy the SKU now, and under which right."""

    allowed: bool
    reason: Literal["public", "priority-right", "no-right", "before-priority-window"]
    launch: Launch | None = None
    right: Right | None = None


def may_buy(
    rights: Sequence[Right],
    launches: Sequence[Launch],
    sku: str,
    category: str | None,
    at: datetime,
    quantity: int = 1,
) -> Decision:
    launch = launch_for(launches, sku, at)
    if launch is None:
        right = pick(rights, sku, category, None, at, quantity)
        return Decision(True, "public", None, right)
    if launch.phase(at) == "before":
        return Decision(False, "before-priority-window", launch)
    right = pick(rights, sku, category, launch, at, quantity)
    if right is None:
        return Decision(False, "no-right", launch)
    return Decision(True, "priority-right", launch, right)


# --- tier benefits ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierRight:
    """A right a tier gives while the member holds it: its priority purchase right (every launch),
    or its service level as a custom service."""

    kind: Kind
    service: str | None = None

    @property
    def scope(self) -> Scope:
        return Scope(service=self.service)


def tier_rights(priority_purchase: bool, service_level: str | None) -> frozenset[TierRight]:
    rights: set[TierRight] = set()
    if priority_purchase:
        rights.add(TierRight(PRIORITY))
    if service_level and service_level != STANDARD_SERVICE:
        rights.add(TierRight(SERVICE, service_level))
    return frozenset(rights)


def reconcile(held: dict[str, TierRight], wanted: frozenset[TierRight]) -> tuple[list[str], list[TierRight]]:
    """A tier change: which of the member's tier rights (by entitlement id) end, which are granted.
    A right the new tier also gives is kept as it is (no gap, no duplicate)."""
    keep = set(held.values()) & wanted
    ending = sorted(eid for eid, right in held.items() if right not in keep)
    granting = sorted(wanted - keep, key=lambda r: (r.kind, r.service or ""))
    return ending, granting


# --- a CRM grant ------------------------------------------------------------------------------------


def grant_problems(
    kind: Kind, scope: Scope, quota: int | None, valid_from: datetime, valid_until: datetime | None
) -> list[str]:
    """What is wrong with a grant, in words (empty: nothing)."""
    problems = []
    if valid_until is not None and valid_until <= valid_from:
        problems.append("valid_until must be after valid_from")
    if quota is not None and quota < 1:
        problems.append("quota must be at least 1 (or absent: no limit)")
    if kind == SERVICE:
        if not scope.service:
            problems.append("a custom-service entitlement names its service (scope.service)")
        if scope.skus or scope.categories or scope.launch_id:
            problems.append("a custom-service entitlement is scoped by its service only")
    elif scope.service:
        problems.append("a priority-purchase entitlement is scoped by skus, categories or a launch")
    return problems


def launch_problems(skus: Sequence[str], opens_at: datetime, public_at: datetime) -> list[str]:
    problems = []
    if public_at <= opens_at:
        problems.append("public_at must be after opens_at (the priority window)")
    if len(set(skus)) != len(skus):
        problems.append("skus must not repeat")
    return problems
