"""The Redis broker on a real Redis Cluster (three masters, three replicas): sharded
pub/sub in the edition's slot, and a master killed while posts run."""

from __future__ import annotations

import asyncio

import pytest
from failover import check, run_drill
from rediscluster import RedisCluster
from test_broker_conformance import new_item

from ticker.brokers.base import Change
from ticker.brokers.redis import RedisBroker
from ticker.brokers.redis_ha import parse
from ticker.config import ConfigError, from_env
from ticker.events import EditionState, Event

EDITIONS = ("en", "ar", "es")


def test_cluster_urls_are_parsed() -> None:
    target = parse("redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001")
    assert target is not None
    assert target.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (target.username, target.password) == ("u", "p@ss")
    assert "p@ss" not in target.where
    with pytest.raises(ValueError):
        parse("redis+cluster://10.0.0.1:7000/2")
    assert parse("redis://localhost") is None


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001", True),
        ("redis+cluster://:secret@redis-a:7000", True),
        ("redis+cluster://10.0.0.1:7000/0", False),
        ("redis+cluster://", False),
        ("redis+sentinel://s1:26379,s2:26379/news", True),
        ("redis+sentinel://s1/news/3", True),
        ("redis+sentinel://s1:26379", False),
        ("redis+sentinel://s1/news/x", False),
    ],
)
def test_settings_accept_cluster_and_sentinel_urls(url: str, accepted: bool) -> None:
    if accepted:
        assert from_env({"TICKER_REDIS_URL": url}).redis_url == url
    else:
        with pytest.raises(ConfigError):
            from_env({"TICKER_REDIS_URL": url})


async def test_each_edition_is_followed_on_the_shard_that_owns_it(
    redis_cluster_url: str, redis_cluster: RedisCluster
) -> None:
    broker = RedisBroker(redis_cluster_url, editions=EDITIONS)
    await broker.start()
    updates = broker.follow(EDITIONS)
    try:
        for _ in EDITIONS:
            assert isinstance(await asyncio.wait_for(anext(updates), 10), EditionState)
        for edition in EDITIONS:
            channel = f"ticker:{{{edition}}}:live"
            owner = redis_cluster.owner(channel)
            for node in redis_cluster.live_nodes():
                _, count = node.client().execute_command("PUBSUB", "SHARDNUMSUB", channel)
                assert count == (1 if node is owner else 0), (edition, node.port)
        published = await broker.publish(Change("posted", new_item(edition="ar")))
        event = await asyncio.wait_for(anext(updates), 10)
        assert isinstance(event, Event) and event.cursor == published.cursor
    finally:
        await updates.aclose()
        await broker.close()


async def test_a_killed_master_fails_over(
    redis_cluster_url: str, redis_cluster: RedisCluster
) -> None:
    """Posts at 20/s, a follower, and the master of the edition's slot killed (SIGKILL):
    its replica takes over after cluster-node-timeout (2 s)."""
    publisher = RedisBroker(redis_cluster_url, editions=EDITIONS, history=1000)
    follower = RedisBroker(redis_cluster_url, editions=EDITIONS, history=1000)
    await publisher.start()
    await follower.start()
    victim = redis_cluster.owner("ticker:{en}:meta")

    async def kill() -> None:
        victim.kill()
        await asyncio.to_thread(redis_cluster.wait_owner_changed, "ticker:{en}:meta", victim)

    try:
        drill = await run_drill(publisher, follower, "en", kill)
    finally:
        await publisher.close()
        await follower.close()
    print(drill.report("Redis Cluster, the master of {en} killed"))
    check(drill, window=15)


async def test_a_follower_resets_when_a_failover_lost_what_it_heard(
    redis_cluster_url: str, redis_cluster: RedisCluster
) -> None:
    """After a failover the new master can lack the newest event, and number the next one
    with the same offset. A follower that reconnects finds the event at its cursor changed
    and resets, rather than dropping the new event as a duplicate."""
    broker = RedisBroker(redis_cluster_url, editions=EDITIONS)
    await broker.start()
    updates = broker.follow(("en",))
    try:
        assert isinstance(await asyncio.wait_for(anext(updates), 10), EditionState)
        first = new_item("Kept")
        await broker.publish(Change("posted", first))
        lost = new_item("Lost in the failover")
        await broker.publish(Change("posted", lost))
        for _ in range(2):
            assert isinstance(await asyncio.wait_for(anext(updates), 10), Event)
        # What a failover to a replica that missed the last write leaves behind.
        owner = redis_cluster.owner("ticker:{en}:meta").client()
        owner.xdel("ticker:{en}:log", "2-0")
        owner.execute_command("XSETID", "ticker:{en}:log", "1-0")
        owner.hset("ticker:{en}:meta", "offset", 1)
        owner.hdel("ticker:{en}:items", lost.id)
        other = new_item("Posted after the failover")
        published = await broker.publish(Change("posted", other))
        assert published.cursor is not None and published.cursor.offset == 2
        owner.client_kill_filter(_type="pubsub")
        reset = await asyncio.wait_for(anext(updates), 10)
        assert isinstance(reset, EditionState)
        assert {item["id"] for item in reset.items} == {first.id, other.id}
    finally:
        await updates.aclose()
        await broker.close()
