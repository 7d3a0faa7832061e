"""The earning rules' one document: API body, stored row and domain value map through it exactly."""

from decimal import Decimal

from points_service.domain import DEFAULT_RULES, EarningRules
from points_service.earning_rules import RulesBody, RulesView, rules_from_row

BODY = RulesBody(
    points_per_unit=Decimal("1.50"),
    category_multipliers={"electronics": Decimal("2.0"), "books": Decimal("0.5")},
    return_window_days=14,
    expiry_months=24,
    debt_policy="forgive",
    expiring_soon_days=45,
)


def test_a_stored_document_reads_back_as_the_rules_it_was_made_from() -> None:
    row = BODY.to_row(7, "crm-key:abc")
    assert (row.version, row.created_by) == (7, "crm-key:abc")
    assert row.category_multipliers == {"electronics": "2.0", "books": "0.5"}  # JSONB: exact strings
    assert rules_from_row(row) == BODY.to_domain(7)
    assert BODY.to_domain(7) == EarningRules(
        version=7,
        points_per_unit=Decimal("1.50"),
        category_multipliers={"electronics": Decimal("2.0"), "books": Decimal("0.5")},
        return_window_days=14,
        expiry_months=24,
        debt_policy="forgive",
        expiring_soon_days=45,
    )


def test_the_view_of_a_row_and_of_the_built_in_rules() -> None:
    view = RulesView.model_validate(BODY.to_row(7, "crm-key:abc"), from_attributes=True)
    assert view == RulesView(**BODY.model_dump(), version=7, created_by="crm-key:abc")
    default = RulesView.model_validate(DEFAULT_RULES, from_attributes=True)
    assert (default.version, default.created_by, default.created_at) == (1, None, None)
    assert default.model_dump(exclude={"version", "created_by", "created_at"}) == {
        "points_per_unit": Decimal("1"),
        "category_multipliers": {},
        "return_window_days": 0,
        "expiry_months": 12,
        "debt_policy": "debt",
        "expiring_soon_days": 30,
    }
