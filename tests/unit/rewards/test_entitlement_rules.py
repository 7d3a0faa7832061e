"""Entitlements as pure rules: a right's state through its window and quota, which right a purchase
uses, what a launch's priority window allows, and how tier benefits become rights."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rewards_service.domain.entitlements import (
    PRIORITY,
    SERVICE,
    Launch,
    Right,
    Scope,
    TierRight,
    covers,
    grant_problems,
    launch_for,
    launch_problems,
    may_buy,
    pick,
    reconcile,
    tier_rights,
)

T0 = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)
LAUNCH = Launch("L1", ("X200", "X200-PRO"), opens_at=T0, public_at=T0 + 7 * DAY)


def right(
    eid: str = "e1",
    scope: Scope = Scope(),
    quota: int | None = None,
    used: int = 0,
    valid_from: datetime = T0 - 30 * DAY,
    valid_until: datetime | None = None,
    status: str = "active",
    kind: str = PRIORITY,
) -> Right:
    return Right(eid, kind, scope, quota, used, valid_from, valid_until, status)  # type: ignore[arg-type]


class TestState:
    def test_scheduled_active_expired(self) -> None:
        r = right(valid_from=T0, valid_until=T0 + DAY)
        assert r.state(T0 - timedelta(seconds=1)) == "scheduled"
        assert r.state(T0) == "active"
        assert r.state(T0 + DAY - timedelta(microseconds=1)) == "active"
        assert r.state(T0 + DAY) == "expired"

    def test_an_ended_right_is_in_force_until_its_end(self) -> None:
        r = right(valid_until=T0, status="ended")
        assert r.state(T0 - timedelta(microseconds=1)) == "active"
        assert r.state(T0) == "ended"

    def test_revoked_is_revoked_whenever(self) -> None:
        assert right(status="revoked").state(T0 - 60 * DAY) == "revoked"

    def test_quota_arithmetic(self) -> None:
        r = right(quota=3, used=2)
        assert r.remaining == 1
        assert r.in_force(T0, 1)
        assert not r.in_force(T0, 2)
        assert right(quota=3, used=3).state(T0) == "used-up"
        assert right(quota=None, used=10**6).in_force(T0, 10**6)
        assert right(quota=None).remaining is None


class TestCovers:
    def test_open_scope_covers_every_launch_and_nothing_else(self) -> None:
        assert covers(right(), "X200", None, LAUNCH)
        assert not covers(right(), "X200", None, None)

    def test_sku_category_and_launch_scopes(self) -> None:
        assert covers(right(scope=Scope(skus=("X200",))), "X200", None, None)
        assert not covers(right(scope=Scope(skus=("X200",))), "X300", None, LAUNCH)
        assert covers(right(scope=Scope(categories=("phones",))), "X300", "phones", None)
        assert not covers(right(scope=Scope(categories=("phones",))), "X300", None, None)
        assert covers(right(scope=Scope(launch_id="L1")), "X200", None, LAUNCH)
        assert not covers(right(scope=Scope(launch_id="L2")), "X200", None, LAUNCH)

    def test_a_custom_service_covers_no_purchase(self) -> None:
        assert not covers(right(kind=SERVICE, scope=Scope(service="desk")), "X200", None, LAUNCH)


class TestPick:
    def test_the_narrowest_right_is_used_first(self) -> None:
        rights = [
            right("open"),
            right("category", Scope(categories=("phones",))),
            right("launch", Scope(launch_id="L1")),
            right("sku", Scope(skus=("X200",))),
        ]
        chosen = [pick(rights[:n], "X200", "phones", LAUNCH, T0, 1) for n in range(1, 5)]
        assert [c.entitlement_id if c else None for c in chosen] == ["open", "category", "launch", "sku"]

    def test_a_used_up_right_gives_way_to_the_next(self) -> None:
        rights = [right("sku", Scope(skus=("X200",)), quota=1, used=1), right("open")]
        chosen = pick(rights, "X200", None, LAUNCH, T0, 1)
        assert chosen is not None and chosen.entitlement_id == "open"

    def test_the_one_ending_first_then_the_id(self) -> None:
        rights = [right("b", valid_until=T0 + 2 * DAY), right("a", valid_until=T0 + 3 * DAY), right("c")]
        chosen = pick(rights, "X200", None, LAUNCH, T0, 1)
        assert chosen is not None and chosen.entitlement_id == "b"
        chosen = pick([right("b"), right("a")], "X200", None, LAUNCH, T0, 1)
        assert chosen is not None and chosen.entitlement_id == "a"

    def test_nothing_when_the_quota_is_short(self) -> None:
        assert pick([right(quota=2, used=1)], "X200", None, LAUNCH, T0, 2) is None


class TestLaunchWindow:
    def test_before_the_window_nobody(self) -> None:
        decision = may_buy([right()], [LAUNCH], "X200", None, T0 - DAY)
        assert (decision.allowed, decision.reason) == (False, "before-priority-window")

    def test_in_the_window_only_with_a_right(self) -> None:
        assert may_buy([], [LAUNCH], "X200", None, T0).reason == "no-right"
        decision = may_buy([right()], [LAUNCH], "X200", None, T0)
        assert decision.allowed and decision.reason == "priority-right"
        assert decision.right is not None and decision.launch == LAUNCH

    def test_from_the_public_date_everybody(self) -> None:
        decision = may_buy([], [LAUNCH], "X200", None, LAUNCH.public_at)
        assert decision.allowed and decision.reason == "public" and decision.launch is None

    def test_a_sku_in_no_launch_is_public(self) -> None:
        assert may_buy([], [LAUNCH], "MUG", None, T0).reason == "public"

    def test_an_open_window_wins_over_a_later_one(self) -> None:
        later = Launch("L0", ("X200",), T0 + 30 * DAY, T0 + 40 * DAY)
        assert launch_for([later, LAUNCH], "X200", T0 + DAY) == LAUNCH
        assert launch_for([later, LAUNCH], "X200", T0 + 8 * DAY) == later
        assert launch_for([later, LAUNCH], "X200", T0 + 40 * DAY) is None

    def test_a_right_that_ended_at_the_demotion_stops_there(self) -> None:
        ended = right(valid_until=T0 + DAY, status="ended")
        assert may_buy([ended], [LAUNCH], "X200", None, T0 + DAY - timedelta(microseconds=1)).allowed
        assert not may_buy([ended], [LAUNCH], "X200", None, T0 + DAY).allowed


class TestTierRights:
    def test_benefits_as_rights(self) -> None:
        assert tier_rights(False, "standard") == frozenset()
        assert tier_rights(True, "standard") == {TierRight(PRIORITY)}
        assert tier_rights(True, "key-account-desk") == {
            TierRight(PRIORITY),
            TierRight(SERVICE, "key-account-desk"),
        }

    def test_a_promotion_keeps_what_both_tiers_give(self) -> None:
        held = {"e1": TierRight(PRIORITY), "e2": TierRight(SERVICE, "desk")}
        ending, granting = reconcile(held, tier_rights(True, "engineer"))
        assert ending == ["e2"]
        assert granting == [TierRight(SERVICE, "engineer")]

    def test_a_demotion_ends_everything_the_lower_tier_lacks(self) -> None:
        held = {"e1": TierRight(PRIORITY), "e2": TierRight(SERVICE, "desk")}
        assert reconcile(held, tier_rights(False, "standard")) == (["e1", "e2"], [])

    def test_the_same_tier_again_changes_nothing(self) -> None:
        held = {"e1": TierRight(PRIORITY)}
        assert reconcile(held, tier_rights(True, "standard")) == ([], [])


class TestProblems:
    @pytest.mark.parametrize(
        ("kind", "scope", "quota", "until", "expected"),
        [
            (PRIORITY, Scope(skus=("X",)), 1, None, []),
            (PRIORITY, Scope(), None, T0 - DAY, ["valid_until must be after valid_from"]),
            (PRIORITY, Scope(service="desk"), None, None, ["scoped by skus"]),
            (SERVICE, Scope(), 5, None, ["names its service"]),
            (SERVICE, Scope(service="desk", skus=("X",)), 5, None, ["by its service only"]),
            (PRIORITY, Scope(), 0, None, ["quota must be at least 1"]),
        ],
    )
    def test_grant_problems(
        self, kind: str, scope: Scope, quota: int | None, until: datetime | None, expected: list[str]
    ) -> None:
        problems = grant_problems(kind, scope, quota, T0, until)  # type: ignore[arg-type]
        assert len(problems) == len(expected)
        for problem, words in zip(problems, expected, strict=True):
            assert words in problem

    def test_launch_problems(self) -> None:
        assert launch_problems(["A"], T0, T0 + DAY) == []
        assert launch_problems(["A", "A"], T0, T0) == [
            "public_at must be after opens_at (the priority window)",
            "skus must not repeat",
        ]
