"""Web Push end to end: the publisher's routes and its delivery worker against a push
service running in the test (tests/pushservice.py), on both stores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pushservice import PushService, wait_for

from stack import Stack
from ticker.push import rules
from ticker.push.sender import new_keys
from ticker.push.store import PushStore, push_store_for


@pytest.fixture
def service() -> Iterator[PushService]:
    running = PushService().start()
    try:
        yield running
    finally:
        running.stop()
        assert running.problems == []  # every message passed the push service's checks


@pytest.fixture(params=["embedded", "redis"])
async def stack(
    request: pytest.FixtureRequest, tmp_path: Path, service: PushService
) -> AsyncIterator[Stack]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    running = Stack(
        tmp_path,
        redis_url,
        push_allow_networks=("127.0.0.0/8",),
        push_contact="mailto:desk@news.example",
        push_subscribe_rate="off",
    )
    async with running:
        keys = new_keys()
        assert await push_store_for(running.broker).set_keys(keys)
        service.vapid_public_key = keys.public_key
        yield running


def store_of(stack: Stack) -> PushStore:
    return push_store_for(stack.broker)


async def subscribe(stack: Stack, body: dict[str, Any]) -> Any:
    return await stack.http.post("/api/push/subscriptions", json=body)


async def test_the_key_and_a_flash_reach_the_browser_decrypted(
    stack: Stack, service: PushService
) -> None:
    key = (await stack.http.get("/api/push/key")).json()["publicKey"]
    assert key == service.vapid_public_key
    assert len(rules.b64decode(key)) == 65
    browser = service.browser("reader")
    answer = await subscribe(stack, browser.subscription(edition="en"))
    assert answer.status_code == 201, answer.text
    assert answer.json() == {
        "id": rules.subscription_id(browser.endpoint),
        "edition": "en",
        "urgency": 2,
        "regions": [],
        "categories": [],
    }
    await subscribe(stack, service.browser("arabic").subscription(edition="ar"))

    routine = await stack.post(headline="Routine", urgency=5)
    flash = await stack.post(headline="Quake", urgency=1, source="Desk", link="https://x.example/q")
    await wait_for(lambda: service.messages("reader"))
    await asyncio.sleep(0.3)
    assert service.messages("reader") == [
        {
            "kind": "posted",
            "id": flash["id"],
            "version": 1,
            "edition": "en",
            "headline": "Quake",
            "source": "Desk",
            "urgency": 1,
            "url": "https://x.example/q",
        }
    ]
    assert service.messages("arabic") == []
    (delivery,) = [d for d in service.delivered if d.name == "reader"]
    assert delivery.headers["urgency"] == "high"
    assert delivery.headers["topic"] == flash["id"]
    assert int(delivery.headers["ttl"]) == stack.settings.push_ttl
    assert routine["id"] not in str(service.delivered)


async def test_a_correction_replaces_and_a_withdrawal_closes(
    stack: Stack, service: PushService
) -> None:
    await subscribe(stack, service.browser("reader").subscription(edition="en"))
    await subscribe(stack, service.browser("late").subscription(edition="en", urgency=9))
    flash = await stack.post(headline="Quake", urgency=2)
    await wait_for(lambda: len(service.messages("reader")) == 1)
    other = service.browser("newcomer")
    await subscribe(stack, other.subscription(edition="en"))  # after the flash was pushed

    await stack.correct(flash["id"], headline="Quake: magnitude 6")
    await wait_for(lambda: len(service.messages("reader")) == 2)
    corrected = service.messages("reader")[1]
    assert (corrected["kind"], corrected["version"]) == ("corrected", 2)
    assert corrected["headline"] == "Quake: magnitude 6"
    topics = {d.headers["topic"] for d in service.delivered if d.name == "reader"}
    assert topics == {rules.topic(flash["id"])}  # one Topic: the push service replaces

    await stack.withdraw(flash["id"])
    await wait_for(lambda: len(service.messages("reader")) == 3)
    assert service.messages("reader")[2] == {"kind": "withdrawn", "id": flash["id"], "version": 3}
    await asyncio.sleep(0.3)
    assert service.messages("newcomer") == []  # never had it: no correction, no withdrawal
    assert len(service.messages("late")) == 3


async def test_gone_subscriptions_are_removed_and_busy_services_retried(
    stack: Stack, service: PushService
) -> None:
    await subscribe(stack, service.browser("gone").subscription(edition="en"))
    await subscribe(stack, service.browser("busy").subscription(edition="en"))
    await subscribe(stack, service.browser("broken").subscription(edition="en"))
    await subscribe(stack, service.browser("missing").subscription(edition="en"))
    await subscribe(stack, service.browser("patient").subscription(edition="en"))
    service.script("gone", (410, {}))
    service.script("missing", (404, {}))
    service.script("busy", (429, {"retry-after": "1"}))
    service.script("patient", (429, {"retry-after": "120"}))  # past a minute: given up
    service.script("broken", (500, {}), (503, {}))
    started = asyncio.get_running_loop().time()
    await stack.post(headline="Flash", urgency=1)
    await wait_for(lambda: service.messages("busy") and service.messages("broken"))
    assert asyncio.get_running_loop().time() - started >= 1.0  # Retry-After was honoured
    assert service.attempts["busy"] == 2
    assert service.attempts["broken"] == 3
    store = store_of(stack)
    await wait_for(lambda: service.attempts["gone"] == service.attempts["missing"] == 1)
    for _ in range(50):
        if await store.count() == 3:
            break
        await asyncio.sleep(0.05)
    for name in ("gone", "missing"):
        assert await store.get(rules.subscription_id(service.browsers[name].endpoint)) is None
    assert await store.count() == 3
    assert service.attempts["patient"] == 1 and not service.messages("patient")


async def test_the_largest_item_fits_a_push_message(stack: Stack, service: PushService) -> None:
    """2,000 characters of Arabic in a link are 4,000 bytes: a push service would refuse the
    message (413), so the notification opens the live page instead."""
    await subscribe(stack, service.browser("reader").subscription(edition="ar"))
    link = "https://ar.news.example/" + "\u062e" * 1976
    headline = "\u0639\u0627\u062c\u0644 " * 60  # 300 characters
    posted = await stack.post(
        edition="ar", headline=headline, link=link, source="\u0645" * 80, urgency=1
    )
    await wait_for(lambda: service.messages("reader"))
    (message,) = service.messages("reader")
    assert message["id"] == posted["id"]
    assert message["headline"] == posted["headline"]
    assert message["url"] == "/live/ar"
    assert service.problems == []


async def test_no_more_than_the_set_number_are_in_flight(
    tmp_path: Path, service: PushService
) -> None:
    service.delay = 0.1
    async with Stack(
        tmp_path,
        push_allow_networks=("127.0.0.0/8",),
        push_subscribe_rate="off",
        push_concurrency=3,
    ) as running:
        keys = new_keys()
        await push_store_for(running.broker).set_keys(keys)
        service.vapid_public_key = keys.public_key
        for n in range(12):
            await subscribe(running, service.browser(f"r{n}").subscription(edition="en"))
        await running.post(headline="Flash", urgency=1)
        await wait_for(lambda: len(service.delivered) == 12)
    assert service.most_in_flight == 3


async def test_a_restarted_worker_sends_nothing_twice(stack: Stack, service: PushService) -> None:
    """The delivered versions are recorded in the store: a new worker that replays the
    same events sends nothing again."""
    from ticker.push.process import make_worker

    await subscribe(stack, service.browser("reader").subscription(edition="en"))
    flash = await stack.post(headline="Once", urgency=1)
    await wait_for(lambda: len(service.messages("reader")) == 1)
    store = store_of(stack)
    for _ in range(100):  # the success is recorded just after the push service's answer
        if await store.delivered(flash["id"]):
            break
        await asyncio.sleep(0.02)
    assert list((await store.delivered(flash["id"])).values()) == [1]
    state = await stack.broker.state("en")
    worker = make_worker(stack.settings, stack.broker, store)
    worker._sender = await worker.sender_factory()
    for event in state.events:
        await worker.deliver(event)
    await worker._sender.close()
    assert [m["id"] for m in service.messages("reader")] == [flash["id"]]


async def test_bad_subscriptions_name_the_field(stack: Stack, service: PushService) -> None:
    good = service.browser("x").subscription(edition="en")
    cases = {
        "endpoint": {**good, "endpoint": "http://push.example/x"},
        "keys.p256dh": {**good, "keys": {"p256dh": "AAAA", "auth": good["keys"]["auth"]}},
        "keys.auth": {**good, "keys": {"p256dh": good["keys"]["p256dh"]}},
        "edition": {**good, "edition": "xx"},
        "urgency": {**good, "urgency": 0},
        "region": {**good, "region": "Atlantis"},
    }
    for field, body in cases.items():
        answer = await subscribe(stack, body)
        assert answer.status_code == 422, (field, answer.text)
        assert field in answer.json()["fields"], (field, answer.json())
    private = {**good, "endpoint": "https://10.0.0.1/push/x"}
    answer = await subscribe(stack, private)
    assert answer.status_code == 422
    assert "private" in answer.json()["message"]
    answer = await stack.http.post(
        "/api/push/subscriptions", content=b"{", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    answer = await stack.http.post(
        "/api/push/subscriptions",
        content=b'{"a":"' + b"x" * 5000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 413


async def test_unsubscribing_needs_the_auth_secret(stack: Stack, service: PushService) -> None:
    browser = service.browser("reader")
    body = browser.subscription(edition="en")
    sid = (await subscribe(stack, body)).json()["id"]
    url = f"/api/push/subscriptions/{sid}"
    answer = await stack.http.delete(url, headers={"Push-Auth": "AAAAAAAAAAAAAAAAAAAAAA"})
    assert answer.status_code == 404
    answer = await stack.http.delete(url, headers={"Push-Auth": "short"})
    assert answer.status_code == 400
    assert "Push-Auth" in answer.json()["fields"]
    assert await store_of(stack).count() == 1
    answer = await stack.http.delete(url, headers={"Push-Auth": body["keys"]["auth"]})
    assert answer.status_code == 204
    assert await store_of(stack).count() == 0
    await stack.post(headline="Flash", urgency=1)
    await asyncio.sleep(0.5)
    assert service.messages("reader") == []


async def test_without_keys_push_says_it_is_not_configured(tmp_path: Path) -> None:
    async with Stack(tmp_path) as running:
        answer = await running.http.get("/api/push/key")
        assert answer.status_code == 404
        assert answer.json()["error"] == "push_not_configured"
        answer = await running.http.post("/api/push/subscriptions", json={})
        assert answer.status_code == 404
        assert "not configured" in answer.json()["message"]


async def test_the_service_worker_is_served_for_the_whole_site(tmp_path: Path) -> None:
    async with Stack(tmp_path) as running:
        answer = await running.http.get("/sw.js")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/javascript")
        assert answer.headers["service-worker-allowed"] == "/"
        assert answer.headers["cache-control"] == "no-cache"
        assert "addEventListener" in answer.text


async def test_metrics_count_what_was_sent_removed_and_how_late(
    stack: Stack, service: PushService
) -> None:
    def sample(text: str, name: str) -> float:
        found = [
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)
        ]
        return sum(found)

    before = (await stack.http.get("/metrics")).text
    await subscribe(stack, service.browser("ok").subscription(edition="en"))
    await subscribe(stack, service.browser("gone").subscription(edition="en"))
    service.script("gone", (410, {}))
    await stack.post(headline="Counted", urgency=1)
    await wait_for(lambda: service.messages("ok") and service.attempts["gone"])
    for _ in range(100):  # the delivery process tells its counters within 0.1 s
        after = (await stack.http.get("/metrics")).text
        if sample(after, "ticker_push_delay_seconds_count") > sample(
            before, "ticker_push_delay_seconds_count"
        ):
            break
        await asyncio.sleep(0.05)
    for name, grew in (
        ('ticker_push_sent_total{kind="posted"}', 1),
        ("ticker_push_removed_total", 1),
        ("ticker_push_delay_seconds_count", 1),
    ):
        assert sample(after, name) - sample(before, name) == grew, name
    assert "ticker_push_queue_depth 0.0" in after


async def test_subscribing_is_limited_per_address(tmp_path: Path, service: PushService) -> None:
    async with Stack(
        tmp_path, push_allow_networks=("127.0.0.0/8",), push_subscribe_rate="2/minute"
    ) as running:
        await push_store_for(running.broker).set_keys(new_keys())
        for n in range(2):
            answer = await subscribe(running, service.browser(f"r{n}").subscription(edition="en"))
            assert answer.status_code == 201
        answer = await subscribe(running, service.browser("r3").subscription(edition="en"))
        assert answer.status_code == 429
        assert answer.json()["error"] == "rate_limited"
        assert 0 < int(answer.headers["retry-after"]) <= 60


async def test_host_names_are_resolved_and_checked_before_sending() -> None:
    from ticker.push.sender import Resolver

    assert await Resolver(()).allowed_host("localhost", 443) is False
    loopback = rules.parse_networks(["127.0.0.0/8", "::1/128"])
    assert await Resolver(loopback).allowed_host("localhost", 443) is True
    assert await Resolver(loopback).allowed_host("no-such-host.invalid", 443) is False


async def test_a_name_that_now_points_inside_gets_nothing(
    tmp_path: Path, service: PushService
) -> None:
    """A subscription whose host name resolves to an address that is not allowed (it may
    have pointed elsewhere when the reader subscribed) is not sent to."""
    async with Stack(tmp_path, push_allow_networks=("127.0.0.2/32",)) as running:
        store = push_store_for(running.broker)
        await store.set_keys(new_keys())
        body = service.browser("renamed").subscription(edition="en")
        sub = rules.parse(body, running.settings.vocabulary, rules.parse_networks(["0.0.0.0/0"]))
        endpoint = f"http://localhost:{service.port}/push/renamed"  # 127.0.0.1 now
        await store.add(replace(sub, id=rules.subscription_id(endpoint), endpoint=endpoint))
        before = (await running.http.get("/metrics")).text
        await running.post(headline="Flash", urgency=1)
        refused = 'ticker_push_failed_total{reason="refused"}'
        for _ in range(100):
            after = (await running.http.get("/metrics")).text
            if _sample(after, refused) > _sample(before, refused):
                break
            await asyncio.sleep(0.05)
        assert _sample(after, refused) == _sample(before, refused) + 1
        assert service.attempts["renamed"] == 0


def _sample(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_two_publishers_on_redis_deliver_once(
    tmp_path: Path, redis_url: str, service: PushService
) -> None:
    """Every publisher process runs a worker; the lease lets one deliver at a time."""
    from ticker.push.process import make_worker

    async with Stack(
        tmp_path, redis_url, push_allow_networks=("127.0.0.0/8",), push_subscribe_rate="off"
    ) as running:
        await push_store_for(running.broker).set_keys(new_keys())
        other = make_worker(running.settings, running.broker, push_store_for(running.broker))
        second = asyncio.create_task(other.run())
        try:
            for n in range(20):
                await subscribe(running, service.browser(f"r{n}").subscription(edition="en"))
            await asyncio.sleep(0.2)
            for headline in ("One", "Two", "Three"):
                await running.post(headline=headline, urgency=1)
            await wait_for(lambda: len(service.delivered) >= 60)
            await asyncio.sleep(1.0)
        finally:
            second.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await second
        assert len(service.delivered) == 60
        for n in range(20):
            assert [m["headline"] for m in service.messages(f"r{n}")] == ["One", "Two", "Three"]
