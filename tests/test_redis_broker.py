"""What only the Redis broker can go through: restarts, lost data, a frozen server, dead
connections, and a key layout that Redis Cluster accepts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ResponseError
from redisserver import RedisServer

from ticker.brokers.base import BrokerMisconfigured, BrokerUnavailable, Change
from ticker.brokers.redis import RedisBroker
from ticker.config import Limits, Vocabulary
from ticker.edition_log import EditionLog
from ticker.events import EditionState, Event
from ticker.items import Item, correct, create, expire

Follower = AsyncIterator[EditionState | Event]
MakeBroker = Callable[..., Awaitable[RedisBroker]]


def new_item(headline: str = "Quake hits the coast", edition: str = "en", **fields: Any) -> Item:
    payload = {"edition": edition, "headline": headline, **fields}
    return create(payload, editor="desk", vocabulary=Vocabulary(), limits=Limits())


async def post(broker: RedisBroker, headline: str, **change: str) -> Item:
    item = new_item(headline)
    await broker.publish(Change("posted", item, **change))
    return item


async def next_of(follower: Follower, timeout: float = 5) -> EditionState | Event:
    return await asyncio.wait_for(anext(follower), timeout)


async def next_event(follower: Follower) -> Event:
    update = await next_of(follower)
    assert isinstance(update, Event), f"expected an event, got {update!r}"
    return update


async def next_state(follower: Follower) -> EditionState:
    update = await next_of(follower)
    assert isinstance(update, EditionState)
    return update


@pytest.fixture
async def make_broker(redis_url: str) -> AsyncIterator[MakeBroker]:
    """Started brokers on the test's Redis (or another URL), closed after the test."""
    made: list[RedisBroker] = []

    async def make(url: str = redis_url, **options: object) -> RedisBroker:
        options = {"editions": ("en", "ar"), "socket_timeout": 0.5, **options}
        broker = RedisBroker(url, **options)  # type: ignore[arg-type]
        made.append(broker)
        await broker.start()
        return broker

    yield make
    for broker in made:
        await broker.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def kill_followers(raw: aioredis.Redis) -> None:
    """Drop every pub/sub connection, as a proxy or a network blip would."""
    assert await raw.client_kill_filter(_type="pubsub") >= 1


async def test_keys_carry_one_hash_tag_per_edition(
    make_broker: MakeBroker, raw: aioredis.Redis
) -> None:
    broker = await make_broker()
    item = await post(broker, "Tagged", idempotency_key="key-1", fingerprint="f")
    fixed = correct(
        item, {"expires_in": 60}, editor="desk", vocabulary=Vocabulary(), limits=Limits()
    )
    await broker.publish(Change("corrected", fixed, expected_version=1))
    await broker.publish(Change("posted", new_item("عاجل", edition="ar")))
    pinned = replace(new_item("Pinned"), pinned=True)
    await broker.publish(Change("posted", pinned, max_pinned=3))
    await broker.schedule(
        new_item("Later", publish_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    )
    await broker.tokens.add("maria", "digest", "2025-01-01T00:00:00.000Z")

    keys = sorted(k.decode() for k in await raw.keys("*"))
    assert keys == [
        "ticker:{ar}:archive:all",
        "ticker:{ar}:archive:index",
        "ticker:{ar}:archive:items",
        "ticker:{ar}:archive:t:e:desk",
        "ticker:{ar}:archive:t:s:live",
        "ticker:{ar}:archive:t:w:عاجل",
        "ticker:{ar}:audit",
        "ticker:{ar}:expiry",
        "ticker:{ar}:items",
        "ticker:{ar}:log",
        "ticker:{ar}:meta",
        "ticker:{en}:archive:all",
        "ticker:{en}:archive:index",
        "ticker:{en}:archive:items",
        "ticker:{en}:archive:t:e:desk",
        "ticker:{en}:archive:t:s:live",
        "ticker:{en}:archive:t:w:pinned",
        "ticker:{en}:archive:t:w:tagged",
        "ticker:{en}:audit",
        "ticker:{en}:expiry",
        "ticker:{en}:idem:key-1",
        "ticker:{en}:items",
        "ticker:{en}:log",
        "ticker:{en}:meta",
        "ticker:{en}:pinned",
        "ticker:{en}:scheduled",
        "ticker:{en}:scheduled:due",
        "ticker:{tokens}",
        "ticker:{tokens}:audit",
        "ticker:{tokens}:digests",
    ]
    for tag in ("{en}", "{ar}", "{tokens}"):
        assert len({key_slot(k.encode()) for k in keys if tag in k}) == 1
    assert await raw.ttl("ticker:{en}:idem:key-1") > 86000


async def test_unreachable_redis_is_reported_without_the_password(
    make_broker: MakeBroker, redis_server: RedisServer
) -> None:
    url = f"redis://:hunter2@127.0.0.1:{redis_server.port}/0"
    redis_server.stop()
    with pytest.raises(BrokerUnavailable) as raised:
        await make_broker(url)
    assert f"Redis at 127.0.0.1:{redis_server.port} is unreachable" in str(raised.value)
    assert "hunter2" not in str(raised.value)


async def test_every_call_maps_a_down_redis_to_unavailable(
    make_broker: MakeBroker, redis_server: RedisServer
) -> None:
    broker = await make_broker()
    item = await post(broker, "Before the outage")
    redis_server.stop()
    calls: list[Callable[[], Awaitable[object]]] = [
        broker.ping,
        lambda: broker.publish(Change("posted", new_item())),
        lambda: broker.get(item.id),
        lambda: broker.state("en"),
        lambda: broker.due(datetime.now(UTC)),
        lambda: broker.tokens.owner("x"),
        broker.tokens.names,
        lambda: broker.tokens.add("a", "b", "c"),
        lambda: broker.tokens.revoke("a"),
    ]
    for call in calls:
        with pytest.raises(BrokerUnavailable):
            await call()
    redis_server.start()
    assert await broker.get(item.id) == item  # the append-only file kept it


async def test_follow_survives_a_restart(
    make_broker: MakeBroker, redis_server: RedisServer
) -> None:
    broker = await make_broker()
    await post(broker, "Before the restart")
    follower = broker.follow(("en",))
    try:
        state = await next_state(follower)
        await asyncio.to_thread(redis_server.stop)
        with pytest.raises(BrokerUnavailable):
            await post(broker, "While Redis is down")
        await asyncio.to_thread(redis_server.start)  # scripts are gone: NOSCRIPT path
        after = await post(broker, "After the restart")
        event = await next_event(follower)
    finally:
        await follower.aclose()
    assert event.item["id"] == after.id
    assert (event.cursor.epoch, event.cursor.offset) == (state.epoch, 2)


async def test_follow_fills_what_a_dropped_connection_missed(
    make_broker: MakeBroker, raw: aioredis.Redis
) -> None:
    broker = await make_broker()
    follower = broker.follow(("en",))
    try:
        state = await next_state(follower)
        a = await post(broker, "A")  # already on its way to the follower
        await kill_followers(raw)
        b, c = await post(broker, "B"), await post(broker, "C")  # published to nobody
        got = [await next_event(follower) for _ in range(3)]
        d = await post(broker, "D")
        got.append(await next_event(follower))
    finally:
        await follower.aclose()
    assert [e.item["id"] for e in got] == [a.id, b.id, c.id, d.id]
    assert [(e.cursor.epoch, e.cursor.offset) for e in got] == [
        (state.epoch, n) for n in (1, 2, 3, 4)
    ]


async def test_follow_resets_when_history_was_trimmed_while_away(
    make_broker: MakeBroker, raw: aioredis.Redis
) -> None:
    broker = await make_broker(history=5)
    follower = broker.follow(("en",))
    try:
        state = await next_state(follower)
        await kill_followers(raw)
        for n in range(8):
            await post(broker, f"Missed {n}")
        reset = await next_state(follower)
        latest = await post(broker, "Latest")
        event = await next_event(follower)
    finally:
        await follower.aclose()
    assert (reset.epoch, reset.offset) == (state.epoch, 8)
    assert len(reset.items) == 8
    assert [e.cursor.offset for e in reset.events] == [4, 5, 6, 7, 8]
    assert (event.cursor.offset, event.item["id"]) == (9, latest.id)


async def test_follow_resets_when_redis_lost_its_data(
    make_broker: MakeBroker, redis_server: RedisServer
) -> None:
    broker = await make_broker()
    old = await post(broker, "Before the loss")
    follower = broker.follow(("en",))
    try:
        before = await next_state(follower)
        await asyncio.to_thread(redis_server.restart, lose_data=True)
        new = await post(broker, "After the loss")
        reset = await next_state(follower)
        seen = {i["id"] for i in reset.items}
        if new.id not in seen:  # the follower read the empty log before the post
            event = await next_event(follower)
            assert event.cursor.epoch == reset.epoch
            seen.add(event.item["id"])
    finally:
        await follower.aclose()
    assert old.id in {i["id"] for i in before.items}
    assert reset.epoch != before.epoch
    assert seen == {new.id}


async def test_follow_resets_when_the_log_restarts_under_a_live_connection(
    make_broker: MakeBroker, raw: aioredis.Redis
) -> None:
    broker = await make_broker()
    await post(broker, "Before the flush")
    follower = broker.follow(("en",))
    try:
        before = await next_state(follower)
        await raw.flushall()  # the follower's connection stays up
        after = await post(broker, "After the flush")
        reset = await next_state(follower)
        latest = await post(broker, "Latest")
        event = await next_event(follower)
    finally:
        await follower.aclose()
    assert reset.epoch != before.epoch
    assert [i["id"] for i in reset.items] == [after.id]
    assert (event.cursor.epoch, event.cursor.offset) == (reset.epoch, 2)
    assert event.item["id"] == latest.id


async def test_a_paused_redis_times_out_and_a_keyed_retry_does_not_duplicate(
    make_broker: MakeBroker, redis_server: RedisServer
) -> None:
    broker = await make_broker(socket_timeout=0.5)
    await post(broker, "Warm the connection")
    item = new_item("Sent into the void")
    change = Change("posted", item, idempotency_key="retry-1", fingerprint="f")
    redis_server.pause()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await broker.publish(change)
    with pytest.raises(BrokerUnavailable):
        await broker.ping()
    assert time.monotonic() - started < 3
    redis_server.resume()

    again = await broker.publish(change)
    state = await broker.state("en")
    assert again.item == item
    assert [e.item["id"] for e in state.events].count(item.id) == 1
    assert state.offset == 2


async def test_follow_notices_a_connection_that_went_silent(
    make_broker: MakeBroker, redis_server: RedisServer
) -> None:
    proxy = SilenceableProxy(redis_server.port)
    publisher = await make_broker()
    follower_broker = await make_broker(await proxy.start(), socket_timeout=0.5)
    follower = follower_broker.follow(("en",))
    try:
        await next_state(follower)
        proxy.silence()
        item = await post(publisher, "Sent while the link was dead")
        event = await next_event(follower)
    finally:
        await follower.aclose()
        await proxy.close()
    assert event.item["id"] == item.id


async def test_an_idle_follower_keeps_its_connection(
    make_broker: MakeBroker, raw: aioredis.Redis
) -> None:
    """Its PINGs are answered, so a quiet feed is not mistaken for a dead link."""
    broker = await make_broker(socket_timeout=0.3)
    follower = broker.follow(("en",))
    try:
        await next_state(follower)
        before = await raw.client_list(_type="pubsub")
        idle = asyncio.ensure_future(anext(follower))
        await asyncio.sleep(1.5)
        after = await raw.client_list(_type="pubsub")
        item = await post(broker, "After a quiet spell")
        event = await asyncio.wait_for(idle, 5)
    finally:
        idle.cancel()
        await asyncio.gather(idle, return_exceptions=True)
        await follower.aclose()
    assert sorted(c["id"] for c in after) == sorted(c["id"] for c in before)
    assert int(after[0]["age"]) >= 1
    assert isinstance(event, Event) and event.item["id"] == item.id


async def test_follow_ends_when_the_broker_closes(make_broker: MakeBroker) -> None:
    broker = await make_broker()
    follower = broker.follow(("en", "ar"))
    await next_state(follower)
    await next_state(follower)
    waiting = asyncio.ensure_future(anext(follower))
    await broker.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 3)


async def test_follow_is_exactly_once_under_churn(
    make_broker: MakeBroker, raw: aioredis.Redis
) -> None:
    """Events published while the follower starts and while its connection keeps being
    dropped: an EditionLog, which refuses any gap or duplicate, must end up complete."""
    publisher = await make_broker()
    follower_broker = await make_broker()
    total = 150

    async def publish_all() -> None:
        for n in range(total):
            await post(publisher, f"Alert {n}")
            if n % 40 == 20:
                await raw.client_kill_filter(_type="pubsub")

    async def follow_until_done() -> tuple[EditionLog, int]:
        await asyncio.sleep(0.005)  # start in the middle of the stream
        follower = follower_broker.follow(("en",))
        edition_log = EditionLog(await next_state(follower), history=1000)
        resets = 0
        try:
            while edition_log.offset < total:
                update = await next_of(follower)
                if isinstance(update, EditionState):
                    resets += 1
                    edition_log.load(update)
                else:
                    edition_log.apply(update)
        finally:
            await follower.aclose()
        return edition_log, resets

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(publish_all())
        following = tasks.create_task(asyncio.wait_for(follow_until_done(), 20))
    edition_log, resets = following.result()
    assert resets == 0
    assert len(edition_log.items) == total
    assert edition_log.items == {i["id"]: i for i in (await publisher.state("en")).items}


# --- a proxy whose connections can die silently ---------------------------------------


@dataclass
class _Link:
    silent: bool = False
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class SilenceableProxy:
    """A TCP proxy to Redis whose open connections can stop carrying bytes without closing,
    like a link dropped by a NAT box or a host that vanished."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.links: list[_Link] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    def silence(self) -> None:
        """Every connection open now goes silent; later ones work."""
        for link in self.links:
            link.silent = True

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for link in self.links:
            for writer in link.writers:
                writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        link = _Link(writers=[writer, up_writer])
        self.links.append(link)
        await asyncio.gather(
            self._pump(reader, up_writer, link),
            self._pump(up_reader, writer, link),
            return_exceptions=True,
        )

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while data := await reader.read(65536):
                if not link.silent:
                    writer.write(data)
                    await writer.drain()
        finally:
            writer.close()


async def dump(raw: aioredis.Redis) -> dict[bytes, tuple[bytes | None, int]]:
    """Every key with its serialized value and expiry time: equal dumps, equal data."""
    return {
        key: (await raw.dump(key), await raw.execute_command("PEXPIRETIME", key))
        for key in await raw.keys("*")
    }


@pytest.mark.parametrize("history", [-5, 0])
async def test_a_publish_the_script_refuses_writes_nothing(
    make_broker: MakeBroker, raw: aioredis.Redis, history: int
) -> None:
    broker = await make_broker()
    first = await post(broker, "Before", idempotency_key="k0", fingerprint="f")
    fixed = correct(
        first, {"expires_in": 60}, editor="desk", vocabulary=Vocabulary(), limits=Limits()
    )
    await broker.publish(Change("corrected", fixed, expected_version=1))
    before = await dump(raw)
    listener = raw.pubsub()
    await listener.subscribe("ticker:{en}:live")
    await listener.get_message(timeout=1)  # the confirmation

    broker.history = history  # as if settings had not been validated
    item = new_item("Half-written?")
    with pytest.raises(ResponseError, match="history"):
        await broker.publish(Change("posted", item, idempotency_key="k1", fingerprint="f"))
    with pytest.raises(ResponseError):
        await broker.publish(Change("expired", expire(fixed), expected_version=2))

    assert await dump(raw) == before
    assert await listener.get_message(timeout=0.2) is None
    await listener.aclose()
    broker.history = 1000
    assert (await broker.publish(Change("posted", item))).cursor.offset == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "options",
    [{"history": -5}, {"history": 0}, {"history": 2.5}, {"idempotency_seconds": 0}],
)
def test_settings_the_script_cannot_use_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RedisBroker("redis://127.0.0.1:1/0", editions=("en",), **options)  # type: ignore[arg-type]


async def test_a_log_that_refuses_the_entry_leaves_the_rest_untouched(
    make_broker: MakeBroker, raw: aioredis.Redis
) -> None:
    """A stream whose last ID is ahead of the offset makes XADD fail: nothing else moves."""
    broker = await make_broker()
    await post(broker, "Before")
    await raw.xadd("ticker:{en}:log", {"event": "{}"}, id="99-0")
    before = await dump(raw)
    with pytest.raises(ResponseError):
        await post(broker, "After")
    assert await dump(raw) == before


async def test_an_idempotency_record_is_small(make_broker: MakeBroker, raw: aioredis.Redis) -> None:
    broker = await make_broker()
    headline = "A long headline about something that happened " * 4
    item = await post(broker, headline, idempotency_key="k" * 40, fingerprint="f" * 32)
    size = await raw.memory_usage(f"ticker:{{en}}:idem:{'k' * 40}")
    assert len(item.to_json()) > 300
    assert size is not None and size < 256, size
    record = await raw.hgetall(f"ticker:{{en}}:idem:{'k' * 40}")
    assert set(record) == {b"fingerprint", b"id", b"version"}


@pytest.fixture(scope="module")
def locked_redis() -> Iterator[RedisServer]:
    """A Redis that wants a password, with a user that may only PING."""
    server = RedisServer(extra_args=("--requirepass", "s3cret-pw"))
    try:
        server.start()
        with server._client() as client:
            client.execute_command("ACL", "SETUSER", "pinger", "on", ">pinger-pw", "+ping")
        yield server
    finally:
        server.close()


@pytest.mark.parametrize(
    ("credentials", "database", "expected"),
    [
        ("", 0, "credentials"),
        (":not-the-pw@", 0, "credentials"),
        ("nobody:not-the-pw@", 0, "credentials"),
        (":s3cret-pw@", 99, "no such database"),
        ("pinger:pinger-pw@", 0, "denies the Redis user"),
    ],
)
async def test_a_redis_that_refuses_us_is_misconfigured_not_unavailable(
    make_broker: MakeBroker,
    locked_redis: RedisServer,
    credentials: str,
    database: int,
    expected: str,
) -> None:
    url = f"redis://{credentials}127.0.0.1:{locked_redis.port}/{database}"
    with pytest.raises(BrokerMisconfigured) as raised:
        await make_broker(url)
    message = str(raised.value)
    assert expected in message and f"127.0.0.1:{locked_redis.port}" in message
    assert "pw" not in message.replace(f"{locked_redis.port}", "")
    assert "\n" not in message


async def test_the_right_password_starts(
    make_broker: MakeBroker, locked_redis: RedisServer
) -> None:
    broker = await make_broker(f"redis://:s3cret-pw@127.0.0.1:{locked_redis.port}/0")
    await post(broker, "Behind a password")
    assert (await broker.state("en")).offset == 1


async def test_a_redis_without_a_needed_command_is_misconfigured(make_broker: MakeBroker) -> None:
    server = RedisServer(extra_args=("--rename-command", "SCRIPT", ""))
    try:
        server.start()
        with pytest.raises(BrokerMisconfigured, match="does not know a command"):
            await make_broker(server.url)
    finally:
        server.close()


async def test_a_connection_reset_under_uvloop_is_an_outage_not_a_bug(make_broker) -> None:
    """A Redis connection reset before redis-py's first write on it makes uvloop raise
    RuntimeError ("the handler is closed"), which redis-py passes on: an outage (503)."""
    broker = await make_broker()

    async def reset(*args: object, **kwargs: object) -> None:
        raise RuntimeError(
            "unable to perform operation on <TCPTransport closed=True>; the handler is closed"
        )

    async def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something else entirely")

    original = broker._redis.hget
    try:
        broker._redis.hget = reset
        with pytest.raises(BrokerUnavailable):
            await broker.get("en-1")
        broker._redis.hget = bug
        with pytest.raises(RuntimeError, match="something else"):
            await broker.get("en-1")
    finally:
        broker._redis.hget = original
