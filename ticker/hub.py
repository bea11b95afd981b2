"""The hub: follows the broker and pushes every change to every reader.

The hub is the wiring: it follows the broker into the fan-out (`fanout.py`), serves the
WebSocket transport (`transports/websocket.py`) and the plain HTTP answers
(`hub_routes.py`) on one port, and starts and stops them together.
"""

from __future__ import annotations

import asyncio
import logging

from . import hub_routes
from .brokers.base import Broker, BrokerError
from .config import Settings
from .events import EditionState, Gap
from .fanout import FanOut
from .hub_routes import PlainAnswer
from .metrics import HubMetrics
from .protocol import CloseCode
from .transports.websocket import WebSocketEndpoint

logger = logging.getLogger("ticker.hub")

FOLLOW_RETRY_SECONDS = 0.5


class Hub:
    def __init__(self, settings: Settings, broker: Broker, *, worker: int | None = None) -> None:
        self.settings = settings
        self.broker = broker
        self.worker = worker
        self.metrics = HubMetrics()
        self.fanout = FanOut(settings, self.metrics)
        self.websockets = WebSocketEndpoint(settings, self.fanout, self.metrics, self._plain)
        self.server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def ready(self) -> asyncio.Event:
        """Set once the hub holds a copy of every edition."""
        return self.fanout.ready

    async def start(
        self, host: str | None = None, port: int | None = None, *, reuse_port: bool = False
    ) -> None:
        """Listen; with `reuse_port`, several worker processes share one port and the kernel
        spreads new connections over them."""
        jobs = {
            "hub-follow": self._follow(),
            "hub-heartbeat": self.fanout.run_heartbeat(),
            "hub-keepalive": self.fanout.run_keepalive(),
            "hub-handshakes": self.websockets.cut_stalled_handshakes(),
        }
        self._tasks = [asyncio.create_task(job, name=name) for name, job in jobs.items()]
        self.server = await asyncio.get_running_loop().create_server(
            self.websockets.connection,
            host or self.settings.hub_host,
            self.settings.hub_port if port is None else port,
            reuse_port=reuse_port or None,
            # A reconnect storm brings thousands of SYNs at once; a short backlog drops
            # most of them and clients wait seconds to retry.
            backlog=self.settings.accept_backlog,
        )

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every connection with 1001 (going away), then stop following."""
        self._stopping = True
        if self.server is not None:
            self.server.close()
        if self.fanout.ready.is_set():
            self.fanout.drain()  # what was accepted before the stop still goes out
        await self.websockets.close_all(
            CloseCode.GOING_AWAY, "hub shutting down", self.settings.shutdown_grace
        )
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # a store that stopped answering must not hold up the exit
            await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace)

    def _plain(self, path: str) -> PlainAnswer:
        return hub_routes.answer(
            path, ready=self.ready.is_set(), metrics=self.metrics, worker=self.worker
        )

    async def _follow(self) -> None:
        """Follow the broker for as long as the hub runs. Whatever ends a follow (a gap, an
        error, a broker that was closed), the next one starts after a pause, never in a
        tight loop."""
        editions = self.settings.vocabulary.editions
        fanout = self.fanout
        failures = 0
        while not self._stopping:
            try:
                async for update in self.broker.follow(editions):
                    if isinstance(update, EditionState):
                        fanout.load(update)
                    else:
                        fanout.apply(update)
                    failures = 0
            except Gap as exc:
                logger.error("event log out of step, reloading: %s", exc)
            except asyncio.CancelledError:
                raise
            except BrokerError as exc:  # the store said what is wrong: one line, less often
                failures += 1
                if failures & (failures - 1) == 0:
                    logger.error("following the store failed %d times, retrying: %s", failures, exc)
            except Exception as exc:  # a bug: its traceback once, then one line each
                failures += 1
                logger.error(
                    "following the broker failed, retrying: %r", exc, exc_info=failures == 1
                )
            await asyncio.sleep(FOLLOW_RETRY_SECONDS)
