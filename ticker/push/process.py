"""The delivery process (`python -m ticker.push.process`), which the publisher starts once
VAPID keys exist (ticker/push/wiring.py).

Encrypting and sending a flash to 100,000 subscriptions is CPU work. On a thread of the
publisher it would share Python's interpreter lock with the editors' requests; in a
process of its own it shares nothing, so a flash does not slow posting. The process has its
own connection to the store; the publisher hands it every event over its standard input.

Its standard input carries lines: first the publisher's settings, then one line per event
(the event's wire bytes) or per edition whose state must be read again (`{"type":"state",
"edition":...}`: the publisher's follower started over, after a reset). End of input means
stop. Its standard output carries its Web Push counters (`{"metrics": text}`) while they
change, unless every process writes them to the shared multiprocess directory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import pickle
import signal
import sys

from ..brokers import make_broker
from ..brokers.base import Broker, BrokerError, BrokerMisconfigured
from ..config import Settings
from ..events import EditionState, Event
from ..metrics import MULTIPROC_ENV
from . import metrics
from .rules import backoff, parse_networks
from .sender import Resolver, Sender, Signer
from .store import PushStore, push_store_for
from .worker import Inbox, PushWorker, WorkerOptions

log = logging.getLogger("ticker.push")

LINE_LIMIT = 16 * 1024 * 1024  # an event line is at most an item's wire bytes
REPORT_SECONDS = 0.1


def settings_line(settings: Settings) -> bytes:
    return base64.b64encode(pickle.dumps(settings)) + b"\n"


def entry_line(entry: EditionState | Event) -> bytes:
    if isinstance(entry, EditionState):
        return json.dumps({"type": "state", "edition": entry.edition}).encode() + b"\n"
    # Compact JSON holds no raw line break (one inside a string is escaped); a space
    # between tokens would mean the same, so a stray one cannot split a line.
    return entry.payload.replace(b"\n", b" ") + b"\n"


def make_worker(
    settings: Settings,
    broker: Broker,
    store: PushStore,
    inbox: Inbox | None = None,
    owner: str | None = None,
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
        owner=owner,
    )


async def _serve(owner: str | None) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    first = await reader.readline()
    if not first.endswith(b"\n"):
        return 0  # the publisher went before saying anything
    settings: Settings = pickle.loads(base64.b64decode(first))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    broker = make_broker(settings)
    inbox = Inbox()
    ready = asyncio.Event()
    tasks = {
        asyncio.ensure_future(_read(reader, broker, inbox, ready)),
        asyncio.ensure_future(_deliver(settings, broker, inbox, ready, owner)),
        asyncio.ensure_future(stopping.wait()),
    }
    if not os.environ.get(MULTIPROC_ENV):
        tasks.add(asyncio.ensure_future(_report()))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await broker.close()
    return 0


async def _read(
    reader: asyncio.StreamReader, broker: Broker, inbox: Inbox, ready: asyncio.Event
) -> None:
    """Hand each event to the worker until the publisher closes the pipe."""
    while line := await reader.readline():
        try:
            inbox.put(Event.from_payload(line))
            continue
        except (ValueError, KeyError, TypeError):
            pass
        if not ready.is_set():
            continue  # the worker reads every edition's state once the store is open
        try:
            edition = json.loads(line)["edition"]
            inbox.put(await broker.state(edition))
        except BrokerError as exc:
            # The worker notices the gap at the next event and reads the log then.
            log.warning("push: reading the state of an edition failed: %s", exc)
        except (ValueError, KeyError, TypeError):
            log.error("push: a line the publisher should not have sent: %.80r", line)


async def _deliver(
    settings: Settings, broker: Broker, inbox: Inbox, ready: asyncio.Event, owner: str | None
) -> None:
    failures = 0
    while True:
        try:
            await broker.start()
            ready.set()
            break
        except BrokerMisconfigured as exc:
            log.error("push delivery cannot start: %s", exc)
            return
        except BrokerError as exc:
            log.warning("push delivery waits for the store: %s", exc)
        failures += 1
        await asyncio.sleep(backoff(failures, cap=10.0))
    await make_worker(settings, broker, push_store_for(broker), inbox, owner).run()


async def _report() -> None:
    """Tell the publisher the counters whenever they changed, at most every REPORT_SECONDS."""
    told = ""
    while True:
        text = metrics.exposition()
        if text != told:
            _write_all(json.dumps({"metrics": text}).encode() + b"\n")
            told = text
        await asyncio.sleep(REPORT_SECONDS)


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(sys.stdout.fileno(), view) :]


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the publisher stops it by closing its input
    from ..eventloop import run

    # `--owner NAME`: the lease name of the publisher's delivery processes, so one started
    # after another ended takes the lease over at once.
    owner = sys.argv[2] if sys.argv[1:2] == ["--owner"] and len(sys.argv) > 2 else None
    with contextlib.suppress(BrokenPipeError):
        sys.exit(run(_serve(owner)))


if __name__ == "__main__":
    main()
