"""The hub: follows the broker and pushes every change to every WebSocket client.

The hot path is `_flush`: for each group of identical subscriptions it builds one frame
and writes the same bytes straight to each member's transport. There is no task, queue or
encoding per connection per message. Events that arrive close together leave as one frame,
so a burst costs one write per connection instead of one per event.

Connections (`connection.py`) are websockets' sans-I/O protocol on a bare asyncio
transport: a reader that sits idle costs one small object and its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from http import HTTPStatus

from websockets.http11 import Request, Response

from . import protocol
from .brokers.base import Broker
from .config import Settings
from .connection import CONNECTING, Connection
from .edition_log import EditionLog, payload_for
from .events import Cursor, EditionState, Event, Gap
from .items import matches, parse_time
from .metrics import HubMetrics, render
from .protocol import CloseCode, ProtocolError, Subscription

log = logging.getLogger("ticker.hub")

RESET = Cursor("", -1)  # the greetings cache's key for "asked to resume, but cannot"
PING_FRAME = b"\x89\x00"  # an unmasked, empty ping; browsers and libraries answer it
HANDSHAKE_TIMEOUT = 10.0
QUERY_CACHE_SIZE = 4096
FOLLOW_RETRY_SECONDS = 0.5


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


PONG_FRAME = text_frame(protocol.PONG)


@dataclass(eq=False, slots=True)
class Group:
    """Connections with the same subscription: they receive identical frames."""

    subscription: Subscription
    # Each member with its transport, so the hot loop touches nothing else.
    members: dict[Connection, asyncio.Transport] = field(default_factory=dict)
    pending: list[bytes] = field(default_factory=list)
    backlogged: list[Connection] = field(default_factory=list)
    # Greetings depend only on the cursor a client resumes from, so a reconnect storm
    # builds each one once: valid while the edition stays at `greetings_at`.
    greetings_at: Cursor | None = None
    greetings: dict[Cursor | None, bytes] = field(default_factory=dict)


class Hub:
    def __init__(self, settings: Settings, broker: Broker, *, worker: int | None = None) -> None:
        self.settings = settings
        self.worker = worker
        self.broker = broker
        self.vocabulary = settings.vocabulary
        self.limits = settings.limits
        self.origins = settings.origins()
        self.logs: dict[str, EditionLog] = {}
        self.groups: dict[Subscription, Group] = {}
        self.by_edition: dict[str, list[Group]] = {e: [] for e in self.vocabulary.editions}
        self.alive: set[Connection] = set()  # every TCP connection, from accept to close
        self.ready = asyncio.Event()
        self._all_closed = asyncio.Event()
        self._stopping = False
        self.loop: asyncio.AbstractEventLoop  # set by start()
        self.server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = 0.0
        self._dirty: list[Group] = []
        self._queries: dict[str, tuple[Subscription, Cursor | None]] = {}
        self.metrics = HubMetrics()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(
        self, host: str | None = None, port: int | None = None, *, reuse_port: bool = False
    ) -> None:
        """Listen; with `reuse_port`, several worker processes share one port and the kernel
        spreads new connections over them."""
        self.loop = asyncio.get_running_loop()
        self._tasks.append(asyncio.create_task(self._follow(), name="hub-follow"))
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="hub-heartbeat"))
        self._tasks.append(asyncio.create_task(self._keepalive(), name="hub-keepalive"))
        self.server = await self.loop.create_server(
            lambda: Connection(self),
            host or self.settings.hub_host,
            self.settings.hub_port if port is None else port,
            reuse_port=reuse_port or None,
            # A reconnect storm brings thousands of SYNs at once; a short backlog drops
            # most of them and clients wait seconds to retry.
            backlog=4096,
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
        for conn in list(self.alive):
            conn.close(CloseCode.GOING_AWAY, "hub shutting down")
        if self.alive:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), self.settings.shutdown_grace)
        for conn in list(self.alive):
            conn.transport.abort()
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # a store that stopped answering must not hold up the exit
            await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace)

    # --- following the broker -------------------------------------------------------------

    async def _follow(self) -> None:
        """Follow the broker for as long as the hub runs. Whatever ends a follow (a gap, an
        error, a broker that was closed), the next one starts after a pause, never in a
        tight loop."""
        editions = self.vocabulary.editions
        while not self._stopping:
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
            await asyncio.sleep(FOLLOW_RETRY_SECONDS)

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
            self._write(group, self._greeting(group, RESET))

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
        due = self._last_flush + self.settings.coalesce_ms / 1000
        if self.loop.time() >= due:
            self._flush_handle = self.loop.call_soon(self._flush)
        else:
            self._flush_handle = self.loop.call_at(due, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._last_flush = self.loop.time()
        started = time.perf_counter()
        dirty, self._dirty = self._dirty, []
        for group in dirty:
            if group.pending:
                self._flush_group(group)
        self.metrics.fanout.observe(time.perf_counter() - started)

    def _flush_group(self, group: Group) -> None:
        frame = text_frame(protocol.batch(group.pending))
        group.pending = []
        self._write(group, frame)

    def _write(self, group: Group, frame: bytes) -> None:
        for transport in group.members.values():
            transport.write(frame)
        self.metrics.deliveries += len(group.members)
        self.metrics.frames += 1
        if group.backlogged:  # filled by Connection.pause_writing during the writes
            for conn in group.backlogged:
                self._drop_slow(conn)
            group.backlogged.clear()

    def _drop_slow(self, conn: Connection) -> None:
        if conn.group is None:
            return
        self.metrics.slow_consumers += 1
        log.info("closing slow consumer %s", conn.peer)
        # Nothing more is queued for it; the close frame goes after what is buffered, and
        # the socket is cut if the client never reads it.
        conn.close(CloseCode.SLOW_CONSUMER, "slow consumer: reconnect with your cursor")

    async def _heartbeat(self) -> None:
        """One shared frame to everyone, so a browser (which cannot send WebSocket pings)
        notices a dead link when heartbeats stop."""
        frame = text_frame(protocol.HEARTBEAT)
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            for group in list(self.groups.values()):
                self._write(group, frame)

    async def _keepalive(self) -> None:
        """One shared ping frame to every connection; a peer not heard from by the timeout
        is dropped. The same pass ends handshakes that never finish, and catches a
        connection whose unsent data kept growing while its transport was paused."""
        interval = self.settings.ping_interval
        timeout = min(self.settings.ping_timeout, interval)
        limit = self.limits.ws_write_buffer_max_bytes
        while True:
            await asyncio.sleep(interval - timeout)
            sent = self.loop.time()
            for group in list(self.groups.values()):
                self._write(group, PING_FRAME)
            await asyncio.sleep(timeout)
            now = self.loop.time()
            for conn in list(self.alive):
                if conn.group is not None:
                    if conn.heard < sent:
                        log.info("dropping %s: no answer to ping", conn.peer)
                        conn.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                    elif conn.transport.get_write_buffer_size() > limit:
                        self._drop_slow(conn)
                elif conn.ws.state is CONNECTING and now - conn.opened > HANDSHAKE_TIMEOUT:
                    conn.transport.abort()

    # --- connections: called by Connection ------------------------------------------------

    def route(self, conn: Connection, request: Request) -> Response | None:
        """Plain HTTP answers for everything but /ws, which goes on to the handshake."""
        path = request.path.partition("?")[0]
        if path == "/ws":
            return None
        if path == "/healthz":
            return conn.ws.reject(HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            if self.ready.is_set():
                return conn.ws.reject(HTTPStatus.OK, "ready\n")
            return conn.ws.reject(HTTPStatus.SERVICE_UNAVAILABLE, "loading\n")
        if path == "/metrics":
            labels = f'worker="{self.worker}"' if self.worker is not None else ""
            response = conn.ws.reject(HTTPStatus.OK, render(self.metrics, labels))
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
            return response
        return conn.ws.reject(HTTPStatus.NOT_FOUND, "the ticker hub serves /ws\n")

    def opened(self, conn: Connection, path: str) -> None:
        """A WebSocket is open: greet it and add it to its group, or close it with a reason."""
        conn.opened_ws = True
        self.metrics.connections += 1
        self.metrics.connections_total += 1
        try:
            subscription, since = self._parse_query(path.partition("?")[2])
        except ProtocolError as exc:
            self.metrics.protocol_errors += 1
            conn.close(exc.code, exc.reason)
            return
        if not self.ready.is_set():
            conn.close(CloseCode.TRY_AGAIN_LATER, "the hub is not ready yet; try again shortly")
            return
        self._join(conn, subscription, since)

    def _parse_query(self, query: str) -> tuple[Subscription, Cursor | None]:
        """Parsed once per distinct URL: in a reconnect storm most clients share theirs."""
        parsed = self._queries.get(query)
        if parsed is None:
            parsed = protocol.parse_query(query, self.vocabulary)
            if len(self._queries) >= QUERY_CACHE_SIZE:
                self._queries.clear()
            self._queries[query] = parsed
        return parsed

    def received(self, conn: Connection, message: protocol.Ping | protocol.Subscribe) -> None:
        if isinstance(message, protocol.Ping):
            conn.transport.write(PONG_FRAME)
        else:
            self.leave(conn)
            self._join(conn, message.subscription, message.since)

    def leave(self, conn: Connection) -> None:
        group = conn.group
        if group is None:
            return
        conn.group = None
        del group.members[conn]
        if not group.members:  # nobody left to send its pending events to
            del self.groups[group.subscription]
            self.by_edition[group.subscription.edition].remove(group)
            group.pending = []  # if it is still listed as dirty, _flush skips it

    def lost(self, conn: Connection) -> None:
        self.leave(conn)
        self.alive.discard(conn)
        if not self.alive:
            self._all_closed.set()
        if conn.opened_ws:
            self.metrics.connections -= 1

    def _join(self, conn: Connection, subscription: Subscription, since: Cursor | None) -> None:
        """Send the client where the ticker stands and add it to its group, with nothing in
        between, so it gets every later event once and no earlier one twice."""
        group = self.groups.get(subscription)
        if group is None:
            group = self.groups[subscription] = Group(subscription)
            self.by_edition[subscription.edition].append(group)
        elif group.pending:
            self._flush_group(group)
        conn.transport.write(self._greeting(group, since))
        group.members[conn] = conn.transport
        conn.group = group

    def _greeting(self, group: Group, since: Cursor | None) -> bytes:
        """The framed first message for a client: a resume when every event after its
        cursor is still here, otherwise a snapshot (marked as a reset when the client
        asked to resume). Built once per group and cursor while the edition stands still."""
        edition_log = self.logs[group.subscription.edition]
        if group.greetings_at != edition_log.cursor:
            group.greetings.clear()
            group.greetings_at = edition_log.cursor
        frame = group.greetings.get(since)
        if frame is not None:
            return frame
        missed = edition_log.since(since) if since is not None else None
        if missed is None:
            key: Cursor | None = RESET if since is not None else None
            frame = group.greetings.get(key)
            if frame is None:
                frame = group.greetings[key] = text_frame(self._snapshot(group, key is RESET))
            return frame
        sub = group.subscription
        payloads = [p for p in (payload_for(sub, e, None) for e in missed) if p is not None]
        resumed = protocol.resumed_message(
            sub, since, len(payloads), self.settings.heartbeat_interval
        )
        frame = group.greetings[since] = text_frame(protocol.batch([resumed, *payloads]))
        return frame

    def _snapshot(self, group: Group, reset: bool) -> bytes:
        edition_log = self.logs[group.subscription.edition]
        sub = group.subscription
        items = [
            edition_log.item_json[i["id"]]
            for i in edition_log.newest_first()
            if matches(i, sub.region, sub.category)
        ]
        return protocol.snapshot_message(
            sub, edition_log.cursor, items, reset=reset, heartbeat=self.settings.heartbeat_interval
        )


def _timestamp(iso: str | None) -> float:
    try:
        return parse_time(iso).timestamp() if iso else time.time()
    except ValueError:
        return time.time()
