"""Gatherings (training courses, customer exchange events) as real processes over a real broker and
PostgreSQL: 300 concurrent acceptances of 40 seats seat exactly 40 and waitlist the rest in the
order their answers committed; a decline moves the first waitlisted member up (published); a link
answers once, needs no key and an unknown one says nothing; invitations once per member and per
Idempotency-Key; a program's target group is its treatment group; check-in, start and cancel close
what they close; bad input and missing or wrong keys are refused with problems."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from harness import (
    CRM_KEY,
    PARTNER_KEY,
    SHOP_KEY,
    ServiceProcess,
    assert_problem,
    consumed,
    eventually,
    paid,
    publish,
    published,
    set_clock,
    unique,
)
from test_rewards_issuing import PROGRAM, Q1, setup

from rewards_service.domain import holdout

NOW = datetime.now(UTC)  # the services' clocks start at the system clock


def gathering_body(**changes: Any) -> dict[str, Any]:
    starts = (NOW + timedelta(days=10)).replace(microsecond=0)
    body: dict[str, Any] = {
        "kind": "training",
        "title": "Product training: the 2027 range",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=6)).isoformat(),
        "place": "Hamburg, Speicherstadt 4",
        "capacity": 40,
    }
    return body | changes


async def create(client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    response = await client.post("/v1/gatherings", json=gathering_body(**changes))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def invite(
    client: httpx.AsyncClient, gathering_id: str, *, key: str | None = None, **body: Any
) -> httpx.Response:
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    return await client.post(f"/v1/gatherings/{gathering_id}/invitations", json=body, headers=headers)


async def invited(client: httpx.AsyncClient, gathering_id: str, members: list[str]) -> dict[str, str]:
    """Invite the members; each one's link token."""
    response = await invite(client, gathering_id, member_ids=members)
    assert response.status_code == 201, response.text
    return {link["member_id"]: link["token"] for link in response.json()["invited"]}


async def answer(client: httpx.AsyncClient, gathering_id: str, member: str, action: str) -> httpx.Response:
    return await client.post(f"/v1/gatherings/{gathering_id}/members/{member}/{action}")


async def invitations(rewards: ServiceProcess, gathering_id: str) -> list[dict[str, Any]]:
    body: dict[str, Any] = await rewards.get(f"/v1/gatherings/{gathering_id}/invitations")
    items: list[dict[str, Any]] = body["items"]
    return items


async def events(rewards: ServiceProcess, event_type: str, member: str | None = None) -> list[dict[str, Any]]:
    return await published(rewards, "loyalty.rewards", event_type=event_type, member=member)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_300_concurrent_acceptances_of_40_seats_seat_40_and_waitlist_the_rest_in_commit_order(
    rewards: ServiceProcess,
) -> None:
    members = [f"M-{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(300)]
    async with rewards.client() as crm:
        gathering = await create(crm, capacity=40)
        gathering_id = gathering["id"]
        tokens = await invited(crm, gathering_id, members)
    assert set(tokens) == set(members)

    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    async with httpx.AsyncClient(base_url=rewards.url, timeout=60, limits=limits) as public:  # no key
        responses = await asyncio.gather(
            *(public.post(f"/v1/invitations/{tokens[m]}/accept") for m in members)
        )
    assert [r.status_code for r in responses] == [200] * 300, [
        r.text for r in responses if r.status_code != 200
    ]
    answered = dict(zip(members, (r.json() for r in responses), strict=True))
    seated = {m for m, a in answered.items() if a["status"] == "accepted"}
    waiting = {m: a["waitlist_position"] for m, a in answered.items() if a["status"] == "waitlisted"}
    assert (len(seated), len(waiting)) == (40, 260)
    assert sorted(waiting.values()) == list(range(1, 261))  # each told its place as it committed

    listed = await invitations(rewards, gathering_id)
    by_member = {i["member_id"]: i for i in listed}
    assert {m for m, i in by_member.items() if i["status"] == "accepted"} == seated
    queue = [i for i in listed if i["status"] == "waitlisted"]
    assert [i["waitlist_position"] for i in queue] == list(range(1, 261))  # no gaps, no duplicates
    assert {i["member_id"]: i["waitlist_position"] for i in queue} == waiting
    waitlisted_at = [at(i["waitlisted_at"]) for i in queue]
    assert waitlisted_at == sorted(waitlisted_at)  # the position is the order the answers committed in
    assert max(at(by_member[m]["accepted_at"]) for m in seated) <= waitlisted_at[0]
    assert all(i["responded_via"] == "link" and i["link_used_at"] for i in listed)
    order = await rewards.fetch(
        "SELECT member_id, waitlist_seq, waitlisted_at FROM gathering_invitations "
        "WHERE gathering_id = $1 AND status = 'waitlisted' ORDER BY waitlist_seq",
        gathering_id,
    )
    assert [r["member_id"] for r in order] == [i["member_id"] for i in queue]
    assert [r["waitlisted_at"] for r in order] == sorted(r["waitlisted_at"] for r in order)

    view = await rewards.get(f"/v1/gatherings/{gathering_id}")
    assert (view["seats_taken"], view["seats_left"]) == (40, 0)
    assert view["counts"] == {
        "invited": 300,
        "awaiting": 0,
        "accepted": 40,
        "waitlisted": 260,
        "declined": 0,
        "attended": 0,
    }
    assert await rewards.scalar("SELECT seats_taken FROM gatherings WHERE id = $1", gathering_id) == 40

    accepted = await events(rewards, "gathering.accepted")
    assert sorted(e["subject"] for e in accepted) == sorted(seated)
    assert all((e["data"]["via"], e["data"]["from_waitlist"]) == ("link", False) for e in accepted)
    waitlisted = await events(rewards, "gathering.waitlisted")
    assert {e["subject"]: e["data"]["position"] for e in waitlisted} == waiting
    assert len(waitlisted) == 260

    # a seat given back goes to the first waitlisted member at once (they accepted by link: the CRM
    # may still decline for them)
    first, fifth = queue[0]["member_id"], queue[4]["member_id"]
    leaving = sorted(seated)[0]
    async with rewards.client() as crm:
        response = await answer(crm, gathering_id, leaving, "decline")
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["moved_up"]) == ("declined", [first])
        assert response.json()["seats_left"] == 0
        response = await answer(crm, gathering_id, fifth, "decline")  # leaves the waitlist: nobody moves
        assert response.status_code == 200, response.text
        assert response.json()["moved_up"] == []
    after = await invitations(rewards, gathering_id)
    moved = next(i for i in after if i["member_id"] == first)
    assert (moved["status"], moved["waitlist_position"]) == ("accepted", None)
    assert moved["moved_up_at"] is not None
    queue_after = [i for i in after if i["status"] == "waitlisted"]
    assert [i["waitlist_position"] for i in queue_after] == list(range(1, 259))
    assert [i["member_id"] for i in queue_after] == [
        i["member_id"] for i in queue[1:] if i["member_id"] != fifth
    ]
    (moved_up,) = await events(rewards, "gathering.accepted", member=first)
    assert (moved_up["data"]["via"], moved_up["data"]["from_waitlist"]) == ("waitlist", True)
    assert moved_up["data"]["gathering_id"] == gathering_id
    (declined,) = await events(rewards, "gathering.declined", member=leaving)
    data = declined["data"]
    assert (
        data["gathering_id"],
        data["member_id"],
        data["via"],
        data["previous_status"],
        data["freed_seat"],
    ) == (
        gathering_id,
        leaving,
        "crm",
        "accepted",
        True,
    )
    (left_queue,) = await events(rewards, "gathering.declined", member=fifth)
    assert (left_queue["data"]["previous_status"], left_queue["data"]["freed_seat"]) == ("waitlisted", False)
    assert await rewards.scalar("SELECT seats_taken FROM gatherings WHERE id = $1", gathering_id) == 40


async def test_a_link_answers_once_needs_no_key_and_an_unknown_one_says_nothing(
    rewards: ServiceProcess,
) -> None:
    first, second = unique("M"), unique("M")
    async with rewards.client() as crm:
        gathering = await create(
            crm,
            kind="exchange",
            title="Key accounts meet-up",
            place=None,
            link="https://meet.example.com/ka-2027",
            capacity=1,
        )
        tokens = await invited(crm, gathering["id"], [first, second])
    assert all(len(t) == 22 for t in tokens.values())  # 128 bits, URL-safe base64
    stored = {
        r["member_id"]: r["token_hash"]
        for r in await rewards.fetch("SELECT member_id, token_hash FROM gathering_invitations")
    }
    assert stored == {m: hashlib.sha256(t.encode()).hexdigest() for m, t in tokens.items()}  # a digest only

    async with rewards.client(key=None) as public:
        shown = await public.get(f"/v1/invitations/{tokens[first]}")
        assert shown.status_code == 200, shown.text
        assert shown.json()["gathering"]["title"] == "Key accounts meet-up"
        assert (shown.json()["status"], shown.json()["link_used_at"]) == ("invited", None)

        accepted = await public.post(f"/v1/invitations/{tokens[first]}/accept")
        assert accepted.status_code == 200, accepted.text
        assert (accepted.json()["status"], accepted.json()["waitlist_position"]) == ("accepted", None)
        for again in ("accept", "decline"):
            used = await public.post(f"/v1/invitations/{tokens[first]}/{again}")
            assert "once" in assert_problem(used, 410, "invitation-link-used")["detail"]
        waitlisted = await public.post(f"/v1/invitations/{tokens[second]}/accept")
        assert (waitlisted.json()["status"], waitlisted.json()["waitlist_position"]) == ("waitlisted", 1)

        unknown = await public.post("/v1/invitations/" + "A" * 22 + "/accept")
        problem = assert_problem(unknown, 404, "invitation-link-not-found")
        assert problem["detail"] == "no such invitation link"
        for other in ("/v1/invitations/nope", "/v1/invitations/" + tokens[first][:-1] + "x"):
            assert assert_problem(await public.get(other), 404)["detail"] == "no such invitation link"
        assert_problem(await public.post("/v1/invitations/" + "A" * 101 + "/accept"), 422)

        # every CRM route refuses a caller without a key
        gathering_id = gathering["id"]
        for method, path in (
            ("POST", "/v1/gatherings"),
            ("GET", "/v1/gatherings"),
            ("GET", f"/v1/gatherings/{gathering_id}"),
            ("POST", f"/v1/gatherings/{gathering_id}/invitations"),
            ("GET", f"/v1/gatherings/{gathering_id}/invitations"),
            ("POST", f"/v1/gatherings/{gathering_id}/members/{first}/decline"),
            ("POST", f"/v1/gatherings/{gathering_id}/members/{first}/check-in"),
            ("POST", f"/v1/gatherings/{gathering_id}/cancel"),
            ("GET", f"/v1/members/{first}/gatherings"),
        ):
            assert_problem(await public.request(method, path, json={}), 401)
            for key in (PARTNER_KEY, SHOP_KEY, "not-a-key"):
                response = await public.request(
                    method, path, json={}, headers={"Authorization": f"Bearer {key}"}
                )
                assert_problem(response, 401 if key == "not-a-key" else 403)

    async with rewards.client(CRM_KEY) as crm:  # after the link: the CRM may change the answer
        response = await answer(crm, gathering["id"], first, "decline")
        assert response.status_code == 200, response.text
        assert response.json()["moved_up"] == [second]
    listed = {i["member_id"]: i for i in await invitations(rewards, gathering["id"])}
    assert (listed[first]["status"], listed[first]["responded_via"]) == ("declined", "crm")
    assert listed[second]["status"] == "accepted"


async def test_invitations_once_per_member_and_per_idempotency_key(rewards: ServiceProcess) -> None:
    a, b, c = unique("M"), unique("M"), unique("M")
    key = str(uuid.uuid4())
    async with rewards.client() as crm:
        gathering_id = (await create(crm))["id"]
        missing = await crm.post(f"/v1/gatherings/{gathering_id}/invitations", json={"member_ids": [a]})
        assert_problem(missing, 400, "idempotency-key-required")

        first = await invite(crm, gathering_id, key=key, member_ids=[b, a, a])
        assert first.status_code == 201, first.text
        assert "Idempotent-Replayed" not in first.headers
        body = first.json()
        assert [(i["member_id"], i["status"]) for i in body["invited"]] == sorted(
            [(a, "invited"), (b, "invited")]
        )
        assert (body["already_invited"], body["skipped"]) == ([], [])
        old = {i["member_id"]: i["token"] for i in body["invited"]}
        assert (
            body["invited"][0]["accept_path"]
            == f"/v1/invitations/{old[body['invited'][0]['member_id']]}/accept"
        )

        replay = await invite(crm, gathering_id, key=key, member_ids=[b, a, a])
        assert replay.status_code == 201, replay.text
        assert replay.headers.get("Idempotent-Replayed") == "true"
        again = replay.json()
        assert [i["member_id"] for i in again["invited"]] == [i["member_id"] for i in body["invited"]]
        new = {i["member_id"]: i["token"] for i in again["invited"]}
        assert all(new[m] != old[m] for m in old)  # a token is never shown twice: issued anew

        reused = await invite(crm, gathering_id, key=key, member_ids=[a])
        assert key in assert_problem(reused, 422, "idempotency-key-reused")["detail"]

        more = await invite(crm, gathering_id, member_ids=[a, b, c])  # another key: only c is new
        assert more.status_code == 201, more.text
        assert [i["member_id"] for i in more.json()["invited"]] == [c]
        assert more.json()["already_invited"] == sorted(
            [{"member_id": a, "status": "invited"}, {"member_id": b, "status": "invited"}],
            key=lambda x: x["member_id"],
        )

    async with rewards.client(key=None) as public:
        assert_problem(await public.post(f"/v1/invitations/{old[a]}/accept"), 404)  # replaced by the replay
        response = await public.post(f"/v1/invitations/{new[a]}/accept")
        assert response.status_code == 200, response.text
    async with rewards.client() as crm:
        replay = await invite(crm, gathering_id, key=key, member_ids=[b, a, a])
        links = {i["member_id"]: i for i in replay.json()["invited"]}
        assert (links[a]["token"], links[a]["status"]) == (None, "accepted")  # its link was used
        assert links[b]["token"] is not None

    invited_events = await events(rewards, "gathering.invited")
    assert sorted(e["subject"] for e in invited_events) == sorted([a, b, c])  # once each
    view = await rewards.get(f"/v1/gatherings/{gathering_id}")
    assert view["counts"]["invited"] == 3


async def test_a_programs_target_group_is_its_treatment_group(rewards: ServiceProcess) -> None:
    share = Decimal("0.5")
    program_id = await setup(rewards, copy.deepcopy(PROGRAM) | {"control_share": str(share)})
    members = [unique("M") for _ in range(16)]
    orders = [paid(m, unique("O"), "10.00", time=Q1) for m in members]  # reached: enrolled
    await publish(rewards.infra, rewards.prefix + "orders", orders)
    await eventually(lambda: consumed(rewards, *orders), what="every order consumed")
    groups = {
        r["member_id"]: r["grp"]
        for r in await rewards.fetch(
            "SELECT member_id, grp FROM participants WHERE program_id = $1", program_id
        )
    }
    treatment = sorted(m for m, g in groups.items() if g == "treatment")
    control = sorted(m for m, g in groups.items() if g == "control")
    assert treatment and control and len(groups) == 16

    async with rewards.client() as crm:
        gathering_id = (await create(crm, program_id=program_id))["id"]
        response = await invite(crm, gathering_id, program_id=program_id)
        assert response.status_code == 201, response.text
        assert [i["member_id"] for i in response.json()["invited"]] == treatment
        assert response.json()["skipped"] == []

        # named members of a program's gathering: its control group is skipped, never invited
        drawn_control = next(m for m in (unique("N") for _ in range(100)) if holdout(program_id, m, share))
        outsider = next(m for m in (unique("N") for _ in range(100)) if not holdout(program_id, m, share))
        named = await invite(
            crm, gathering_id, member_ids=[control[0], treatment[0], drawn_control, outsider]
        )
        assert named.status_code == 201, named.text
        assert [i["member_id"] for i in named.json()["invited"]] == [outsider]
        assert [i["member_id"] for i in named.json()["already_invited"]] == [treatment[0]]
        assert named.json()["skipped"] == [
            {"member_id": m, "reason": "control-group"} for m in sorted([control[0], drawn_control])
        ]

        other = await invite(crm, gathering_id, program_id=str(uuid.uuid4()))
        assert_problem(other, 422, "another-program")
        plain = (await create(crm))["id"]
        assert_problem(await invite(crm, plain, program_id=program_id), 422, "not-a-program-gathering")

    invited_members = {
        r["member_id"]
        for r in await rewards.fetch(
            "SELECT member_id FROM gathering_invitations WHERE gathering_id = $1", gathering_id
        )
    }
    assert invited_members == {*treatment, outsider}
    sent = await events(rewards, "gathering.invited")
    assert sorted(e["subject"] for e in sent) == sorted([*treatment, outsider])
    assert {e["data"]["program_id"] for e in sent} == {program_id}


async def test_check_in_start_and_cancel_close_what_they_close(rewards: ServiceProcess) -> None:
    seated, waiting, silent = unique("M"), unique("M"), unique("M")
    async with rewards.client() as crm:
        gathering = await create(crm, capacity=1)
        gathering_id = gathering["id"]
        later = await create(
            crm,
            starts_at=(NOW + timedelta(days=20)).isoformat(),
            ends_at=(NOW + timedelta(days=20, hours=2)).isoformat(),
        )
        await invited(crm, gathering_id, [seated, waiting, silent])
        await invited(crm, later["id"], [seated])
        assert (await answer(crm, gathering_id, seated, "accept")).json()["status"] == "accepted"
        retry = await answer(crm, gathering_id, seated, "accept")
        assert (retry.status_code, retry.json()["changed"]) == (200, False)
        assert (await answer(crm, gathering_id, waiting, "accept")).json()["waitlist_position"] == 1
        early = await answer(crm, gathering_id, seated, "check-in")
        assert_problem(early, 409, "check-in-not-open")
        assert_problem(await answer(crm, gathering_id, unique("M"), "accept"), 404, "invitation-not-found")
        assert_problem(await answer(crm, str(uuid.uuid4()), seated, "accept"), 404, "gathering-not-found")

        mine = (await crm.get(f"/v1/members/{seated}/gatherings")).json()["items"]
        assert [(g["gathering"]["id"], g["invitation"]["status"]) for g in mine] == [
            (gathering_id, "accepted"),
            (later["id"], "invited"),
        ]

        cancelled = await crm.post(f"/v1/gatherings/{later['id']}/cancel", json={"note": "venue closed"})
        assert cancelled.status_code == 200, cancelled.text
        assert (cancelled.json()["status"], cancelled.json()["cancel_note"]) == ("cancelled", "venue closed")
        again = await crm.post(f"/v1/gatherings/{later['id']}/cancel", json={})
        assert (again.status_code, again.json()["cancel_note"]) == (200, "venue closed")  # no change
        assert_problem(await answer(crm, later["id"], seated, "accept"), 409, "gathering-cancelled")
        assert_problem(await invite(crm, later["id"], member_ids=[silent]), 409, "gathering-cancelled")

        await set_clock(rewards, at(gathering["starts_at"]) + timedelta(minutes=10))  # it has started
        assert_problem(await answer(crm, gathering_id, silent, "accept"), 409, "gathering-started")
        assert_problem(await answer(crm, gathering_id, seated, "decline"), 409, "gathering-started")
        assert_problem(await invite(crm, gathering_id, member_ids=[unique("M")]), 409, "gathering-started")
        assert_problem(
            await crm.post(f"/v1/gatherings/{gathering_id}/cancel", json={}), 409, "gathering-started"
        )
        assert_problem(await answer(crm, gathering_id, waiting, "check-in"), 409, "no-seat")
        assert_problem(await answer(crm, gathering_id, silent, "check-in"), 409, "no-seat")
        checked = await answer(crm, gathering_id, seated, "check-in")
        assert checked.status_code == 200, checked.text
        assert checked.json()["status"] == "attended"
        assert (await answer(crm, gathering_id, seated, "check-in")).json()["changed"] is False
        assert_problem(await answer(crm, gathering_id, seated, "decline"), 409, "already-attended")

    view = await rewards.get(f"/v1/gatherings/{gathering_id}")
    assert view["counts"] == {
        "invited": 3,
        "awaiting": 1,
        "accepted": 0,
        "waitlisted": 1,
        "declined": 0,
        "attended": 1,
    }
    assert (view["seats_taken"], view["seats_left"]) == (1, 0)
    (attended,) = await events(rewards, "gathering.attended", member=seated)
    data = attended["data"]
    assert (data["gathering_id"], data["kind"], data["title"], data["member_id"], data["program_id"]) == (
        gathering_id,
        "training",
        gathering["title"],
        seated,
        None,
    )
    assert at(data["attended_at"]) >= at(gathering["starts_at"])
    assert at(data["ends_at"]) == at(gathering["ends_at"])
    (cancel_event,) = await events(rewards, "gathering.cancelled")
    assert cancel_event["subject"] == f"gathering:{later['id']}"
    assert (cancel_event["data"]["note"], cancel_event["data"]["accepted"]) == ("venue closed", 0)


async def test_bad_input_is_a_422_problem(rewards: ServiceProcess) -> None:
    past = NOW - timedelta(days=1)
    async with rewards.client() as crm:
        for changes, code in (
            (
                {"starts_at": past.isoformat(), "ends_at": (past + timedelta(hours=1)).isoformat()},
                "invalid-schedule",
            ),
            ({"ends_at": gathering_body()["starts_at"]}, "invalid-schedule"),
            ({"ends_at": (NOW + timedelta(days=50)).isoformat()}, "invalid-schedule"),
            ({"place": None}, "validation-error"),
            ({"capacity": 0}, "validation-error"),
            ({"kind": "party"}, "validation-error"),
            ({"starts_at": "2027-03-01T10:00:00"}, "validation-error"),  # no offset
            ({"title": ""}, "validation-error"),
            ({"link": "meet.example.com"}, "validation-error"),
            ({"starts_at": "9999-12-31T23:00:00-05:00"}, "validation-error"),
            ({"program_id": str(uuid.uuid4())}, "program-not-found"),
        ):
            response = await crm.post("/v1/gatherings", json=gathering_body(**changes))
            assert_problem(response, 422, code)
        gathering_id = (await create(crm))["id"]
        for body in (
            {},
            {"member_ids": []},
            {"member_ids": ["a b"]},
            {"member_ids": ["M-1"], "program_id": str(uuid.uuid4())},
        ):
            assert_problem(await invite(crm, gathering_id, **body), 422, "validation-error")
        assert_problem(await invite(crm, str(uuid.uuid4()), member_ids=["M-1"]), 404, "gathering-not-found")
        assert_problem(await crm.get("/v1/gatherings/not-a-uuid"), 422, "validation-error")
        assert_problem(await crm.get(f"/v1/gatherings/{uuid.uuid4()}"), 404, "gathering-not-found")
        assert_problem(await crm.get("/v1/gatherings?kind=party"), 422, "validation-error")
        assert_problem(await answer(crm, gathering_id, "a b", "accept"), 422, "validation-error")
        listed = (await crm.get("/v1/gatherings")).json()["items"]
        assert [g["id"] for g in listed] == [gathering_id]  # nothing refused was written
