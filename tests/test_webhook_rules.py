"""The pure rules of webhooks: registration, SSRF address checks, matching, payloads,
the catch-up plan and the retry schedule."""

from __future__ import annotations

import ipaddress
import json
import random

import pytest

from ticker.config import Vocabulary
from ticker.events import Cursor, Event, event_body, event_payload
from ticker.webhooks import rules
from ticker.webhooks.rules import Filters, RegistrationError, RetryPolicy, Webhook

VOCAB = Vocabulary()
LOOPBACK = rules.parse_networks(["127.0.0.0/8", "::1"])


def registration(**fields):
    body = {"url": "https://hooks.example.com/in", "filters": {"edition": "en"}}
    body.update(fields)
    return body


def refusal(payload, allow=()):
    with pytest.raises(RegistrationError) as caught:
        rules.parse_registration(payload, VOCAB, allow)
    return caught.value.fields


def test_a_good_registration_is_read_with_the_vocabulary_spelling():
    got = rules.parse_registration(
        registration(
            filters={"edition": "en", "urgency": 2, "regions": ["mena"], "categories": ["SPORTS"]},
            format="ninjs",
        ),
        VOCAB,
    )
    assert got.url == "https://hooks.example.com/in"
    assert got.filters == Filters("en", 2, ("MENA",), ("Sports",))
    assert got.format == "ninjs"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1.2.3:8080/x",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://240.0.0.1/",
        "http://100.64.0.1/",
        "http://[fc00::1]/",
        "http://[2002:7f00:1::]/",
    ],
)
def test_non_public_addresses_are_refused_naming_url(url):
    fields = refusal(registration(url=url))
    assert list(fields) == ["url"]
    assert "points at" in fields["url"]


def test_the_mapped_loopback_address_says_loopback():
    fields = refusal(registration(url="http://[::ffff:127.0.0.1]/"))
    assert "loopback" in fields["url"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://hooks.example.com/", "http"),
        ("file:///etc/passwd", "http"),
        ("http://user:pw@hooks.example.com/", "credentials"),
        ("http://user@hooks.example.com/", "credentials"),
        ("https://hooks.example.com/#frag", "fragment"),
        ("http:///nohost", "host"),
        ("http://hooks.example.com:99999/", "valid URL"),
        ("http://exa mple.com/", "spaces"),
        ("http://bad_host!.com/", "host"),
        (None, "required"),
        (42, "required"),
    ],
)
def test_bad_urls_are_refused_naming_url(url, says):
    fields = refusal(registration(url=url))
    assert says in fields["url"]


def test_allowed_networks_open_loopback_and_only_them():
    allow = LOOPBACK
    assert rules.parse_registration(registration(url="http://127.0.0.1:9/x"), VOCAB, allow)
    assert rules.parse_registration(registration(url="http://[::ffff:127.0.0.1]/"), VOCAB, allow)
    assert "url" in refusal(registration(url="http://10.0.0.1/"), allow)


def test_public_addresses_and_names_pass():
    for url in ("http://93.184.216.34/", "https://[2606:4700::1111]/x", "http://hooks.example"):
        assert rules.parse_registration(registration(url=url), VOCAB).url == url


def test_every_bad_field_is_named_at_once():
    fields = refusal(
        {
            "url": "http://127.0.0.1/",
            "format": "xml",
            "extra": 1,
            "filters": {"edition": "xx", "urgency": 0, "regions": ["Mars"], "categories": "x"},
        }
    )
    assert set(fields) == {
        "url",
        "format",
        "extra",
        "filters.edition",
        "filters.urgency",
        "filters.regions",
        "filters.categories",
    }
    assert refusal([]) == {"body": "must be a JSON object"}
    assert "filters" in refusal({"url": "https://a.example"})
    assert "filters.urgency" in refusal(registration(filters={"edition": "en", "urgency": True}))


def event(offset, *, edition="en", kind="posted", urgency=3, regions=(), categories=(), epoch="e1"):
    item = {
        "id": f"{edition}-{offset}",
        "edition": edition,
        "headline": f"headline {offset}",
        "source": None,
        "link": None,
        "urgency": urgency,
        "regions": list(regions),
        "categories": list(categories),
        "created": "2026-01-01T00:00:00.000Z",
        "updated": "2026-01-01T00:00:00.000Z",
        "version": 1,
        "status": "live" if kind in ("posted", "corrected") else kind,
        "expires": None,
        "editor": "desk",
    }
    cursor = Cursor(epoch, offset)
    payload = event_payload(cursor, event_body(kind, edition, json.dumps(item)))
    return Event(edition, cursor, kind, item, payload)


def test_matching_by_edition_urgency_regions_and_categories():
    f = Filters("en", 2, ("MENA", "Europe"), ("Politics",))
    assert rules.matches(f, event(1, urgency=1, regions=["MENA"], categories=["Politics"]))
    assert rules.matches(
        f, event(1, urgency=2, regions=["Europe", "Asia"], categories=["Politics"])
    )
    assert not rules.matches(f, event(1, urgency=3, regions=["MENA"], categories=["Politics"]))
    assert not rules.matches(f, event(1, urgency=1, regions=["Asia"], categories=["Politics"]))
    assert not rules.matches(f, event(1, urgency=1, regions=["MENA"], categories=["Sports"]))
    assert not rules.matches(f, event(1, edition="ar", urgency=1, regions=["MENA"]))
    assert rules.matches(Filters("en"), event(1, urgency=9))
    assert rules.matches(Filters("en"), event(2, kind="withdrawn"))


def hook(webhook_id, edition="en", **filters):
    return Webhook(
        webhook_id, "https://a.example", Filters(edition, **filters), "event", "s", "", ""
    )


def test_plan_starts_at_the_head_on_a_first_start():
    assert rules.plan("en", Cursor("e1", 5), [event(5)], None, [hook("a")], "now") == []


def test_plan_queues_the_events_after_the_cursor_for_the_webhooks_they_match():
    hooks = [hook("a"), hook("b", urgency=1), hook("c", edition="ar")]
    events = [event(3), event(4, urgency=1), event(5)]
    got = rules.plan("en", Cursor("e1", 5), events, "e1:3", hooks, "now")
    assert [(m.webhook_id, m.msg_id) for m in got] == [
        ("a", "msg_en_e1_4"),
        ("b", "msg_en_e1_4"),
        ("a", "msg_en_e1_5"),
    ]
    assert got[0].payload == events[1].payload
    assert rules.plan("en", Cursor("e1", 5), events, "e1:5", hooks, "now") is None


def test_plan_sends_a_reset_notice_when_history_was_trimmed_past_the_cursor():
    events = [event(8), event(9)]
    got = rules.plan("en", Cursor("e1", 9), events, "e1:3", [hook("a")], "now")
    assert [m.msg_id for m in got] == ["msg_reset_en_e1_9", "msg_en_e1_8", "msg_en_e1_9"]
    notice = json.loads(got[0].payload)
    assert notice["type"] == "reset" and notice["since"] == "e1:3"
    assert "trimmed" in notice["reason"]


def test_plan_sends_a_reset_notice_and_the_new_epochs_events_when_the_log_restarted():
    events = [event(1, epoch="e2"), event(2, epoch="e2")]
    got = rules.plan("en", Cursor("e2", 2), events, "e1:40", [hook("a")], "now")
    assert [m.msg_id for m in got] == ["msg_reset_en_e2_2", "msg_en_e2_1", "msg_en_e2_2"]
    assert "epoch" in json.loads(got[0].payload)["reason"]


def test_plan_skips_disabled_webhooks():
    off = hook("a")
    off.disabled = "2026-01-01T00:00:00.000Z"
    assert rules.plan("en", Cursor("e1", 2), [event(2)], "e1:1", [off], "now") == []


def test_render_sends_the_event_itself_or_its_ninjs():
    payload = event(7).payload
    assert rules.render("event", payload) == payload
    ninjs = json.loads(rules.render("ninjs", payload))
    assert ninjs["uri"] == "urn:ticker:en:en-7" and ninjs["standard"]["version"] == "2.2"
    assert json.loads(rules.render("ninjs3", payload))["standard"]["version"] == "3.1"
    notice = rules.test_notice("wh_x", "now")
    assert rules.render("ninjs", notice) == notice


def test_backoff_is_exponential_with_full_jitter_under_a_cap():
    policy = RetryPolicy(base=2, max_delay=60, horizon=3600, disable_after=5)
    assert [policy.ceiling(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    rng = random.Random(7)
    delays = [policy.delay(4, rng) for _ in range(2000)]
    assert all(0 <= d <= 16 for d in delays)
    assert min(delays) < 1 and max(delays) > 15  # spread over the whole range
    assert policy.given_up(enqueued=0, now=3601) and not policy.given_up(enqueued=0, now=3599)
    assert policy.disables(5) and not policy.disables(4)
    assert policy.ceiling(10_000) == 60


def test_secrets_and_ids():
    secret = rules.new_secret()
    assert secret.startswith("whsec_") and len(secret) == 6 + 32
    assert rules.new_secret() != secret
    assert rules.is_id(rules.new_id()) and not rules.is_id("wh_../../x")


def test_address_refusal_judges_embedded_ipv4():
    teredo = ipaddress.ip_address("2001:0:4136:e378:8000:63bf:80ff:fffe")  # 127.0.0.1 inside
    assert rules.address_refusal(teredo) is not None
    assert rules.address_refusal(ipaddress.ip_address("8.8.8.8")) is None
