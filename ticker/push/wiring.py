"""Running Web Push delivery beside the publisher, as the expiry sweeper is run.

Once VAPID keys exist, the publisher starts the delivery process (ticker/push/process.py)
and hands it every event it follows; a process that ends is started again. The
publisher's own loop does no push work but one pipe write per event, so a flash to many
subscriptions does not hold up the editors' requests. Without keys there is no process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Iterable

from prometheus_client import REGISTRY, multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ..brokers.base import Broker, BrokerError
from ..config import Settings
from ..metrics import MULTIPROC_ENV
from . import metrics
from .process import entry_line, settings_line
from .rules import backoff
from .store import push_store_for

log = logging.getLogger("ticker.push")

KEYS_POLL_SECONDS = 1.0  # how soon keys made on a running service start delivery
STOP_SECONDS = 5.0
HELD_BYTES = 8 * 1024 * 1024  # more than this unread by a stalled process: later events wait
STEADY_SECONDS = 60.0  # a process that ran this long restarts without a growing delay


class _Reported:
    """The delivery process's counters as it last told them; before it has, this
    process's own (zero, or from a worker run in this process)."""

    def __init__(self) -> None:
        self.text: str | None = None

    def collect(self) -> Iterable[Metric]:
        if self.text is None:
            return metrics.REGISTRY.collect()
        return text_string_to_metric_families(self.text)


REPORTED = _Reported()
REGISTRY.register(REPORTED)  # type: ignore[arg-type]


async def run_push_worker(settings: Settings, broker: Broker) -> None:
    """Until cancelled: keep a delivery process running while keys exist."""
    store = push_store_for(broker)
    # Every delivery process this publisher starts holds the lease under the same name:
    # each starts only once the one before has ended, so it takes the lease over at once.
    owner = f"{os.getpid()}-{secrets.token_hex(4)}"
    restarts = 0
    while True:
        try:
            keys = await store.keys()
        except BrokerError:
            keys = None
        if keys is None:
            await asyncio.sleep(KEYS_POLL_SECONDS)
            continue
        began = time.monotonic()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ticker.push.process",
            "--owner",
            owner,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            await _serve(child, broker, settings)
        finally:
            await _stop(child)
        restarts = 0 if time.monotonic() - began > STEADY_SECONDS else restarts + 1
        delay = backoff(restarts, cap=10.0)
        log.warning(
            "push delivery process %d ended (exit %s); starting it again in %.1f s",
            child.pid,
            child.returncode,
            delay,
        )
        await asyncio.sleep(delay)


async def _serve(child: asyncio.subprocess.Process, broker: Broker, settings: Settings) -> None:
    """Feed the process until it ends."""
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(settings_line(settings))
    feeding = asyncio.ensure_future(_feed(child.stdin, broker, settings.vocabulary.editions))
    try:
        async for line in child.stdout:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                REPORTED.text = _metrics_text(line)
        await child.wait()
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding


def _metrics_text(line: bytes) -> str:
    text = json.loads(line)["metrics"]
    if not isinstance(text, str):
        raise TypeError("metrics must be text")
    return text


async def _feed(pipe: asyncio.StreamWriter, broker: Broker, editions: tuple[str, ...]) -> None:
    failures = 0
    while True:
        try:
            async for entry in broker.follow(editions):
                failures = 0
                if pipe.is_closing():
                    return
                if pipe.transport.get_write_buffer_size() > HELD_BYTES:
                    continue  # the process reads the gap from the log once it catches up
                pipe.write(entry_line(entry))
        except BrokerError as exc:
            log.warning("push: following the log paused: %s", exc)
        failures += 1
        await asyncio.sleep(backoff(failures, cap=10.0))


async def _stop(child: asyncio.subprocess.Process) -> None:
    """Close its input (it stops at the end of it), then wait; kill it if it will not go."""
    if child.returncode is None:
        if child.stdin is not None:
            child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), STOP_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
    REPORTED.text = None  # its counters went with it
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(child.pid)  # type: ignore[no-untyped-call]


def start_push_worker(settings: Settings, broker: Broker) -> asyncio.Task:
    return asyncio.create_task(run_push_worker(settings, broker), name="push-worker")
