"""The expiry sweeper: items past their `expires` time become `expired` events, so every
ticker drops them.

Each pass asks the store for what is due, in batches, until nothing is; then it sleeps
until the next item is due (at most `interval`, or until woken). Expirations of one batch
are published concurrently, up to `concurrency` at a time: Redis serves them in parallel,
the embedded store one after the other, fast. Several publishers may sweep at once: the
version check makes the first one win and the others' attempts no-ops.

The sweeper also holds each edition to its cap of live items (`retire_excess`): the
publisher retires the oldest right after a post, and a pass here heals what a crash
between the two left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from . import items as rules
from .bounds import to_retire
from .brokers.base import Broker, BrokerUnavailable, Change, VersionConflict
from .items import Item

log = logging.getLogger("ticker.expiry")

BATCH = 500
CONCURRENCY = 32


async def expiry_sweeper(
    broker: Broker,
    interval: float = 0.5,
    *,
    batch: int = BATCH,
    concurrency: int = CONCURRENCY,
    wake: asyncio.Event | None = None,
    caps: tuple[tuple[str, ...], int] | None = None,
) -> None:
    """Sweep forever. `interval` bounds the sleep (an item posted while the sweeper sleeps
    is at most that late); setting `wake` starts a pass at once. With `caps` (the
    editions and their cap of live items) each pass also retires what is past the cap."""
    limit = asyncio.Semaphore(concurrency)
    while True:
        try:
            delay = await sweep(broker, batch=batch, limit=limit, interval=interval)
            if caps is not None:
                editions, max_live = caps
                for edition in editions:
                    await retire_excess(broker, edition, max_live)
        except BrokerUnavailable as exc:
            _unless_cancelled()
            log.warning("expiry sweep skipped: %s", exc)
            delay = interval
        except Exception:
            _unless_cancelled()
            log.exception("expiry sweep failed")
            delay = interval
        _unless_cancelled()
        await _pause(delay, wake)


def _unless_cancelled() -> None:
    """A client library may swallow a cancellation, or turn it into an error of its own
    (redis-py does, at times); the sweeper still stops when it was asked to."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def sweep(
    broker: Broker,
    *,
    batch: int = BATCH,
    limit: asyncio.Semaphore | None = None,
    interval: float = 0.5,
) -> float:
    """Expire everything due now; return how long to sleep before the next pass."""
    limit = limit or asyncio.Semaphore(CONCURRENCY)
    while True:
        asked = datetime.now(UTC)
        due = await broker.due(asked, limit=batch)
        if not due:
            break
        # return_exceptions: every expiration ends before the pass does, and a cancelled
        # sweeper stays cancelled (without it, the first error would stand in for the
        # cancellation, and the sweeper would go on).
        results = await asyncio.gather(
            *(_expire(broker, item, limit) for item in due), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if not any(results):
            return interval  # none could be expired now (errors were logged): wait a while
    upcoming = await broker.next_expiry()
    if upcoming is None:
        return interval
    wait = (upcoming - datetime.now(UTC)).total_seconds()
    if upcoming <= asked:
        # Listed as expiring but not due: a stale entry; do not spin on it.
        return interval
    return min(interval, max(wait, 0.0))


async def _expire(broker: Broker, item: Item, limit: asyncio.Semaphore) -> bool:
    """True when the item is gone (expired by us or by another sweeper)."""
    async with limit:
        try:
            await broker.publish(
                Change("expired", rules.expire(item), expected_version=item.version)
            )
        except VersionConflict:
            return True  # another sweeper, or an editor, got there first
        except BrokerUnavailable:
            raise
        except Exception:
            log.exception("expiring %s failed", item.id)
            return False
    log.info("expired %s", item.id)
    return True


RETIRE_ATTEMPTS = 3


async def retire_excess(broker: Broker, edition: str, max_live: int) -> int:
    """Retire the oldest unpinned live items past the cap, as `expired` changes, so every
    channel drops them as it drops any expired item. Returns how many this call retired.

    Several publishers may do this at once: each change names the version it was made
    from, so an item is retired once; on a conflict the live list is read again."""
    retired = 0
    for _ in range(RETIRE_ATTEMPTS):
        _, live = await broker.live(edition)
        excess = to_retire(live, max_live)
        if not excess:
            return retired
        conflicted = False
        for data in excess:
            item = rules.Item.from_dict(data)
            try:
                await broker.publish(
                    Change("expired", rules.expire(item), expected_version=item.version)
                )
            except VersionConflict:
                conflicted = True  # retired by another publisher, or changed: read again
                continue
            retired += 1
            log.info(
                "retired %s: edition %s holds %d live items at most", item.id, edition, max_live
            )
        if not conflicted:
            return retired
    return retired


class Retirer:
    """Retirement after posts, one run at a time per edition in this process.

    Posts that finish together would each read the live list and race to retire the same
    oldest items, most of them in vain (a version conflict, then another read). Here a
    post waits for a run that starts after it was saved, which retires whatever is past
    the cap by then: a burst of posts costs a run or two, not one per post, and each post
    still answers once its edition is back within the cap."""

    def __init__(self, broker: Broker, max_live: int) -> None:
        self.broker = broker
        self.max_live = max_live
        self._locks: dict[str, asyncio.Lock] = {}
        self._asked: dict[str, int] = {}
        self._covered: dict[str, int] = {}

    async def after_post(self, edition: str) -> None:
        asked = self._asked[edition] = self._asked.get(edition, 0) + 1
        lock = self._locks.setdefault(edition, asyncio.Lock())
        async with lock:
            if self._covered.get(edition, 0) >= asked:
                return  # a run that started after this post was saved has retired for it
            starting = self._asked[edition]
            await retire_excess(self.broker, edition, self.max_live)
            self._covered[edition] = starting


async def _pause(delay: float, wake: asyncio.Event | None) -> None:
    if wake is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), delay)
    wake.clear()
