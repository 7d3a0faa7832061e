"""Honour certificates and thank-you letters, the pure parts: template placeholders (filling and
validation), a document's fields, verification codes (format, check character), the program rules
that issue documents (top N by spend, years of partnership, milestones, tier reached), their
measures in the program document, and the lifecycle."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from rewards_service.domain import program_document, program_from_document, validate_program
from rewards_service.domain.documents import (
    CODE_ALPHABET,
    CODE_PATTERN,
    Fields,
    Figure,
    HonourCertificate,
    Spender,
    Template,
    ThankYouLetter,
    at_cycle_close,
    check_character,
    default_achievement,
    field_problems,
    fields_document,
    fields_from_document,
    figures_text,
    fill,
    filled,
    milestone_due,
    missing_fields,
    money_figure,
    new_code,
    normalised_code,
    partnership_due,
    partnership_years,
    placeholders,
    revoked,
    template_placeholders,
    template_problems,
    tier_reached,
    top_by_spend,
)

TEMPLATE_ID = "0b6f3a52-7c1e-4d8a-9f2b-5e6d7c8b9a01"
CERTIFICATE = Template(
    "certificate",
    "Key account of the year",
    "Key account of the year {period}",
    "In recognition of {achievement}.\n\nThank you, {member}, for your trust.",
    "Anna Schmidt, Head of Key Accounts",
)
LETTER = Template(
    "letter",
    "Quarterly thanks",
    "Thank you, {company}",
    "Dear {member},\n\nYour {figures}.",
    "Anna",
    "Yours,",
)
FIELDS = Fields(
    member="Wang Wei",
    company="上海华强电子有限公司",
    achievement="rank 1 of the top 3 by net spend",
    period="2026",
    figures=(Figure("Net spend", "1,250,000.00 EUR"), Figure("Orders", "42")),
    program="Key accounts 2026",
    date="2027-01-01",
)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- placeholders ------------------------------------------------------------------------------


def test_placeholders_are_listed_once_in_order_of_first_use() -> None:
    assert placeholders("{period}: {member} of {company}, {member}") == ["period", "member", "company"]
    assert placeholders("no placeholder at all") == []
    assert placeholders("{{literal}} braces") == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Dear {name}", "unknown placeholder {name}"),
        ("Dear {Member}", "unknown placeholder {Member}"),
        ("Dear {}", "unknown placeholder {}"),
        ("a stray { here", "a stray '{' at character 9"),
        ("a stray } here", "a stray '}' at character 9"),
        ("unclosed {member", "a stray '{' at character 10"),
        ("{member}}", "a stray '}' at character 9"),
    ],
)
def test_a_malformed_placeholder_is_refused_with_where_it_is(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        placeholders(text)


def test_fill_replaces_placeholders_and_unescapes_braces() -> None:
    values = {"member": "Wang Wei", "period": "2026-Q3"}
    assert fill("{member}, {{member}} in {period}", values) == "Wang Wei, {member} in 2026-Q3"
    assert fill("{{}}", {}) == "{}"
    with pytest.raises(KeyError):
        fill("{company}", values)
    with pytest.raises(ValueError, match="unknown placeholder"):
        fill("{nope}", values)


def test_a_value_is_never_read_as_a_placeholder() -> None:
    assert fill("{member}", {"member": "{company} {{x}}"}) == "{company} {{x}}"


def test_a_valid_template_has_no_problem_and_lists_its_placeholders() -> None:
    assert template_problems(CERTIFICATE) == []
    assert template_problems(LETTER) == []
    assert template_placeholders(CERTIFICATE) == ["period", "achievement", "member"]
    assert template_placeholders(LETTER) == ["company", "member", "figures"]


def test_every_problem_of_a_template_is_listed() -> None:
    bad = Template("certificate", " ", "{name}", "x" * 4001, "{", closing="Yours,")
    assert template_problems(bad) == [
        "name must be text of 1 to 200 characters",
        "title: unknown placeholder {name}: the placeholders are {member}, {company}, {achievement}, "
        "{period}, {figures}, {program}, {date}",
        "body must be text of 1 to 4000 characters",
        "signature: a stray '{' at character 1: write {{ for a brace",
        "closing is a letter's: a certificate has none",
    ]
    assert template_problems(Template("poster", "n", "t", "b", "s")) == [  # type: ignore[arg-type]
        "kind must be one of certificate, letter, got 'poster'"
    ]


# --- fields ------------------------------------------------------------------------------------


def test_fields_give_the_placeholders_their_values() -> None:
    assert FIELDS.values() == {
        "member": "Wang Wei",
        "company": "上海华强电子有限公司",
        "achievement": "rank 1 of the top 3 by net spend",
        "period": "2026",
        "figures": "Net spend: 1,250,000.00 EUR · Orders: 42",
        "program": "Key accounts 2026",
        "date": "2027-01-01",
    }
    assert Fields(date="").values() == {}
    assert figures_text(()) == ""


def test_the_recipient_is_the_company_else_the_member() -> None:
    assert FIELDS.recipient == "上海华强电子有限公司"
    assert Fields(member="Wang Wei").recipient == "Wang Wei"
    assert Fields().recipient == ""


def test_missing_fields_are_the_placeholders_without_a_value_and_a_recipient() -> None:
    assert missing_fields(CERTIFICATE, FIELDS) == []
    assert missing_fields(CERTIFICATE, Fields(company="ACME")) == ["period", "achievement", "member"]
    plain = Template("certificate", "n", "Thank you", "for everything", "Anna")
    assert missing_fields(plain, Fields()) == ["member or company"]
    assert missing_fields(plain, Fields(company="ACME")) == []


def test_filled_reads_as_the_document_does() -> None:
    document = filled(CERTIFICATE, FIELDS)
    assert document.title == "Key account of the year 2026"
    assert document.recipient == "上海华强电子有限公司"
    assert document.member == "Wang Wei"  # printed under the company's name
    assert document.body == (
        "In recognition of rank 1 of the top 3 by net spend.",
        "Thank you, Wang Wei, for your trust.",
    )
    assert document.figures == FIELDS.figures
    assert (document.signature, document.closing, document.date) == (
        "Anna Schmidt, Head of Key Accounts",
        None,
        "2027-01-01",
    )
    letter = filled(LETTER, FIELDS)
    assert letter.body == ("Dear Wang Wei,", "Your Net spend: 1,250,000.00 EUR · Orders: 42.")
    assert letter.closing == "Yours,"
    same_name = filled(LETTER, Fields(member="ACME", company="ACME", figures=FIELDS.figures, date="d"))
    assert same_name.member is None  # not printed twice
    with pytest.raises(ValueError, match="needs a value for: period, achievement"):
        filled(CERTIFICATE, Fields(member="Wang Wei"))


def test_fields_survive_their_json_document() -> None:
    assert fields_from_document(fields_document(FIELDS)) == FIELDS
    assert fields_from_document({}) == Fields()


def test_field_limits() -> None:
    assert field_problems(FIELDS) == []
    too_much = Fields(
        member=" ",
        company="x" * 301,
        figures=(Figure("", "1"), Figure("a" * 61, "1"), *[Figure("a", "b")] * 7),
    )
    assert field_problems(too_much) == [
        "member must be text of 1 to 300 characters",
        "company must be text of 1 to 300 characters",
        "figures takes at most 8 figures",
        "figures[0] needs a label and a value",
        "figures[1]: label and value take at most 60 characters each",
    ]


def test_money_as_a_document_prints_it() -> None:
    assert money_figure(Decimal("1250000"), "EUR") == "1,250,000.00 EUR"
    assert money_figure(Decimal("0.005"), "CNY") == "0.00 CNY"  # half-even, as Decimal quantizes
    assert money_figure(Decimal("12.3456"), "USD") == "12.35 USD"


# --- verification codes ------------------------------------------------------------------------


def test_a_code_is_four_groups_of_base32_with_a_check_character() -> None:
    code = new_code(bytes(range(10)))
    assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", code), code
    assert re.fullmatch(CODE_PATTERN, code)
    raw = code.replace("-", "")
    assert raw[-1] == check_character(raw[:-1])
    assert new_code(bytes(range(10))) == code  # the bytes decide it
    assert new_code(bytes(10)) == "AAAA-AAAA-AAAA-AAAA"
    assert new_code(b"\xff" * 10)[:18] == "7777-7777-7777-777"  # 75 random bits: 15 characters
    with pytest.raises(ValueError, match="10 random bytes"):
        new_code(b"short")


def test_codes_from_random_bytes_differ_and_all_check() -> None:
    import secrets

    codes = {new_code(secrets.token_bytes(10)) for _ in range(2000)}
    assert len(codes) == 2000
    assert all(normalised_code(c) == c for c in codes)


def test_a_code_is_read_whatever_its_case_and_grouping() -> None:
    code = new_code(bytes(range(10, 20)))
    assert normalised_code(code.lower()) == code
    assert normalised_code(code.replace("-", "")) == code
    assert normalised_code(f"  {code.replace('-', ' ')} ") == code


def test_every_single_character_error_is_caught() -> None:
    code = new_code(bytes(range(30, 40)))
    raw = code.replace("-", "")
    for position in range(16):
        for char in CODE_ALPHABET:
            if char == raw[position]:
                continue
            typo = raw[:position] + char + raw[position + 1 :]
            assert normalised_code(typo) is None, typo


def test_swapped_neighbours_are_caught_mostly() -> None:
    caught = total = 0
    for seed in range(200):
        raw = new_code(bytes([seed] * 10)).replace("-", "")
        for i in range(15):
            if raw[i] != raw[i + 1]:
                total += 1
                swapped = raw[:i] + raw[i + 1] + raw[i] + raw[i + 2 :]
                caught += normalised_code(swapped) is None
    assert caught / total > 0.9


@pytest.mark.parametrize(
    "text", ["", "AAAA-AAAA-AAAA-AAA", "AAAA-AAAA-AAAA-AAAAA", "AAAA-AAAA-AAAA-AAA1", "ÄAAA-AAAA-AAAA-AAAA"]
)
def test_what_cannot_be_a_code_is_none(text: str) -> None:
    assert normalised_code(text) is None


# --- the rules that issue documents -----------------------------------------------------------


def test_top_n_by_spend_ranks_ties_by_orders_then_member() -> None:
    spenders = [
        Spender("m-a", Decimal("500"), 2),
        Spender("m-b", Decimal("900"), 1),
        Spender("m-c", Decimal("500"), 3),
        Spender("m-d", Decimal("500"), 3),
        Spender("m-e", Decimal("0"), 0),
        Spender("m-f", Decimal("-20"), 0),  # refunded more than bought in the cycle
    ]
    assert [(r.member_id, r.rank) for r in top_by_spend(spenders, 3)] == [("m-b", 1), ("m-c", 2), ("m-d", 3)]
    assert [r.member_id for r in top_by_spend(spenders, 10)] == ["m-b", "m-c", "m-d", "m-a"]  # spend > 0 only
    assert top_by_spend(list(reversed(spenders)), 3) == top_by_spend(spenders, 3)  # order of input is moot
    assert top_by_spend([], 3) == []
    with pytest.raises(ValueError):
        top_by_spend(spenders, 0)


def test_partnership_years_count_whole_years() -> None:
    first = at(2021, 3, 15)
    assert partnership_years(first, at(2026, 3, 14, 23)) == 4
    assert partnership_years(first, at(2026, 3, 15)) == 5
    assert partnership_years(first, at(2021, 12, 31)) == 0
    assert partnership_years(at(2020, 2, 29), at(2025, 2, 28)) == 5  # a leap day's anniversary: 28 Feb
    measure = HonourCertificate("five", TEMPLATE_ID, "years-of-partnership", years=5)
    assert partnership_due(measure, first, at(2026, 4, 1))
    assert not partnership_due(measure, first, at(2026, 1, 1))
    assert not partnership_due(measure, None, at(2030, 1, 1))  # no order yet


def test_milestones_tiers_and_when_a_measure_issues() -> None:
    letter = ThankYouLetter("million", TEMPLATE_ID, "milestone", min_spend=Decimal("1000000"))
    assert milestone_due(letter, Decimal("1000000"))
    assert not milestone_due(letter, Decimal("999999.99"))
    assert not milestone_due(ThankYouLetter("thanks", TEMPLATE_ID, "cycle-close"), Decimal("1e9"))
    gold = HonourCertificate("gold", TEMPLATE_ID, "tier-reached", tier="Gold")
    assert tier_reached(gold, "up", "Gold")
    assert not tier_reached(gold, "down", "Gold")
    assert not tier_reached(gold, "up", "Platinum")
    assert not at_cycle_close(gold)
    assert at_cycle_close(letter)
    assert at_cycle_close(HonourCertificate("top", TEMPLATE_ID, "cycle-close-top-spend", top=3))


def test_default_achievements_say_what_the_rule_saw() -> None:
    top = HonourCertificate("top", TEMPLATE_ID, "cycle-close-top-spend", top=3)
    assert default_achievement(top, rank=1, cycle="2026") == "Rank 1 of the top 3 by net spend in 2026"
    assert default_achievement(HonourCertificate("g", TEMPLATE_ID, "tier-reached", tier="Gold")) == (
        "Reached the Gold tier"
    )
    assert default_achievement(HonourCertificate("y", TEMPLATE_ID, "years-of-partnership", years=5)) == (
        "5 years of partnership"
    )
    assert default_achievement(ThankYouLetter("t", TEMPLATE_ID, "cycle-close"), cycle="2026-Q3") == (
        "Our partnership in 2026-Q3"
    )
    assert (
        default_achievement(ThankYouLetter("t", TEMPLATE_ID, "cycle-close", achievement="Yours")) == "Yours"
    )


# --- lifecycle ---------------------------------------------------------------------------------


def test_a_document_is_revoked_once_and_for_good() -> None:
    assert revoked("issued") == "revoked"
    with pytest.raises(ValueError, match="revoked already: that is final"):
        revoked("revoked")
    with pytest.raises(ValueError, match="unknown document status"):
        revoked("lost")


# --- the measures in the program document -----------------------------------------------------

PROGRAM: dict[str, Any] = {
    "name": "Key accounts 2026",
    "objective": "recognise our best customers",
    "measures": [
        {
            "id": "key-account",
            "kind": "honour-certificate",
            "template": TEMPLATE_ID,
            "trigger": "cycle-close-top-spend",
            "top": 3,
        },
        {
            "id": "gold",
            "kind": "honour-certificate",
            "template": TEMPLATE_ID,
            "trigger": "tier-reached",
            "tier": "Gold",
        },
        {
            "id": "five-years",
            "kind": "honour-certificate",
            "template": TEMPLATE_ID,
            "trigger": "years-of-partnership",
            "years": 5,
            "achievement": "Five years together",
        },
        {"id": "thanks", "kind": "thank-you-letter", "template": TEMPLATE_ID, "trigger": "cycle-close"},
        {
            "id": "million",
            "kind": "thank-you-letter",
            "template": TEMPLATE_ID,
            "trigger": "milestone",
            "min_spend": "1000000",
        },
    ],
    "schedule": {"starts": "2026-01-01T00:00:00+00:00", "cycle": "year"},
    "budget": {"currency": "EUR", "cap": "1000.00"},
}


def test_document_measures_read_and_round_trip() -> None:
    program = program_from_document(PROGRAM)
    assert program.measures == (
        HonourCertificate("key-account", TEMPLATE_ID, "cycle-close-top-spend", top=3),
        HonourCertificate("gold", TEMPLATE_ID, "tier-reached", tier="Gold"),
        HonourCertificate(
            "five-years", TEMPLATE_ID, "years-of-partnership", years=5, achievement="Five years together"
        ),
        ThankYouLetter("thanks", TEMPLATE_ID, "cycle-close"),
        ThankYouLetter("million", TEMPLATE_ID, "milestone", min_spend=Decimal("1000000")),
    )
    assert program_from_document(program_document(program)) == program
    assert program_document(program)["measures"] == PROGRAM["measures"]


def _with_measure(measure: dict[str, Any], **schedule: Any) -> dict[str, Any]:
    document = copy.deepcopy(PROGRAM)
    document["measures"] = [measure]
    document["schedule"] |= schedule
    return document


@pytest.mark.parametrize(
    ("measure", "problems"),
    [
        (
            {"id": "c", "kind": "honour-certificate", "trigger": "cycle-close-top-spend"},
            [
                "measures[0].template is required",
                "measures[0].top is required with trigger cycle-close-top-spend",
            ],
        ),
        (
            {
                "id": "c",
                "kind": "honour-certificate",
                "template": "tpl-1",
                "trigger": "tier-reached",
                "tier": "Gold",
            },
            ["measures[0].template must be a document template's id (a lower-case UUID), got 'tpl-1'"],
        ),
        (
            {"id": "c", "kind": "honour-certificate", "template": TEMPLATE_ID, "trigger": "cycle-close"},
            [
                "measures[0].trigger must be one of cycle-close-top-spend, tier-reached, "
                "years-of-partnership, got 'cycle-close'"
            ],
        ),
        (
            {
                "id": "c",
                "kind": "honour-certificate",
                "template": TEMPLATE_ID,
                "trigger": "tier-reached",
                "tier": "Gold",
                "top": 3,
            },
            ["measures[0]: top does not go with trigger tier-reached"],
        ),
        (
            {
                "id": "c",
                "kind": "honour-certificate",
                "template": TEMPLATE_ID,
                "trigger": "cycle-close-top-spend",
                "top": 0,
            },
            ["measures[0].top must be a whole number from 1 to 1000, got 0"],
        ),
        (
            {
                "id": "c",
                "kind": "honour-certificate",
                "template": TEMPLATE_ID,
                "trigger": "tier-reached",
                "tier": "?",
            },
            ["measures[0].tier must be a tier name, got '?'"],
        ),
        (
            {
                "id": "l",
                "kind": "thank-you-letter",
                "template": TEMPLATE_ID,
                "trigger": "milestone",
                "min_spend": "-1",
            },
            ["measures[0].min_spend must be an amount above 0 with at most 2 decimals, got -1"],
        ),
        (
            {
                "id": "l",
                "kind": "thank-you-letter",
                "template": TEMPLATE_ID,
                "trigger": "cycle-close",
                "years": 2,
            },
            ["measures[0]: unknown field 'years'"],
        ),
    ],
)
def test_every_problem_of_a_document_measure_is_listed(measure: dict[str, Any], problems: list[str]) -> None:
    assert validate_program(_with_measure(measure)) == problems


def test_a_cycle_close_rule_needs_cycles_to_close() -> None:
    letter = {"id": "l", "kind": "thank-you-letter", "template": TEMPLATE_ID, "trigger": "cycle-close"}
    assert validate_program(_with_measure(letter, cycle="none")) == [
        "measures[0] (thank-you-letter 'l') issues at cycle close: give the schedule a cycle or an end"
    ]
    assert validate_program(_with_measure(letter, cycle="none", ends="2027-01-01T00:00:00+00:00")) == []
    gold = {
        "id": "g",
        "kind": "honour-certificate",
        "template": TEMPLATE_ID,
        "trigger": "tier-reached",
        "tier": "Gold",
    }
    assert validate_program(_with_measure(gold, cycle="none")) == []  # issued on events
