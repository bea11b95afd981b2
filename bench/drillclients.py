"""A client process for the fault drill: readers that look after themselves.

Run as `python -m bench.drillclients`, driven like `bench.clients` (one JSON command per
line on stdin, one JSON reply per line on stdout), with the same raw WebSocket client
(`bench.wire`). Unlike the benchmark's readers, these reconnect on their own when their
connection ends: to the other hub, with their cursor, after a jittered exponential
backoff, as docs/protocol.md asks of a real client.

Each reader checks every event against the one before (same epoch, offset + 1), and keeps
its *view*: how many times it received each bench item as an event, and the items of every
reset snapshot it was given. The orchestrator then asks, for each acknowledged post,
whether every reader has it exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ticker import eventloop
from ticker.events import parse_cursor

from .wire import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameReader,
    client_frame,
    client_request,
    close_code,
    new_key,
    parse_bench_headline,
    split_response,
)

CONNECT_TIMEOUT = 10.0
CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Snapshot:
    epoch: str
    offset: int
    reset: bool
    seqs: frozenset[int]


@dataclass(frozen=True, slots=True)
class Resumed:
    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Event:
    epoch: str
    offset: int
    seq: int  # -1 unless a posted bench item


Parsed = Snapshot | Resumed | Event


def parse_frame(payload: bytes) -> tuple[Parsed, ...]:
    value = json.loads(payload)
    out: list[Parsed] = []
    for message in value if isinstance(value, list) else [value]:
        kind = message.get("type")
        if kind not in ("snapshot", "resumed", "event"):
            continue
        cursor = parse_cursor(message["cursor"])
        if kind == "snapshot":
            seqs = frozenset(
                s for s in (parse_bench_headline(i["headline"])[0] for i in message["items"])
            )
            out.append(Snapshot(cursor.epoch, cursor.offset, bool(message.get("reset")), seqs))
        elif kind == "resumed":
            out.append(Resumed(cursor.epoch, cursor.offset))
        else:
            seq = parse_bench_headline((message.get("item") or {}).get("headline", ""))[0]
            out.append(
                Event(cursor.epoch, cursor.offset, seq if message["kind"] == "posted" else -1)
            )
    return tuple(out)


@dataclass(eq=False, slots=True)
class Reader:
    index: int
    hub: int  # which of the hubs it is on, or tries next
    epoch: str | None = None
    offset: int = -1
    counts: dict[int, int] = field(default_factory=dict)  # bench seq -> events received
    snapshots: list[frozenset[int]] = field(default_factory=list)  # reset snapshots' items
    reset_times: list[float] = field(default_factory=list)
    gaps: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    connects: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # failed attempts, by kind
    longest_away: float = 0.0  # seconds from a lost connection to the next greeting
    resumes: int = 0
    close_codes: list[tuple[int, int]] = field(default_factory=list)  # (hub, code)
    conn: Conn | None = None
    task: asyncio.Task[None] | None = None

    @property
    def cursor(self) -> str:
        return f"{self.epoch}:{self.offset}"

    def has(self, seq: int) -> bool:
        return seq in self.counts or any(seq in s for s in self.snapshots)

    def error(self, text: str) -> None:
        if len(self.errors) < 3:
            self.errors.append(text)


class Target:
    """The readers of one drill scenario in this process."""

    def __init__(self, name: str, hubs: list[tuple[str, int]], backoff: tuple[float, float]):
        self.name = name
        self.hubs = hubs
        self.backoff = backoff
        self.readers: list[Reader] = []
        self.stopping = False
        self.cache: dict[bytes, tuple[Parsed, ...]] = {}
        self.last_had: dict[int, float] = {}  # seq -> latest time a reader first had it
        self.had_by: dict[int, int] = {}  # seq -> readers that have it

    def parse(self, payload: bytes) -> tuple[Parsed, ...]:
        parsed = self.cache.get(payload)
        if parsed is None:
            if len(self.cache) >= CACHE_LIMIT:
                self.cache.clear()
            parsed = self.cache[payload] = parse_frame(payload)
        return parsed

    def _had(self, seq: int, now: float) -> None:
        self.had_by[seq] = self.had_by.get(seq, 0) + 1
        if now > self.last_had.get(seq, 0.0):
            self.last_had[seq] = now

    def on_text(self, reader: Reader, payload: bytes, conn: Conn) -> None:
        now = time.time()
        for message in self.parse(payload):
            if type(message) is Event:
                self._event(reader, message, now)
            elif type(message) is Resumed:
                conn.greeted = True
                reader.resumes += 1
                if (message.epoch, message.offset) != (reader.epoch, reader.offset):
                    reader.gaps += 1
                    reader.error(
                        f"resumed at {message.epoch}:{message.offset}, was at {reader.cursor}"
                    )
            else:
                conn.greeted = True
                self._snapshot(reader, message, now)  # type: ignore[arg-type]

    def _event(self, reader: Reader, message: Event, now: float) -> None:
        if message.epoch != reader.epoch or message.offset != reader.offset + 1:
            if message.epoch == reader.epoch and message.offset <= reader.offset:
                reader.duplicates += 1
            else:
                reader.gaps += 1
            reader.error(f"expected {reader.cursor}+1, got {message.epoch}:{message.offset}")
        reader.epoch, reader.offset = message.epoch, message.offset
        seq = message.seq
        if seq >= 0:
            count = reader.counts.get(seq, 0)
            reader.counts[seq] = count + 1
            if count == 0 and not any(seq in s for s in reader.snapshots):
                self._had(seq, now)

    def _snapshot(self, reader: Reader, message: Snapshot, now: float) -> None:
        if reader.epoch is not None:
            # It had a cursor: a snapshot now must say it is a reset, never pass silently.
            if not message.reset:
                reader.gaps += 1
                reader.error(f"snapshot without reset at {reader.cursor}")
            reader.reset_times.append(now)
        for seq in message.seqs:
            if not reader.has(seq):
                self._had(seq, now)
        reader.snapshots.append(message.seqs)
        reader.epoch, reader.offset = message.epoch, message.offset

    # --- following ------------------------------------------------------------------------

    async def follow(self, reader: Reader, connected: asyncio.Event | None) -> None:
        """Stay connected: on any end of a connection, try the other hub after a backoff."""
        loop = asyncio.get_running_loop()
        failures = 0
        first, ceiling = self.backoff
        away_since: float | None = None
        while not self.stopping:
            host, port = self.hubs[reader.hub]
            path = "/ws?edition=en"
            if reader.epoch is not None:
                path += f"&since={reader.cursor}"
            conn = Conn(self, reader, client_request(host, port, path, new_key()))
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda c=conn: c, host, port), CONNECT_TIMEOUT
                )
                await asyncio.wait_for(asyncio.shield(conn.ready), CONNECT_TIMEOUT)
            except (OSError, TimeoutError, ConnectionError) as exc:
                conn.abort()
                failures += 1
                kind = type(exc).__name__
                reader.failures[kind] = reader.failures.get(kind, 0) + 1
            else:
                reader.connects += 1
                failures = 0
                if away_since is not None:
                    reader.longest_away = max(reader.longest_away, time.time() - away_since)
                    away_since = None
                if connected is not None:
                    connected.set()
                    connected = None
                await conn.lost
                away_since = time.time()
                failures = 1
            if self.stopping:
                return
            reader.hub = (reader.hub + 1) % len(self.hubs)
            delay = min(ceiling, first * 2 ** (failures - 1))
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))


class Conn(asyncio.Protocol):
    def __init__(self, target: Target, reader: Reader, request: bytes) -> None:
        self.target = target
        self.reader = reader
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.head: bytes | None = b""
        self.frames = FrameReader()
        self.greeted = False
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.reader.conn = self
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            self.head += data
            parsed = split_response(self.head)
            if parsed is None:
                return
            status, _, data = parsed
            self.head = None
            if status != 101:
                self._fail(f"handshake answered {status}")
                return
        for opcode, payload in self.frames.feed(data):
            if opcode == TEXT:
                self.target.on_text(self.reader, payload, self)
                if self.greeted and not self.ready.done():
                    self.ready.set_result(None)
            elif opcode == PING:
                self.transport.write(client_frame(payload, PONG))  # type: ignore[union-attr]
            elif opcode == CLOSE:
                code = close_code(payload)
                if code is not None:
                    self.reader.close_codes.append((self.reader.hub, code))
                    self.transport.write(client_frame(payload[:2], CLOSE))  # type: ignore[union-attr]
                self._fail(f"closed by the server with {code}")

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if not self.ready.done():
            self.ready.cancel()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)
        if self.reader.conn is self:
            self.reader.conn = None


class Worker:
    def __init__(self) -> None:
        self.targets: dict[str, Target] = {}

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        action = getattr(self, f"do_{command.pop('cmd')}")
        return await action(**command)

    async def do_start(
        self,
        target: str,
        hubs: list[list[Any]],
        count: int,
        first_index: int = 0,
        backoff: tuple[float, float] = (0.25, 5.0),
        time_limit: float = 60.0,
    ) -> dict[str, Any]:
        """Start `count` readers, alternating over the hubs, and return once each has been
        greeted (or at the time limit)."""
        tgt = Target(target, [(h, int(p)) for h, p in hubs], (backoff[0], backoff[1]))
        self.targets[target] = tgt
        events = []
        for i in range(count):
            reader = Reader(first_index + i, hub=(first_index + i) % len(tgt.hubs))
            tgt.readers.append(reader)
            connected = asyncio.Event()
            events.append(connected)
            reader.task = asyncio.create_task(tgt.follow(reader, connected))
        began = time.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), time_limit)
        return {"connected": sum(e.is_set() for e in events), "seconds": time.time() - began}

    async def do_where(self, target: str) -> dict[str, Any]:
        """How many readers are connected to each hub now."""
        tgt = self.targets[target]
        on = [0] * len(tgt.hubs)
        for reader in tgt.readers:
            if reader.conn is not None and not reader.conn.lost.done():
                on[reader.hub] += 1
        return {"on": on}

    async def do_wait(
        self, target: str, acked: dict[str, float], time_limit: float
    ) -> dict[str, Any]:
        """Return once every reader has every acknowledged post in its view, or has been
        told by a reset that it cannot (a store that lost its data), or at the timeout."""
        tgt = self.targets[target]
        posts = {int(k): v for k, v in acked.items()}
        deadline = time.monotonic() + time_limit
        while True:
            short = [(s, t) for s, t in posts.items() if tgt.had_by.get(s, 0) < len(tgt.readers)]
            pending = sum(1 for r in tgt.readers for s, t in short if _pending(r, s, t))
            if not pending or time.monotonic() > deadline:
                return {"pending": pending}
            await asyncio.sleep(0.2)

    async def do_report(self, target: str, acked: dict[str, float]) -> dict[str, Any]:
        """Each reader's view against the acknowledged posts."""
        tgt = self.targets[target]
        posts = {int(k): v for k, v in acked.items()}
        lost: dict[int, int] = {}  # seq -> readers that silently miss it
        announced: dict[int, int] = {}  # seq -> readers told by a reset that it is gone
        duplicated: dict[int, int] = {}
        for reader in tgt.readers:
            for seq, ack in posts.items():
                count = reader.counts.get(seq, 0)
                if count > 1:
                    duplicated[seq] = duplicated.get(seq, 0) + 1
                elif count == 0 and not any(seq in s for s in reader.snapshots):
                    into = announced if any(t > ack for t in reader.reset_times) else lost
                    into[seq] = into.get(seq, 0) + 1
        codes: dict[str, int] = {}
        for reader in tgt.readers:
            for hub, code in reader.close_codes:
                key = f"{hub}:{code}"
                codes[key] = codes.get(key, 0) + 1
        readers = tgt.readers
        return {
            "readers": len(readers),
            "open": sum(1 for r in readers if r.conn is not None),
            "lost": {str(k): v for k, v in lost.items()},
            "announced": {str(k): v for k, v in announced.items()},
            "duplicated": {str(k): v for k, v in duplicated.items()},
            "gaps": sum(r.gaps for r in readers),
            "duplicates": sum(r.duplicates for r in readers),
            "errors": [e for r in readers for e in r.errors][:5],
            "readers_reset": sum(1 for r in readers if r.reset_times),
            "readers_reconnected": sum(1 for r in readers if r.connects > 1),
            "resumes": sum(r.resumes for r in readers),
            "longest_away_s": max((r.longest_away for r in readers), default=0.0),
            "away_s": [round(r.longest_away, 3) for r in readers if r.longest_away],
            "failed_attempts": _sum_counts(r.failures for r in readers),
            "close_codes": codes,
            # readers that got a close code from each hub, counted once per reader
            "closed_by": _closed_by(readers, len(tgt.hubs)),
            "last_had": {str(s): tgt.last_had[s] for s in posts if s in tgt.last_had},
            "had_by": {str(s): tgt.had_by.get(s, 0) for s in posts},
        }

    async def do_stop(self, target: str) -> dict[str, Any]:
        tgt = self.targets.pop(target, None)
        if tgt is None:
            return {"stopped": 0}
        tgt.stopping = True
        tasks = [r.task for r in tgt.readers if r.task is not None]
        for reader in tgt.readers:
            if reader.conn is not None:
                reader.conn.abort()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        return {"stopped": len(tgt.readers)}

    async def do_quit(self) -> dict[str, Any]:
        for name in list(self.targets):
            await self.do_stop(name)
        return {"bye": True}


def _pending(reader: Reader, seq: int, ack: float) -> bool:
    if reader.has(seq):
        return False
    return not any(t > ack for t in reader.reset_times)


def _sum_counts(counts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


def _closed_by(readers: list[Reader], hubs: int) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {str(h): {} for h in range(hubs)}
    for reader in readers:
        seen = {(hub, code) for hub, code in reader.close_codes}
        for hub, code in seen:
            into = out[str(hub)]
            into[str(code)] = into.get(str(code), 0) + 1
    return out


async def serve_commands() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    worker = Worker()
    while line := await stdin.readline():
        command = json.loads(line)
        quitting = command.get("cmd") == "quit"
        try:
            reply = await worker.handle(command)
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if quitting:
            return


def main() -> None:
    eventloop.run(serve_commands())


if __name__ == "__main__":
    main()
