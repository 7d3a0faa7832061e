"""The tier ladder: the default, every validation rule, the JSON document and the rule texts."""

import json
from dataclasses import FrozenInstanceError, replace
from decimal import Decimal
from typing import Any

import pytest

from tiers_service.domain import (
    DEFAULT_LADDER,
    Benefits,
    Evaluation,
    Ladder,
    Tier,
    Window,
    ladder_document,
    ladder_from_document,
    validate_ladder,
)

STANDARD, SILVER, GOLD, PLATINUM, AMBASSADOR = range(5)  # indexes into DEFAULT_LADDER.tiers


def d(value: str) -> Decimal:
    return Decimal(value)


def ladder(**changes: Any) -> Ladder:
    return replace(DEFAULT_LADDER, **changes)


def with_tier(index: int, **changes: Any) -> Ladder:
    """DEFAULT_LADDER with one tier changed."""
    tiers = list(DEFAULT_LADDER.tiers)
    tiers[index] = replace(tiers[index], **changes)
    return ladder(tiers=tuple(tiers))


def with_benefits(index: int, **changes: Any) -> Ladder:
    return with_tier(index, benefits=replace(DEFAULT_LADDER.tiers[index].benefits, **changes))


def evaluation(**changes: Any) -> Ladder:
    return ladder(evaluation=replace(DEFAULT_LADDER.evaluation, **changes))


# --- the default ladder ----------------------------------------------------------------------


def test_default_ladder_is_valid() -> None:
    assert validate_ladder(DEFAULT_LADDER) == []


def test_default_ladder_shape() -> None:
    assert [(t.name, t.rank) for t in DEFAULT_LADDER.tiers] == [
        ("Standard", 10),
        ("Silver", 20),
        ("Gold", 30),
        ("Platinum", 40),
        ("Ambassador", 50),
    ]
    assert DEFAULT_LADDER.entry.name == "Standard"
    assert [t.name for t in DEFAULT_LADDER.qualifying_tiers] == ["Standard", "Silver", "Gold", "Platinum"]
    assert DEFAULT_LADDER.currency == "EUR"
    assert DEFAULT_LADDER.window == Window("rolling-months", 12)
    assert DEFAULT_LADDER.evaluation == Evaluation("period-end", "year", 30, 1)
    assert DEFAULT_LADDER.excluded_categories == frozenset({"gift-cards"})


def test_tier_lookup() -> None:
    assert DEFAULT_LADDER.tier("Gold").min_spend == d("200000")
    assert DEFAULT_LADDER.has("Ambassador") is True
    assert DEFAULT_LADDER.has("gold") is False
    with pytest.raises(KeyError):
        DEFAULT_LADDER.tier("Bronze")


def test_has_thresholds() -> None:
    assert DEFAULT_LADDER.tiers[STANDARD].has_thresholds is False
    assert DEFAULT_LADDER.tiers[SILVER].has_thresholds is True
    assert DEFAULT_LADDER.tiers[PLATINUM].has_thresholds is True  # spend only
    assert Tier("Busy", 20, min_orders=5).has_thresholds is True
    assert DEFAULT_LADDER.tiers[AMBASSADOR].has_thresholds is False


def test_ladder_values_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        DEFAULT_LADDER.currency = "USD"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        DEFAULT_LADDER.tiers[0].rank = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("window", "text"),
    [
        (Window("rolling-months", 12), "the rolling 12 months"),
        (Window("rolling-months", 3), "the rolling 3 months"),
        (Window("calendar-year"), "the calendar year"),
        (Window("calendar-quarter"), "the calendar quarter"),
    ],
)
def test_window_describe(window: Window, text: str) -> None:
    assert window.describe() == text


# --- validate_ladder: one rule at a time ------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        # tier names
        (with_tier(GOLD, name="Silver"), "tier name 'Silver' is used twice"),
        (with_tier(GOLD, name=""), "tier name '': 1-32 letters, digits, spaces, '.', '_' or '-'"),
        (with_tier(GOLD, name="1Gold"), "tier name '1Gold': 1-32 letters, digits, spaces, '.', '_' or '-'"),
        (with_tier(GOLD, name=" Gold"), "tier name ' Gold': 1-32 letters, digits, spaces, '.', '_' or '-'"),
        (with_tier(GOLD, name="Gold!"), "tier name 'Gold!': 1-32 letters, digits, spaces, '.', '_' or '-'"),
        (with_tier(GOLD, name="Gøld"), "tier name 'Gøld': 1-32 letters, digits, spaces, '.', '_' or '-'"),
        (
            with_tier(GOLD, name="G" * 33),
            f"tier name '{'G' * 33}': 1-32 letters, digits, spaces, '.', '_' or '-'",
        ),
        # ranks
        (with_tier(GOLD, rank=20), "ranks must be strictly increasing: Gold (20) comes after Silver (20)"),
        (with_tier(GOLD, rank=15), "ranks must be strictly increasing: Gold (15) comes after Silver (20)"),
        # the entry tier
        (
            with_tier(STANDARD, min_orders=1),
            "exactly one entry tier (no thresholds, not invitation-only) is needed, found 0",
        ),
        (
            with_tier(STANDARD, invitation_only=True),
            "exactly one entry tier (no thresholds, not invitation-only) is needed, found 0",
        ),
        (
            with_tier(SILVER, min_spend=None, min_orders=None),
            "exactly one entry tier (no thresholds, not invitation-only) is needed, found 2: Standard, Silver",
        ),
        # invitation-only tiers take no thresholds
        (
            with_tier(AMBASSADOR, min_spend=d("5000000")),
            "Ambassador is invitation-only, so it takes no thresholds",
        ),
        (with_tier(AMBASSADOR, min_orders=500), "Ambassador is invitation-only, so it takes no thresholds"),
        # min_spend
        (
            with_tier(SILVER, min_spend=d("0")),
            "Silver min_spend must be an amount above 0 with at most 2 decimals",
        ),
        (
            with_tier(SILVER, min_spend=d("-1")),
            "Silver min_spend must be an amount above 0 with at most 2 decimals",
        ),
        (
            with_tier(SILVER, min_spend=d("49999.999")),
            "Silver min_spend must be an amount above 0 with at most 2 decimals",
        ),
        (
            with_tier(PLATINUM, min_spend=d("Infinity")),
            "Platinum min_spend must be an amount above 0 with at most 2 decimals",
        ),
        # min_orders
        (with_tier(SILVER, min_orders=0), "Silver min_orders must be at least 1"),
        (with_tier(SILVER, min_orders=-3), "Silver min_orders must be at least 1"),
        # requires
        (with_tier(SILVER, requires="both"), "Silver requires must be 'any' or 'all'"),
        # thresholds strictly increasing, spend and orders separately
        (
            with_tier(GOLD, min_spend=d("50000")),
            "thresholds must be strictly increasing: Gold min_spend 50000 is not above Silver's 50000",
        ),
        (
            with_tier(GOLD, min_spend=d("40000")),
            "thresholds must be strictly increasing: Gold min_spend 40000 is not above Silver's 50000",
        ),
        (
            with_tier(GOLD, min_orders=24),
            "thresholds must be strictly increasing: Gold min_orders 24 is not above Silver's 24",
        ),
        (
            with_tier(PLATINUM, min_orders=60),
            "thresholds must be strictly increasing: Platinum min_orders 60 is not above Gold's 60",
        ),
        # benefits
        (
            with_benefits(SILVER, points_multiplier=d("0")),
            "Silver points_multiplier must be above 0 and at most 100",
        ),
        (
            with_benefits(SILVER, points_multiplier=d("-1")),
            "Silver points_multiplier must be above 0 and at most 100",
        ),
        (
            with_benefits(SILVER, points_multiplier=d("100.0001")),
            "Silver points_multiplier must be above 0 and at most 100",
        ),
        (
            with_benefits(SILVER, points_multiplier=d("NaN")),
            "Silver points_multiplier must be above 0 and at most 100",
        ),
        (
            with_benefits(SILVER, points_multiplier=d("1.23456")),
            "Silver points_multiplier takes at most 4 decimals",
        ),
        *[
            (
                with_benefits(SILVER, discount_rate=d(rate)),
                "Silver discount_rate must be from 0 up to (not including) 1, at most 4 decimals",
            )
            for rate in ("-0.0001", "1", "1.5", "0.12345", "NaN")
        ],
        (with_benefits(SILVER, service_level=""), "Silver service_level must be 1-64 characters"),
        (with_benefits(SILVER, service_level="s" * 65), "Silver service_level must be 1-64 characters"),
        (with_benefits(SILVER, upgrade_gift=""), "Silver upgrade_gift must be 1-64 characters"),
        (with_benefits(SILVER, upgrade_gift="g" * 65), "Silver upgrade_gift must be 1-64 characters"),
        # the window
        (ladder(window=Window("rolling-months", 0)), "a rolling window is 1 to 60 months long"),
        (ladder(window=Window("rolling-months", 61)), "a rolling window is 1 to 60 months long"),
        (
            ladder(window=Window("fiscal-year")),  # type: ignore[arg-type]
            "window kind must be one of rolling-months, calendar-year, calendar-quarter",
        ),
        # the evaluation
        (evaluation(grace_days=-1), "grace_days must be from 0 to 366"),
        (evaluation(grace_days=367), "grace_days must be from 0 to 366"),
        (evaluation(max_demotion_steps=0), "max_demotion_steps must be from 1 to 4"),
        (evaluation(max_demotion_steps=5), "max_demotion_steps must be from 1 to 4"),  # 4 qualifying tiers
        (evaluation(at="birthday"), "evaluation at must be one of period-end, anniversary"),
        (evaluation(period="week"), "evaluation period must be one of year, quarter, month"),
        # the currency
        (ladder(currency="eur"), "currency must be three capital letters, got 'eur'"),
        (ladder(currency="EU"), "currency must be three capital letters, got 'EU'"),
        (ladder(currency="EURO"), "currency must be three capital letters, got 'EURO'"),
        (ladder(currency="E1R"), "currency must be three capital letters, got 'E1R'"),
        (ladder(currency=""), "currency must be three capital letters, got ''"),
        # excluded categories
        (ladder(excluded_categories=frozenset({""})), "excluded category '' must be 1-64 characters"),
        (
            ladder(excluded_categories=frozenset({"c" * 65})),
            f"excluded category '{'c' * 65}' must be 1-64 characters",
        ),
    ],
)
def test_each_problem_is_reported(candidate: Ladder, problem: str) -> None:
    assert validate_ladder(candidate) == [problem]


@pytest.mark.parametrize(
    "candidate",
    [
        with_tier(GOLD, name="G"),
        with_tier(GOLD, name="G" * 32),
        with_tier(GOLD, name="Gold Plus.v_2-b"),
        with_tier(SILVER, min_spend=d("0.01")),
        with_tier(SILVER, min_spend=d("49999.99")),
        with_tier(SILVER, min_orders=1),
        with_tier(SILVER, requires="all"),
        with_tier(PLATINUM, min_orders=61),
        # a tier without the threshold is skipped: Platinum's orders are compared with Silver's
        ladder(
            tiers=(
                DEFAULT_LADDER.tiers[STANDARD],
                DEFAULT_LADDER.tiers[SILVER],
                replace(DEFAULT_LADDER.tiers[GOLD], min_orders=None),
                replace(DEFAULT_LADDER.tiers[PLATINUM], min_orders=25),
                DEFAULT_LADDER.tiers[AMBASSADOR],
            )
        ),
        with_benefits(SILVER, points_multiplier=d("100")),
        with_benefits(SILVER, points_multiplier=d("0.0001")),
        with_benefits(SILVER, points_multiplier=d("1.2345")),
        with_benefits(SILVER, discount_rate=d("0")),
        with_benefits(SILVER, discount_rate=d("0.9999")),
        with_benefits(SILVER, service_level="s" * 64),
        with_benefits(SILVER, upgrade_gift="g"),
        with_benefits(SILVER, upgrade_gift=None),
        ladder(window=Window("rolling-months", 1)),
        ladder(window=Window("rolling-months", 60)),
        ladder(window=Window("calendar-year", 0)),  # months only matter for a rolling window
        ladder(window=Window("calendar-quarter", 99)),
        evaluation(grace_days=0),
        evaluation(grace_days=366),
        evaluation(max_demotion_steps=4),
        evaluation(at="anniversary"),
        evaluation(period="quarter"),
        evaluation(period="month"),
        ladder(currency="USD"),
        ladder(excluded_categories=frozenset()),
        ladder(excluded_categories=frozenset({"c" * 64, "x"})),
    ],
)
def test_valid_variants_have_no_problems(candidate: Ladder) -> None:
    assert validate_ladder(candidate) == []


def test_the_entry_tier_must_be_the_lowest() -> None:
    candidate = ladder(tiers=(Tier("Basic", 10, min_spend=d("1000")), Tier("Standard", 20)))
    assert validate_ladder(candidate) == ["the entry tier Standard must have the lowest rank"]


def test_an_invitation_only_tier_below_the_entry_tier_is_refused() -> None:
    candidate = ladder(tiers=(Tier("Prospect", 5, invitation_only=True), *DEFAULT_LADDER.tiers))
    assert validate_ladder(candidate) == ["the entry tier Standard must have the lowest rank"]


def test_invitation_only_tiers_are_skipped_in_the_threshold_order() -> None:
    # Partner sits between Silver and Gold with thresholds far below Silver's: only the invitation-only
    # rule complains, and Gold is compared with Silver, not with Partner.
    partner = Tier("Partner", 25, min_spend=d("100"), min_orders=1, invitation_only=True)
    tiers = list(DEFAULT_LADDER.tiers)
    tiers.insert(GOLD, partner)
    assert validate_ladder(ladder(tiers=tuple(tiers))) == [
        "Partner is invitation-only, so it takes no thresholds"
    ]
    tiers[GOLD + 1] = replace(tiers[GOLD + 1], min_spend=d("40000"))
    assert validate_ladder(ladder(tiers=tuple(tiers))) == [
        "Partner is invitation-only, so it takes no thresholds",
        "thresholds must be strictly increasing: Gold min_spend 40000 is not above Silver's 50000",
    ]


def test_an_invitation_only_tier_without_thresholds_in_the_middle_is_valid() -> None:
    tiers = list(DEFAULT_LADDER.tiers)
    tiers.insert(GOLD, Tier("Partner", 25, invitation_only=True))
    assert validate_ladder(ladder(tiers=tuple(tiers))) == []


def test_max_demotion_steps_counts_only_qualifying_tiers() -> None:
    tiers = list(DEFAULT_LADDER.tiers)
    tiers.insert(GOLD, Tier("Partner", 25, invitation_only=True))  # 6 tiers, 4 qualifying
    candidate = ladder(tiers=tuple(tiers), evaluation=Evaluation(max_demotion_steps=5))
    assert validate_ladder(candidate) == ["max_demotion_steps must be from 1 to 4"]


def test_a_one_tier_ladder_allows_one_demotion_step() -> None:
    single = ladder(tiers=(Tier("Member", 1),))
    assert validate_ladder(single) == []
    assert validate_ladder(replace(single, evaluation=Evaluation(max_demotion_steps=2))) == [
        "max_demotion_steps must be from 1 to 1"
    ]


def test_a_ladder_without_tiers() -> None:
    assert validate_ladder(ladder(tiers=())) == ["a ladder needs at least one tier"]
    assert validate_ladder(ladder(tiers=(), currency="eu")) == [
        "currency must be three capital letters, got 'eu'",
        "a ladder needs at least one tier",
    ]


def test_a_name_used_three_times_is_reported_once() -> None:
    tiers = (
        Tier("Standard", 10),
        Tier("Gold", 20, min_orders=5),
        Tier("Gold", 30, min_orders=10),
        Tier("Gold", 40, min_orders=15),
    )
    assert validate_ladder(ladder(tiers=tiers)) == ["tier name 'Gold' is used twice"]


def test_all_problems_are_reported_together() -> None:
    broken = Ladder(
        version=3,
        currency="eur",
        tiers=(
            Tier("Standard", 10),
            Tier("Silver", 20, min_spend=d("0.001"), min_orders=0),
            Tier("Silver", 20, min_spend=d("-5"), benefits=Benefits(points_multiplier=d("0"))),
            Tier("Vip!", 30, min_orders=3, invitation_only=True, benefits=Benefits(discount_rate=d("1"))),
        ),
        window=Window("rolling-months", 0),
        evaluation=Evaluation(grace_days=400, max_demotion_steps=0),
        excluded_categories=frozenset({"", "gift-cards"}),
    )
    assert validate_ladder(broken) == [
        "currency must be three capital letters, got 'eur'",
        "tier name 'Silver' is used twice",
        "tier name 'Vip!': 1-32 letters, digits, spaces, '.', '_' or '-'",
        "ranks must be strictly increasing: Silver (20) comes after Silver (20)",
        "Silver min_spend must be an amount above 0 with at most 2 decimals",
        "Silver min_orders must be at least 1",
        "Silver min_spend must be an amount above 0 with at most 2 decimals",
        "Silver points_multiplier must be above 0 and at most 100",
        "Vip! is invitation-only, so it takes no thresholds",
        "Vip! discount_rate must be from 0 up to (not including) 1, at most 4 decimals",
        "thresholds must be strictly increasing: Silver min_spend -5 is not above Silver's 0.001",
        "a rolling window is 1 to 60 months long",
        "grace_days must be from 0 to 366",
        "max_demotion_steps must be from 1 to 3",
        "excluded category '' must be 1-64 characters",
    ]


# --- the JSON document ------------------------------------------------------------------------


CUSTOM = Ladder(
    version=7,
    currency="USD",
    tiers=(
        Tier("Member", 1, benefits=Benefits(service_level="basic")),
        Tier(
            "Regular",
            5,
            min_spend=d("1234.56"),
            min_orders=3,
            requires="all",
            benefits=Benefits(d("1.1234"), d("0.0125"), False, "plus", None),
        ),
        Tier("Partner", 7, invitation_only=True, benefits=Benefits(d("3"), d("0.1"), True, "vip", "hamper")),
        Tier("Busy", 9, min_orders=40, benefits=Benefits(d("1.5"), d("0.03"), True, "priority", "mug")),
    ),
    window=Window("calendar-quarter", 3),
    evaluation=Evaluation("anniversary", "month", grace_days=0, max_demotion_steps=3),
    excluded_categories=frozenset({"services", "gift-cards", "freight"}),
)


def test_custom_ladder_is_valid() -> None:
    assert validate_ladder(CUSTOM) == []


def test_default_ladder_document() -> None:
    document = ladder_document(DEFAULT_LADDER)
    assert set(document) == {"currency", "tiers", "window", "evaluation", "excluded_categories"}
    assert document["currency"] == "EUR"
    assert document["tiers"][SILVER] == {
        "name": "Silver",
        "rank": 20,
        "min_spend": "50000",
        "min_orders": 24,
        "requires": "any",
        "invitation_only": False,
        "benefits": {
            "points_multiplier": "1.25",
            "discount_rate": "0.02",
            "priority_purchase": False,
            "service_level": "priority",
            "upgrade_gift": "silver-welcome-kit",
        },
    }
    assert document["tiers"][AMBASSADOR]["min_spend"] is None
    assert document["tiers"][AMBASSADOR]["min_orders"] is None
    assert document["tiers"][AMBASSADOR]["invitation_only"] is True
    assert document["window"] == {"kind": "rolling-months", "months": 12}
    assert document["evaluation"] == {
        "at": "period-end",
        "period": "year",
        "grace_days": 30,
        "max_demotion_steps": 1,
    }
    assert document["excluded_categories"] == ["gift-cards"]


def test_excluded_categories_are_sorted_in_the_document() -> None:
    assert ladder_document(CUSTOM)["excluded_categories"] == ["freight", "gift-cards", "services"]


@pytest.mark.parametrize("original", [DEFAULT_LADDER, CUSTOM], ids=["default", "custom"])
def test_document_round_trips_exactly_through_json(original: Ladder) -> None:
    document = ladder_document(original)
    text = json.dumps(document)
    restored = ladder_from_document(original.version, json.loads(text))
    assert restored == original
    assert ladder_document(restored) == document
    assert json.dumps(ladder_document(restored)) == text
    # the decimals keep their exact spelling, not only their value
    for before, after in zip(original.tiers, restored.tiers, strict=True):
        assert str(after.min_spend) == str(before.min_spend)
        assert str(after.benefits.points_multiplier) == str(before.benefits.points_multiplier)
        assert str(after.benefits.discount_rate) == str(before.benefits.discount_rate)


def test_document_version_comes_from_the_caller() -> None:
    restored = ladder_from_document(42, ladder_document(DEFAULT_LADDER))
    assert restored.version == 42
    assert replace(restored, version=0) == DEFAULT_LADDER


def test_a_minimal_document_takes_the_defaults() -> None:
    document = {
        "currency": "EUR",
        "tiers": [
            {
                "name": "Standard",
                "rank": "10",
                "benefits": {
                    "points_multiplier": "1",
                    "discount_rate": "0",
                    "priority_purchase": False,
                    "service_level": "standard",
                },
            }
        ],
        "window": {},
        "evaluation": {},
    }
    assert ladder_from_document(1, document) == Ladder(
        version=1,
        currency="EUR",
        tiers=(Tier("Standard", 10),),
        window=Window(),
        evaluation=Evaluation(),
        excluded_categories=frozenset(),
    )


def _document(**changes: Any) -> dict[str, Any]:
    document = json.loads(json.dumps(ladder_document(DEFAULT_LADDER)))
    assert isinstance(document, dict)
    document.update(changes)
    return document


def _with_silver(**changes: Any) -> dict[str, Any]:
    document = _document()
    document["tiers"][SILVER].update(changes)
    return document


def _without(key: str) -> dict[str, Any]:
    document = _document()
    del document[key]
    return document


@pytest.mark.parametrize(
    "document",
    [
        _without("currency"),
        _without("tiers"),
        _without("window"),
        _without("evaluation"),
        _document(tiers=None),
        _document(tiers=[{"rank": 10}]),
        _document(window={"kind": "rolling-months", "length": 12}),
        _document(window="rolling-months"),
        _document(evaluation={"at": "period-end", "every": "year"}),
        _with_silver(min_spend="lots"),
        _with_silver(benefits={"points_multiplier": "1"}),
        _with_silver(benefits={**_document()["tiers"][SILVER]["benefits"], "discount_rate": "two percent"}),
        _with_silver(benefits={**_document()["tiers"][SILVER]["benefits"], "points_multiplier": None}),
        _with_silver(benefits=None),
        _with_silver(rank=None),
    ],
)
def test_malformed_documents_raise_value_error(document: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="malformed ladder document"):
        ladder_from_document(1, document)


@pytest.mark.parametrize("document", [None, [], "ladder", 3])
def test_a_document_that_is_not_a_mapping_raises_value_error(document: Any) -> None:
    with pytest.raises(ValueError, match="malformed ladder document"):
        ladder_from_document(1, document)


@pytest.mark.parametrize("document", [_with_silver(rank="twenty"), _with_silver(min_spend=[1])])
def test_other_malformed_values_raise_value_error_too(document: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ladder_from_document(1, document)


# --- rule texts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "currency", "text"),
    [
        (DEFAULT_LADDER.tiers[STANDARD], "EUR", "Standard: the entry tier, no threshold"),
        (
            DEFAULT_LADDER.tiers[SILVER],
            "EUR",
            "Silver: 50000.00 EUR qualifying spend or 24 qualifying orders",
        ),
        (DEFAULT_LADDER.tiers[GOLD], "EUR", "Gold: 200000.00 EUR qualifying spend or 60 qualifying orders"),
        (DEFAULT_LADDER.tiers[PLATINUM], "EUR", "Platinum: 1000000.00 EUR qualifying spend"),
        (DEFAULT_LADDER.tiers[AMBASSADOR], "EUR", "Ambassador: by invitation only"),
        (
            Tier("Gold", 30, min_spend=d("200000"), min_orders=60, requires="all"),
            "EUR",
            "Gold: 200000.00 EUR qualifying spend and 60 qualifying orders",
        ),
        (Tier("Busy", 30, min_orders=1), "EUR", "Busy: 1 qualifying orders"),
        (Tier("Odd", 30, min_spend=d("1234.5")), "USD", "Odd: 1234.50 USD qualifying spend"),
        (Tier("Tiny", 30, min_spend=d("0.01")), "GBP", "Tiny: 0.01 GBP qualifying spend"),
        # invitation-only wins over thresholds in the text
        (Tier("Vip", 60, min_spend=d("5"), invitation_only=True), "EUR", "Vip: by invitation only"),
    ],
)
def test_rule_texts(tier: Tier, currency: str, text: str) -> None:
    assert tier.rule(currency) == text


# --- regressions ---------------------------------------------------------------------------------


def test_a_tier_name_with_a_trailing_newline_is_refused() -> None:
    assert validate_ladder(with_tier(SILVER, name="Silver\n")) == [
        "tier name 'Silver\\n': 1-32 letters, digits, spaces, '.', '_' or '-'"
    ]


def test_a_nan_threshold_is_reported_not_raised() -> None:
    assert validate_ladder(with_tier(GOLD, min_spend=d("NaN"))) == [
        "Gold min_spend must be an amount above 0 with at most 2 decimals"
    ]


@pytest.mark.parametrize("spend", ["50000.000", "50000.0000", "50000.10"])
def test_trailing_zeros_are_not_decimals(spend: str) -> None:
    assert validate_ladder(with_tier(SILVER, min_spend=d(spend))) == []


def test_a_padded_multiplier_is_valid() -> None:
    assert validate_ladder(with_benefits(GOLD, points_multiplier=d("1.500000"))) == []
