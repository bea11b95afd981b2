"""The expiry sweeper on both stores: every item leaves within a second of its expiry, at
any volume, with several sweepers at once, and without spinning when nothing is due."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redisserver import RedisServer

from ticker.brokers.base import Broker, Change
from ticker.brokers.embedded import EmbeddedBroker
from ticker.brokers.redis import RedisBroker
from ticker.config import Limits, Vocabulary
from ticker.events import EditionState, Event
from ticker.expiry import Retirer, expiry_sweeper, sweep
from ticker.items import Item, create, parse_time

EDITIONS = ("en", "ar")


@pytest.fixture(scope="module")
def quick_redis() -> Iterator[RedisServer]:
    """A Redis that does not write to disk: these tests time the sweeper, and on a busy
    machine one slow disk write stalls every publish behind it for seconds."""
    server = RedisServer(extra_args=("--appendonly", "no"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(params=["embedded", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "embedded":
        made: Broker = EmbeddedBroker(tmp_path / "ticker.db", editions=EDITIONS, history=10000)
    else:
        server = request.getfixturevalue("quick_redis")
        server.ensure_running()
        server.flush()
        made = RedisBroker(server.url, editions=EDITIONS, history=10000)
    await made.start()
    try:
        yield made
    finally:
        await made.close()


def new_item(n: int, expires_in: float | None) -> Item:
    payload: dict[str, Any] = {"edition": EDITIONS[n % 2], "headline": f"Alert {n}"}
    if expires_in is not None:
        payload["expires_in"] = expires_in
    return create(payload, editor="desk", vocabulary=Vocabulary(), limits=Limits())


async def post_many(broker: Broker, items: list[Item]) -> dict[str, datetime]:
    """Post from 32 clients at once; when each post was done."""
    queue = list(reversed(items))
    done: dict[str, datetime] = {}

    async def client() -> None:
        while queue:
            item = queue.pop()
            await broker.publish(Change("posted", item))
            done[item.id] = datetime.now(UTC)
            await asyncio.sleep(0)  # as separate requests would: let the sweepers run

    await asyncio.gather(*(client() for _ in range(32)))
    return done


async def stop(*tasks: asyncio.Task[Any]) -> None:
    """Cancel and wait: a sweeper must end when cancelled, within a second."""
    for task in tasks:
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=1) if tasks else (set(), set())
    assert not pending, "a sweeper did not stop"
    assert all(task.cancelled() for task in done)


class Counting:
    """A broker seen through the sweeper's eyes, counting how often it is asked."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.asked = 0

    async def due(self, now: datetime, limit: int = 100) -> list[Item]:
        self.asked += 1
        return await self.broker.due(now, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.broker, name)


@pytest.mark.parametrize(
    ("count", "sweeping"),
    [
        (2000, 1),  # all expiring within 2 s: 1,000 a second
        (300, 3),  # several publishers sweep the same store (here in one process)
    ],
)
async def test_thousands_of_items_leave_within_a_second_of_their_expiry(
    store: Broker, count: int, sweeping: int
) -> None:
    # On a machine shared with much else, the store itself (a redis-server starved of CPU)
    # can stall for a second or more while the sweeper waits on it; a second round tells
    # that apart from a sweeper that cannot keep up, which is late every time.
    rounds = []
    for _ in range(3):
        rounds.append(await expire_many(store, count, sweeping))
        if rounds[-1] <= 1.0:
            break
    assert min(rounds) <= 1.0, f"latest expiry in each round: {rounds} s"


async def expire_many(store: Broker, count: int, sweeping: int) -> float:
    """Post `count` items expiring within 2 s, sweep, and check every expired event;
    return how late the latest one was, in seconds."""
    # From 6 s on, so that posting is over even on a busy machine: the sweeper is timed,
    # not the posting.
    items = [new_item(n, 6 + 2 * n / count) for n in range(count)]
    follower = store.follow(EDITIONS)
    late: list[float] = []
    expired: Counter[str] = Counter()
    sweepers: list[asyncio.Task[None]] = []
    try:
        for _ in EDITIONS:
            assert isinstance(await asyncio.wait_for(anext(follower), 5), EditionState)
        # Sweeping from before the first post.
        # (Several in one process share one connection pool: fewer in flight each.)
        sweepers = [
            asyncio.create_task(expiry_sweeper(store, concurrency=32 // sweeping))
            for _ in range(sweeping)
        ]
        posted = await post_many(store, items)
        # On a slow machine an item may be posted after its expiry: it is due from then.
        due = {item.id: max(parse_time(item.expires or ""), posted[item.id]) for item in items}
        while len(expired) < count:
            update = await asyncio.wait_for(anext(follower), 10)
            assert isinstance(update, Event), "the follower lost events"
            if update.kind != "expired" or update.item["id"] not in due:
                continue
            expired[update.item["id"]] += 1
            left = parse_time(update.item["updated"])
            late.append((left - due[update.item["id"]]).total_seconds())
    finally:
        await stop(*sweepers)
        await follower.aclose()
    assert set(expired.values()) == {1}  # each once, whoever swept it
    assert min(late) >= -0.01  # `updated` has milliseconds; the post time has more
    assert await store.due(datetime.now(UTC)) == []
    return max(late)


async def test_a_pass_takes_every_due_item_in_batches(store: Broker) -> None:
    items = [new_item(n, 0.5) for n in range(250)]
    await post_many(store, items)
    await asyncio.sleep(0.6)
    counting = Counting(store)
    await sweep(counting, batch=40)  # type: ignore[arg-type]
    assert await store.due(datetime.now(UTC)) == []
    assert counting.asked == 8  # 7 batches, then one that finds nothing


async def test_the_sweeper_sleeps_when_nothing_is_due(store: Broker) -> None:
    await post_many(store, [new_item(1, 3600), new_item(2, None)])
    counting = Counting(store)
    task = asyncio.create_task(expiry_sweeper(counting, interval=0.5))  # type: ignore[arg-type]
    await asyncio.sleep(1.6)
    await stop(task)
    assert 1 <= counting.asked <= 5


async def test_the_sweeper_wakes_for_the_next_expiry(store: Broker) -> None:
    """Asleep with a long interval, it still comes back when the next item is due."""
    item = new_item(1, 1.0)
    await store.publish(Change("posted", item))
    task = asyncio.create_task(expiry_sweeper(store, interval=30))
    try:
        deadline = time.monotonic() + 5
        while await store.get(item.id) is not None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await stop(task)
    assert datetime.now(UTC) - parse_time(item.expires or "") < timedelta(seconds=1)


async def test_a_stale_expiry_entry_does_not_make_it_spin(
    redis_url: str, redis_server: RedisServer
) -> None:
    broker = RedisBroker(redis_url, editions=EDITIONS)
    await broker.start()
    try:
        with redis_server._client() as raw:
            raw.zadd("ticker:{en}:expiry", {"en-gone": 1})  # no such item
        counting = Counting(broker)
        task = asyncio.create_task(expiry_sweeper(counting, interval=0.5))  # type: ignore[arg-type]
        await asyncio.sleep(1.6)
        await stop(task)
        assert counting.asked <= 5
    finally:
        await broker.close()


async def test_a_cancelled_sweeper_stops_whatever_it_was_doing(store: Broker) -> None:
    await post_many(store, [new_item(n, 0.2) for n in range(300)])
    await asyncio.sleep(0.3)
    for delay in (0, 0.001, 0.005, 0.02):
        task = asyncio.create_task(expiry_sweeper(store, interval=0.01))
        await asyncio.sleep(delay)
        await stop(task)


async def test_posts_that_finish_together_retire_in_one_run_or_two(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "t.db", editions=("en",))
    await broker.start()
    try:
        for n in range(25):  # five past a cap of 20, as if posted together
            item = create(
                {"edition": "en", "headline": f"item {n}"},
                editor="desk",
                vocabulary=Vocabulary(),
                limits=Limits(),
            )
            await broker.publish(Change("posted", item))
        runs = 0
        original = broker.live

        async def counted(edition: str):
            nonlocal runs
            runs += 1
            await asyncio.sleep(0.01)  # a store over the network: the other posts go on
            return await original(edition)

        broker.live = counted  # type: ignore[method-assign]
        retirer = Retirer(broker, max_live=20)
        await asyncio.gather(*(retirer.after_post("en") for _ in range(5)))
        assert len((await original("en"))[1]) == 20
        assert runs <= 3  # a run or two retire all five; the other posts find it done
    finally:
        await broker.close()
