"""The push stores: one behaviour on SQLite and Redis (and a Redis Cluster), read through
`push_store_for(broker)`."""

from __future__ import annotations

import asyncio
import time

import pytest

from ticker.brokers.base import Broker
from ticker.events import Cursor
from ticker.push.rules import Subscription, subscription_id
from ticker.push.sender import new_keys
from ticker.push.store import push_store_for


def sub(name: str, edition: str = "en", **choices: object) -> Subscription:
    endpoint = f"https://push.example/{name}"
    return Subscription(
        id=subscription_id(endpoint),
        endpoint=endpoint,
        p256dh="B" + "A" * 86,
        auth="A" * 22,
        edition=edition,
        **choices,  # type: ignore[arg-type]
    )


async def test_keys_are_made_once_unless_replaced(broker: Broker) -> None:
    store = push_store_for(broker)
    assert await store.keys() is None
    first, second = new_keys(), new_keys()
    assert await store.set_keys(first) is True
    assert await store.set_keys(second) is False
    assert await store.keys() == first
    assert await store.set_keys(second, replace=True) is True
    assert await store.keys() == second


async def test_subscriptions_by_edition_and_generation(broker: Broker) -> None:
    store = push_store_for(broker)
    start = await store.generation()
    a, b, c = sub("a"), sub("b", urgency=9, regions=("Europe",)), sub("c", "ar")
    for s in (a, b, c):
        await store.add(s)
    assert await store.count() == 3
    assert sorted(s.id for s in await store.subscriptions("en")) == sorted([a.id, b.id])
    assert await store.subscriptions("ar") == [c]
    assert await store.get(b.id) == b
    assert await store.generation() > start

    # The same endpoint again replaces the choices, edition included.
    moved = sub("a", "ar", urgency=1)
    await store.add(moved)
    assert await store.count() == 3
    assert [s.id for s in await store.subscriptions("en")] == [b.id]
    assert sorted(s.id for s in await store.subscriptions("ar")) == sorted([a.id, c.id])
    assert await store.get(a.id) == moved

    before = await store.generation()
    assert await store.remove(a.id) is True
    assert await store.remove(a.id) is False
    assert await store.get(a.id) is None
    assert await store.generation() > before
    assert await store.count() == 2


async def test_cursors_and_delivered_versions(broker: Broker) -> None:
    store = push_store_for(broker)
    assert await store.cursor("en") is None
    await store.save_cursor("en", Cursor("abc", 7))
    await store.save_cursor("ar", Cursor("xyz", 1))
    assert await store.cursor("en") == Cursor("abc", 7)
    await store.save_cursor("en", Cursor("abc", 9))
    assert await store.cursor("en") == Cursor("abc", 9)

    assert await store.delivered("en-1") == {}
    await store.mark_delivered("en-1", 1, ["s1", "s2"])
    await store.mark_delivered("en-1", 2, ["s1"])
    await store.mark_delivered("en-1", 1, ["s1"])  # an older version never lowers it
    await store.mark_delivered("en-1", 3, [])
    assert await store.delivered("en-1") == {"s1": 2, "s2": 1}
    assert await store.delivered("en-2") == {}


async def test_many_subscriptions_and_a_large_batch(broker: Broker) -> None:
    store = push_store_for(broker)
    subs = [sub(f"n{i}") for i in range(2500)]
    for start in range(0, 500, 50):
        await asyncio.gather(*(store.add(s) for s in subs[start : start + 50]))
    before = await store.generation()
    await store.add_many([*subs[400:], sub("n0", "ar")])  # n0 moves to ar
    assert await store.generation() > before
    assert len(await store.subscriptions("en")) == 2499
    assert [s.id for s in await store.subscriptions("ar")] == [subs[0].id]
    assert await store.count() == 2500
    await store.mark_delivered("en-big", 1, [s.id for s in subs])
    assert len(await store.delivered("en-big")) == 2500


async def test_a_state_seen_by_another_connection(broker: Broker) -> None:
    """Another publisher process (or `ticker push keys create`) has its own connection."""
    keys = new_keys()
    other = type(broker)(
        getattr(broker, "url", None) or broker.path,  # type: ignore[attr-defined]
        editions=broker.editions,  # type: ignore[attr-defined]
    )
    await other.start()
    try:
        assert await push_store_for(other).set_keys(keys)
        await push_store_for(other).add(sub("x"))
        store = push_store_for(broker)
        assert await store.keys() == keys
        assert [s.endpoint for s in await store.subscriptions("en")] == ["https://push.example/x"]
    finally:
        await other.close()


async def test_one_lease_holder_at_a_time(broker: Broker) -> None:
    store = push_store_for(broker)
    assert await store.lease("one", 0.3)
    assert await store.lease("one", 0.3)  # renewed
    if type(store).__name__ == "SqlitePushStore":
        return  # one serving process per file: it always holds the lease
    assert not await store.lease("two", 0.3)
    await asyncio.sleep(0.4)
    assert await store.lease("two", 0.3)


async def test_records_of_what_was_sent_go_after_eight_days(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They only serve corrections of items still live, and an item lives at most 7 days."""
    from ticker.push import store as module

    store = push_store_for(broker)
    if isinstance(store, module.RedisPushStore):
        await store.mark_delivered("en-1", 1, ["s1"])
        ttl = await store._r.ttl(f"{store._base}:delivered:en-1")
        assert module.SENT_SECONDS - 60 < ttl <= module.SENT_SECONDS == 8 * 24 * 3600
        return
    now = time.time()
    monkeypatch.setattr(module.time, "time", lambda: now - module.SENT_SECONDS - 7200)
    await store.mark_delivered("en-old", 1, ["s1"])
    monkeypatch.setattr(module.time, "time", lambda: now)
    await store.mark_delivered("en-new", 1, ["s1"])
    assert await store.delivered("en-old") == {}
    assert await store.delivered("en-new") == {"s1": 1}
