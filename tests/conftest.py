"""Shared fixtures, one section per component."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
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


# --- Brokers ---------------------------------------------------------------------------


@pytest.fixture(params=["embedded", "redis"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Broker]:
    """Each broker in turn, so one suite holds both to the same behaviour."""
    if request.param == "embedded":
        from ticker.brokers.embedded import EmbeddedBroker

        made: Broker = EmbeddedBroker(tmp_path / "ticker.db", editions=EDITIONS, history=50)
    else:
        made = RedisBroker(request.getfixturevalue("redis_url"), editions=EDITIONS, history=50)
    await made.start()
    try:
        yield made
    finally:
        await made.close()
