"""Shared fixtures, one section per component."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from rediscluster import RedisCluster
from redisserver import RedisServer

from ticker.brokers.base import Broker
from ticker.brokers.redis import RedisBroker

EDITIONS = ("en", "ar", "es")

# --- Redis -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole run; tests may stop, pause or wipe it."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a running, empty Redis, whatever the previous test did to it."""
    redis_server.ensure_running()
    redis_server.flush()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """One real Redis Cluster (three masters, three replicas) for the whole run."""
    cluster = RedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    """The redis+cluster:// URL of a running, empty cluster with every node back."""
    redis_cluster.restore()
    redis_cluster.flush()
    return redis_cluster.url


# --- Brokers ---------------------------------------------------------------------------


@pytest.fixture(params=["embedded", "redis", "cluster"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Broker]:
    """Each broker in turn, so one suite holds both to the same behaviour."""
    if request.param == "embedded":
        from ticker.brokers.embedded import EmbeddedBroker

        made: Broker = EmbeddedBroker(tmp_path / "ticker.db", editions=EDITIONS, history=50)
    elif request.param == "redis":
        made = RedisBroker(request.getfixturevalue("redis_url"), editions=EDITIONS, history=50)
    else:
        url = request.getfixturevalue("redis_cluster_url")
        made = RedisBroker(url, editions=EDITIONS, history=50)
    await made.start()
    try:
        yield made
    finally:
        await made.close()
