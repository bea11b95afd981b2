"""The fan-out: every change to every reader, one frame per group of identical readers.

Readers with the same subscription over the same wire format form a group and receive
identical bytes, so each frame is built once per group and written unchanged to each
member. There is no task, queue or encoding per reader per message.

The fan-out never touches a socket. It speaks to a reader only through `Subscriber`: send
these bytes, close with this code and reason, how much is still unsent, when it was last
heard from. A transport (`ticker/transports/`) provides subscribers and a `WireFormat`.

Writes go through one outbox, in order, at most `fanout_chunk` writes at a time: a group of
10,000 readers never holds up handshakes, pings or HTTP requests on the same event loop
for longer than one chunk. Events that arrive while their group's frame is still being
written ride along in that frame to the members it has not reached yet, and the members it
has reached get them together in one more frame: a burst costs about one write per reader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import protocol
from .config import Settings
from .edition_log import EditionLog, payload_for
from .events import Cursor, EditionState, Event
from .items import matches, parse_time
from .metrics import HubMetrics
from .protocol import CloseCode, Subscription

logger = logging.getLogger("ticker.fanout")

RESET = Cursor("", -1)  # the greetings cache's key for "asked to resume, but cannot"


class Subscriber(Protocol):
    """A reader's connection, as the fan-out sees it."""

    group: Group | None  # set by the fan-out only
    joined: int  # the fan-out's join counter when it joined its group
    heard: float  # loop time the peer was last heard from

    def send(self, data: bytes) -> None:
        """Queue bytes for the reader; cheap, never blocks, never fails."""

    def close(self, code: int, reason: str) -> None:
        """Say goodbye with a code and reason, then end the connection."""

    def unsent(self) -> int:
        """Bytes written but not yet taken by the network."""


@dataclass(frozen=True, slots=True)
class WireFormat:
    """How a transport frames messages. `frame` turns JSON messages into one write."""

    name: str
    frame: Callable[[list[bytes]], bytes]
    ping: bytes | None = None  # a keepalive probe the peer must answer, if the wire has one


@dataclass(eq=False, slots=True)
class Group:
    """Readers with the same subscription and wire format: they receive identical frames."""

    subscription: Subscription
    wire: WireFormat
    # Each member with its bound `send`, so the hot loop touches nothing else.
    members: dict[Subscriber, Callable[[bytes], None]] = field(default_factory=dict)
    pending: list[bytes] = field(default_factory=list)
    leaves: int = 0  # members that left; deliveries in flight check members only if it moved
    # Greetings depend only on the cursor a reader resumes from, so a reconnect storm
    # builds each one once: valid while the edition stays at `greetings_at`.
    greetings_at: Cursor | None = None
    greetings: dict[Cursor | None, bytes] = field(default_factory=dict)
    # The group's newest delivery of events, while nothing was queued for it after: events
    # that arrive before it reaches every member may still join it.
    tail: _Delivery | None = None


@dataclass(slots=True)
class _Delivery:
    """One frame on its way to the members a group had when the frame was built."""

    group: Group
    frame: bytes
    members: list[Subscriber]
    sends: list[Callable[[bytes], None]]
    leaves: int  # group.leaves when the members were taken
    joins: int  # the join counter then: a reader that joined later already has these events
    payloads: list[bytes] | None = None  # the events in `frame`; None for other messages
    done: int = 0
    # Each time events joined `frame` after it had been written to some members or others
    # had joined the group: (members written then, events before then, join counter then).
    marks: list[tuple[int, int, int]] = field(default_factory=list)


class FanOut:
    """The hub's copy of every edition, its groups of readers, and the one outbox."""

    def __init__(self, settings: Settings, metrics: HubMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.editions = settings.vocabulary.editions
        self.logs: dict[str, EditionLog] = {}
        self.groups: dict[tuple[Subscription, str], Group] = {}
        self.by_edition: dict[str, list[Group]] = {e: [] for e in self.editions}
        self.ready = asyncio.Event()  # set once every edition is loaded
        self._joins = 0
        self._dirty: list[Group] = []
        self._outbox: deque[_Delivery] = deque()
        self._overflowing: list[Subscriber] = []
        self._flush_handle: asyncio.Handle | None = None
        self._pump_handle: asyncio.Handle | None = None
        self._last_flush = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # --- the log ------------------------------------------------------------------------

    def load(self, state: EditionState) -> None:
        """An edition's state from the broker: the first one, or a reset after lost data."""
        current = self.logs.get(state.edition)
        if current is None:
            self.logs[state.edition] = EditionLog(state, self.settings.limits.history)
            if len(self.logs) == len(self.editions):
                self.ready.set()
            return
        if current.cursor == state.cursor:
            return  # nothing was missed
        logger.warning(
            "edition %s reset from %s to %s", state.edition, current.cursor, state.cursor
        )
        current.load(state)
        self.metrics.resets += 1
        for group in self.by_edition[state.edition]:
            group.pending.clear()
            self._deliver(group, self._greeting(group, RESET), None)
        self._pump()

    def apply(self, event: Event) -> None:
        """The next event of an edition: into the log, and into each group that wants it."""
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

    # --- readers ------------------------------------------------------------------------

    def join(
        self,
        subscriber: Subscriber,
        subscription: Subscription,
        since: Cursor | None,
        wire: WireFormat,
    ) -> None:
        """Greet the reader with where the ticker stands and add it to its group, with
        nothing in between, so it gets every later event once and no earlier one twice."""
        key = (subscription, wire.name)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(subscription, wire)
            self.by_edition[subscription.edition].append(group)
        elif group.pending:
            # Those events are in the greeting: they go to the members there are now.
            self._deliver(group, group.wire.frame(group.pending), group.pending)
            group.pending = []
        subscriber.send(self._greeting(group, since))
        self._joins += 1
        subscriber.joined = self._joins
        subscriber.group = group
        group.members[subscriber] = subscriber.send
        self._pump()

    def leave(self, subscriber: Subscriber) -> None:
        group = subscriber.group
        if group is None:
            return
        subscriber.group = None
        del group.members[subscriber]
        group.leaves += 1
        if not group.members:  # nobody left to send its pending events to
            del self.groups[(group.subscription, group.wire.name)]
            self.by_edition[group.subscription.edition].remove(group)
            group.pending = []  # if it is still listed as dirty, the flush skips it

    def overflowing(self, subscriber: Subscriber) -> None:
        """A transport's buffer passed its limit during a write: the reader is too slow."""
        if subscriber.group is not None:
            self._overflowing.append(subscriber)

    def drop_slow(self, subscriber: Subscriber) -> None:
        if subscriber.group is None:
            return
        self.metrics.slow_consumers += 1
        self.leave(subscriber)
        # Nothing more is queued for it; the close goes after what is buffered.
        subscriber.close(CloseCode.SLOW_CONSUMER, "slow consumer: reconnect with your cursor")

    # --- greetings ----------------------------------------------------------------------

    def _greeting(self, group: Group, since: Cursor | None) -> bytes:
        """The framed first message for a reader: a resume when every event after its
        cursor is still here, otherwise a snapshot (marked as a reset when the reader
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
                snapshot = self._snapshot(group, reset=key is RESET)
                frame = group.greetings[key] = group.wire.frame([snapshot])
            return frame
        sub = group.subscription
        payloads = [p for p in (payload_for(sub, e, None) for e in missed) if p is not None]
        resumed = protocol.resumed_message(
            sub, since, len(payloads), self.settings.heartbeat_interval
        )
        frame = group.greetings[since] = group.wire.frame([resumed, *payloads])
        return frame

    def _snapshot(self, group: Group, *, reset: bool) -> bytes:
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

    # --- the hot path -------------------------------------------------------------------

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
        if self._outbox:
            return  # the pump flushes again when the outbox is empty: one frame, not many
        self.flush()

    def flush(self) -> None:
        """Turn every group's pending events into one frame each, and start writing."""
        self._frame_pending()
        self._pump()

    def _frame_pending(self) -> None:
        self._last_flush = self.loop.time()
        dirty, self._dirty = self._dirty, []
        for group in dirty:
            if group.pending:
                self._deliver(group, group.wire.frame(group.pending), group.pending)
                group.pending = []

    def _deliver(self, group: Group, frame: bytes, payloads: list[bytes] | None) -> None:
        """Queue `frame` for the group's members; `payloads` are its events, if it holds
        events (a heartbeat, probe or reset ends what later events may join)."""
        if group.tail is not None and group.tail.marks:
            self._catch_up(group.tail)  # what its merges owe goes out before anything new
        members = group.members
        delivery = _Delivery(
            group,
            frame,
            list(members),
            list(members.values()),
            group.leaves,
            self._joins,
            payloads,
        )
        self._outbox.append(delivery)
        group.tail = delivery if payloads is not None else None

    def _merge_into_flight(self) -> None:
        """Pending events of a group whose last frame is still being written join that
        frame, for the members it has yet to reach. Which members it had reached is noted,
        and when the frame is done (or anything else is queued for the group) those get
        what they missed in one more frame each: at most two frames per member for the
        whole burst, and none out of order, since the frame they join was the last thing
        queued for them."""
        waiting: list[Group] = []
        for group in self._dirty:
            pending = group.pending
            if not pending:
                continue
            tail = group.tail
            if tail is None or tail.payloads is None:
                waiting.append(group)
                continue
            group.pending = []
            if tail.done or self._joins != tail.joins:
                tail.marks.append((tail.done, len(tail.payloads), self._joins))
            tail.payloads = [*tail.payloads, *pending]
            tail.frame = group.wire.frame(tail.payloads)
        self._dirty = waiting

    def _catch_up(self, tail: _Delivery) -> None:
        """Queue, for the members `tail` reached before events joined it and for those that
        joined the group meanwhile, the events each of them missed: one frame per point
        they missed from, built once, in the order of the merges."""
        marks, tail.marks = tail.marks, []
        group, payloads = tail.group, tail.payloads
        assert payloads is not None
        members = group.members
        missed: dict[int, list[Subscriber]] = {}
        mark = 0
        for index in range(min(marks[-1][0], tail.done)):
            while marks[mark][0] <= index:  # the first merge made after it was written
                mark += 1
            member = tail.members[index]
            if member.group is group and member.joined <= tail.joins:
                missed.setdefault(marks[mark][1], []).append(member)
        for member in members:  # joined after `tail` was queued: missed what merged since
            if member.joined > tail.joins:
                since = next((n for _, n, joins in marks if joins >= member.joined), None)
                if since is not None:
                    missed.setdefault(since, []).append(member)
        for since, readers in sorted(missed.items()):
            self._outbox.append(
                _Delivery(
                    group,
                    group.wire.frame(payloads[since:]),
                    readers,
                    [members[reader] for reader in readers],
                    group.leaves,
                    self._joins,
                )
            )

    def _pump(self) -> None:
        """Start writing the outbox now, unless a chunk is already due: then the new
        deliveries wait their turn behind it, in order."""
        if self._pump_handle is None:
            self._pump_next()

    def _pump_next(self) -> None:
        """Write one chunk, then let the event loop run other work before the next."""
        self._pump_handle = None
        if self._dirty and self._outbox:
            self._merge_into_flight()
        self._write_chunk()
        if self._outbox:
            self._pump_handle = self.loop.call_soon(self._pump_next)
        elif self._dirty and self._flush_handle is None:
            self._schedule_flush()

    def _write_chunk(self) -> None:
        outbox = self._outbox
        if not outbox:
            return
        budget = self.settings.fanout_chunk
        metrics = self.metrics
        started = time.perf_counter()
        while outbox and budget > 0:
            delivery = outbox[0]
            start = delivery.done
            end = min(start + budget, len(delivery.sends))
            frame = delivery.frame
            group = delivery.group
            if group.leaves == delivery.leaves:
                for send in delivery.sends[start:end]:
                    send(frame)
            else:  # someone left since: write only to those still there since then
                joins = delivery.joins
                for i in range(start, end):
                    member = delivery.members[i]
                    if member.group is group and member.joined <= joins:
                        delivery.sends[i](frame)
            written = end - start
            budget -= written
            delivery.done = end
            metrics.deliveries += written
            if end == len(delivery.sends):
                outbox.popleft()
                metrics.frames += 1
                if group.tail is delivery:
                    group.tail = None
                    if delivery.marks:
                        self._catch_up(delivery)
            if self._overflowing:  # filled by the transports during the writes
                overflowing, self._overflowing = self._overflowing, []
                for subscriber in overflowing:
                    self.drop_slow(subscriber)
        metrics.fanout.observe(time.perf_counter() - started)

    def drain(self) -> None:
        """Write everything pending now, ignoring chunks: for shutdown and for tests."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._pump_handle is not None:
            self._pump_handle.cancel()
            self._pump_handle = None
        self._frame_pending()
        while self._outbox:
            self._write_chunk()

    # --- heartbeat and keepalive --------------------------------------------------------

    def heartbeat(self) -> None:
        """One shared frame per edition and wire format, carrying the edition's cursor: a
        browser (which cannot see WebSocket pings) notices a dead link when they stop, and a
        filtered reader's cursor keeps up with its edition even when nothing matches."""
        self.flush()  # events first, so no heartbeat runs ahead of what a group was sent
        frames: dict[tuple[str, str], bytes] = {}
        for group in list(self.groups.values()):
            edition = group.subscription.edition
            key = (edition, group.wire.name)
            frame = frames.get(key)
            if frame is None:
                cursor = self.logs[edition].cursor
                frame = frames[key] = group.wire.frame([protocol.heartbeat_message(cursor)])
            self._deliver(group, frame, None)
        self._pump()

    def probe(self) -> float:
        """Send the keepalive probe to every reader whose wire has one; returns the time."""
        sent = self.loop.time()
        for group in list(self.groups.values()):
            if group.wire.ping is not None:
                self._deliver(group, group.wire.ping, None)
        self._pump()
        return sent

    def check(self, probed: float) -> None:
        """Close readers that did not answer the probe sent at `probed`, and those whose
        unsent data kept growing while their transport was paused."""
        limit = self.settings.limits.ws_write_buffer_max_bytes
        for group in list(self.groups.values()):
            answers = group.wire.ping is not None
            for subscriber in list(group.members):
                if answers and subscriber.heard < probed:
                    self.metrics.keepalive_timeouts += 1
                    self.leave(subscriber)
                    subscriber.close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                elif subscriber.unsent() > limit:
                    self.drop_slow(subscriber)

    async def run_heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            self.heartbeat()

    async def run_keepalive(self) -> None:
        interval = self.settings.ping_interval
        timeout = min(self.settings.ping_timeout, interval)
        while True:
            await asyncio.sleep(interval - timeout)
            probed = self.probe()
            await asyncio.sleep(timeout)
            self.check(probed)


def _timestamp(iso: str | None) -> float:
    try:
        return parse_time(iso).timestamp() if iso else time.time()
    except ValueError:
        return time.time()
