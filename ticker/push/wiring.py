"""Starting the delivery worker with the publisher, as the expiry sweeper is started.

The worker runs on a thread of its own, with its own event loop and its own connection to
the store, so encrypting and sending a flash to many subscriptions does not hold up the
editors' requests on the publisher's loop. The publisher's loop only follows the log and
hands each event over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from ..brokers import make_broker
from ..brokers.base import Broker, BrokerError, BrokerMisconfigured
from ..config import Settings
from .rules import parse_networks
from .sender import Resolver, Sender, Signer
from .store import PushStore, push_store_for
from .worker import Inbox, PushWorker, WorkerOptions

log = logging.getLogger("ticker.push")


def make_worker(
    settings: Settings,
    broker: Broker,
    store: PushStore,
    inbox: Inbox | None = None,
    **options: object,
) -> PushWorker:
    allowed = parse_networks(settings.push_allow_networks)

    async def sender() -> Sender | None:
        """None until keys exist: keys made with `ticker push keys create` on a running
        service are used from the next flash on, without a restart."""
        keys = await store.keys()
        if keys is None:
            return None
        return Sender(
            Signer(keys, settings.push_contact),
            Resolver(allowed),
            concurrency=settings.push_concurrency,
        )

    return PushWorker(
        broker,
        store,
        sender,
        settings.vocabulary.editions,
        WorkerOptions(
            ttl=settings.push_ttl,
            concurrency=settings.push_concurrency,
            **options,  # type: ignore[arg-type]
        ),
        inbox=inbox,
    )


async def run_push_worker(settings: Settings, broker: Broker) -> None:
    """Follow the log on this loop and deliver on the worker's thread, until cancelled."""
    ready = threading.Event()
    box: dict[str, object] = {}

    def thread_main() -> None:
        from ..eventloop import run

        run(_deliver(settings, box, ready))

    thread = threading.Thread(target=thread_main, name="push-worker", daemon=True)
    thread.start()
    try:
        if not await asyncio.to_thread(ready.wait, 10):
            raise RuntimeError("the push worker thread did not start")
        loop: asyncio.AbstractEventLoop = box["loop"]  # type: ignore[assignment]
        inbox: Inbox = box["inbox"]  # type: ignore[assignment]
        failures = 0
        while True:
            try:
                async for entry in broker.follow(settings.vocabulary.editions):
                    loop.call_soon_threadsafe(inbox.put, entry)
                    failures = 0
            except BrokerError as exc:
                log.warning("push: following the log paused: %s", exc)
            failures += 1
            await asyncio.sleep(min(10.0, 0.5 * 2 ** min(failures, 5)))
    finally:
        task = box.get("task")
        if isinstance(task, asyncio.Task) and "loop" in box:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                box["loop"].call_soon_threadsafe(task.cancel)  # type: ignore[attr-defined]
        await asyncio.to_thread(thread.join, 10)


async def _deliver(settings: Settings, box: dict[str, object], ready: threading.Event) -> None:
    box["loop"] = asyncio.get_running_loop()
    box["inbox"] = inbox = Inbox()
    box["task"] = asyncio.current_task()
    ready.set()
    broker = make_broker(settings)  # its own connection: never the publisher loop's
    try:
        failures = 0
        while True:
            try:
                await broker.start()
                break
            except BrokerMisconfigured as exc:
                log.error("push delivery cannot start: %s", exc)
                return
            except BrokerError as exc:
                log.warning("push delivery waits for the store: %s", exc)
            failures += 1
            await asyncio.sleep(min(10.0, 0.5 * 2 ** min(failures, 5)))
        await make_worker(settings, broker, push_store_for(broker), inbox).run()
    except asyncio.CancelledError:
        pass
    finally:
        await broker.close()


def start_push_worker(settings: Settings, broker: Broker) -> asyncio.Task:
    return asyncio.create_task(run_push_worker(settings, broker), name="push-worker")
