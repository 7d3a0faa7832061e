"""Honour certificates and thank-you letters, as real processes over a real broker and PostgreSQL:
issued by a program's rules once per rule and cycle (or promotion) under duplicates and replay, never
to the control group; by the CRM once per Idempotency-Key; rendered to PDF (a Chinese company name
and the verification code read back with a PDF text extractor); verified in public by their code
(only what the certificate shows; an unknown code a 404 that says nothing); bad input a 422 problem;
the CRM routes and the PDF closed to no key and to other scopes; no font a clear 503."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServiceProcessFactory
from harness import (
    PARTNER_KEY,
    SHOP_KEY,
    TOPICS,
    Infra,
    ServiceProcess,
    assert_problem,
    consumed,
    count,
    eventually,
    paid,
    publish,
    published,
    rewind_group,
    set_clock,
    tier_changed,
    unique,
)
from pypdf import PdfReader

from loyalty_cli.embedded import ensure_topics
from rewards_service.domain import holdout
from rewards_service.domain.documents import new_code

COMPANY = "上海华强电子有限公司"
Q1 = datetime(2027, 1, 1, tzinfo=UTC)
Q2 = datetime(2027, 4, 1, tzinfo=UTC)
FAST_RENDER = {"LOYALTY_DOCUMENT_RENDER_INTERVAL_S": "0.5"}

CERTIFICATE: dict[str, Any] = {
    "kind": "certificate",
    "name": "Key account of the quarter",
    "title": "Key account of {period}",
    "body": "In recognition of {achievement}.\n\nThank you, {member}, for your trust in {program}.",
    "signature": "Anna Schmidt, Head of Key Accounts",
}
LETTER: dict[str, Any] = {
    "kind": "letter",
    "name": "Quarterly thanks",
    "title": "Thank you, {company}",
    "body": "Dear {member},\n\nthank you for {period}: {figures}.",
    "signature": "Anna Schmidt",
    "closing": "With gratitude,",
}


@pytest.fixture(scope="module")
async def rewards(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServiceProcess]:
    """One rewards service for the tests that need nothing of their own (each uses its own members,
    templates and programs): a service start is most of a test's time."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    await ensure_topics(infra.bootstrap, [prefix + t for t in TOPICS], partitions=3)
    logs: Path = tmp_path_factory.mktemp("documents")
    env = {"LOYALTY_SETTABLE_CLOCK": "true", **FAST_RENDER}
    service = ServiceProcess(
        infra, await infra.new_database("rewards"), prefix, logs, extra_env=env, name="rewards"
    )
    await service.start()
    yield service
    service.kill()


def pdf_text(pdf: bytes) -> str:
    """The PDF's text, whitespace removed. (pypdf reads the two-byte codes of fpdf2's CID-keyed font
    as two one-byte codes, the first a NUL: dropped too. poppler's pdftotext reads it clean.)"""
    pages = PdfReader(io.BytesIO(pdf)).pages
    return "".join("".join(page.extract_text() for page in pages).replace("\x00", "").split())


async def template(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await client.post("/v1/document-templates", json=body)
    assert response.status_code == 201, response.text
    template_id: str = response.json()["template_id"]
    return template_id


async def activate(client: httpx.AsyncClient, document: dict[str, Any]) -> str:
    response = await client.post("/v1/programs", json=document)
    assert response.status_code == 201, response.text
    program_id: str = response.json()["id"]
    response = await client.post(f"/v1/programs/{program_id}/lifecycle", json={"action": "activate"})
    assert response.status_code == 200, response.text
    return program_id


async def documents_of(client: httpx.AsyncClient, member: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/members/{member}/documents")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def settle(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/v1/settlements")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_cycle_close_documents_once_per_rule_and_cycle_under_duplicates_and_replay(
    service_factory: ServiceProcessFactory,
) -> None:
    rewards = await service_factory("rewards", **FAST_RENDER)
    first, second, third = unique("M"), unique("M"), unique("M")
    async with rewards.client() as client:
        certificate, letter = await template(client, CERTIFICATE), await template(client, LETTER)
        named = await client.put(
            f"/v1/members/{first}/recipient", json={"member_name": "王伟", "company": COMPANY}
        )
        assert named.status_code == 200, named.text
        program_id = await activate(
            client,
            {
                "name": "Key accounts 2027",
                "objective": "recognise the biggest buyers",
                "measures": [
                    {
                        "id": "top-2",
                        "kind": "honour-certificate",
                        "template": certificate,
                        "trigger": "cycle-close-top-spend",
                        "top": 2,
                    },
                    {
                        "id": "thanks",
                        "kind": "thank-you-letter",
                        "template": letter,
                        "trigger": "cycle-close",
                    },
                ],
                "schedule": {
                    "starts": Q1.isoformat(),
                    "ends": "2028-01-01T00:00:00+00:00",
                    "cycle": "quarter",
                },
                "budget": {"currency": "EUR", "cap": "1000.00"},
            },
        )
    big = paid(first, unique("O"), "5000.00", time=Q1 + timedelta(days=3))
    resent = paid(first, big.data["order_id"], "5000.00", time=Q1 + timedelta(days=3))  # another event id
    orders = [
        big,
        big,
        resent,
        paid(second, unique("O"), "3000.00", time=Q1 + timedelta(days=4)),
        paid(third, unique("O"), "1000.00", time=Q1 + timedelta(days=5)),
        paid(third, unique("O"), "1000.00", time=Q1 + timedelta(days=6)),
    ]
    await publish(rewards.infra, rewards.prefix + "orders", orders)
    await eventually(lambda: consumed(rewards, *orders), what="the orders consumed")

    await set_clock(rewards, Q2 + timedelta(hours=1))
    async with rewards.client() as client:
        assert (await settle(client))["documents"] == 5  # two certificates, three letters
        assert (await settle(client))["documents"] == 0  # a closed cycle issues once
        mine = await documents_of(client, first)
    assert sorted((d["kind"], d["measure_id"], d["cycle"], d["program_id"]) for d in mine) == [
        ("certificate", "top-2", "2027-Q1", program_id),
        ("letter", "thanks", "2027-Q1", program_id),
    ]
    [won] = [d for d in mine if d["kind"] == "certificate"]
    assert won["title"] == "Key account of 2027-Q1"
    assert (won["fields"]["company"], won["fields"]["member"]) == (COMPANY, "王伟")
    assert won["fields"]["achievement"] == "Rank 1 of the top 2 by net spend in 2027-Q1"
    assert won["fields"]["figures"] == [
        {"label": "Rank", "value": "1 of 2"},
        {"label": "Net spend", "value": "5,000.00 EUR"},  # the order counted once
        {"label": "Orders", "value": "1"},
    ]
    certificates = await published(rewards, "loyalty.rewards", event_type="certificate.issued")
    assert sorted(e["subject"] for e in certificates) == sorted([first, second])
    assert all(e["data"]["code_hint"] == won["code"][-4:] for e in certificates if e["subject"] == first)
    letters = await published(rewards, "loyalty.rewards", event_type="letter.issued")
    assert sorted(e["subject"] for e in letters) == sorted([first, second, third])

    # a replay of every order from offset 0, and the cycle settled again: nothing more
    await rewards.stop()
    await rewind_group(rewards.infra, rewards.prefix + "loyalty-rewards", rewards.prefix + "orders")
    await rewards.start()
    late = paid(third, unique("O"), "1.00", time=Q2 + timedelta(days=1))
    await publish(rewards.infra, rewards.prefix + "orders", [late])
    await eventually(lambda: consumed(rewards, late), what="the replay consumed")
    async with rewards.client() as client:
        assert (await settle(client))["documents"] == 0
    assert await count(rewards, "SELECT count(*) FROM documents") == 5

    # rendered by the job, off the consumer's path; the PDF names the company and carries the code
    async def unrendered() -> bool:
        return await count(rewards, "SELECT count(*) FROM documents WHERE rendered_at IS NULL") == 0

    await eventually(unrendered, timeout=60, what="every document rendered")
    async with rewards.client() as client:
        response = await client.get(f"/v1/documents/{won['document_id']}.pdf")
        again = await client.get(f"/v1/documents/{won['document_id']}.pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-") and again.content == response.content
    text = pdf_text(response.content)
    assert COMPANY in text and "王伟" in text, text
    assert won["code"] in text and f"/v1/certificates/{won['code']}" in text, text
    assert "Keyaccountof2027-Q1" in text and "Rank1ofthetop2bynetspendin2027-Q1" in text, text


async def test_a_tier_certificate_once_per_promotion_and_never_to_the_control_group(
    rewards: ServiceProcess,
) -> None:
    async with rewards.client() as client:
        gold = await template(
            client, CERTIFICATE | {"title": "Welcome to Gold", "body": "{achievement}, {member}."}
        )
        program_id = await activate(
            client,
            {
                "name": "Gold recognition",
                "objective": "welcome our Gold members",
                "control_share": "0.5",
                "measures": [
                    {
                        "id": "gold",
                        "kind": "honour-certificate",
                        "template": gold,
                        "trigger": "tier-reached",
                        "tier": "Gold",
                    }
                ],
                "schedule": {"starts": "2026-01-01T00:00:00+00:00", "cycle": "quarter"},
                "budget": {"currency": "EUR", "cap": "1000.00"},
            },
        )
    members = [unique("M") for _ in range(12)]
    at = datetime(2026, 2, 10, tzinfo=UTC)
    events = []
    for member in members:
        change = tier_changed(member, "Silver", "Gold", "1.5", effective_at=at)
        resent = tier_changed(member, "Silver", "Gold", "1.5", effective_at=at)  # another event id
        silver = tier_changed(member, None, "Silver", "1.2", effective_at=at - timedelta(days=9))
        events += [silver, change, change, resent]
    await publish(rewards.infra, rewards.prefix + "loyalty.tiers", events)
    await eventually(lambda: consumed(rewards, *events), what="every tier change consumed")

    control = {m for m in members if holdout(program_id, m, Decimal("0.5"))}
    assert 0 < len(control) < len(members)
    async with rewards.client() as client:
        for member in members:
            issued = await documents_of(client, member)
            if member in control:
                assert issued == [], member
                continue
            [certificate] = issued
            assert (certificate["kind"], certificate["measure_id"], certificate["reason"]) == (
                "certificate",
                "gold",
                "promoted to Gold",
            )
            assert certificate["fields"]["member"] == member  # no name kept: the member's id
            assert certificate["title"] == "Welcome to Gold"
    groups = {
        r["member_id"]: r["grp"]
        for r in await rewards.fetch(
            "SELECT member_id, grp FROM participants WHERE program_id = $1", program_id
        )
    }
    assert {m for m, g in groups.items() if g == "control"} == control
    issued_events = await published(rewards, "loyalty.rewards", event_type="certificate.issued")
    assert sorted(e["subject"] for e in issued_events if e["subject"] in members) == sorted(
        set(members) - control
    )


async def test_the_crm_issues_once_per_key_and_anyone_verifies_only_what_the_certificate_shows(
    rewards: ServiceProcess,
) -> None:
    member = unique("M")
    body: dict[str, Any] = {
        "member_ids": [member],
        "fields": {
            "member": "王伟",
            "company": COMPANY,
            "achievement": "Key account of the year",
            "period": "2026",
            "figures": [{"label": "Net spend", "value": "1,250,000.00 EUR"}],
            "program": "Key Accounts",
        },
        "reason": "annual gala",
    }
    async with rewards.client() as client:
        certificate = await template(client, CERTIFICATE)
        body["template_id"] = certificate
        key = {"Idempotency-Key": unique("K")}
        response = await client.post("/v1/documents", json=body, headers=key)
        assert response.status_code == 201, response.text
        assert "Idempotent-Replayed" not in response.headers
        [issued] = response.json()["items"]
        replay = await client.post("/v1/documents", json=body, headers=key)
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["items"] == [issued]
        changed = body | {"reason": "another"}
        assert_problem(
            await client.post("/v1/documents", json=changed, headers=key), 422, "idempotency-key-reused"
        )
        assert (issued["kind"], issued["status"], issued["issued_by"][:8], issued["rendered"]) == (
            "certificate",
            "issued",
            "crm-key:",
            False,
        )
        code = issued["code"]
        pdf = await client.get(issued["pdf"])  # not rendered yet: rendered now
        assert pdf.status_code == 200, pdf.text
        text = pdf_text(pdf.content)
        assert COMPANY in text and code in text and "Keyaccountoftheyear" in text, text
        assert (await client.get(f"/v1/documents/{issued['document_id']}")).json()["rendered"] is True

    async with rewards.client(key=None) as public:
        response = await public.get(f"/v1/certificates/{code}")
        assert response.status_code == 200, response.text
        shown = response.json()
        assert shown == {
            "code": code,
            "status": "valid",
            "title": "Key account of 2026",
            "awarded_to": COMPANY,
            "member": "王伟",
            "achievement": "Key account of the year",
            "period": "2026",
            "issued_on": issued["fields"]["date"],
        }
        for private in (member, issued["document_id"], "1,250,000", "annual gala", certificate):
            assert private not in response.text
        lower = await public.get(f"/v1/certificates/{code.lower().replace('-', '')}")
        assert lower.status_code == 200 and lower.json() == shown

        # a code no certificate has: a 404 that says nothing (the same for any such code)
        unknown = [new_code(bytes([n] * 10)) for n in (1, 2)]
        typo = code[:-1] + ("A" if code[-1] != "A" else "B")  # its check character fails
        bodies = []
        for other in [*unknown, typo]:
            missing = await public.get(f"/v1/certificates/{other}")
            problem = assert_problem(missing, 404, "certificate-not-found")
            bodies.append({k: v for k, v in problem.items() if k != "instance"})
            assert COMPANY not in missing.text and member not in missing.text
        assert bodies[0] == bodies[1] == bodies[2]
        assert_problem(await public.get("/v1/certificates/not-a-code"), 422)

    async with rewards.client() as client:
        revoked = await client.post(
            f"/v1/documents/{issued['document_id']}/revoke", json={"reason": "in error"}
        )
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        again = await client.post(
            f"/v1/documents/{issued['document_id']}/revoke", json={"reason": "in error"}
        )
        assert again.status_code == 200 and again.json() == revoked.json()
    async with rewards.client(key=None) as public:
        assert (await public.get(f"/v1/certificates/{code}")).json()["status"] == "revoked"
    [event] = await published(rewards, "loyalty.rewards", event_type="document.revoked", member=member)
    assert (event["data"]["kind"], event["data"]["reason"]) == ("certificate", "in error")

    # a letter: no verification code; its PDF a letter's
    async with rewards.client() as client:
        letter = await template(client, LETTER)
        response = await client.post(
            "/v1/documents",
            json={"template_id": letter, "member_ids": [member], "fields": body["fields"]},
            headers={"Idempotency-Key": unique("K")},
        )
        assert response.status_code == 201, response.text
        [sent] = response.json()["items"]
        assert (sent["kind"], sent["code"], sent["title"]) == ("letter", None, f"Thank you, {COMPANY}")
        text = pdf_text((await client.get(sent["pdf"])).content)
        assert "Dear王伟" in text and "Withgratitude" in text, text
    [letter_event] = await published(rewards, "loyalty.rewards", event_type="letter.issued", member=member)
    assert letter_event["data"]["document_id"] == sent["document_id"]


async def test_bad_input_is_a_422_problem_and_the_crm_routes_refuse_other_keys(
    rewards: ServiceProcess,
) -> None:
    member = unique("M")
    async with rewards.client() as client:
        certificate = await template(client, CERTIFICATE)
        bad = await client.post(
            "/v1/document-templates", json=CERTIFICATE | {"title": "{nickname}", "signature": "x }"}
        )
        problem = assert_problem(bad, 422, "invalid-template")
        assert problem["problems"] == [
            "title: unknown placeholder {nickname}: the placeholders are {member}, {company}, {achievement}, "
            "{period}, {figures}, {program}, {date}",
            "signature: a stray '}' at character 3: write }} for a brace",
        ]
        assert_problem(
            await client.post("/v1/document-templates", json=CERTIFICATE | {"kind": "poster"}), 422
        )
        assert_problem(await client.post("/v1/document-templates", json=CERTIFICATE | {"title": "🎉"}), 422)
        assert_problem(
            await client.put(f"/v1/document-templates/{certificate}", json=LETTER), 409, "kind-changed"
        )
        edited = await client.put(
            f"/v1/document-templates/{certificate}", json=CERTIFICATE | {"title": "Top {period}"}
        )
        assert (edited.status_code, edited.json()["version"]) == (200, 2)

        def issue(body: dict[str, Any]) -> Any:
            return client.post("/v1/documents", json=body, headers={"Idempotency-Key": unique("K")})

        needs = assert_problem(
            await issue({"template_id": certificate, "member_ids": [member]}), 422, "fields-missing"
        )
        assert needs["problems"] == [f"{member}: the template needs period, achievement, member, program"]
        unknown_template = {"template_id": "00000000-0000-4000-8000-000000000000", "member_ids": [member]}
        assert_problem(await issue(unknown_template), 422, "template-not-found")
        several = {
            "template_id": certificate,
            "member_ids": [member, unique("M")],
            "fields": {"company": "ACME"},
        }
        assert_problem(await issue(several), 422, "names-for-several")
        assert_problem(await issue({"template_id": certificate, "member_ids": ["bad id!"]}), 422)
        assert_problem(await issue({"template_id": certificate, "member_ids": []}), 422)
        assert_problem(
            await issue({"template_id": certificate, "member_ids": [member], "fields": {"company": "💼"}}),
            422,
        )
        no_key = await client.post("/v1/documents", json={"template_id": certificate, "member_ids": [member]})
        assert_problem(no_key, 400, "idempotency-key-required")
        assert_problem(await client.put(f"/v1/members/{member}/recipient", json={}), 422, "no-name")
        assert_problem(await client.get(f"/v1/documents/{certificate}.pdf"), 404, "document-not-found")
        assert_problem(await client.get("/v1/documents/nope.pdf"), 422)
        fine = await issue(
            {
                "template_id": certificate,
                "member_ids": [member],
                "fields": {"member": "A", "achievement": "x", "period": "2026", "program": "P"},
            }
        )
        assert fine.status_code == 201, fine.text
        [document] = fine.json()["items"]
        assert document["template_version"] == 2 and document["title"] == "Top 2026"

    crm_routes = [
        ("GET", f"/v1/documents/{document['document_id']}.pdf"),
        ("GET", f"/v1/documents/{document['document_id']}"),
        ("GET", f"/v1/members/{member}/documents"),
        ("GET", "/v1/document-templates"),
        ("POST", "/v1/documents"),
        ("POST", f"/v1/documents/{document['document_id']}/revoke"),
        ("PUT", f"/v1/members/{member}/recipient"),
    ]
    for key, status in ((None, 401), (SHOP_KEY, 403), (PARTNER_KEY, 403), ("not-a-key", 401)):
        async with rewards.client(key=key) as other:
            for method, path in crm_routes:
                response = await other.request(method, path, json={})
                assert_problem(response, status)
                assert "%PDF" not in response.text


async def test_without_a_font_a_download_is_a_clear_503_and_nothing_breaks(
    service_factory: ServiceProcessFactory,
) -> None:
    rewards = await service_factory(
        "rewards", LOYALTY_FONT_CJK="/nonexistent/NotoSansCJK-Regular.ttc", **FAST_RENDER
    )
    async with rewards.client() as client:
        certificate = await template(client, CERTIFICATE)
        response = await client.post(
            "/v1/documents",
            json={
                "template_id": certificate,
                "member_ids": [unique("M")],
                "fields": {"member": "Ada", "achievement": "x", "period": "2026", "program": "P"},
            },
            headers={"Idempotency-Key": unique("K")},
        )
        assert response.status_code == 201, response.text  # issued: it renders once a font is there
        [issued] = response.json()["items"]
        problem = assert_problem(await client.get(issued["pdf"]), 503, "document-font-unavailable")
        assert "/nonexistent/NotoSansCJK-Regular.ttc" in problem["detail"]
        assert "LOYALTY_FONT_CJK" in problem["detail"]
        assert (await client.get("/readyz")).status_code == 200  # the service runs on
    await eventually(lambda: _logged(rewards, "documents cannot be rendered"), what="the job says why")
    assert await count(rewards, "SELECT count(*) FROM documents WHERE rendered_at IS NULL") == 1


async def _logged(service: ServiceProcess, text: str) -> bool:
    return text in service.log()
