"""The delivery worker: follows every edition's event log and sends each posted item to the
subscriptions that want it, and each correction or withdrawal to the subscriptions that
received the item.

Durable without a queue of its own: the log is the queue. Per edition the store keeps a
cursor (every event up to it is done) and, per item, the newest version each subscription
received. A worker killed mid-event starts again from the cursor and skips every
(subscription, version) already recorded, so a success is never sent twice; only a message
in flight when the process died may be (the push service replaces it, by its Topic).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..brokers.base import Broker, BrokerError
from ..events import EditionState, Event
from ..items import parse_time
from . import metrics, rules
from .sender import Result, Sender
from .store import PushStore

log = logging.getLogger("ticker.push")

LEASE_SECONDS = 15.0
IDLE_SECONDS = 1.0  # how soon keys made on a running service, or a freed lease, are noticed


@dataclass(frozen=True)
class WorkerOptions:
    ttl: int = 3600
    concurrency: int = 64
    max_attempts: int = 5
    max_wait: float = 60.0  # a Retry-After longer than this gives up on that message
    live_url: str = "/live/{edition}"  # what a click opens for an item without a link


class LeaseLost(Exception):
    """Another process took over delivery (this one stalled past its lease)."""


class Inbox:
    """Events handed over from the loop that follows the broker to the worker's loop, on
    another thread: that loop only puts each event here (`put`, through
    call_soon_threadsafe), so the publisher's own loop does no push work."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[EditionState | Event] = asyncio.Queue()

    def put(self, entry: EditionState | Event) -> None:
        self._queue.put_nowait(entry)

    def clear(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def __aiter__(self) -> AsyncIterator[EditionState | Event]:
        while True:
            yield await self._queue.get()


class PushWorker:
    def __init__(
        self,
        broker: Broker,
        store: PushStore,
        sender_factory: Callable[[], Awaitable[Sender | None]],
        editions: tuple[str, ...],
        options: WorkerOptions | None = None,
        inbox: Inbox | None = None,
        owner: str | None = None,
    ) -> None:
        """`inbox`: where another loop hands over the events it follows; without one, the
        worker follows the broker itself. `owner`: the name it holds the delivery lease
        under; a worker that takes over from one known to be gone may reuse its name, and
        with it the lease, instead of waiting for the lease to run out."""
        self.inbox = inbox
        self.broker = broker
        self.store = store
        self.sender_factory = sender_factory
        self.editions = editions
        self.options = options or WorkerOptions()
        self.owner = owner or f"{os.getpid()}-{secrets.token_hex(4)}"
        self._sender: Sender | None = None
        self._subs: dict[str, list[rules.Subscription]] = {}
        self._generation = -1
        self._lease_until = 0.0

    async def run(self) -> None:
        """Deliver forever; a store or network failure waits and starts over from the
        saved cursors."""
        failures = 0
        try:
            while True:
                try:
                    if not await self._take_lease():
                        if self.inbox is not None:
                            self.inbox.clear()  # the lease holder delivers these
                        await asyncio.sleep(IDLE_SECONDS)
                        continue
                    await self._follow()
                except asyncio.CancelledError:
                    raise
                except BrokerError as exc:
                    log.warning("push delivery paused: %s", exc)
                except LeaseLost as exc:
                    log.info("push delivery handed over: %s", exc)
                except Exception:
                    log.exception("push delivery failed; starting over from the saved cursors")
                failures += 1
                await asyncio.sleep(rules.backoff(failures, cap=10.0))
        finally:
            if self._sender is not None:
                with contextlib.suppress(Exception):
                    await self._sender.close()

    async def _take_lease(self) -> bool:
        now = time.monotonic()
        if now < self._lease_until:
            return True
        if await self.store.lease(self.owner, LEASE_SECONDS):
            self._lease_until = now + LEASE_SECONDS / 3
            return True
        return False

    async def _follow(self) -> None:
        done: dict[str, int] = {}  # edition -> offset delivered, within the current epoch
        events: AsyncIterator[EditionState | Event]
        if self.inbox is None:
            events = self.broker.follow(self.editions)
        else:
            # Events already in the inbox, or arriving while the states are read, that the
            # states cover are skipped by their offsets.
            for edition in self.editions:
                await self._resume(await self.broker.state(edition), done)
            events = aiter(self.inbox)
        async for entry in events:
            if not await self._take_lease():
                return  # another process delivers now
            if isinstance(entry, EditionState):
                await self._resume(entry, done)
                continue
            if entry.cursor.offset <= done.get(entry.edition, -1):
                continue
            if entry.cursor.offset != done.get(entry.edition, -1) + 1:
                # Missed events (a follower that reconnected): the log fills the gap.
                await self._resume(await self.broker.state(entry.edition), done)
                continue
            await self.deliver(entry)
            await self.store.save_cursor(entry.edition, entry.cursor)
            done[entry.edition] = entry.cursor.offset

    async def _resume(self, state: EditionState, done: dict[str, int]) -> None:
        """Deliver what the log holds after the saved cursor. A first start delivers what
        changed since the keys were made (no subscription is older than they are); a log
        that was lost and begun again (a new epoch) starts from now: old news is not pushed."""
        saved = await self.store.cursor(state.edition)
        pending: list[Event] = []
        if saved is None:
            keys = await self.store.keys()
            since = None if keys is None else _timestamp(keys.created)
            if since is not None:
                pending = [
                    e for e in state.events if (_timestamp(e.item.get("updated")) or 0) >= since
                ]
        elif saved.epoch == state.epoch:
            pending = [e for e in state.events if e.cursor.offset > saved.offset]
        for event in pending:
            await self.deliver(event)
            await self.store.save_cursor(state.edition, event.cursor)
        await self.store.save_cursor(state.edition, state.cursor)
        done[state.edition] = state.offset

    async def _subscriptions(self, edition: str) -> list[rules.Subscription]:
        generation = await self.store.generation()
        if generation != self._generation:
            self._subs = {}
            self._generation = generation
        if edition not in self._subs:
            self._subs[edition] = await self.store.subscriptions(edition)
        return self._subs[edition]

    async def deliver(self, event: Event) -> None:
        """Send one event to everyone it is for, and record each success before returning."""
        item = event.item
        kind = event.kind
        if kind not in ("posted", "corrected", "withdrawn"):
            return
        item_id, version = item["id"], int(item.get("version", 1))
        subs = await self._subscriptions(event.edition)
        if kind == "posted":
            targets = [s for s in subs if rules.wants(s, item)]
            received: dict[str, int] = {}
            if targets:
                received = await self.store.delivered(item_id)
        else:
            received = await self.store.delivered(item_id)
            if not received:
                return
            targets = [s for s in subs if s.id in received]
        targets = [s for s in targets if received.get(s.id, 0) < version]
        if not targets:
            return
        self._sender = self._sender or await self.sender_factory()
        if self._sender is None:
            log.warning("push of %s skipped: no VAPID keys (ticker push keys create)", item_id)
            return
        await self._send_all(kind, item, version, targets)

    async def _send_all(
        self, kind: str, item: dict[str, Any], version: int, targets: list[rules.Subscription]
    ) -> None:
        sender = self._sender
        assert sender is not None
        live_url = self.options.live_url.format(edition=item.get("edition", ""))
        body = rules.message(kind, item, live_url)
        urgency = rules.urgency_header(int(item.get("urgency", 9)))
        if kind == "withdrawn":
            urgency = "normal"
        topic = rules.topic(item["id"])
        changed = _timestamp(item.get("updated"))
        succeeded: list[str] = []
        wake = asyncio.Event()
        todo = iter(targets)
        metrics.QUEUE.inc(len(targets))

        async def runner() -> None:
            """One of `concurrency` senders, each taking the next subscription in turn:
            a flash to 100,000 costs 100,000 sends, not 100,000 tasks."""
            for subscription in todo:
                try:
                    result = await self._send_with_retries(
                        sender, subscription, body, urgency, topic
                    )
                finally:
                    metrics.QUEUE.dec()
                await self._settle(kind, item["id"], subscription, result, changed, succeeded)
                if result.outcome == "sent":
                    wake.set()

        # Successes are recorded as they come (those that arrive during a write go in the
        # next one), so a kill can lose only the records of messages still in flight or
        # just accepted: those may be sent again, and replace themselves by their Topic.
        count = min(self.options.concurrency, len(targets))
        runners = {asyncio.ensure_future(runner()) for _ in range(count)}
        try:
            while runners or succeeded:
                if succeeded:
                    batch, succeeded[:] = list(succeeded), []
                    await self.store.mark_delivered(item["id"], version, batch)
                    continue
                waker = asyncio.ensure_future(wake.wait())
                done, _ = await asyncio.wait(
                    {*runners, waker},
                    timeout=LEASE_SECONDS / 3,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                # A flash to many takes longer than the lease: renew it as it goes, and stop
                # if another process has taken over (it resumes from the saved records).
                if not await self._take_lease():
                    raise LeaseLost(f"{self.owner} lost the delivery lease")
                waker.cancel()
                wake.clear()
                for task in done - {waker}:
                    runners.discard(task)
                    task.result()  # a store error stops the event; it is retried from the cursor
        finally:
            for task in runners:
                task.cancel()
            metrics.QUEUE.set(0)

    async def _settle(
        self,
        kind: str,
        item_id: str,
        subscription: rules.Subscription,
        result: Result,
        changed: float | None,
        succeeded: list[str],
    ) -> None:
        if result.outcome == "sent":
            succeeded.append(subscription.id)
            metrics.SENT.labels(kind).inc()
            if changed is not None:
                metrics.DELAY.observe(max(0.0, time.time() - changed))
        elif result.outcome == "gone":
            metrics.REMOVED.inc()
            await self.store.remove(subscription.id)
            log.info("push subscription %s removed: %d", subscription.id, result.status)
        else:
            metrics.FAILED.labels(result.outcome).inc()
            log.warning(
                "push to %s of %s gave up: %s %s",
                subscription.id,
                item_id,
                result.status or "",
                result.detail,
            )

    async def _send_with_retries(
        self,
        sender: Sender,
        subscription: rules.Subscription,
        body: bytes,
        urgency: str,
        topic: str,
    ) -> Result:
        result = Result("failed")
        for attempt in range(self.options.max_attempts):
            result = await sender.send(
                subscription, body, ttl=self.options.ttl, urgency=urgency, topic=topic
            )
            if result.outcome != "retry":
                return result
            wait = result.retry_after
            wait = rules.backoff(attempt) if wait is None else wait
            if wait > self.options.max_wait or attempt + 1 == self.options.max_attempts:
                break
            metrics.RETRIED.inc()
            await asyncio.sleep(wait)
        return Result("failed", result.status, detail=f"retries spent ({result.detail})")


def _timestamp(value: Any) -> float | None:
    try:
        return parse_time(value).timestamp() if isinstance(value, str) else None
    except ValueError:
        return None
