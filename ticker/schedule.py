"""The release worker: scheduled items go live at their `publish_at`, as `posted` events.

Scheduled items wait in the store apart from the live ones, where no reader sees them.
Each pass releases what is due, then sleeps until the next one is due (at most `interval`,
or until woken by a new schedule), as the expiry sweeper does. Several publishers may run
it at once: the post that releases an item claims its scheduled copy in the same atomic
step, so exactly one of them releases it, and the others' attempts are no-ops. A release
past the edition's cap of live items retires the oldest, as any post does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from datetime import UTC, datetime

from . import items as rules
from .brokers.base import Broker, BrokerUnavailable, Change, PinLimitReached, VersionConflict
from .expiry import retire_excess
from .items import Item

log = logging.getLogger("ticker.schedule")

BATCH = 100


async def release_worker(
    broker: Broker,
    *,
    max_live: int,
    max_pinned: int,
    interval: float = 0.5,
    wake: asyncio.Event | None = None,
) -> None:
    """Release forever. `interval` bounds the sleep, so an item scheduled through another
    publisher is at most that late; setting `wake` starts a pass at once."""
    while True:
        try:
            delay = await release_due(
                broker, max_live=max_live, max_pinned=max_pinned, interval=interval
            )
        except BrokerUnavailable as exc:
            _unless_cancelled()
            log.warning("release of scheduled items skipped: %s", exc)
            delay = interval
        except Exception:
            _unless_cancelled()
            log.exception("release of scheduled items failed")
            delay = interval
        _unless_cancelled()
        await _pause(delay, wake)


def _unless_cancelled() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def release_due(
    broker: Broker, *, max_live: int, max_pinned: int, interval: float = 0.5
) -> float:
    """Release everything due now; return how long to sleep before the next pass."""
    while True:
        asked = datetime.now(UTC)
        due = await broker.due_scheduled(asked, limit=BATCH)
        if not due:
            break
        editions: set[str] = set()
        for item in due:
            if await release(broker, item, max_pinned=max_pinned):
                editions.add(item.edition)
        for edition in sorted(editions):
            await retire_excess(broker, edition, max_live)
        if not editions:
            return min(interval, 0.05)  # all changed under us: read them again soon
    upcoming = await broker.next_scheduled()
    if upcoming is None or upcoming <= asked:
        return interval  # none, or a stale entry listed as due: do not spin on it
    return min(interval, max((upcoming - datetime.now(UTC)).total_seconds(), 0.0))


async def release(broker: Broker, item: Item, *, max_pinned: int) -> bool:
    """Post a scheduled item; False when another publisher released it first, or an editor
    changed or cancelled it since it was read. A pinned item that would pass the edition's
    pin cap goes live unpinned rather than not at all."""
    live = rules.release(item)
    for candidate in (live, replace(live, pinned=False)):
        change = Change("posted", candidate, max_pinned=max_pinned, scheduled_version=item.version)
        try:
            await broker.publish(change)
        except VersionConflict:
            return False
        except PinLimitReached:
            log.warning(
                "%s goes live unpinned: its edition has %d pinned items", item.id, max_pinned
            )
            continue
        log.info("released %s, scheduled for %s", item.id, item.publish_at)
        return True
    return False


async def _pause(delay: float, wake: asyncio.Event | None) -> None:
    if wake is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), delay)
    wake.clear()
