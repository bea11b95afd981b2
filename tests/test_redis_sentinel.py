"""The Redis broker behind Redis Sentinel: one master, one replica, three sentinels
(quorum 2, down-after-milliseconds 1000, failover-timeout 5000). A forced failover and a
killed master, each while posts run and a follower follows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from failover import check, run_drill
from rediscluster import RedisSentinels

from ticker.brokers.redis import RedisBroker
from ticker.brokers.redis_ha import parse

EDITIONS = ("en", "ar", "es")


@pytest.fixture(scope="module")
def sentinels() -> Iterator[RedisSentinels]:
    deployment = RedisSentinels()
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.close()


@pytest.fixture
def sentinel_url(sentinels: RedisSentinels) -> str:
    sentinels.restore()
    sentinels.flush()
    return sentinels.url


def test_sentinel_urls_are_parsed() -> None:
    target = parse("redis+sentinel://:pw@s1:26379,s2:26380,s3/news/2")
    assert target is not None
    assert target.hosts == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert (target.service, target.db, target.password) == ("news", 2, "pw")
    for bad in (
        "redis+sentinel://s1:26379",
        "redis+sentinel://s1/news/x",
        "redis+sentinel://s1/a/1/2",
    ):
        with pytest.raises(ValueError):
            parse(bad)


async def test_the_broker_works_through_sentinel(sentinel_url: str) -> None:
    broker = RedisBroker(sentinel_url, editions=EDITIONS)
    await broker.start()
    try:
        state = await broker.state("en")
        assert state.offset == 0
    finally:
        await broker.close()


async def _drill(url: str, fail, what: str):  # type: ignore[no-untyped-def]
    publisher = RedisBroker(url, editions=EDITIONS, history=1000)
    follower = RedisBroker(url, editions=EDITIONS, history=1000)
    await publisher.start()
    await follower.start()
    try:
        drill = await run_drill(publisher, follower, "en", fail)
    finally:
        await publisher.close()
        await follower.close()
    print(drill.report(what))
    check(drill, window=15)


async def test_a_forced_failover(sentinel_url: str, sentinels: RedisSentinels) -> None:
    """SENTINEL FAILOVER: the replica is promoted, the old master made its replica."""
    old = sentinels.master()

    async def failover() -> None:
        sentinels.failover()
        await asyncio.to_thread(sentinels.wait_master_changed, old)

    await _drill(sentinel_url, failover, "Sentinel, SENTINEL FAILOVER")
    assert sentinels.master() is not old


async def test_a_killed_master(sentinel_url: str, sentinels: RedisSentinels) -> None:
    """SIGKILL to the master: the sentinels agree it is down after 1 s and promote the
    replica."""
    old = sentinels.master()

    async def kill() -> None:
        old.kill()
        await asyncio.to_thread(sentinels.wait_master_changed, old)

    await _drill(sentinel_url, kill, "Sentinel, master killed")
    assert sentinels.master() is not old
