"""The webhook stores: one behaviour on the embedded store and on Redis."""

from __future__ import annotations

import asyncio

import pytest

from ticker.brokers.base import Broker
from ticker.brokers.embedded import EmbeddedBroker
from ticker.brokers.redis import RedisBroker
from ticker.webhooks.rules import Filters, Message, Webhook
from ticker.webhooks.store import Attempt, WebhookStore, webhook_store

EDITIONS = ("en", "ar", "es")


@pytest.fixture(params=["embedded", "redis", "cluster"])
async def broker(request, tmp_path):
    if request.param == "embedded":
        made: Broker = EmbeddedBroker(tmp_path / "ticker.db", editions=EDITIONS)
    elif request.param == "redis":
        made = RedisBroker(request.getfixturevalue("redis_url"), editions=EDITIONS)
    else:
        made = RedisBroker(request.getfixturevalue("redis_cluster_url"), editions=EDITIONS)
    await made.start()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def store(broker) -> WebhookStore:
    return webhook_store(broker)


def hook(webhook_id: str, created: str = "2026-01-01T00:00:00.000Z") -> Webhook:
    return Webhook(
        webhook_id,
        "https://a.example/in",
        Filters("en", 3, ("MENA",)),
        "event",
        "whsec_c2VjcmV0",
        created,
        "desk",
        "a partner",
    )


async def test_the_registry(store):
    await store.create(hook("wh_b", "2026-01-02T00:00:00.000Z"))
    await store.create(hook("wh_a", "2026-01-03T00:00:00.000Z"))
    got = await store.get("wh_b")
    assert got is not None and got.public() == hook("wh_b", "2026-01-02T00:00:00.000Z").public()
    assert got.secret == "whsec_c2VjcmV0"
    assert [h.id for h in await store.all()] == ["wh_b", "wh_a"]
    assert await store.get("wh_none") is None
    assert await store.delete("wh_b") is True
    assert await store.delete("wh_b") is False
    assert [h.id for h in await store.all()] == ["wh_a"]


async def test_ingest_is_a_compare_and_set_on_the_cursor(store):
    await store.create(hook("wh_a"))
    assert await store.cursor("en") is None
    # Expecting a cursor where there is none yet is a conflict too, told as "".
    assert await store.ingest("en", "e1:3", "e1:4", [Message("wh_a", "m", b"{}")]) == ""
    assert await store.cursor("en") is None and await store.depth("wh_a") == 0
    assert await store.ingest("en", None, "e1:4", []) is None
    assert await store.cursor("en") == "e1:4"
    # Another process got there first: nothing changes, and the cursor as it stands is told.
    assert await store.ingest("en", None, "e1:9", [Message("wh_a", "m", b"{}")]) == "e1:4"
    assert await store.ingest("en", "e1:3", "e1:9", [Message("wh_a", "m", b"{}")]) == "e1:4"
    assert await store.depth("wh_a") == 0
    messages = [Message("wh_a", f"msg_{i}", f'{{"n":{i}}}'.encode()) for i in (5, 6)]
    assert await store.ingest("en", "e1:4", "e1:6", messages) is None
    assert await store.cursor("en") == "e1:6"
    assert await store.cursor("ar") is None
    assert await store.depth("wh_a") == 2


async def test_the_queue_is_in_order_and_drops_only_its_head(store):
    await store.create(hook("wh_a"))
    await store.create(hook("wh_b"))
    messages = [
        Message("wh_a", "m1", b'{"n":1}'),
        Message("wh_b", "m1", b'{"n":1}'),
        Message("wh_a", "m2", b'{"n":2}\n'),
        Message("wh_gone", "m2", b"{}"),  # deleted meanwhile: not queued
    ]
    await store.ingest("en", None, "e:2", messages)
    head = await store.head("wh_a")
    assert head is not None
    assert (head.msg_id, head.payload, head.attempts, head.next_at) == ("m1", b'{"n":1}', 0, 0)
    assert await store.depth("wh_gone") == 0
    assert await store.failed("wh_a", "m1", next_at=123.5) == 1
    assert await store.failed("wh_a", "m1", next_at=124.5) == 2
    head = await store.head("wh_a")
    assert (head.msg_id, head.attempts, head.next_at) == ("m1", 2, 124.5)
    assert (await store.get("wh_a")).failures == 2
    await store.done("wh_a", "m2", delivered=True)  # not the head: stays
    assert (await store.head("wh_a")).msg_id == "m1"
    await store.done("wh_a", "m1", delivered=True)
    head = await store.head("wh_a")
    assert (head.msg_id, head.payload, head.attempts, head.next_at) == ("m2", b'{"n":2}\n', 0, 0)
    assert (await store.get("wh_a")).failures == 0
    await store.failed("wh_a", "m2", next_at=1.0)
    await store.done("wh_a", "m2", delivered=False)  # given up: failures stay
    assert await store.head("wh_a") is None
    assert (await store.get("wh_a")).failures == 1
    assert (await store.head("wh_b")).msg_id == "m1"
    assert await store.delete("wh_b")
    assert await store.head("wh_b") is None


async def test_disable_stops_queueing_and_enable_starts_afresh(store):
    await store.create(hook("wh_a"))
    await store.ingest("en", None, "e:1", [Message("wh_a", "m1", b"{}")])
    await store.failed("wh_a", "m1", next_at=9e9)
    assert await store.disable("wh_a", "2026-01-01T00:00:00.000Z", "10 failures: HTTP 500")
    assert not await store.disable("wh_none", "x", "y")
    got = await store.get("wh_a")
    assert (got.disabled, got.disabled_reason) == (
        "2026-01-01T00:00:00.000Z",
        "10 failures: HTTP 500",
    )
    assert got.public()["enabled"] is False
    await store.ingest("en", "e:1", "e:2", [Message("wh_a", "m2", b"{}")])
    assert await store.depth("wh_a") == 1  # nothing queued while disabled
    assert await store.enable("wh_a")
    assert not await store.enable("wh_none")
    got = await store.get("wh_a")
    assert (got.disabled, got.disabled_reason, got.failures) == (None, None, 0)
    head = await store.head("wh_a")
    assert (head.msg_id, head.attempts, head.next_at) == ("m1", 0, 0)


async def test_the_delivery_log_keeps_the_newest_hundred(store):
    await store.create(hook("wh_a"))
    for n in range(105):
        await store.record("wh_a", Attempt(f"m{n}", "t", 500, n, "HTTP 500", "failed"))
    log = await store.deliveries("wh_a")
    assert len(log) == 100
    assert log[0] == Attempt("m104", "t", 500, 104, "HTTP 500", "failed")
    assert log[-1].msg_id == "m5"
    assert await store.deliveries("wh_b") == []


async def test_a_lease_is_held_by_one_owner_until_it_expires_or_is_released(store):
    assert await store.lease("wh_a", "one", ttl=0.5)
    assert await store.lease("wh_a", "one", ttl=0.5)  # renewed
    assert not await store.lease("wh_a", "two", ttl=0.5)
    assert await store.lease("wh_b", "two", ttl=0.5)  # per webhook
    await store.release("wh_a", "two")  # not the owner: no effect
    assert not await store.lease("wh_a", "two", ttl=0.5)
    await store.release("wh_a", "one")
    assert await store.lease("wh_a", "two", ttl=0.3)
    await asyncio.sleep(0.4)
    assert await store.lease("wh_a", "one", ttl=0.5)  # expired


async def test_another_connection_sees_the_same_webhooks(broker, store):
    """Another publisher process has its own connection and sees the same state."""
    await store.create(hook("wh_a"))
    other = type(broker)(getattr(broker, "url", None) or broker.path, editions=EDITIONS)
    await other.start()
    try:
        theirs = webhook_store(other)
        assert [h.id for h in await theirs.all()] == ["wh_a"]
        assert await store.lease("wh_a", "one", ttl=5)
        assert not await theirs.lease("wh_a", "two", ttl=5)
    finally:
        await other.close()
