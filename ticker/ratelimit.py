"""The publisher's limits against abuse: posts per editor token, failed authentications per
client address.

Counted by the `limits` library: in Redis when the service runs on Redis, so every
publisher process (and every machine) draws on the same budget, and in memory on the
embedded store, where there is one process. A store that cannot count lets requests
through: the store then answers 503 itself, and a limiter must not be what takes the
newsroom down.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool

from .config import Settings

log = logging.getLogger("ticker.ratelimit")

KEY_PREFIX = "ticker:limits"


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # whole seconds until the budget allows one more


def storage_for(settings: Settings) -> tuple[Storage, ConnectionPool | None]:
    """Redis when the service runs on Redis (shared by every publisher), else memory; and
    the Redis connections, to close when the app stops."""
    url = settings.redis_url
    if not url:
        return MemoryStorage(), None
    pool = ConnectionPool.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    scheme, _, rest = url.partition("://")
    scheme = {"redis": "async+redis", "rediss": "async+rediss", "unix": "async+redis+unix"}[scheme]
    storage = RedisStorage(
        f"{scheme}://{rest}",
        wrap_exceptions=True,
        implementation="redispy",
        key_prefix=KEY_PREFIX,
        connection_pool=pool,  # type: ignore[arg-type]
    )
    return storage, pool


class Limit:
    """One configured limit (`60/minute;10/second`, or `off`) over a named budget."""

    def __init__(self, name: str, rates: str, storage: Storage) -> None:
        self.name = name
        self.items: list[RateLimitItem] = [] if rates == "off" else parse_many(rates)
        self.limiter = MovingWindowRateLimiter(storage)

    async def hit(self, who: str) -> Verdict:
        """Spend one from `who`'s budget, if every rate allows it: one round trip to the
        store per rate, on the path of every change an editor makes."""
        for item in self.items:
            try:
                if not await self.limiter.hit(item, self.name, who):
                    return Verdict(False, await self._retry_after(item, who))
            except StorageError as exc:
                log.warning("%s limit not counted: %s", self.name, exc.storage_error)
                break
        return Verdict(True)

    async def check(self, who: str) -> Verdict:
        """Whether `who` has anything left, without spending it."""
        for item in self.items:
            try:
                allowed = await self.limiter.test(item, self.name, who)
            except StorageError as exc:
                log.warning("%s limit not checked: %s", self.name, exc.storage_error)
                return Verdict(True)
            if not allowed:
                return Verdict(False, await self._retry_after(item, who))
        return Verdict(True)

    async def _retry_after(self, item: RateLimitItem, who: str) -> int:
        try:
            stats = await self.limiter.get_window_stats(item, self.name, who)
        except StorageError:
            return item.get_expiry()
        return max(1, math.ceil(stats.reset_time - time.time()))


class Limits:
    """Every limit of one publisher app, on one storage."""

    def __init__(self, settings: Settings) -> None:
        self.storage, self._pool = storage_for(settings)
        self.posts = Limit("posts", settings.post_rate, self.storage)
        self.auth_failures = Limit("auth-failures", settings.auth_failure_rate, self.storage)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()
