"""The pure rules of Web Push: subscriptions, matching, headers, retries."""

from __future__ import annotations

import base64
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticker.config import Vocabulary
from ticker.push import rules

ALLOWED = rules.parse_networks(["127.0.0.0/8"])
P256DH = base64.urlsafe_b64encode(b"\x04" + os.urandom(64)).decode().rstrip("=")
AUTH = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def body(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "endpoint": "https://fcm.googleapis.com/fcm/send/abc",
        "keys": {"p256dh": P256DH, "auth": AUTH},
        "edition": "en",
    }
    return {**base, **changes}


def test_a_browser_subscription_with_defaults() -> None:
    sub = rules.parse(body(), Vocabulary(), ())
    assert (sub.edition, sub.urgency, sub.regions, sub.categories) == ("en", 2, (), ())
    assert sub.id == rules.subscription_id("https://fcm.googleapis.com/fcm/send/abc")
    assert len(sub.id) == 22
    chosen = rules.parse(body(region="europe", category="POLITICS", urgency=1), Vocabulary(), ())
    assert (chosen.regions, chosen.categories, chosen.urgency) == (("Europe",), ("Politics",), 1)
    many = rules.parse(
        body(regions=["mena", "Europe", "MENA"], categories=["Politics"], category="sports"),
        Vocabulary(),
        (),
    )
    assert (many.regions, many.categories) == (("MENA", "Europe"), ("Sports", "Politics"))
    assert rules.Subscription.from_json(many.to_json()) == many
    padded = body(keys={"p256dh": P256DH + "=" * (-len(P256DH) % 4), "auth": AUTH + "=="})
    assert rules.parse(padded, Vocabulary(), ()).auth == AUTH


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"endpoint": "http://push.example/x"}, "endpoint"),
        ({"endpoint": "ftp://push.example/x"}, "endpoint"),
        ({"endpoint": "https://127.0.0.1/x"}, "endpoint"),
        ({"endpoint": "https://10.1.2.3/x"}, "endpoint"),
        ({"endpoint": "https://[::1]/x"}, "endpoint"),
        ({"endpoint": "https://[::ffff:192.168.0.1]/x"}, "endpoint"),
        ({"endpoint": "https://169.254.169.254/x"}, "endpoint"),
        ({"endpoint": "https://localhost/x"}, "endpoint"),
        ({"endpoint": "https://user:pw@push.example/x"}, "endpoint"),
        ({"endpoint": "https://push.example:99999/x"}, "endpoint"),
        ({"endpoint": "https://push.example/" + "x" * 2000}, "endpoint"),
        ({"endpoint": None}, "endpoint"),
        ({"keys": None}, "keys"),
        ({"keys": {"auth": AUTH}}, "keys.p256dh"),
        ({"keys": {"p256dh": P256DH[:-4], "auth": AUTH}}, "keys.p256dh"),
        ({"keys": {"p256dh": "A" + P256DH[1:], "auth": AUTH}}, "keys.p256dh"),
        ({"keys": {"p256dh": P256DH, "auth": AUTH + "AAAA"}}, "keys.auth"),
        ({"keys": {"p256dh": P256DH, "auth": "***"}}, "keys.auth"),
        ({"edition": "xx"}, "edition"),
        ({"edition": None}, "edition"),
        ({"urgency": 0}, "urgency"),
        ({"urgency": True}, "urgency"),
        ({"region": "Atlantis"}, "region"),
        ({"category": 7}, "category"),
        ({"regions": "Europe"}, "regions"),
        ({"regions": ["Europe", "Atlantis"]}, "regions"),
        ({"categories": [7]}, "categories"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_subscriptions_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(rules.SubscriptionError) as caught:
        rules.parse(body(**changes), Vocabulary(), ())
    assert caught.value.field == field


def test_allowed_networks_admit_local_push_services_over_http() -> None:
    sub = rules.parse(body(endpoint="http://127.0.0.1:9999/push/x"), Vocabulary(), ALLOWED)
    assert sub.endpoint == "http://127.0.0.1:9999/push/x"
    with pytest.raises(rules.SubscriptionError):
        rules.parse(body(endpoint="http://10.0.0.1/push/x"), Vocabulary(), ALLOWED)
    with pytest.raises(rules.SubscriptionError):  # a name is not an address in the network
        rules.parse(body(endpoint="http://push.example/x"), Vocabulary(), ALLOWED)


def test_addresses() -> None:
    assert rules.address_allowed("142.250.1.1", ())
    assert rules.address_allowed("2a00:1450::1", ())
    for private in ("127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "::1", "fe80::1%eth0"):
        assert not rules.address_allowed(private, ()), private
    assert not rules.address_allowed("::ffff:10.0.0.1", ())
    assert not rules.address_allowed("224.0.0.1", ())
    assert not rules.address_allowed("not an address", ())
    assert rules.address_allowed("127.0.0.5", ALLOWED)


def test_who_gets_a_posted_item() -> None:
    sub = rules.parse(body(region="Europe"), Vocabulary(), ())
    item = {"edition": "en", "urgency": 1, "regions": ["Europe"], "categories": []}
    assert rules.wants(sub, item)
    assert rules.wants(sub, {**item, "urgency": 2})
    assert not rules.wants(sub, {**item, "urgency": 3})
    assert not rules.wants(sub, {**item, "regions": ["Asia"]})
    assert not rules.wants(sub, {**item, "edition": "ar"})
    either = rules.parse(body(regions=["Europe", "Asia"], categories=["Sports"]), Vocabulary(), ())
    sport = {**item, "categories": ["Sports", "Politics"]}
    assert rules.wants(either, {**sport, "regions": ["Asia"]})
    assert rules.wants(either, {**sport, "regions": ["Africa", "Europe"]})
    assert not rules.wants(either, {**sport, "regions": ["Africa"]})
    assert not rules.wants(either, {**sport, "categories": ["Politics"], "regions": ["Asia"]})


def test_a_subscription_stored_with_one_region_and_category_reads_as_lists() -> None:
    old = {
        "id": "x",
        "endpoint": "https://push.example/x",
        "p256dh": P256DH,
        "auth": AUTH,
        "edition": "en",
        "urgency": 2,
        "region": "Europe",
        "category": None,
    }
    sub = rules.Subscription.from_json(json.dumps(old))
    assert (sub.regions, sub.categories) == (("Europe",), ())


def test_topic_is_the_id_or_a_digest_of_it() -> None:
    assert rules.topic("en-AbC_d-12345678") == "en-AbC_d-12345678"
    long = rules.topic("en-" + "x" * 40)
    assert len(long) == 32 and long.isascii()
    assert rules.topic("pt.br:item") != "pt.br:item"
    assert rules.topic("en-" + "x" * 40) == long  # the same id, the same topic


def test_headers_and_message() -> None:
    assert [rules.urgency_header(u) for u in (1, 2, 3, 9)] == ["high", "high", "normal", "normal"]
    item = {"id": "en-1", "version": 2, "edition": "en", "headline": "Ä", "urgency": 1}
    assert (
        rules.message("corrected", item, "/live/en")
        == (
            '{"kind":"corrected","id":"en-1","version":2,"edition":"en","headline":"Ä",'
            '"source":null,"urgency":1,"url":"/live/en"}'
        ).encode()
    )
    assert rules.message("withdrawn", item, "/live/en") == (
        b'{"kind":"withdrawn","id":"en-1","version":2}'
    )


MAX_ITEM = {
    "id": "ar-" + "x" * 22,
    "version": 9,
    "edition": "ar",
    "headline": "\U0001f4e2" * 300,  # 300 characters of 4 bytes each
    "source": "\u0645" * 80,
    "urgency": 1,
    "link": "https://ar.news.example/" + "\u062e" * 1976,  # 2,000 characters, 3,976 bytes
}


def test_a_message_too_large_for_a_push_service_gives_up_the_link_then_headline_words() -> None:
    plain = rules.message("posted", {**MAX_ITEM, "link": "https://x.example/a"}, "/live/ar")
    assert b"https://x.example/a" in plain  # it fits: unchanged
    shown = rules.message("posted", MAX_ITEM, "/live/ar")
    assert len(shown) <= rules.MESSAGE_MAX == 3993
    message = json.loads(shown)
    assert message["url"] == "/live/ar"  # the live page instead of the long link
    assert message["headline"] == MAX_ITEM["headline"]  # the headline fits once it is gone
    huge = rules.message("posted", {**MAX_ITEM, "headline": "\u062e" * 2000}, "/live/ar")
    assert len(huge) <= rules.MESSAGE_MAX
    assert json.loads(huge)["headline"].endswith("…")


@given(
    headline=st.text(min_size=1, max_size=300),
    source=st.none() | st.text(max_size=80),
    link=st.none() | st.text(max_size=1976).map(lambda path: "https://n.example/" + path),
)
def test_every_message_fits_a_push_service(headline: str, source: str | None, link: str) -> None:
    item = {**MAX_ITEM, "headline": headline, "source": source, "link": link}
    for kind in ("posted", "corrected", "withdrawn"):
        encoded = rules.message(kind, item, "/live/ar")
        assert len(encoded) <= rules.MESSAGE_MAX
        json.loads(encoded)


def test_retry_after_and_backoff() -> None:
    assert rules.retry_after("7", 0) == 7.0
    assert rules.retry_after(None, 0) is None
    assert rules.retry_after("soon", 0) is None
    assert rules.retry_after("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480.0) == 10.0
    assert rules.retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490.0) == 0.0
    assert [rules.backoff(a) for a in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_the_auth_secret_when_unsubscribing() -> None:
    assert rules.canonical_auth(AUTH + "==") == AUTH
    for bad in ("", "short", "***" * 8):
        with pytest.raises(rules.SubscriptionError):
            rules.canonical_auth(bad)
