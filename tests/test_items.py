"""Item rules: validation, correction, withdrawal and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ticker import items
from ticker.config import Limits, Vocabulary
from ticker.items import ItemError

NOW = datetime(2026, 5, 7, 15, 42, tzinfo=UTC)
VOCAB = Vocabulary()
LIMITS = Limits()


def create(**payload):
    payload.setdefault("edition", "en")
    return items.create(payload, editor="amal", vocabulary=VOCAB, limits=LIMITS, now=NOW)


def problems(build) -> dict[str, str]:
    with pytest.raises(ItemError) as exc:
        build()
    return exc.value.fields


def test_a_valid_item_gets_id_version_and_timestamps():
    item = create(
        headline="  Lebanese Presidency: President assigns envoy  ",
        source="Lebanese Presidency",
        link="https://news.example/a",
        urgency=1,
        regions=["mena", "Palestine"],
        categories=["Politics"],
    )
    assert item.id.startswith("en-") and items.edition_of(item.id) == "en"
    assert item.headline == "Lebanese Presidency: President assigns envoy"
    assert item.regions == ("MENA", "Palestine")
    assert (item.version, item.status, item.editor) == (1, "live", "amal")
    assert item.created == item.updated == "2026-05-07T15:42:00.000Z"
    assert item.urgency == 1


def test_defaults():
    item = create(headline="Ushakov: talks stay confidential")
    assert (item.urgency, item.source, item.link) == (3, None, None)
    assert (item.pinned, item.publish_at) == (False, None)
    # No expiry given: the default for its urgency (24 hours; a flash, 6).
    assert item.expires == "2026-05-08T15:42:00.000Z"
    assert create(headline="Flash", urgency=1).expires == "2026-05-07T21:42:00.000Z"
    assert create(headline="Stays", expires=None).expires is None


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ({"headline": ""}, "headline", "empty"),
        ({"headline": "   "}, "headline", "empty"),
        ({"headline": "x" * 301}, "headline", "at most 300"),
        ({"headline": "two\nlines"}, "headline", "one line"),
        ({"headline": "bell\x07"}, "headline", "control"),
        ({"headline": "spoof \u202e txet"}, "headline", "direction control"),
        ({"headline": "lone \ud800 surrogate"}, "headline", "a lone surrogate (U+D800)"),
        ({"headline": 42}, "headline", "string"),
        ({"headline": "ok", "link": "javascript:alert(1)"}, "link", "http"),
        ({"headline": "ok", "link": "https://"}, "link", "http"),
        ({"headline": "ok", "link": "https://a.example/x y"}, "link", "spaces"),
        ({"headline": "ok", "urgency": 0}, "urgency", "1 (flash) to 9"),
        ({"headline": "ok", "urgency": True}, "urgency", "1 (flash) to 9"),
        ({"headline": "ok", "urgency": "1"}, "urgency", "1 (flash) to 9"),
        ({"headline": "ok", "regions": ["Mars"]}, "regions", "not one of"),
        ({"headline": "ok", "regions": "Europe"}, "regions", "list"),
        ({"headline": "ok", "categories": ["Gossip"]}, "categories", "not one of"),
        ({"headline": "ok", "source": "s" * 81}, "source", "at most 80"),
        ({"headline": "ok", "expires_in": -5}, "expires_in", "future"),
        ({"headline": "ok", "expires_in": 10**9}, "expires_in", "at most"),
        ({"headline": "ok", "expires": "tomorrow"}, "expires", "ISO 8601"),
        ({"headline": "ok", "expires": "2026-05-08T00:00:00"}, "expires", "time zone"),
        ({"headline": "ok", "colour": "red"}, "colour", "unknown field"),
    ],
)
def test_bad_fields_are_named(payload, field, fragment):
    fields = problems(lambda: create(**payload))
    assert fragment in fields[field], fields


def test_every_problem_is_reported_at_once():
    fields = problems(
        lambda: items.create(
            {"edition": "xx", "urgency": 10}, editor="a", vocabulary=VOCAB, limits=LIMITS
        )
    )
    assert set(fields) == {"edition", "headline", "urgency"}


def test_body_must_be_an_object():
    assert (
        "object"
        in problems(lambda: items.create([], editor="a", vocabulary=VOCAB, limits=LIMITS))["body"]
    )


def test_hostile_markup_is_kept_as_text():
    item = create(headline="<img src=x onerror=alert(1)>")
    assert item.headline == "<img src=x onerror=alert(1)>"


def test_expiry_in_seconds_or_at_a_time():
    assert create(headline="a", expires_in=600).expires == "2026-05-07T15:52:00.000Z"
    assert create(headline="a", expires="2026-05-07T17:52:00+02:00").expires == (
        "2026-05-07T15:52:00.000Z"
    )
    assert (
        "not both"
        in problems(lambda: create(headline="a", expires_in=5, expires="2026-05-08T00:00:00Z"))[
            "expires"
        ]
    )


def test_correction_keeps_id_and_raises_version():
    item = create(headline="Five wounded", regions=["Palestine"])
    later = NOW + timedelta(minutes=3)
    fixed = items.correct(
        item, {"headline": "Six wounded"}, editor="omar", vocabulary=VOCAB, limits=LIMITS, now=later
    )
    assert (fixed.id, fixed.version, fixed.headline) == (item.id, 2, "Six wounded")
    assert fixed.regions == ("Palestine",) and fixed.created == item.created
    assert fixed.updated == "2026-05-07T15:45:00.000Z" and fixed.editor == "omar"


def test_correction_rules():
    item = create(headline="a", expires_in=60)
    correct = lambda payload: items.correct(  # noqa: E731
        item, payload, editor="x", vocabulary=VOCAB, limits=LIMITS, now=NOW
    )
    assert "cannot be changed" in problems(lambda: correct({"edition": "ar"}))["edition"]
    assert "is 1 now" in problems(lambda: correct({"headline": "b", "version": 7}))["version"]
    assert "names no field" in problems(lambda: correct({}))["body"]
    assert correct({"headline": "b", "version": 1}).version == 2
    assert correct({"expires": None}).expires is None


def test_withdraw_and_expire():
    item = create(headline="a", expires_in=60)
    assert not items.is_due(item, NOW)
    assert items.is_due(item, NOW + timedelta(seconds=61))
    withdrawn = items.withdraw(item, editor="chief", now=NOW)
    assert (withdrawn.status, withdrawn.version, withdrawn.editor) == ("withdrawn", 2, "chief")
    assert not items.is_due(withdrawn, NOW + timedelta(days=1))
    assert items.expire(item, now=NOW).status == "expired"


def test_round_trip_through_json():
    item = create(headline="ok", regions=["Europe"])
    assert items.Item.from_dict(item.to_dict()) == item


def test_fingerprint_ignores_key_order():
    assert items.fingerprint({"a": 1, "b": 2}) == items.fingerprint({"b": 2, "a": 1})
    assert items.fingerprint({"a": 1}) != items.fingerprint({"a": 2})


@pytest.mark.parametrize(
    "value",
    [
        -1e20,
        float("-inf"),
        -1e308,
        1e308,
        float("inf"),
        float("nan"),
        True,
        False,
        -(10**400),
        10**400,
        0,
        -0.0,
        "60",
        [60],
        {"s": 60},
    ],
)
def test_hostile_expiry_seconds_are_refused_by_name(value):
    assert set(problems(lambda: create(headline="ok", expires_in=value))) == {"expires_in"}


def test_expiry_seconds_within_the_window_are_kept():
    assert create(headline="a", expires_in=0.5).expires == "2026-05-07T15:42:00.500Z"
    assert create(headline="a", expires_in=LIMITS.max_expiry_seconds).expires is not None


@pytest.mark.parametrize(
    "invisible",
    [
        "\u200b",
        "\u200c",
        "\u200d",
        "\ufeff",
        "\u3164",
        "\u2800",
        "\u115f",
        "\u1160",
        "\uffa0",
        "\u180e",
        "\u2060",
        "\u2061",
        "\u2062",
        "\u2063",
        "\u2064",
        "\ufe00",
        "\ufe0f",
        "\U000e0001",
        "\U000e0020",
        "\U000e007f",
        "\U000e0100",
        "\u00ad",
        "\u034f",
        "\u17b4",
        "\u17b5",
        "\u061c",
        "\u200e",
        "\u200f",
        "\u3000\u200b",
        "\u0301",
        "\ue000",
        "\U0001d173",
        "\U0001bca0",
    ],
)
def test_a_headline_or_source_must_show_something(invisible):
    fields = problems(lambda: create(headline=invisible * 4))
    assert fields == {"headline": "has no visible character"}
    fields = problems(lambda: create(headline="ok", source=f" {invisible} "))
    assert fields == {"source": "has no visible character"}
    assert items.has_visible(f"{invisible}a{invisible}")


@pytest.mark.parametrize(
    "headline",
    [
        "Coders \U0001f469\u200d\U0001f4bb meet",  # a joiner inside an emoji sequence
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # a non-joiner inside Persian
        "\u2764\ufe0f",  # an emoji with its variation selector
        "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",  # a tag flag
        "\ud55c\uad6d",  # Hangul syllables
        "\u2014",  # one dash is something to see
        "5",
    ],
)
def test_invisible_characters_inside_visible_text_are_kept(headline):
    assert create(headline=headline).headline == headline


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("two\nlines", "a line break (U+000A)"),
        ("tab\there", "a tab (U+0009)"),
        ("bell\x07", "a control character (U+0007)"),
        ("nul\x00", "a null character (U+0000)"),
        ("para\u2029graph", "a paragraph separator (U+2029)"),
        ("lone \udc00", "a lone surrogate (U+DC00)"),
    ],
)
def test_control_characters_are_named_in_words(text, words):
    assert problems(lambda: create(headline=text))["headline"] == (
        f"must be one line of plain text: found {words}"
    )


def test_direction_controls_are_named_in_words():
    assert problems(lambda: create(headline="spoof \u202e txet"))["headline"] == (
        "must not contain direction controls: found a right-to-left override (U+202E)"
    )
    assert (
        "a first strong isolate (U+2068)"
        in problems(lambda: create(headline="ok", source="x\u2068y"))["source"]
    )


@pytest.mark.parametrize(
    ("link", "words"),
    [
        ("https://news.example/\ud800", "a lone surrogate (U+D800)"),
        ("https://\udfff.example/", "a lone surrogate (U+DFFF)"),
        ("https://news.example/\u202egpj.exe", "a right-to-left override (U+202E)"),
        ("https://news\u200b.example/", "a zero width space (U+200B)"),
        ("https://news.example/a\u2028b", "a line separator (U+2028)"),
        ("https://news.example/a\x00", "a null character (U+0000)"),
    ],
)
def test_links_refuse_surrogates_controls_and_invisible_characters(link, words):
    assert words in problems(lambda: create(headline="ok", link=link))["link"]


def test_describe_names_any_character():
    assert items.describe("\u2800") == "a braille pattern blank (U+2800)"
    assert items.describe("\ue000") == "a private-use character (U+E000)"
    assert items.describe("\U000e0fff") == "an unassigned code point (U+E0FFF)"
    assert items.describe("\u00ad") == "a soft hyphen (U+00AD)"


# --- scheduling, pins and the default expiry ------------------------------------------------


def at(**delta: float) -> str:
    return (NOW + timedelta(**delta)).isoformat()


def test_a_scheduled_item_waits_and_its_expiry_counts_from_its_time():
    item = create(headline="Embargoed", publish_at="2026-05-07T18:00:00+02:00")
    assert (item.status, item.publish_at) == ("scheduled", "2026-05-07T16:00:00.000Z")
    assert item.scheduled and not item.live
    assert item.expires == "2026-05-08T16:00:00.000Z"  # the default, from publish_at
    assert create(headline="a", publish_at=at(hours=1), expires_in=60).expires == (
        "2026-05-07T16:43:00.000Z"
    )
    # A few seconds of clock difference are forgiven: the item is due at once.
    assert create(headline="a", publish_at=at(seconds=-3)).publish_at == items.now_iso(NOW)
    assert create(headline="a", publish_at=None).status == "live"
    assert items.Item.from_dict(item.to_dict()) == item


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ({"publish_at": at(seconds=-6)}, "publish_at", "must not be in the past"),
        ({"publish_at": at(days=30, seconds=1)}, "publish_at", "at most 30 days ahead"),
        ({"publish_at": "2026-05-08T12:00:00"}, "publish_at", "time zone"),
        ({"publish_at": 1778000000}, "publish_at", "ISO 8601"),
        ({"publish_at": at(hours=2), "expires": at(hours=1)}, "expires", "after publish_at"),
        ({"publish_at": at(hours=1), "expires_in": 8 * 86400}, "expires_in", "at most"),
        ({"pinned": 1}, "pinned", "true or false"),
        ({"pinned": None}, "pinned", "true or false"),
    ],
)
def test_bad_schedules_and_pins_are_named(payload, field, fragment):
    assert fragment in problems(lambda: create(headline="a", **payload))[field]


def test_flashes_expire_sooner_by_default():
    limits = Limits(expiry_flash=600, expiry_default=0)
    make = lambda **p: items.create(  # noqa: E731
        {"edition": "en", "headline": "a", **p},
        editor="x",
        vocabulary=VOCAB,
        limits=limits,
        now=NOW,
    )
    assert make(urgency=1).expires == "2026-05-07T15:52:00.000Z"
    assert make(urgency=2).expires is None and make().expires is None
    assert make(urgency=1, expires_in=60).expires == "2026-05-07T15:43:00.000Z"
    assert items.default_expiry(1, LIMITS) == 6 * 3600
    assert items.default_expiry(3, LIMITS) == 24 * 3600


def test_a_scheduled_item_is_corrected_moved_and_released():
    item = create(headline="Embargoed", publish_at=at(hours=1))
    correct = lambda target, payload: items.correct(  # noqa: E731
        target, payload, editor="chief", vocabulary=VOCAB, limits=LIMITS, now=NOW
    )
    moved = correct(item, {"publish_at": at(hours=3), "pinned": True})
    assert (moved.publish_at, moved.status, moved.version) == (
        "2026-05-07T18:42:00.000Z",
        "scheduled",
        2,
    )
    assert moved.expires == "2026-05-08T18:42:00.000Z"  # still 24 hours after it goes live
    assert moved.pinned
    assert (
        "in the past" in problems(lambda: correct(item, {"publish_at": at(hours=-1)}))["publish_at"]
    )
    assert "cancel it" in problems(lambda: correct(item, {"publish_at": None}))["publish_at"]
    assert (
        "after publish_at" in problems(lambda: correct(moved, {"expires": at(hours=2)}))["expires"]
    )

    released = items.release(moved, now=NOW + timedelta(hours=3))
    assert (released.status, released.version) == ("live", 3)
    assert released.created == released.updated == "2026-05-07T18:42:00.000Z"
    assert released.publish_at == moved.publish_at and released.pinned
    assert (
        "before the item goes live"
        in problems(lambda: correct(released, {"publish_at": at(hours=5)}))["publish_at"]
    )
    assert not correct(released, {"pinned": False}).pinned
