"""The cursor cache reads the store once per edition per moment, and forgets on a change."""

from __future__ import annotations

import asyncio

from ticker.cursor_cache import CursorCache
from ticker.events import Cursor


class CountingStore:
    def __init__(self) -> None:
        self.reads = 0
        self.offset = 0

    async def cursor(self, edition: str) -> Cursor:
        self.reads += 1
        return Cursor("e1", self.offset)


async def test_reads_once_per_moment_and_forgets_on_a_change() -> None:
    store = CountingStore()
    cache = CursorCache(store, ttl=0.05)  # type: ignore[arg-type]
    assert [await cache.get("en") for _ in range(100)] == [Cursor("e1", 0)] * 100
    assert store.reads == 1
    store.offset = 1
    assert await cache.get("en") == Cursor("e1", 0)  # still within the moment
    cache.forget("en")
    assert await cache.get("en") == Cursor("e1", 1) and store.reads == 2
    await cache.get("ar")
    assert store.reads == 3  # editions are cached apart
    store.offset = 2
    await asyncio.sleep(0.06)
    assert await cache.get("en") == Cursor("e1", 2) and store.reads == 4
