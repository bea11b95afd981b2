"""The pure rules of roles, scopes, expiry and the audit trail's entries and filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ticker import audit
from ticker.auth import Unauthenticated, principal_of, token_spec
from ticker.brokers.base import TokenRecord
from ticker.config import Limits, Vocabulary
from ticker.items import correct, create
from ticker.roles import Principal, RoleError, parse_editions, parse_expiry, parse_roles

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EDITIONS = ("en", "ar", "es")


class At:
    def __init__(self, edition: str) -> None:
        self.edition = edition


def test_roles_are_a_set_of_known_names() -> None:
    assert parse_roles("editor") == {"editor"}
    assert parse_roles("admin, editor") == {"admin", "editor"}
    assert parse_roles(["chief"]) == {"chief"}
    for bad in ("writer", "", ",", "editor,boss"):
        with pytest.raises(RoleError) as caught:
            parse_roles(bad)
        assert caught.value.field == "role"


def test_a_scope_is_known_editions_and_only_an_editors() -> None:
    editor = frozenset({"editor"})
    assert parse_editions("en,ar", EDITIONS, editor) == ("en", "ar")
    assert parse_editions(["es", "es"], EDITIONS, editor) == ("es",)
    assert parse_editions(None, EDITIONS, editor) is None
    assert parse_editions("all", EDITIONS, frozenset({"chief"})) is None
    with pytest.raises(RoleError, match="unknown edition 'fr'"):
        parse_editions("en,fr", EDITIONS, editor)
    with pytest.raises(RoleError, match="only an editor"):
        parse_editions("en", EDITIONS, frozenset({"chief"}))
    with pytest.raises(RoleError):
        parse_editions("", EDITIONS, editor)


def test_expiry_is_days_hours_or_an_iso_date() -> None:
    assert parse_expiry("90d", NOW) == "2027-02-24T12:00:00.000Z"
    assert parse_expiry("12h", NOW) == "2026-11-27T00:00:00.000Z"
    assert parse_expiry("2026-12-31", NOW) == "2026-12-31T00:00:00.000Z"
    assert parse_expiry("2026-12-31T18:00:00+02:00", NOW) == "2026-12-31T16:00:00.000Z"
    assert parse_expiry(None, NOW) is None
    for bad in ("soon", "0d", "90m", "2026-01-01", "d", "99999999d"):
        with pytest.raises(RoleError) as caught:
            parse_expiry(bad, NOW)
        assert caught.value.field == "expires"


def test_what_each_role_may_do() -> None:
    editor = Principal("amal", frozenset({"editor"}), ("en", "ar"))
    chief = Principal("rana", frozenset({"chief"}))
    admin = Principal("ops", frozenset({"admin"}))
    both = Principal("lina", frozenset({"admin", "editor"}), ("es",))
    anywhere = Principal("omar", frozenset({"editor"}))
    assert editor.can_post("ar") and not editor.can_post("es")
    assert editor.can_withdraw(At("en")) and not editor.can_withdraw(At("es"))
    assert chief.can_post("es") and chief.can_withdraw(At("es"))
    assert not admin.can_post("en") and not admin.can_post_anywhere and admin.is_admin
    assert both.can_post("es") and not both.can_post("en") and both.is_admin
    assert anywhere.can_post("es")
    assert not editor.is_admin and not chief.is_admin
    assert (editor.acting_role(), chief.acting_role()) == ("editor", "chief")


def test_a_stored_token_becomes_a_principal_or_says_why_not() -> None:
    legacy = TokenRecord("desk", "d", "2025-01-01T00:00:00.000Z")
    assert principal_of(legacy, legacy_roles=("chief",), now=NOW) == Principal(
        "desk", frozenset({"chief"})
    )
    scoped = TokenRecord("amal", "d", "", ("editor",), ("en",), "2026-11-26T12:00:01.000Z")
    assert principal_of(scoped, legacy_roles=("chief",), now=NOW).editions == ("en",)
    for record, reason in (
        (None, "unknown"),
        (TokenRecord("amal", "d", "", revoked=True), "revoked"),
        (TokenRecord("amal", "d", "", ("editor",), None, "2026-11-26T12:00:00.000Z"), "expired"),
    ):
        with pytest.raises(Unauthenticated) as caught:
            principal_of(record, legacy_roles=("chief",), now=NOW)
        assert caught.value.reason == reason


def test_a_token_spec_names_the_wrong_field() -> None:
    spec = token_spec("editor", ["en"], "90d", known=EDITIONS, now=NOW)
    assert (spec.roles, spec.editions) == (("editor",), ("en",))
    assert token_spec(["chief", "admin"], None, None, known=EDITIONS, now=NOW).roles == (
        "admin",
        "chief",
    )
    for roles, editions, expires, field in (
        (None, None, None, "role"),
        ("editor", 5, None, "editions"),
        ("editor", None, 90, "expires"),
    ):
        with pytest.raises(RoleError) as caught:
            token_spec(roles, editions, expires, known=EDITIONS, now=NOW)
        assert caught.value.field == field


def test_an_entry_holds_each_changed_field_before_and_after() -> None:
    item = create(
        {"edition": "en", "headline": "Quake", "urgency": 2},
        editor="amal",
        vocabulary=Vocabulary(),
        limits=Limits(),
        now=NOW,
    )
    fixed = correct(
        item,
        {"headline": "Quake, 6.1"},
        editor="omar",
        vocabulary=Vocabulary(),
        limits=Limits(),
        now=NOW + timedelta(minutes=1),
    )
    changes = audit.item_changes(item, fixed)
    assert changes["headline"] == ["Quake", "Quake, 6.1"]
    assert changes["editor"] == ["amal", "omar"]
    assert changes["version"] == [1, 2]
    assert "urgency" not in changes and "created" not in changes
    new = audit.item_changes(None, item)
    assert new["urgency"] == [None, 2] and new["id"] == [None, item.id]
    entry = audit.for_item("corrected", item, fixed, audit.Request("omar", "editor", "::1", "x"))
    assert entry.body()["changes"] == changes and entry.item == item.id
    assert audit.AuditEntry.from_body(entry.body(), id="7", at="t") == audit.AuditEntry(
        **{**entry.body(), "id": "7", "at": "t"}
    )


def test_filters_are_checked_and_named() -> None:
    query = audit.parse_query(
        {"edition": "en", "from": "2026-11-01", "to": "2026-11-02T10:00Z", "limit": "10"},
        EDITIONS,
    )
    assert query.edition == "en" and query.limit == 10
    assert query.since == datetime(2026, 11, 1, tzinfo=UTC)
    assert query.until == datetime(2026, 11, 2, 10, tzinfo=UTC)
    for params, field in (
        ({"from": "last week"}, "from"),
        ({"to": "2026-02-30"}, "to"),
        ({"limit": "501"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"edition": "fr"}, "edition"),
        ({"item": "x"}, "item"),
        ({"cursor": "!!"}, "cursor"),
        ({"editor": ""}, "editor"),
        ({"sort": "asc"}, "sort"),
    ):
        with pytest.raises(audit.AuditQueryError) as caught:
            audit.parse_query(params, EDITIONS)
        assert caught.value.field == field


def test_cursors_round_trip_and_refuse_garbage() -> None:
    text = audit.encode_cursor(["r", 1764121234567, 3, "en"])
    assert audit.decode_cursor(text) == ["r", 1764121234567, 3, "en"]
    for bad in ("", "e30", "bnVsbA", "%%%"):
        with pytest.raises(audit.AuditQueryError):
            audit.decode_cursor(bad)
