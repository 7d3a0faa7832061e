"""``loyalty simulate``'s tour of the non-material half of the incentive scheme, in the rewards service,
after the orders: a product launch's priority window (who among the top accounts may buy before the
public date, by the rights their tier gave them, and one purchase under a right), honour
certificates and thank-you letters for the top accounts (rendered to PDF, saved, their paths
printed) and a customer exchange event filling up (more acceptances than seats: a waitlist, and a
decline that moves it up).

Each run adds its own launch and exchange event (named by the run's start), so simulate can run any
number of times. What decides or renders is pure (documents, rows, tables); ``show`` does the IO.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loyalty_cli.demo import NONE, Api, Unavailable, _aligned, _call, _problem, rewards_clock

LAUNCH_SKU = "X1-PRO"
LAUNCH_CATEGORY = "machines"
SEATS = 5  # the exchange event's seats: fewer than the members invited
INVITED = 8
HONOURED = 3  # the top accounts given a certificate and a letter
# How the top accounts are named on their documents: names in any script render (Noto Sans CJK).
COMPANIES = ("上海华强电子有限公司", "Nordlicht Maschinenbau GmbH", "Société Lumière SA")
CONTACTS = ("王伟", "Jana Petersen", "Élodie Marchand")
CERTIFICATE = {
    "kind": "certificate",
    "name": "Key account of the year (simulate)",
    "title": "Key account of the year",
    "body": "Awarded to {company}, represented by {member}, for {achievement} in {period}.",
    "signature": "Head of key account management",
}
LETTER = {
    "kind": "letter",
    "name": "Thank you, key account (simulate)",
    "title": "Thank you",
    "body": "Dear {member},\n\nthank you for the trust {company} placed in us in {period}. "
    "Partners like you make our work worthwhile; your account manager will be in touch about the "
    "year ahead.",
    "signature": "Head of key account management",
    "closing": "With our warm regards,",
}


# --- what is created (pure) ---------------------------------------------------------------------------


def launch_document(now: datetime) -> dict[str, Any]:
    """A launch whose priority window is open now and ends in two weeks."""
    return {
        "name": f"X1 Pro launch ({now:%Y-%m-%d %H:%M})",
        "skus": [LAUNCH_SKU, f"{LAUNCH_SKU}-KIT"],
        "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "public_at": (now + timedelta(days=14)).isoformat(),
    }


def gathering_document(now: datetime) -> dict[str, Any]:
    starts = (now + timedelta(days=21)).replace(hour=9, minute=0, second=0, microsecond=0)
    return {
        "kind": "exchange",
        "title": f"Key accounts exchange: the 2027 roadmap ({now:%Y-%m-%d %H:%M})",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=8)).isoformat(),
        "place": "Hamburg, Speicherstadt forum",
        "capacity": SEATS,
    }


def rights_cells(member: str, body: Mapping[str, Any]) -> tuple[str, ...]:
    """One member's row: their rights in force and whether they may buy the launch's SKU now."""
    held = [e for e in body.get("entitlements", []) if e.get("state") == "active"]
    names = ", ".join(sorted(str(e.get("name")) for e in held)) or NONE
    decision = body.get("decision") or {}
    if decision.get("allowed"):
        may = "yes, under a priority right" if decision.get("reason") == "priority-right" else "yes"
    else:
        may = {"no-right": "not before the public date", "before-priority-window": "not yet"}.get(
            str(decision.get("reason")), "no"
        )
    return (member, names, may)


def render_rights(rows: Sequence[tuple[str, ...]], launch: Mapping[str, Any]) -> list[str]:
    public = datetime.fromisoformat(str(launch["public_at"]))
    lines = [
        f"a priority window: {launch['name']}, for {', '.join(launch['skus'])}, public on {public:%Y-%m-%d} "
        "(POST /v1/launches); until then only members with a priority purchase right may buy "
        "(the tiers ladder gives one from Gold up)",
    ]
    lines += _aligned(("member", "rights in force", f"may buy {LAUNCH_SKU} now"), ("<", "<", "<"), rows)
    return lines


def launch_line(view: Mapping[str, Any]) -> str:
    return (
        f"  the launch so far (GET /v1/launches/{{id}}): {view.get('rights_used')} right(s) used by "
        f"{view.get('members')} member(s), {view.get('units')} unit(s)"
    )


def render_gathering(view: Mapping[str, Any], invitations: Sequence[Mapping[str, Any]]) -> list[str]:
    counts = view.get("counts", {})
    starts = datetime.fromisoformat(str(view["starts_at"]))
    lines = [
        f"{view['title']}, {starts:%Y-%m-%d %H:%M} UTC at {view.get('place')}: {view['capacity']} seats, "
        f"{counts.get('invited')} invited, {counts.get('accepted')} accepted, "
        f"{counts.get('waitlisted')} waitlisted, {counts.get('declined')} declined",
    ]
    rows = [
        (
            str(i["member_id"]),
            str(i["status"]) + (" (moved up)" if i.get("moved_up_at") else ""),
            NONE if i.get("waitlist_position") is None else str(i["waitlist_position"]),
            str(i.get("responded_via") or NONE),
        )
        for i in invitations
    ]
    lines += _aligned(("member", "status", "waitlist", "answered by"), ("<", "<", ">", "<"), rows)
    return lines


# --- the tour --------------------------------------------------------------------------------------


@dataclass
class Tour:
    rewards: Api
    members: Sequence[str]  # busiest first
    documents_dir: Path  # where the PDFs are saved
    say: Callable[[str], None] = print
    transport: Any = None  # an httpx transport (tests)
    done: list[str] = field(default_factory=list)  # what was shown: launch, documents, gathering


async def show(tour: Tour) -> list[str]:
    """The three parts, each on its own: one that fails says why and the others go on."""
    import httpx

    async with httpx.AsyncClient(timeout=30, transport=tour.transport) as client:
        try:
            now = await rewards_clock(client, tour.rewards) or datetime.now(UTC)
        except Unavailable as exc:
            tour.say(f"rewards: {exc}")
            return tour.done
        for part in (_launch, _documents, _gathering):
            tour.say("")
            try:
                await part(client, tour, now)
            except Unavailable as exc:
                tour.say(f"rewards: {exc}")
    return tour.done


async def _ask(
    client: Any,
    tour: Tour,
    method: str,
    path: str,
    what: str,
    *,
    expect: int = 200,
    key: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """One call to rewards with the crm key (and an Idempotency-Key when given): its JSON object
    when it answers ``expect``; Unavailable, saying what, when it does not."""
    url, headers = tour.rewards.at(path), tour.rewards.headers()
    if key is not None:
        headers["Idempotency-Key"] = key
    status, body = await _call(client, method, url, what, headers=headers, **kwargs)
    if status != expect or not isinstance(body, dict):
        raise _problem(what, url, status, body)
    return body


async def _launch(client: Any, tour: Tour, now: datetime) -> None:
    launch = await _ask(
        client, tour, "POST", "/v1/launches", "a launch", expect=201, json=launch_document(now)
    )
    rows, buyer = [], None
    for member in tour.members[:INVITED]:
        params = {"sku": LAUNCH_SKU, "category": LAUNCH_CATEGORY}
        body = await _ask(
            client, tour, "GET", f"/v1/members/{member}/entitlements", "a member's rights", params=params
        )
        rows.append(rights_cells(member, body))
        if buyer is None and (body.get("decision") or {}).get("allowed"):
            buyer = member
    for line in render_rights(rows, launch):
        tour.say(line)
    if buyer is not None:
        order = f"PRE-{launch['launch_id'][:8]}"
        body = {"sku": LAUNCH_SKU, "category": LAUNCH_CATEGORY, "order_id": order, "quantity": 1}
        path = f"/v1/members/{buyer}/entitlements/consume"
        await _ask(client, tour, "POST", path, "a pre-order", key=order, json=body)
        tour.say(
            f"  {buyer} pre-orders one {LAUNCH_SKU} under their right (POST /v1/members/{{id}}/"
            "entitlements/consume, with an Idempotency-Key; cancelling the order gives it back)"
        )
    url = tour.rewards.at(f"/v1/launches/{launch['launch_id']}")
    status, view = await _call(client, "GET", url, "the launch", headers=tour.rewards.headers())
    if status == 200 and isinstance(view, dict):  # the figures are a bonus: without them, go on
        tour.say(launch_line(view))
    tour.done.append("launch")


async def _template(client: Any, tour: Tour, document: Mapping[str, Any]) -> str:
    """The demo template's id (created the first time)."""
    listed = await _ask(client, tour, "GET", "/v1/document-templates", "the document templates")
    for found in listed.get("items", []):
        if isinstance(found, dict) and found.get("name") == document["name"]:
            return str(found["template_id"])
    made = await _ask(
        client, tour, "POST", "/v1/document-templates", "a document template", expect=201, json=dict(document)
    )
    return str(made["template_id"])


def document_line(view: Mapping[str, Any], path: Path) -> str:
    code = f", verification code {view['code']}" if view.get("code") else ""
    return f"  {view['kind']} for {view['member_id']} ({view['fields'].get('company')}){code}: {path}"


async def _documents(client: Any, tour: Tour, now: datetime) -> None:
    honoured = list(tour.members[:HONOURED])
    if not honoured:
        return
    for member, company, contact in zip(honoured, COMPANIES, CONTACTS, strict=False):
        body = {"member_name": contact, "company": company}
        await _ask(
            client, tour, "PUT", f"/v1/members/{member}/recipient", "a member's name on documents", json=body
        )
    certificate, letter = await _template(client, tour, CERTIFICATE), await _template(client, tour, LETTER)
    period = f"{now.year - 1}" if now.month == 1 and now.day == 1 else f"{now.year}"
    issued: list[dict[str, Any]] = []
    for rank, member in enumerate(honoured, start=1):
        fields = {
            "achievement": "being one of our top key accounts",
            "period": period,
            "figures": [{"label": "Rank by spend", "value": f"{rank} of {len(tour.members)}"}],
        }
        issued += await _issue(
            client, tour, certificate, [member], fields, f"cert-{now:%Y%m%d%H%M%S}-{member}"
        )
    issued += await _issue(client, tour, letter, honoured, {"period": period}, f"letter-{now:%Y%m%d%H%M%S}")
    tour.say(
        f"honour certificates and thank-you letters for the top {len(honoured)} accounts "
        "(POST /v1/documents; rendered to PDF in Noto Sans CJK by fpdf2), saved:"
    )
    tour.documents_dir.mkdir(parents=True, exist_ok=True)
    for view in issued:
        url = tour.rewards.at(f"/v1/documents/{view['document_id']}.pdf")
        try:
            response = await client.get(url, headers=tour.rewards.headers())
        except Exception as exc:
            raise Unavailable(f"a document's PDF at {url}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise _problem("a document's PDF", url, response.status_code, response.text)
        path = tour.documents_dir / f"{view['kind']}-{view['member_id']}-{view['document_id'][:8]}.pdf"
        path.write_bytes(response.content)
        tour.say(document_line(view, path))
    code = next((v["code"] for v in issued if v.get("code")), None)
    if code is not None:
        url = tour.rewards.at(f"/v1/certificates/{code}")
        status, shown = await _call(client, "GET", url, "a verification")  # public: no key
        if status == 200 and isinstance(shown, dict):
            tour.say(
                f"  anyone can check a certificate, with no key (GET /v1/certificates/{{code}}): "
                f"{shown.get('title')}, awarded to {shown.get('awarded_to')}, {shown.get('status')}"
            )
    tour.done.append("documents")


async def _issue(
    client: Any, tour: Tour, template: str, members: list[str], fields: dict[str, Any], key: str
) -> list[dict[str, Any]]:
    body = {"template_id": template, "member_ids": members, "fields": fields}
    made = await _ask(client, tour, "POST", "/v1/documents", "documents", expect=201, key=key, json=body)
    return [d for d in made.get("items", []) if isinstance(d, dict)]


async def _gathering(client: Any, tour: Tour, now: datetime) -> None:
    import httpx

    document = gathering_document(now)
    made = await _ask(client, tour, "POST", "/v1/gatherings", "an exchange event", expect=201, json=document)
    gid = made["id"]
    invited = list(tour.members[:INVITED])
    links = await _ask(
        client,
        tour,
        "POST",
        f"/v1/gatherings/{gid}/invitations",
        "the invitations",
        expect=201,
        key=f"invite-{gid}",
        json={"member_ids": invited},
    )
    tour.say(
        f"an exchange event (POST /v1/gatherings): {SEATS} seats, {len(invited)} top accounts invited, "
        "each with a single-use link; all of them accept through their links at once"
    )

    async def accept(link: Mapping[str, Any]) -> None:
        try:
            await client.post(tour.rewards.at(str(link["accept_path"])))  # no API key: the link is the key
        except httpx.HTTPError as exc:
            raise Unavailable(f"an invitation link: {type(exc).__name__}") from exc

    await asyncio.gather(*(accept(link) for link in links.get("invited", []) if link.get("accept_path")))
    listed = await _invitations(client, tour, gid)
    accepted = [i for i in listed if i["status"] == "accepted"]
    if accepted and any(i["status"] == "waitlisted" for i in listed):
        decliner = accepted[0]["member_id"]
        path = f"/v1/gatherings/{gid}/members/{decliner}/decline"
        answer = await _ask(client, tour, "POST", path, "a decline")
        moved = ", ".join(answer.get("moved_up", [])) or NONE
        tour.say(
            f"  {decliner} cannot come after all (the account manager declines for them): {moved} moves up"
        )
        listed = await _invitations(client, tour, gid)
    view = await _ask(client, tour, "GET", f"/v1/gatherings/{gid}", "the exchange event")
    for line in render_gathering(view, listed):
        tour.say(line)
    tour.done.append("gathering")


async def _invitations(client: Any, tour: Tour, gid: str) -> list[dict[str, Any]]:
    body = await _ask(client, tour, "GET", f"/v1/gatherings/{gid}/invitations", "the invitations")
    return [i for i in body.get("items", []) if isinstance(i, dict)]
