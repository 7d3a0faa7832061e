"""``loyalty simulate``'s rewards demo: a program set in the rewards service (port 8003) that the
simulated orders earn from, and the rebate statement once the quarter is closed.

The set: a catalog (the tiers default ladder's upgrade gifts and a gift hamper), a quarterly volume
rebate for key accounts (Gold and up, a 10 % control group, paid as points), a threshold gift (an
order of 10,000 EUR or more: a hamper, once a quarter, on a budget small enough to run out) and a
tier-upgrade gift (the new tier's ``upgrade_gift``). ``catalog_items`` and ``program_documents`` say
what is created; ``set_up`` creates what is missing (an item that exists is kept, an active
program of the same name is used again), so simulate can run any number of times.

After the orders, ``close_quarter`` moves the rewards clock past the quarter's end (only a
settable clock, as ``loyalty dev`` runs it: never in production), settles (``POST
/v1/settlements``) and shows one member's statement and its credit in points. Rewards decides a
cycle from an order's *event time*, so simulate dates the orders inside the quarter it closes.

Everything that decides or renders is pure (documents, cells, tables, the statement); the IO is
``set_up``, ``close_quarter`` and the few helpers they call.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from loyalty_shared.dates import add_months

CURRENCY = "EUR"
REBATE = "rebate"
THRESHOLD = "threshold-gift"
UPGRADE = "upgrade-gift"
REBATE_NAME = "Key accounts: quarterly volume rebate"
THRESHOLD_NAME = "Big orders: a gift hamper"
UPGRADE_NAME = "Tier upgrades: a welcome gift"
KEY_ACCOUNT_TIERS = ("Gold", "Platinum", "Ambassador")
# (min net spend in the quarter, percent rebated): 1 % of 600,000 EUR is 6,000 EUR, 600,000 points
REBATE_STEPS = (("100000", "0.5"), ("500000", "1"), ("1000000", "1.5"))
POINT_VALUE = "0.01"
REBATE_CAP = "150000.00"  # a default run's key accounts earn some 40,000-80,000 EUR a quarter
HAMPER = "gift-hamper"
HAMPER_MIN = "10000"  # about 30 of a default run's 50 members place an order this big
HAMPER_CAP = "600.00"  # 15 hampers: the budget runs out and the rest are refused
UPGRADE_CAP = "5000.00"
STOCK = 100
# The tiers default ladder's upgrade_gift benefits (services/tiers: domain/ladder.py): on a
# promotion, rewards gives the catalog item of that name. (item id, name, value in EUR)
UPGRADE_GIFTS = (
    ("silver-welcome-kit", "Silver welcome kit", "25.00"),
    ("gold-welcome-gift", "Gold welcome gift", "75.00"),
    ("platinum-gift", "Platinum gift", "250.00"),
    ("ambassador-award", "Ambassador award", "500.00"),
)
SETTLE_MARGIN = timedelta(seconds=1)  # the clock goes this far past the quarter's end
LAG_WAIT_S = 30.0  # at most this long for rewards to consume every order before the quarter closes
CREDIT_WAIT_S = 20.0  # at most this long for points to credit the rebate
NONE = "-"
NOT_YET = "…"


class Unavailable(Exception):
    """The rewards service cannot be used for the demo; the message says why in one line."""


@dataclass(frozen=True)
class Api:
    """A service's base URL and the (crm) key to call it with."""

    url: str
    key: str | None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def at(self, path: str) -> str:
        return self.url.rstrip("/") + path


# --- what the demo is made of (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class Quarter:
    start: datetime
    end: datetime
    label: str  # "2026-Q4", as rewards labels a quarterly cycle

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def quarter_of(moment: datetime) -> Quarter:
    """The calendar quarter (UTC) that holds ``moment``."""
    at = moment.astimezone(UTC)
    start = datetime(at.year, (at.month - 1) // 3 * 3 + 1, 1, tzinfo=UTC)
    return Quarter(start, add_months(start, 3), f"{start.year:04d}-Q{(start.month - 1) // 3 + 1}")


def catalog_items() -> list[dict[str, Any]]:
    """The catalog the programs give from: POST /v1/catalog bodies."""
    hamper = {
        "item_id": HAMPER,
        "kind": "gift",
        "name": "Gift hamper",
        "description": "For an order of 10,000 EUR or more (once a quarter)",
        "currency": CURRENCY,
        "value": "40.00",
        "points_price": 4000,
        "stock": STOCK,
    }
    upgrades = [
        {
            "item_id": item_id,
            "kind": "gift",
            "name": name,
            "description": "Given on a promotion to the tier whose upgrade_gift it is",
            "currency": CURRENCY,
            "value": value,
            "stock": STOCK,
        }
        for item_id, name, value in UPGRADE_GIFTS
    ]
    return [*upgrades, hamper]


def program_documents(starts: datetime) -> dict[str, dict[str, Any]]:
    """The programs, by role: POST /v1/programs documents, every schedule quarterly from ``starts``
    (the start of the current quarter, UTC)."""
    schedule = {"starts": starts.astimezone(UTC).isoformat(), "cycle": "quarter"}
    return {
        REBATE: {
            "name": REBATE_NAME,
            "objective": "Grow key accounts' volume: a rebate on each quarter's net spend, paid as "
            "points when the quarter closes",
            "targets": [
                {"metric": "sales_uplift_pct", "target": "15"},
                {"metric": "retention_pct", "target": "95"},
            ],
            "target_group": {"tiers": list(KEY_ACCOUNT_TIERS)},
            "control_share": "0.1",
            "measures": [
                {
                    "id": "volume-rebate",
                    "kind": "rebate",
                    "basis": "volume",
                    "steps": [{"min": low, "value": percent} for low, percent in REBATE_STEPS],
                    "pay_as": "points",
                }
            ],
            "schedule": schedule,
            "budget": {"currency": CURRENCY, "cap": REBATE_CAP, "point_value": POINT_VALUE},
        },
        THRESHOLD: {
            "name": THRESHOLD_NAME,
            "objective": "More big orders: a gift hamper for an order of 10,000 EUR or more, once a quarter",
            "targets": [{"metric": "sales_uplift_pct", "target": "5"}],
            "measures": [
                {
                    "id": "big-order",
                    "kind": "threshold-gift",
                    "basis": "order",
                    "min": HAMPER_MIN,
                    "item": HAMPER,
                }
            ],
            "schedule": schedule,
            "budget": {"currency": CURRENCY, "cap": HAMPER_CAP},
        },
        UPGRADE: {
            "name": UPGRADE_NAME,
            "objective": "Welcome members to their new tier: the tier's upgrade gift on each promotion",
            "targets": [{"metric": "retention_pct", "target": "90"}],
            "measures": [{"id": "upgrade", "kind": "tier-upgrade-gift"}],
            "schedule": schedule,
            "budget": {"currency": CURRENCY, "cap": UPGRADE_CAP},
        },
    }


def orders_start(first_event: datetime, floor: datetime) -> datetime | None:
    """Where the orders must start so that every one falls in the programs' schedule and the
    quarter that will be closed (from ``floor``, its start); None: where they are is fine."""
    return None if first_event >= floor else floor + timedelta(seconds=1)


def clock_target(clock_now: datetime, quarter: Quarter) -> datetime | None:
    """Where to move the rewards clock to close ``quarter``; None when it is past its end already."""
    return None if clock_now >= quarter.end else quarter.end + SETTLE_MARGIN


# --- what was found and made -----------------------------------------------------------------------


@dataclass(frozen=True)
class DemoProgram:
    role: str  # REBATE, THRESHOLD or UPGRADE
    id: str
    name: str
    starts: datetime
    how: str  # "created and activated", "already active, used again", "draft activated"
    document: Mapping[str, Any]  # the version in force


@dataclass(frozen=True)
class DemoSet:
    programs: tuple[DemoProgram, ...]
    items_created: tuple[str, ...]
    items_kept: tuple[str, ...]
    clock: datetime | None  # the rewards clock when settable; None: it is the system clock

    def program(self, role: str) -> DemoProgram:
        return next(p for p in self.programs if p.role == role)

    @property
    def floor(self) -> datetime:
        """The earliest an order may be dated to count in every program."""
        return max(p.starts for p in self.programs)


def _amount(text: object) -> str:
    """A money amount from the API ("600.0000") in whole units when it is whole, else with cents."""
    try:
        value = Decimal(str(text)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return str(text)
    return f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.2f}"


def _percent(text: object) -> str:
    try:
        return f"{Decimal(str(text)).normalize():f} %"
    except (InvalidOperation, ValueError):
        return str(text)


def describe(document: Mapping[str, Any]) -> str:
    """A program document in a few words: what it gives, to whom, on what budget."""
    parts = []
    for measure in document.get("measures", []):
        kind = measure.get("kind")
        if kind == "rebate":
            steps = ", ".join(
                f"{_percent(s['value'])} from {_amount(s['min'])}" for s in measure.get("steps", [])
            )
            parts.append(f"a rebate of {steps} {CURRENCY} net spend a quarter, as {measure.get('pay_as')}")
        elif kind == "threshold-gift":
            parts.append(
                f"{measure.get('item')} for an order of {_amount(measure.get('min'))} {CURRENCY} or more"
            )
        elif kind == "tier-upgrade-gift":
            tiers = measure.get("tiers") or []
            parts.append(
                f"the tier's upgrade gift on a promotion{' to ' + ', '.join(tiers) if tiers else ''}"
            )
        else:
            parts.append(str(kind))
    group = document.get("target_group") or {}
    who = f"tiers {', '.join(group['tiers'])}" if group.get("tiers") else "every member"
    share = Decimal(str(document.get("control_share") or 0))
    if share:
        who += f", {share * 100:.0f} % held out as control group"
    budget = document.get("budget") or {}
    money = f"budget {_amount(budget.get('cap'))} {budget.get('currency', CURRENCY)}"
    return f"{'; '.join(parts)} ({who}; {money})"


def setup_lines(url: str, demo: DemoSet) -> list[str]:
    """What ``set_up`` found and made, as lines."""
    items = [*demo.items_created, *demo.items_kept]
    made = f"{len(demo.items_created)} new" if demo.items_created else "none new"
    lines = [f"rewards demo programs on {url}:"]
    lines.append(f"  catalog: {', '.join(items)} ({made}, stock {STOCK} each when created)")
    for program in demo.programs:
        lines.append(f"  '{program.name}' {program.how} ({program.id}):")
        lines.append(f"      {describe(program.document)}")
    if demo.clock is None:
        lines.append("  the rewards clock is the system clock: the quarter's rebates settle when it ends")
    return lines


# --- the live view's cells (pure) --------------------------------------------------------------------

REWARD_COLUMNS: tuple[tuple[str, str], ...] = (("rewards", ">"), ("gifts", "<"), ("rebates", "<"))
BUDGET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("allocated", ">"),
    ("committed", ">"),
    ("spent", ">"),
    ("remaining", ">"),
    ("refusals", "<"),
)


def reward_cells(body: Mapping[str, Any]) -> tuple[str, ...]:
    """A member's rewards (GET /v1/members/{m}/rewards): how many, the gifts by item, the rebates."""
    items = [r for r in body.get("items", []) if r.get("status") != "cancelled"]
    gifts = Counter(str(r.get("item_id")) for r in items if r.get("kind") == "gift")
    coupons = sum(1 for r in items if r.get("kind") == "coupon")
    rebates = [r for r in items if r.get("kind") == "rebate"]
    shown = [f"{item} x{n}" if n > 1 else item for item, n in gifts.items()]
    if coupons:
        shown.append(f"{coupons} coupon{'s' if coupons > 1 else ''}")
    points = sum(int(r.get("points") or 0) for r in rebates)
    cash = sum((Decimal(str(r["amount"])) for r in rebates if r.get("amount") is not None), Decimal(0))
    paid = [f"{points:,} points"] if points else []
    if cash:
        paid.append(f"{_amount(cash)} {CURRENCY}")
    return str(len(items)), ", ".join(shown) or NONE, ", ".join(paid) or NONE


def budget_cells(body: Mapping[str, Any]) -> tuple[str, ...]:
    """A program's budget (GET /v1/programs/{id}/budget) as the budget table's cells."""
    currency = str(body.get("currency", CURRENCY))
    reasons = body.get("refusals_by_reason") or {}
    refusals = str(body.get("refusals", 0))
    if reasons:
        refusals += " (" + ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items())) + ")"
    return (
        f"{_amount(body.get('allocated'))} {currency}",
        _amount(body.get("committed")),
        _amount(body.get("spent")),
        _amount(body.get("remaining")),
        refusals,
    )


Got = tuple[tuple[str, ...] | None, str]  # (cells, or None and why not)


def render_budgets(programs: Sequence[DemoProgram], got: Mapping[str, Got]) -> list[str]:
    """The programs' budgets as a table (a row per program), then a note per problem; pure."""
    heading = ["program budget", *(name for name, _ in BUDGET_COLUMNS)]
    aligns = ["<", *(align for _, align in BUDGET_COLUMNS)]
    rows, notes = [], []
    for program in programs:
        cells, note = got.get(program.id, (None, ""))
        filler = NONE if note else NOT_YET
        rows.append([program.name, *(cells or [filler] * len(BUDGET_COLUMNS))])
        if note:
            notes.append(f"  {program.name}: {note}")
    return [*_aligned(heading, aligns, rows), *notes]


def _aligned(heading: Sequence[str], aligns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in (heading, *rows)) for i in range(len(heading))]
    return [
        "  ".join(
            f"{cell:{align}{width}}" for cell, align, width in zip(row, aligns, widths, strict=True)
        ).rstrip()
        for row in (heading, *rows)
    ]


# --- the statement (pure) ------------------------------------------------------------------------------


def pick_statement(
    found: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], program_id: str, cycle: str
) -> tuple[str, Mapping[str, Any]] | None:
    """The statement to show: of the first member (in ``found``'s order, busiest first) with a paid
    one of the program for the cycle, else of the first with any."""
    fallback = None
    for member, statements in found:
        for statement in statements:
            if statement.get("program_id") != program_id or statement.get("cycle") != cycle:
                continue
            if statement.get("status") == "paid":
                return member, statement
            fallback = fallback or (member, statement)
    return fallback


def _day(text: object) -> str:
    try:
        return datetime.fromisoformat(str(text)).astimezone(UTC).strftime("%Y-%m-%d")
    except ValueError:
        return str(text)


def _moment(text: object) -> str:
    try:
        return datetime.fromisoformat(str(text)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(text)


def statement_lines(statement: Mapping[str, Any], program_name: str) -> list[str]:
    """A rebate statement (GET /v1/statements/{id}) in words and figures."""
    currency = str(statement.get("currency", CURRENCY))
    lines = statement.get("lines") or []
    orders = [line for line in lines if line.get("kind") == "order"]
    paid = sum((Decimal(str(line.get("paid") or 0)) for line in orders), Decimal(0))
    deducted = sum((Decimal(str(line.get("deducted") or 0)) for line in orders), Decimal(0))
    if statement.get("step_min") is None:
        step = "below the first step: no rebate"
    else:
        step = f"from {_amount(statement['step_min'])} {currency}: {_percent(statement.get('step_value'))}"
    out = [
        f"rebate statement of {statement.get('member_id')}, '{program_name}', {statement.get('cycle')} "
        f"({_day(statement.get('cycle_start'))} to {_day(statement.get('cycle_end'))}, end exclusive):",
        f"  orders        {statement.get('orders')}"
        + (
            f" (paid {_amount(paid)}, refunded or cancelled {_amount(deducted)} {currency})" if orders else ""
        ),
        f"  net spend     {_amount(statement.get('net_spend'))} {currency}",
        f"  step reached  {step}",
        f"  rebate        {_amount(statement.get('rebate'))} {currency}",
    ]
    for name, key in (
        ("adjustments", "adjustments"),
        ("brought fwd", "brought_forward"),
        ("carried", "carried"),
    ):
        if Decimal(str(statement.get(key) or 0)):
            out.append(f"  {name:<13} {_amount(statement.get(key))} {currency}")
    status = statement.get("status")
    out.append(f"  settled       {_moment(statement.get('settled_at'))}")
    if status == "paid" and statement.get("pay_as") == "points":
        out.append(
            f"  paid          {int(statement.get('points') or 0):,} points "
            f"({_amount(statement.get('payable'))} {currency} at {POINT_VALUE} {currency} a point)"
        )
    elif status == "paid":
        out.append(f"  paid          {_amount(statement.get('payable'))} {currency} to the wallet")
    else:
        why = f": {statement.get('refusal')}" if statement.get("refusal") else ""
        out.append(f"  status        {status}{why}")
    return out


def credit_lines(
    member: str,
    entry: Mapping[str, Any] | None,
    balance: Mapping[str, Any] | None,
    ahead_until: datetime | None,
) -> list[str]:
    """How points credited the rebate: its ledger entry and the balance after, as lines.
    ``ahead_until``: the rewards clock's time, when it runs ahead of points' (the demo moved it)."""
    if entry is None:
        return [
            f"points: no credit for the rebate in {member}'s ledger yet (points may still be catching up)"
        ]
    out = [f'points: +{int(entry.get("points", 0)):,} credited to {member}: "{entry.get("reason")}"']
    if balance is not None:
        out.append(
            f"  balance now: available {int(balance.get('available', 0)):,}, "
            f"pending {int(balance.get('pending', 0)):,}"
        )
        if ahead_until is not None and int(balance.get("pending", 0)) >= int(entry.get("points", 0)):
            out.append(
                f"  (pending until {ahead_until:%Y-%m-%d %H:%M} UTC: points dates the credit at the "
                "settlement's event time, from the rewards clock the demo moved ahead of points' clock)"
            )
    return out


# --- talking to the services -------------------------------------------------------------------------


def _problem(what: str, url: str, status: int, body: object) -> Unavailable:
    if status in (401, 403):
        return Unavailable(f"{what}: HTTP {status}, the API key was refused at {url} (use the crm key)")
    if status == 404:
        return Unavailable(f"{what}: HTTP 404 at {url} (not the rewards service, or an older one)")
    detail = body.get("detail") if isinstance(body, dict) else body
    return Unavailable(f"{what}: HTTP {status} at {url}: {str(detail)[:300]}")


def _json(response: Any) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text


async def _call(client: Any, method: str, url: str, what: str, **kwargs: Any) -> tuple[int, object]:
    import httpx

    try:
        response = await client.request(method, url, **kwargs)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise Unavailable(f"not reachable at {url} ({type(exc).__name__}; {what})") from exc
    return response.status_code, _json(response)


async def rewards_clock(client: Any, rewards: Api) -> datetime | None:
    """The rewards clock when it is settable (GET /v1/clock answers); None when it is not."""
    url = rewards.at("/v1/clock")
    status, body = await _call(client, "GET", url, "the rewards clock", headers=rewards.headers())
    if status == 404:
        return None
    if status != 200 or not isinstance(body, dict):
        raise _problem("the rewards clock", url, status, body)
    return datetime.fromisoformat(str(body["now"]))


async def set_up(client: Any, rewards: Api, now: datetime) -> DemoSet:
    """Create what is missing of the demo set (items that exist are kept; a program of the same name
    that is active is used again, a draft one activated); what there is. Unavailable: why not."""
    headers = rewards.headers()
    created, kept = [], []
    for item in catalog_items():
        url = rewards.at("/v1/catalog")
        status, body = await _call(client, "POST", url, "the catalog", json=item, headers=headers)
        if status == 201:
            created.append(item["item_id"])
        elif status == 409:
            kept.append(item["item_id"])
        else:
            raise _problem(f"catalog item {item['item_id']}", url, status, body)
    url = rewards.at("/v1/programs")
    status, listed = await _call(client, "GET", url, "the programs", headers=headers)
    if status != 200 or not isinstance(listed, dict):
        raise _problem("the programs", url, status, listed)
    existing = [p for p in listed.get("items", []) if isinstance(p, dict)]
    programs = []
    for role, document in program_documents(quarter_of(now).start).items():
        programs.append(await _program(client, rewards, role, document, existing))
    clock = await rewards_clock(client, rewards)
    return DemoSet(tuple(programs), tuple(created), tuple(kept), clock)


async def _program(
    client: Any, rewards: Api, role: str, document: dict[str, Any], existing: list[dict[str, Any]]
) -> DemoProgram:
    headers = rewards.headers()
    same = [p for p in existing if p.get("name") == document["name"]]
    active = [p for p in same if p.get("status") == "active"]
    draft = [p for p in same if p.get("status") == "draft"]
    if active:
        found, how = active[0], "already active, used again"
    else:
        if draft:
            found = draft[0]
        else:
            url = rewards.at("/v1/programs")
            status, body = await _call(client, "POST", url, document["name"], json=document, headers=headers)
            if status != 201 or not isinstance(body, dict):
                problems = body.get("problems") if isinstance(body, dict) else None
                if status == 422 and problems:
                    body = {"detail": "; ".join(map(str, problems))}
                raise _problem(f"program '{document['name']}'", url, status, body)
            found = body
        url = rewards.at(f"/v1/programs/{found['id']}/lifecycle")
        status, body = await _call(
            client, "POST", url, document["name"], json={"action": "activate"}, headers=headers
        )
        if status != 200:
            raise _problem(f"activating '{document['name']}'", url, status, body)
        how = "draft activated" if draft else "created and activated"
    kept = found.get("document") or document
    starts = datetime.fromisoformat(str(kept["schedule"]["starts"]))
    return DemoProgram(role, str(found["id"]), str(found["name"]), starts, how, kept)


async def _rewards_lag(bootstrap: str, prefix: str) -> int | None:
    """What the rewards service has not consumed yet of ``orders`` and ``loyalty.tiers`` (its consumer
    group, ``loyalty-rewards``, as the kit names it); None when the broker does not say."""
    from loyalty_cli.embedded import consumer_lag
    from loyalty_shared.events import ORDERS_TOPIC, TIERS_TOPIC

    group = f"{prefix}loyalty-rewards"
    try:
        lag = await asyncio.wait_for(
            consumer_lag(bootstrap, {group: [prefix + ORDERS_TOPIC, prefix + TIERS_TOPIC]}), timeout=10
        )
    except Exception:  # the broker not answering, or not saying: decide without it
        return None
    return lag.get(group)


async def _eventually(check: Callable[[], Awaitable[Any]], seconds: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = await check()
        if found or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(every)


async def _consumed(bootstrap: str, prefix: str, seconds: float) -> bool:
    """Wait until rewards has consumed every order and tier change (True; also when the broker does
    not say); False when it is still behind after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        lag = await _rewards_lag(bootstrap, prefix)
        if lag is None or lag == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.5)


@dataclass
class Closing:
    """What ``close_quarter`` needs: where things are, and who to look at."""

    rewards: Api
    points: Api | None
    demo: DemoSet
    quarter: Quarter
    members: Sequence[str]  # busiest first: whose statement to show
    bootstrap: str | None  # to wait until rewards consumed everything (None: do not wait)
    topic_prefix: str = ""
    say: Callable[[str], None] = print
    budgets: Callable[[], Awaitable[list[str]]] | None = None  # the budget table, read again
    transport: Any = None  # an httpx transport (tests)


def not_settable_note(quarter: Quarter) -> str:
    return (
        "rewards: its clock is not settable (LOYALTY_SETTABLE_CLOCK is off, as in production), so "
        f"{quarter.label} closes when it really ends, {quarter.end:%Y-%m-%d %H:%M} UTC: its rebate "
        "statements come then (GET /v1/members/{id}/statements)"
    )


def moved_note(quarter: Quarter, before: datetime, after: datetime) -> str:
    return (
        f"closing {quarter.label}: the rewards clock moved from {before:%Y-%m-%d %H:%M} to "
        f"{after:%Y-%m-%d %H:%M:%S} UTC (PUT /v1/clock: the dev platform's rewards clock is settable "
        "for demos, never in production)"
    )


def closed_before_note(quarter: Quarter, clock: datetime | None) -> str:
    """Why this run adds nothing to the quarter's statements: an earlier run closed it (``clock``:
    the rewards clock past its end already; None: it was moved now, but the quarter was settled
    before rewards restarted)."""
    if clock is not None:
        when = (
            f"its clock reads {clock:%Y-%m-%d %H:%M:%S} UTC, past the end of {quarter.label} already: "
            "an earlier run moved it (it only moves forward, until rewards restarts)"
        )
    else:
        when = f"{quarter.label} had been settled by an earlier run, before rewards restarted"
    return (
        f"rewards: {when}. A quarter is settled once, so this run's orders are not on its statements "
        "(where a member has one, the next quarter's statement adjusts for them); a fresh "
        "`loyalty dev --data-dir DIR` closes a quarter anew"
    )


def settlement_line(report: Mapping[str, Any]) -> str:
    return (
        f"settled (POST /v1/settlements): {report.get('cycles')} cycle(s), {report.get('statements')} "
        f"statement(s), {report.get('paid')} paid, {report.get('refused')} refused"
    )


async def close_quarter(closing: Closing) -> bool:
    """Move the rewards clock past the quarter's end, settle, show a statement and its credit in
    points. False (having said why) when it could not; never raises for a service that is down."""
    try:
        return await _close(closing)
    except Unavailable as exc:
        closing.say(f"rewards: {exc}; no rebate statement this run")
        return False


async def _close(c: Closing) -> bool:
    import httpx

    say, rewards, quarter = c.say, c.rewards, c.quarter
    if c.bootstrap is not None and not await _consumed(c.bootstrap, c.topic_prefix, LAG_WAIT_S):
        say(f"rewards: still consuming the orders after {LAG_WAIT_S:.0f} s; not closing {quarter.label}")
        return False
    async with httpx.AsyncClient(timeout=30, transport=c.transport) as client:
        clock = await rewards_clock(client, rewards)
        if clock is None:
            say(not_settable_note(quarter))
            return False
        say("")
        target = clock_target(clock, quarter)
        if target is None:
            say(closed_before_note(quarter, clock))
        else:
            url = rewards.at("/v1/clock")
            moved = {"now": target.isoformat()}
            status, body = await _call(client, "PUT", url, "the clock", json=moved, headers=rewards.headers())
            if status != 200:
                raise _problem("moving the rewards clock", url, status, body)
            say(moved_note(quarter, clock, target))
        url = rewards.at("/v1/settlements")
        status, report = await _call(client, "POST", url, "settlement", headers=rewards.headers())
        if status != 200 or not isinstance(report, dict):
            raise _problem("settlement", url, status, report)
        say(settlement_line(report))
        if target is not None and not report.get("cycles"):
            say(closed_before_note(quarter, None))
        if c.budgets is not None:
            for line in await c.budgets():
                say(line)
        say("")
        return await _show_statement(client, c, clock if target is None else target)


async def _show_statement(client: Any, c: Closing, clock: datetime) -> bool:
    rebate = c.demo.program(REBATE)
    found: list[tuple[str, list[dict[str, Any]]]] = []
    for member in c.members:  # busiest first, until one has a paid statement of the quarter
        url = c.rewards.at(f"/v1/members/{member}/statements")
        status, body = await _call(client, "GET", url, "statements", headers=c.rewards.headers())
        if status != 200 or not isinstance(body, dict):
            raise _problem("statements", url, status, body)
        found.append((member, body.get("items", [])))
        picked = pick_statement(found[-1:], rebate.id, c.quarter.label)
        if picked is not None and picked[1].get("status") == "paid":
            break
    picked = pick_statement(found, rebate.id, c.quarter.label)
    if picked is None:
        c.say(
            f"no rebate statement for {c.quarter.label} among {', '.join(c.members)}: none of them is in "
            f"'{rebate.name}' (tiers {', '.join(KEY_ACCOUNT_TIERS)}, not held out in its control group)"
        )
        return False
    member, listed = picked
    url = c.rewards.at(f"/v1/statements/{listed['statement_id']}")
    status, statement = await _call(client, "GET", url, "the statement", headers=c.rewards.headers())
    if status != 200 or not isinstance(statement, dict):
        raise _problem("the statement", url, status, statement)
    for line in statement_lines(statement, rebate.name):
        c.say(line)
    if statement.get("status") != "paid" or statement.get("pay_as") != "points" or c.points is None:
        return True
    entry, balance = await _credit(client, c.points, member, str(statement.get("reward_id")))
    ahead = clock if clock > datetime.now(UTC) + timedelta(minutes=1) else None
    for line in credit_lines(member, entry, balance, ahead):
        c.say(line)
    return True


async def _credit(
    client: Any, points: Api, member: str, reward_id: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The points ledger entry of the rebate (waiting a little for points to credit it) and the
    balance after; (None, None) when points does not answer."""
    import httpx

    async def entry() -> dict[str, Any] | None:
        try:
            response = await client.get(
                points.at(f"/v1/members/{member}/points/ledger"),
                params={"limit": 50},
                headers=points.headers(),
            )
        except httpx.HTTPError:
            return None
        body = _json(response)
        if response.status_code != 200 or not isinstance(body, dict):
            return None
        return next((e for e in body.get("items", []) if e.get("adjustment_id") == reward_id), None)

    found = await _eventually(entry, CREDIT_WAIT_S)
    try:
        response = await client.get(points.at(f"/v1/members/{member}/points"), headers=points.headers())
        balance = _json(response) if response.status_code == 200 else None
    except httpx.HTTPError:
        balance = None
    return found, balance if isinstance(balance, dict) else None
