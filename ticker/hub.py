"""The hub: follows the broker and pushes every change to every WebSocket client.

The hot path is `_flush`: for each group of identical subscriptions it builds one frame
and writes the same bytes straight to each member's transport. There is no task, queue or
encoding per connection per message. Events that arrive close together leave as one frame,
so a burst costs one write per connection instead of one per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from . import protocol
from .brokers.base import Broker
from .config import Settings
from .items import matches, parse_time
from .log import EditionLog, EditionState, Event, Gap, payload_for
from .metrics import HubMetrics, render
from .protocol import CloseCode, Cursor, ProtocolError, Subscription

log = logging.getLogger("ticker.hub")

OPEN = State.OPEN
READY_TIMEOUT = 10.0  # how long a client waits for the hub's first copy of the ticker


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (RFC 6455 §5.2), built once and written many times."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


@dataclass(eq=False, slots=True)
class Group:
    """Connections with the same subscription: they receive identical frames."""

    subscription: Subscription
    members: set[ServerConnection] = field(default_factory=set)
    pending: list[bytes] = field(default_factory=list)
    snapshot_at: Cursor | None = None
    snapshot: list[str] | None = None


class Hub:
    def __init__(self, settings: Settings, broker: Broker, *, worker: int | None = None) -> None:
        self.settings = settings
        self.worker = worker
        self.broker = broker
        self.vocabulary = settings.vocabulary
        self.limits = settings.limits
        self.logs: dict[str, EditionLog] = {}
        self.groups: dict[Subscription, Group] = {}
        self.by_edition: dict[str, list[Group]] = {e: [] for e in self.vocabulary.editions}
        self.ready = asyncio.Event()
        self.server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = 0.0
        self._dirty: list[Group] = []
        self.metrics = HubMetrics()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(
        self, host: str | None = None, port: int | None = None, *, reuse_port: bool = False
    ) -> None:
        """Listen; with `reuse_port`, several worker processes share one port and the kernel
        spreads new connections over them."""
        self._tasks.append(asyncio.create_task(self._follow(), name="hub-follow"))
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="hub-heartbeat"))
        self.server = await serve(
            self._handle,
            host or self.settings.hub_host,
            self.settings.hub_port if port is None else port,
            origins=self.settings.origins(),
            compression=None,
            process_request=self._process_request,
            ping_interval=self.settings.ping_interval,
            ping_timeout=self.settings.ping_timeout,
            close_timeout=2,
            max_size=self.limits.ws_frame_max_bytes,
            max_queue=4,
            server_header=None,
            reuse_port=reuse_port or None,
        )

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every connection with 1001 (going away), then stop following."""
        if self.server is not None:
            self.server.close(code=CloseCode.GOING_AWAY, reason="hub shutting down")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), self.settings.shutdown_grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- following the broker -------------------------------------------------------------

    async def _follow(self) -> None:
        editions = self.vocabulary.editions
        while True:
            try:
                async for update in self.broker.follow(editions):
                    if isinstance(update, EditionState):
                        self._load(update)
                    else:
                        self._apply(update)
            except Gap as exc:
                log.error("event log out of step, reloading: %s", exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following the broker failed; retrying")
                await asyncio.sleep(1.0)

    def _load(self, state: EditionState) -> None:
        current = self.logs.get(state.edition)
        if current is None:
            self.logs[state.edition] = EditionLog(state, self.limits.history)
            if len(self.logs) == len(self.vocabulary.editions):
                self.ready.set()
            return
        if current.cursor == state.cursor:
            return  # nothing was missed
        log.warning("edition %s reset from %s to %s", state.edition, current.cursor, state.cursor)
        current.load(state)
        self.metrics.resets += 1
        for group in self.by_edition[state.edition]:
            group.pending.clear()
            frame = text_frame(self._snapshot(group, reset=True))
            self._write(group, frame)

    def _apply(self, event: Event) -> None:
        edition_log = self.logs[event.edition]
        if event.cursor.offset <= edition_log.offset and event.cursor.epoch == edition_log.epoch:
            return  # already applied
        before = edition_log.apply(event)
        metrics = self.metrics
        metrics.events += 1
        metrics.offsets[event.edition] = event.cursor.offset
        metrics.lag_seconds = max(0.0, time.time() - _timestamp(event.item.get("updated")))
        for group in self.by_edition[event.edition]:
            payload = payload_for(group.subscription, event, before)
            if payload is not None:
                if not group.pending:
                    self._dirty.append(group)
                group.pending.append(payload)
        self._schedule_flush()

    # --- fan-out: the hot path ------------------------------------------------------------

    def _schedule_flush(self) -> None:
        """Flush at once if the last flush was long enough ago, otherwise at the end of the
        coalescing window: a lone item leaves immediately, a burst leaves in few frames."""
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        due = self._last_flush + self.settings.coalesce_ms / 1000
        if loop.time() >= due:
            self._flush_handle = loop.call_soon(self._flush)
        else:
            self._flush_handle = loop.call_at(due, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        started = time.perf_counter()
        dirty, self._dirty = self._dirty, []
        for group in dirty:
            if group.pending:
                self._flush_group(group)
        self.metrics.fanout.observe(time.perf_counter() - started)

    def _write(self, group: Group, frame: bytes) -> None:
        limit = self.limits.ws_write_buffer_max_bytes
        slow: list[ServerConnection] = []
        for ws in group.members:
            if ws.protocol.state is not OPEN:
                continue
            transport = ws.transport
            transport.write(frame)
            if transport.get_write_buffer_size() > limit:
                slow.append(ws)
        self.metrics.deliveries += len(group.members)
        self.metrics.frames += 1
        for ws in slow:
            self._drop_slow(ws, group)

    def _drop_slow(self, ws: ServerConnection, group: Group) -> None:
        group.members.discard(ws)
        self.metrics.slow_consumers += 1
        log.info("closing slow consumer %s", ws.remote_address)
        # Nothing more is queued for it; the close frame goes after what is buffered, and
        # websockets aborts the connection if the client never reads it.
        asyncio.get_running_loop().create_task(
            ws.close(CloseCode.SLOW_CONSUMER, "slow consumer: reconnect with your cursor")
        )

    async def _heartbeat(self) -> None:
        """One shared frame to everyone, so a browser (which cannot send WebSocket pings)
        notices a dead link when heartbeats stop."""
        frame = text_frame(protocol.HEARTBEAT)
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            for group in list(self.groups.values()):
                self._write(group, frame)

    # --- connections ----------------------------------------------------------------------

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == "/healthz":
            return ws.respond(HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            return ws.respond(
                HTTPStatus.OK if self.ready.is_set() else HTTPStatus.SERVICE_UNAVAILABLE,
                "ready\n" if self.ready.is_set() else "loading\n",
            )
        if path == "/metrics":
            response = ws.respond(
                HTTPStatus.OK,
                render(self.metrics, f'worker="{self.worker}"' if self.worker is not None else ""),
            )
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
            return response
        if path != "/ws":
            return ws.respond(HTTPStatus.NOT_FOUND, "the ticker hub serves /ws\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.metrics.connections += 1
        self.metrics.connections_total += 1
        try:
            query = ws.request.path.partition("?")[2] if ws.request else ""
            subscription, since = protocol.parse_query(query, self.vocabulary)
            if not self.ready.is_set():
                try:
                    await asyncio.wait_for(self.ready.wait(), READY_TIMEOUT)
                except TimeoutError:
                    await ws.close(1013, "the hub is not ready yet; try again shortly")
                    return
            self._join(ws, subscription, since)
            await self._serve_client(ws)
        except ProtocolError as exc:
            self.metrics.protocol_errors += 1
            await ws.close(exc.code, exc.reason)
        except ConnectionClosed:
            pass
        finally:
            self.metrics.connections -= 1
            self._leave(ws)

    async def _serve_client(self, ws: ServerConnection) -> None:
        """Clients send little; a flood or an unknown message ends only their connection."""
        window_start, count = time.monotonic(), 0
        async for message in ws:
            now = time.monotonic()
            if now - window_start > 10:
                window_start, count = now, 0
            count += 1
            if count > self.limits.ws_frames_per_10s:
                raise ProtocolError(CloseCode.TOO_MANY_MESSAGES, "too many messages")
            request = protocol.parse_client_message(message, self.vocabulary)
            if isinstance(request, protocol.Ping):
                ws.transport.write(text_frame(protocol.PONG))
            else:
                self._leave(ws)
                self._join(ws, request.subscription, request.since)

    def _join(
        self, ws: ServerConnection, subscription: Subscription, since: Cursor | None
    ) -> Group:
        """Send the client where the ticker stands and add it to its group, with no await in
        between, so it gets every later event once and no earlier one twice."""
        group = self.groups.get(subscription)
        if group is None:
            group = self.groups[subscription] = Group(subscription)
            self.by_edition[subscription.edition].append(group)
        elif group.pending:
            self._flush_group(group)
        ws.transport.write(text_frame(self._greeting(group, since)))
        group.members.add(ws)
        ws.ticker_group = group  # type: ignore[attr-defined]
        return group

    def _flush_group(self, group: Group) -> None:
        frame = text_frame(protocol.batch(group.pending))
        group.pending = []
        self._write(group, frame)

    def _leave(self, ws: ServerConnection) -> None:
        group: Group | None = getattr(ws, "ticker_group", None)
        if group is None:
            return
        ws.ticker_group = None  # type: ignore[attr-defined]
        group.members.discard(ws)
        if not group.members:  # nobody left to send its pending events to
            del self.groups[group.subscription]
            self.by_edition[group.subscription.edition].remove(group)
            if group.pending:
                group.pending = []
                self._dirty.remove(group)

    def _greeting(self, group: Group, since: Cursor | None) -> bytes:
        """A resume when the missed events are all still here, otherwise a snapshot
        (marked as a reset when the client asked to resume)."""
        heartbeat = self.settings.heartbeat_interval
        if since is not None:
            missed = self.logs[group.subscription.edition].since(since)
            if missed is not None:
                payloads = [
                    p
                    for p in (payload_for(group.subscription, e, None) for e in missed)
                    if p is not None
                ]
                resumed = protocol.resumed_message(
                    group.subscription, since, len(payloads), heartbeat
                )
                return protocol.batch([resumed, *payloads])
        return self._snapshot(group, reset=since is not None)

    def _snapshot(self, group: Group, *, reset: bool) -> bytes:
        edition_log = self.logs[group.subscription.edition]
        if group.snapshot_at != edition_log.cursor or group.snapshot is None:
            sub = group.subscription
            group.snapshot = [
                edition_log.item_json[i["id"]]
                for i in edition_log.newest_first()
                if matches(i, sub.region, sub.category)
            ]
            group.snapshot_at = edition_log.cursor
        return protocol.snapshot_message(
            group.subscription,
            edition_log.cursor,
            group.snapshot,
            reset=reset,
            heartbeat=self.settings.heartbeat_interval,
        )

    def connections(self) -> Iterable[ServerConnection]:
        for group in self.groups.values():
            yield from group.members


def _timestamp(iso: str | None) -> float:
    try:
        return parse_time(iso).timestamp() if iso else time.time()
    except ValueError:
        return time.time()
