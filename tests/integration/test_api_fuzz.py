"""API fuzzing: schemathesis generates requests from each service's own OpenAPI (/openapi.json) and
sends them to the service as a real process (real PostgreSQL, real broker), three ways: with a crm
key, with a partner key, with no key. DESIGN.md guarantees 5 (least privilege) and 6 (clear errors).

Every response must: never be a 5xx; have a documented status code, content type and body (the
schemathesis conformance checks); be a problem (application/problem+json) when it is a 4xx. Without a
key every operation is a 401; a partner key is a 403 everywhere but the reads in ``PARTNER_READS``,
and those are a 404 for a member not linked to the partner; the operations in ``PUBLIC`` need no key
and are never a 401 or 403. /healthz, /readyz and /metrics are public and not in the OpenAPI; the settable clock (/v1/clock) is not mounted (LOYALTY_SETTABLE_CLOCK=false).

Driven from the test through schemathesis' Python API (the operations as hypothesis strategies, each
case sent and validated here), not its pytest plugin or CLI: the service only exists once the async
fixtures have started it, and the authorisation checks below need to know the mode and the member.
Bounded and reproducible: ``MAX_EXAMPLES`` per operation and generation mode, derandomized, no
hypothesis database. ``LOYALTY_FUZZ_SCALE=10`` fuzzes ten times as much (a deeper run, by hand).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import requests
import schemathesis
from conftest import ServiceProcessFactory
from harness import CRM_KEY, OTHER_PARTNER_KEY, PARTNER_KEY, SHOP_KEY, consumed, eventually, publish
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from loyalty_shared.envelope import new_event
from loyalty_shared.events import PartnerLinked

pytestmark = pytest.mark.fuzz

FUZZED_SERVICES = ("points", "tiers", "rewards")  # a new service: add its name here
MODES = ("crm", "partner", "no-key")
SCALE = int(os.environ.get("LOYALTY_FUZZ_SCALE", "1"))
MAX_EXAMPLES = {"crm": 25 * SCALE, "partner": 10 * SCALE, "no-key": 10 * SCALE}  # per operation and mode
KEYS = {"crm": CRM_KEY, "partner": PARTNER_KEY, "no-key": None}

# What a partner key may call (README, REST API): the points reads and the reward balances of members
# linked to it.
PARTNER_READS = frozenset(
    {
        "GET /v1/members/{member_id}/points",
        "GET /v1/members/{member_id}/points/ledger",
        "GET /v1/members/{member_id}/balances",
    }
)
# What needs no key (a key of any scope changes nothing): never a 401 or 403, whoever calls.
PUBLIC = frozenset(
    {
        "GET /v1/certificates/{code}",  # a certificate's verification: the code printed on it
        "GET /v1/invitations/{token}",  # a member's gathering invitation link: the token is the key
        "POST /v1/invitations/{token}/accept",
        "POST /v1/invitations/{token}/decline",
    }
)
# Public operations whose path is a secret (an invitation link's token, 128 random bits): a generated
# one is unknown, so a 404 that says nothing (a 422 when it is not even well-formed), whoever calls.
SECRET_PATHS = frozenset(
    {
        "GET /v1/invitations/{token}",
        "POST /v1/invitations/{token}/accept",
        "POST /v1/invitations/{token}/decline",
    }
)
SHOP_ONLY = (
    "checkout"  # the tag of the operations only the e-commerce backend calls (the crm run uses its key)
)
PARTNER_ID = "P-1"  # PARTNER_KEY's partner; OTHER_PARTNER_KEY is P-2's
PARTNER_LINK = "/v1/partners/{partner_id}/members/{member_id}"
KNOWN_MEMBER = "M-fuzz-1"  # linked to P-1 where partner links exist; the crm run writes, then reads it

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
PROBLEM_JSON = "application/problem+json"

# writes before reads, so the reads of KNOWN_MEMBER find something; removals last
METHOD_ORDER = {"put": 0, "post": 0, "get": 1, "delete": 2}


@dataclass(frozen=True)
class Run:
    """One way to call one operation: a key, optionally a fixed member, and what must hold."""

    key: str | None
    examples: int
    expect: Callable[[Case, Response], None]
    member: str | None = None


def key_header(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def is_negative(case: Case) -> bool:
    return case.meta is not None and case.meta.generation.mode is GenerationMode.NEGATIVE


def expect_status(*statuses: int) -> Callable[[Case, Response], None]:
    def check(case: Case, response: Response) -> None:
        assert response.status_code in statuses, f"expected one of {statuses}, got {response.status_code}"

    return check


def not_refused(case: Case, response: Response) -> None:
    assert response.status_code not in (401, 403), f"a permitted key was refused: {response.status_code}"


def not_linked(case: Case, response: Response) -> None:
    """A partner reading a member that is not its own: 404 (422 first when the request is invalid)."""
    allowed = (404, 422) if is_negative(case) else (404,)
    assert response.status_code in allowed, f"expected {allowed}, got {response.status_code}"


def linked(case: Case, response: Response) -> None:
    assert response.status_code not in (401, 403, 404), (
        f"partner refused its own member: {response.status_code}"
    )


def runs(mode: str, operation: schemathesis.APIOperation) -> Iterator[Run]:
    key, examples = KEYS[mode], MAX_EXAMPLES[mode]
    if operation.label in SECRET_PATHS:
        yield Run(key, examples, expect_status(404, 422))
    elif operation.label in PUBLIC:
        yield Run(key, examples, not_refused)
    elif mode == "no-key":
        yield Run(key, examples, expect_status(401))
    elif mode == "partner" and operation.label not in PARTNER_READS:
        yield Run(key, examples, expect_status(403))
    elif mode == "partner":
        yield Run(key, examples, not_linked)  # generated member ids: not linked to P-1
        yield Run(OTHER_PARTNER_KEY, examples, not_linked, member=KNOWN_MEMBER)
        yield Run(key, examples, linked, member=KNOWN_MEMBER)
    else:
        if SHOP_ONLY in operation.definition.raw.get("tags", []):
            key = SHOP_KEY
        yield Run(key, examples, not_refused)
        if "{member_id}" in operation.path:
            yield Run(key, examples, not_refused, member=KNOWN_MEMBER)


def assert_problem_body(response: Response) -> None:
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith(PROBLEM_JSON), f"a {response.status_code} that is not a problem"
        body = response.json()
        assert body["status"] == response.status_code, body
        assert body["type"] and body["title"] and body["detail"], body


def fuzz_operation(
    operation: schemathesis.APIOperation,
    run: Run,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
) -> None:
    params = {"member_id": run.member} if run.member else None
    strategy = operation.as_strategy(mode, path_parameters=params)

    @settings(
        max_examples=run.examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(strategy)
    def fuzz(case: Case) -> None:
        response = case.call(base_url=base_url, session=session, headers=key_header(run.key), timeout=30)
        case.validate_response(response, checks=CHECKS, headers=key_header(run.key))
        try:
            assert_problem_body(response)
            run.expect(case, response)
        except AssertionError as exc:
            curl = case.as_curl_command(headers=key_header(run.key))
            raise AssertionError(f"{exc}\n{response.text[:500]}\n{curl}") from None

    try:
        fuzz()
    except Unsatisfiable:
        if mode is not GenerationMode.NEGATIVE:
            raise  # no invalid request exists (no parameters, no body): nothing to fuzz negatively


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", FUZZED_SERVICES)
async def test_api_fuzz(name: str, mode: str, service_factory: ServiceProcessFactory) -> None:
    service = await service_factory(name, LOYALTY_SETTABLE_CLOCK="false")
    async with service.client(CRM_KEY) as crm:
        openapi = (await crm.get("/openapi.json")).json()
        if PARTNER_LINK in openapi["paths"]:
            path = PARTNER_LINK.format(partner_id=PARTNER_ID, member_id=KNOWN_MEMBER)
            assert (await crm.put(path)).status_code == 204
        elif name == "rewards":  # rewards learns partner links from the points service's events
            data = PartnerLinked(partner_id=PARTNER_ID, member_id=KNOWN_MEMBER, at=datetime.now(UTC))
            link = new_event("partner.linked", "urn:loyalty:points", KNOWN_MEMBER, data)
            await publish(service.infra, service.prefix + "loyalty.points", [link])
            await eventually(lambda: consumed(service, link), what="the partner link consumed")
    schema = schemathesis.openapi.from_dict(openapi)
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()), key=lambda op: METHOD_ORDER[op.method]
    )
    assert operations
    failures: list[str] = []
    with requests.Session() as session:
        for operation in operations:
            for run in runs(mode, operation):
                for generation in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    try:
                        fuzz_operation(operation, run, generation, service.url, session)
                    except (Exception, BaseExceptionGroup) as exc:  # a FailureGroup is a BaseExceptionGroup
                        failures.append(f"{operation.label} ({generation.value}, member {run.member}): {exc}")
    report = "\n\n".join(failures)
    assert not failures, (
        f"{len(failures)} failing operation runs:\n\n{report}\n\n{name} log:\n{service.log()}"
    )
