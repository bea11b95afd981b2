"""Each edition's cursor, remembered for a moment, for readers that pull.

A conditional GET (`If-None-Match` on the catch-up or a feed) asks only whether the
edition moved. Thousands of apps and a CDN may ask that every second; one store read per
edition per `ttl` answers all of them. A change saved through this process forgets the
edition at once, so an editor who posts and then pulls sees the change; a change saved by
another process shows within `ttl`, as if the request had come that much earlier. Nothing
is lost either way: a 304 leaves the reader's cursor where it was.
"""

from __future__ import annotations

import time

from .brokers.base import Broker
from .events import Cursor

TTL_SECONDS = 0.05


class CursorCache:
    def __init__(self, broker: Broker, ttl: float = TTL_SECONDS) -> None:
        self._broker = broker
        self._ttl = ttl
        self._known: dict[str, tuple[Cursor, float]] = {}

    async def get(self, edition: str) -> Cursor:
        known = self._known.get(edition)
        now = time.monotonic()
        if known is not None and now - known[1] < self._ttl:
            return known[0]
        cursor = await self._broker.cursor(edition)
        self._known[edition] = (cursor, now)
        return cursor

    def forget(self, edition: str) -> None:
        self._known.pop(edition, None)
