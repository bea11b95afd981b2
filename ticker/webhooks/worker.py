"""The delivery worker: it follows the event log into durable per-webhook queues, and
delivers each queue in order, one worker at a time per webhook.

Two loops, both in every publisher process:

- **Queueing.** The worker follows the broker (`Broker.follow`) and, for each event, queues
  a message for every webhook it matches, and moves the edition's queued cursor, in one
  atomic step of the store (`WebhookStore.ingest`, a compare-and-set on the cursor): of
  several processes following the same log, one queues each event, and a process killed
  at any point resumes from the cursor with nothing lost. Gaps (history trimmed, a new
  epoch) become a `reset` notice (`rules.plan`).
- **Delivering.** For each enabled webhook with a queue, a worker takes its lease (an
  expiring lock in the store), sends the head message, and drops it once delivered or given
  up. The next message waits for that, so each webhook hears its events in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from ..brokers.base import Broker, BrokerError
from ..config import Settings
from ..events import EditionState, Event
from ..items import now_iso
from . import rules, sender
from .audit import SYSTEM, record_audit
from .rules import Network, RetryPolicy, Webhook
from .store import Attempt, Queued, WebhookStore

log = logging.getLogger("ticker.webhooks")

DELIVERIES = Counter(
    "ticker_webhook_deliveries",
    "Webhook delivery attempts, by result (delivered, failed, given_up, refused).",
    ["result"],
)
RETRIES = Counter("ticker_webhook_retries", "Webhook delivery attempts that were retries.")
QUEUE_DEPTH = Gauge(
    "ticker_webhook_queue_depth",
    "Messages waiting in each webhook's queue.",
    ["webhook"],
    multiprocess_mode="livemax",
)
DISABLED = Gauge(
    "ticker_webhooks_disabled",
    "Webhooks disabled (after too many failures in a row, until re-enabled).",
    multiprocess_mode="livemax",
)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    policy: RetryPolicy
    limits: sender.Limits
    allow: tuple[Network, ...] = ()
    concurrency: int = 16  # attempts in flight at once, across webhooks
    poll: float = 1.0  # seconds between looks at the registry

    @property
    def lease_ttl(self) -> float:
        """Long enough to cover one attempt with room to renew it between attempts."""
        return 2 * self.limits.timeout + 5


def worker_settings(settings: Settings) -> WorkerSettings:
    return WorkerSettings(
        policy=RetryPolicy(
            base=settings.webhook_retry_base,
            max_delay=settings.webhook_retry_max_delay,
            horizon=settings.webhook_retry_horizon,
            disable_after=settings.webhook_disable_after,
        ),
        limits=sender.Limits(
            connect_timeout=settings.webhook_connect_timeout,
            timeout=settings.webhook_timeout,
        ),
        allow=rules.parse_networks(settings.webhook_allow_networks),
        concurrency=settings.webhook_concurrency,
    )


async def deliver_once(
    hook: Webhook, msg_id: str, payload: bytes, settings: WorkerSettings
) -> sender.Answer:
    """Sign and send one message to a webhook, rendered in its format."""
    body = rules.render(hook.format, payload)
    headers = sender.signed_headers(hook.secret, msg_id, body)
    return await sender.post(hook.url, body, headers, allow=settings.allow, limits=settings.limits)


async def send_test(store: WebhookStore, hook: Webhook, settings: WorkerSettings) -> Attempt:
    """A signed test message, sent at once beside the queue (not retried), and logged."""
    msg_id = "msg_test_" + secrets.token_hex(8)
    answer = await deliver_once(hook, msg_id, rules.test_notice(hook.id, now_iso()), settings)
    attempt = _attempt(msg_id, answer, "delivered" if answer.error is None else "failed")
    await store.record(hook.id, attempt)
    return attempt


def _at_or_past(stored: str | None, event: Event) -> bool:
    epoch, _, offset = (stored or "").rpartition(":")
    return epoch == event.cursor.epoch and offset.isdigit() and int(offset) >= event.cursor.offset


def _attempt(msg_id: str, answer: sender.Answer, outcome: str) -> Attempt:
    return Attempt(msg_id, now_iso(), answer.status, answer.duration_ms, answer.error, outcome)


class Dispatcher:
    """Both loops of one process; `start` and `stop` from the publisher's lifespan."""

    def __init__(
        self,
        broker: Broker,
        store: WebhookStore,
        settings: WorkerSettings,
        editions: tuple[str, ...],
    ) -> None:
        self.broker = broker
        self.store = store
        self.settings = settings
        self.editions = editions
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._following = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._schedule(), name="webhook-scheduler")]

    def wake(self) -> None:
        """A webhook was created or enabled here: look at the registry now."""
        self._wake.set()

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._running.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for webhook_id in list(self._running):
            with contextlib.suppress(BrokerError):
                await self.store.release(webhook_id, self.owner)
        self._running.clear()

    # --- queueing ----------------------------------------------------------------------------

    async def _follow(self) -> None:
        failures = 0
        while True:
            try:
                async for update in self.broker.follow(self.editions):
                    if isinstance(update, EditionState):
                        await self._catch_up(update)
                    else:
                        await self._queue(update)
                    failures = 0
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store went away: follow again from the cursor
                failures += 1
                if failures & (failures - 1) == 0:
                    log.warning("webhook queueing failed %d times, retrying: %r", failures, exc)
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))

    async def _catch_up(self, state: EditionState) -> None:
        while True:
            stored = await self.store.cursor(state.edition)
            hooks = await self.store.all()
            messages = rules.plan(
                state.edition, state.cursor, state.events, stored, hooks, now_iso()
            )
            if messages is None:
                return
            if await self.store.ingest(state.edition, stored, str(state.cursor), messages) is None:
                if any(m.msg_id.startswith("msg_reset_") for m in messages):
                    log.warning("webhooks: a gap in the %s log; reset notices sent", state.edition)
                return

    async def _queue(self, event: Event) -> None:
        stored = await self.store.cursor(event.edition)
        previous = f"{event.cursor.epoch}:{event.cursor.offset - 1}"
        if stored != previous:
            if _at_or_past(stored, event):
                return  # another process queued it
            # Queued past it by another process, or a gap: the edition's state settles both.
            await self._catch_up(await self.broker.state(event.edition))
            return
        hooks = await self.store.all()
        messages = rules.plan(event.edition, event.cursor, [event], stored, hooks, now_iso())
        if messages is None:
            return
        if await self.store.ingest(event.edition, stored, str(event.cursor), messages) is not None:
            await self._catch_up(await self.broker.state(event.edition))

    # --- delivering --------------------------------------------------------------------------

    async def _schedule(self) -> None:
        seen: set[str] = set()
        while True:
            try:
                hooks = await self.store.all()
                if hooks and not self._following:
                    self._following = True
                    self._tasks.append(asyncio.create_task(self._follow(), name="webhook-follow"))
                await self._start_deliveries(hooks)
                DISABLED.set(sum(1 for h in hooks if h.disabled is not None))
                for gone in seen - {h.id for h in hooks}:
                    with contextlib.suppress(KeyError):
                        QUEUE_DEPTH.remove(gone)
                seen = {h.id for h in hooks}
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("webhook scheduling failed, retrying: %r", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll)

    async def _start_deliveries(self, hooks: list[Webhook]) -> None:
        for hook in hooks:
            depth = await self.store.depth(hook.id)
            QUEUE_DEPTH.labels(hook.id).set(depth)
            if hook.disabled is not None or depth == 0 or hook.id in self._running:
                continue
            if await self.store.lease(hook.id, self.owner, self.settings.lease_ttl):
                self._running[hook.id] = asyncio.create_task(
                    self._deliver(hook.id), name=f"webhook-{hook.id}"
                )

    async def _deliver(self, webhook_id: str) -> None:
        try:
            while await self._deliver_head(webhook_id):
                pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("webhook %s: delivery stopped, retrying soon: %r", webhook_id, exc)
        finally:
            self._running.pop(webhook_id, None)
            with contextlib.suppress(Exception):
                await self.store.release(webhook_id, self.owner)

    async def _deliver_head(self, webhook_id: str) -> bool:
        """Try the head message once; False when this worker should stop for the webhook
        (queue empty, webhook gone or disabled, lease lost)."""
        settings = self.settings
        if not await self.store.lease(webhook_id, self.owner, settings.lease_ttl):
            return False
        hook = await self.store.get(webhook_id)
        head = await self.store.head(webhook_id)
        if hook is None or hook.disabled is not None or head is None:
            return False
        now = time.time()
        if settings.policy.given_up(head.enqueued, now):
            await self._give_up(hook, head, "not delivered within the retry horizon")
            return True
        if head.next_at > now:
            await asyncio.sleep(min(head.next_at - now, settings.lease_ttl / 3))
            return True
        async with self._slots:
            # Waiting for a slot may have taken a while: renew before sending, so no other
            # worker can send this webhook's next message meanwhile.
            if not await self.store.lease(webhook_id, self.owner, settings.lease_ttl):
                return False
            if head.attempts:
                RETRIES.inc()
            answer = await deliver_once(hook, head.msg_id, head.payload, settings)
        if answer.error is None:
            DELIVERIES.labels("delivered").inc()
            await self.store.record(webhook_id, _attempt(head.msg_id, answer, "delivered"))
            await self.store.done(webhook_id, head.msg_id, delivered=True)
            return True
        refused = answer.error.startswith("refused:")
        outcome = "refused" if refused else "failed"
        DELIVERIES.labels(outcome).inc()
        await self.store.record(webhook_id, _attempt(head.msg_id, answer, outcome))
        next_at = time.time() + settings.policy.delay(head.attempts + 1)
        failures = await self.store.failed(webhook_id, head.msg_id, next_at)
        if settings.policy.disables(failures):
            reason = f"{failures} failed attempts in a row; the last: {answer.error}"
            await self.store.disable(webhook_id, now_iso(), reason[:500])
            DISABLED.inc()
            await record_audit(
                self.broker, SYSTEM, "webhook.disabled", webhook_id, {"disabled": [None, reason]}
            )
            log.warning("webhook %s disabled: %s", webhook_id, reason)
            return False
        if settings.policy.given_up(head.enqueued, next_at):
            await self._give_up(hook, head, "the next retry would pass the retry horizon")
        return True

    async def _give_up(self, hook: Webhook, head: Queued, why: str) -> None:
        DELIVERIES.labels("given_up").inc()
        attempt = Attempt(head.msg_id, now_iso(), None, 0, why, "given_up")
        await self.store.record(hook.id, attempt)
        await self.store.done(hook.id, head.msg_id, delivered=False)
        log.warning("webhook %s: gave up %s after %d attempts", hook.id, head.msg_id, head.attempts)
