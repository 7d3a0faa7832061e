"""simulate's tour of the scheme's non-material half: what it creates and how it renders (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loyalty_cli import scheme

NOW = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_the_launch_window_is_open_now_and_public_in_two_weeks() -> None:
    launch = scheme.launch_document(NOW)
    assert datetime.fromisoformat(launch["opens_at"]) < NOW
    assert datetime.fromisoformat(launch["public_at"]) == NOW + timedelta(days=14)
    assert scheme.LAUNCH_SKU in launch["skus"]


def test_the_exchange_event_is_in_the_future_with_fewer_seats_than_invitations() -> None:
    gathering = scheme.gathering_document(NOW)
    starts, ends = (datetime.fromisoformat(gathering[k]) for k in ("starts_at", "ends_at"))
    assert NOW < starts < ends
    assert gathering["capacity"] == scheme.SEATS < scheme.INVITED


def test_a_members_rights_row() -> None:
    body = {
        "entitlements": [
            {"name": "Service: dedicated (Gold)", "state": "active"},
            {"name": "Priority purchase (Gold)", "state": "active"},
            {"name": "Old right", "state": "ended"},
        ],
        "decision": {"allowed": True, "reason": "priority-right"},
    }
    assert scheme.rights_cells("M-1", body) == (
        "M-1",
        "Priority purchase (Gold), Service: dedicated (Gold)",
        "yes, under a priority right",
    )
    refused = {"entitlements": [], "decision": {"allowed": False, "reason": "no-right"}}
    assert scheme.rights_cells("M-2", refused) == ("M-2", "-", "not before the public date")


def test_the_gathering_table() -> None:
    view = {
        "title": "Exchange",
        "starts_at": "2027-01-22T09:00:00+00:00",
        "place": "Hamburg",
        "capacity": 1,
        "counts": {"invited": 2, "accepted": 1, "waitlisted": 1, "declined": 0},
    }
    invitations = [
        {"member_id": "M-1", "status": "accepted", "moved_up_at": "x", "responded_via": "link"},
        {"member_id": "M-2", "status": "waitlisted", "waitlist_position": 1, "responded_via": "link"},
    ]
    lines = scheme.render_gathering(view, invitations)
    assert lines[0].startswith("Exchange, 2027-01-22 09:00 UTC at Hamburg: 1 seats, 2 invited, 1 accepted")
    assert "accepted (moved up)" in lines[2]
    assert lines[3].split() == ["M-2", "waitlisted", "1", "link"]
