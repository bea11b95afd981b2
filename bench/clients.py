"""A client process: thousands of WebSocket readers, driven over stdin/stdout.

Run as `python -m bench.clients`. The orchestrator sends one JSON command per line and
reads one JSON reply per line. Each reader is a raw asyncio protocol: it does the
handshake, answers pings (so the hub's keepalive stays on and honest), and checks every
event it receives against the one before: same epoch, offset + 1. That single check
proves order, completeness and no duplicates across bursts and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ticker import eventloop

from .wire import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    Delivered,
    EventSplitter,
    FrameReader,
    Greeting,
    Message,
    client_frame,
    client_request,
    close_code,
    interpret,
    new_key,
    split_events,
    split_response,
    stream_request,
)

CACHE_LIMIT = 4096


@dataclass(slots=True)
class Tally:
    """Receive times of one bench event, one per reader that got it."""

    published: float
    times: list[float] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Reader:
    """One logical client of one server. It outlives its connections, so a reconnect
    continues the same log and a lost or repeated event shows up as an error."""

    index: int
    epoch: str | None = None
    offset: int = -1
    errors: int = 0
    first_error: str = ""
    resets: int = 0
    resumes: int = 0
    missed: int = 0
    closed_by_server: int = 0
    close_codes: list[int] = field(default_factory=list)
    conn: Conn | None = None

    @property
    def cursor(self) -> str:
        return f"{self.epoch}:{self.offset}"

    def event(self, message: Delivered) -> None:
        if message.epoch != self.epoch or message.offset != self.offset + 1:
            self._error(f"expected {self.cursor}+1, got {message.epoch}:{message.offset}")
        self.epoch, self.offset = message.epoch, message.offset

    def greet(self, message: Greeting) -> None:
        if message.kind == "resumed":
            self.resumes += 1
            self.missed += message.missed
            if (message.epoch, message.offset) != (self.epoch, self.offset):
                self._error(f"resumed at {message.epoch}:{message.offset}, was at {self.cursor}")
            return
        if self.epoch is not None:
            self.resets += 1  # a snapshot on reconnect: the client had to start over
        self.epoch, self.offset = message.epoch, message.offset

    def _error(self, text: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = text


class Target:
    """All readers of one server ("hub" or "floor") in this process, and what they saw."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.readers: list[Reader] = []
        self.tallies: dict[int, Tally] = {}
        self.cache: dict[bytes, tuple[Message, ...]] = {}
        self.chunks: dict[bytes, tuple[tuple[Message, ...], bytes | None, tuple[int, int]]] = {}
        self.frames = 0
        self.event_frames = 0
        self.pings = 0
        self.progress = asyncio.Event()
        self.samples: dict[int, bytes] = {}

    def on_text(self, reader: Reader, payload: bytes) -> bool:
        """Handle one text frame; True when it held a greeting."""
        messages = self.cache.get(payload)
        if messages is None:
            messages = self._interpret(payload)
        return self._deliver(reader, messages)

    def on_stream(self, reader: Reader, chunk: bytes) -> tuple[bool, bytes | None]:
        """Handle whole Server-Sent Events received at once, parsed once per distinct
        chunk as frames are (every stream of a group gets the same bytes). Returns whether
        they held a greeting, and the data of a closing event if the hub ended the stream."""
        parsed = self.chunks.get(chunk)
        if parsed is None:
            if len(self.chunks) >= CACHE_LIMIT:
                self.chunks.clear()
            events = split_events(chunk)
            closing = next((data for kind, data in events if kind == b"close"), None)
            each = [self._interpret(data) for kind, data in events if kind != b"close"]
            messages = tuple(m for one in each for m in one)
            # Counted as the hub wrote them: one frame per event, as a WebSocket's are.
            counts = (len(each), sum(any(type(m) is Delivered for m in one) for one in each))
            parsed = self.chunks[chunk] = (messages, closing, counts)
        messages, closing, counts = parsed
        return self._deliver(reader, messages, counts), closing

    def _deliver(
        self, reader: Reader, messages: tuple[Message, ...], counts: tuple[int, int] | None = None
    ) -> bool:
        """Every message, in order, through the reader's checks. `counts` (frames, frames
        with events) when they are more than the one frame the messages came in."""
        now = time.time()
        greeted = False
        had_event = False
        for message in messages:
            if type(message) is Delivered:
                had_event = True
                reader.event(message)
                if message.seq >= 0:
                    self._record(message, now)
            else:
                reader.greet(message)  # type: ignore[arg-type]
                greeted = True
        if counts is None:
            self.frames += 1
            self.event_frames += had_event
        else:
            self.frames += counts[0]
            self.event_frames += counts[1]
        return greeted

    def _interpret(self, payload: bytes) -> tuple[Message, ...]:
        messages = interpret(payload)
        if len(self.cache) >= CACHE_LIMIT:
            self.cache.clear()
        self.cache[payload] = messages
        for message in messages:
            if type(message) is Delivered and message.seq >= 0 and len(messages) == 1:
                self.samples.setdefault(message.seq, payload)
        return messages

    def _record(self, message: Delivered, now: float) -> None:
        tally = self.tallies.get(message.seq)
        if tally is None:
            tally = self.tallies[message.seq] = Tally(message.published)
        tally.times.append(now)
        if len(tally.times) == len(self.readers):
            self.progress.set()


class Conn(asyncio.Protocol):
    """One TCP connection of a reader: handshake, then frames (or, for a Server-Sent
    Events stream, a 200 and then events)."""

    def __init__(self, target: Target, reader: Reader, request: bytes, stream: bool) -> None:
        self.target = target
        self.reader = reader
        self.request = request
        self.stream = stream
        self.transport: asyncio.Transport | None = None
        self.head: bytes | None = b""  # None once the handshake is done
        self.frames = FrameReader()
        self.events = EventSplitter()
        self.ready: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.reader.conn = self
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            data = self._handshake(data)
            if not data:
                return
        if self.stream:
            chunk = self.events.whole(data)
            if not chunk:
                return
            greeted, closing = self.target.on_stream(self.reader, chunk)
            if greeted and not self.ready.done():
                self.ready.set_result(time.time())
            if closing is not None:
                self.reader.closed_by_server += 1
                self.reader.close_codes.append(json.loads(closing)["code"])
                self._fail("the server ended the stream")
            return
        for opcode, payload in self.frames.feed(data):
            if opcode == TEXT:
                if self.target.on_text(self.reader, payload) and not self.ready.done():
                    self.ready.set_result(time.time())
            elif opcode == PING:
                self.target.pings += 1
                self.transport.write(client_frame(payload, PONG))  # type: ignore[union-attr]
            elif opcode == CLOSE:
                self._closed_by_server(payload)

    def _handshake(self, data: bytes) -> bytes:
        self.head += data  # type: ignore[operator]
        parsed = split_response(self.head)  # type: ignore[arg-type]
        if parsed is None:
            return b""
        status, _, rest = parsed
        self.head = None
        if status != (200 if self.stream else 101):
            self._fail(f"handshake answered {status}")
            return b""
        return rest

    def _closed_by_server(self, payload: bytes) -> None:
        self.reader.closed_by_server += 1
        code = close_code(payload)
        if code is not None:
            self.reader.close_codes.append(code)
            self.transport.write(client_frame(payload[:2], CLOSE))  # type: ignore[union-attr]
        self._fail(f"closed by the server with {code}")

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)
        if self.reader.conn is self:
            self.reader.conn = None


class Worker:
    """Executes the orchestrator's commands; each command gets exactly one reply."""

    def __init__(self) -> None:
        self.targets: dict[str, Target] = {}

    def target(self, name: str) -> Target:
        if name not in self.targets:
            self.targets[name] = Target(name)
        return self.targets[name]

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        action = getattr(self, f"do_{command.pop('cmd')}")
        return await action(**command)

    async def do_connect(
        self,
        target: str,
        host: str,
        port: int,
        path: str,
        count: int,
        sources: list[str],
        concurrency: int = 0,
        time_limit: float = 60.0,
        since: bool = False,
        stream: bool = False,
    ) -> dict[str, Any]:
        """Connect `count` new readers (or, with `since`, reconnect every existing reader
        with its cursor). Concurrency 0 means all at once, like a real reconnect storm."""
        tgt = self.target(target)
        if since:
            readers = list(tgt.readers)
        else:
            start = len(tgt.readers)
            readers = [Reader(start + i) for i in range(count)]
            tgt.readers.extend(readers)
        limit = asyncio.Semaphore(concurrency or len(readers) or 1)
        began = time.time()
        results = await asyncio.gather(
            *(
                self._open(tgt, r, host, port, path, sources, limit, time_limit, since, stream)
                for r in readers
            )
        )
        first_failures = [r for r in results if isinstance(r, str)]
        retried = 0
        if since and first_failures:
            # A real client retries with its cursor; so does this one, once.
            again = [r for r, res in zip(readers, results, strict=True) if isinstance(res, str)]
            retried = len(again)
            retries = await asyncio.gather(
                *(
                    self._open(tgt, r, host, port, path, sources, limit, time_limit, since, stream)
                    for r in again
                )
            )
            results = [res for res in results if isinstance(res, float)] + list(retries)
        ok = [r for r in results if isinstance(r, float)]
        failures = [r for r in results if isinstance(r, str)]
        return {
            "began": began,
            "ended": max(ok, default=time.time()),
            "connected": len(ok),
            "failed": len(failures),
            "retried": retried,
            "failures": sorted(set(failures + first_failures))[:5],
            "handshake_ms": _percentiles([(t - began) * 1000 for t in ok]),
        }

    async def _open(
        self,
        tgt: Target,
        reader: Reader,
        host: str,
        port: int,
        path: str,
        sources: list[str],
        limit: asyncio.Semaphore,
        time_limit: float,
        since: bool,
        stream: bool = False,
    ) -> float | str:
        if since and reader.epoch is not None:
            path = f"{path}&since={reader.cursor}"
        if stream:
            request = stream_request(host, port, path)
        else:
            request = client_request(host, port, path, new_key())
        source = sources[reader.index % len(sources)]
        loop = asyncio.get_running_loop()
        async with limit:
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: Conn(tgt, reader, request, stream),
                        host,
                        port,
                        local_addr=(source, 0),
                    ),
                    time_limit,
                )
                return await asyncio.wait_for(asyncio.shield(conn.ready), time_limit)
            except (OSError, TimeoutError) as exc:
                return f"{type(exc).__name__}: {exc}"[:200]

    async def do_wait(self, target: str, seqs: list[int], time_limit: float) -> dict[str, Any]:
        """Return once every reader has every one of `seqs`, or at the timeout."""
        tgt = self.target(target)
        deadline = time.monotonic() + time_limit
        while True:
            counts = {s: len(tgt.tallies[s].times) if s in tgt.tallies else 0 for s in seqs}
            if all(n >= len(tgt.readers) for n in counts.values()):
                return {"complete": True, "counts": counts}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {"complete": False, "counts": counts}
            tgt.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tgt.progress.wait(), min(remaining, 0.5))

    async def do_stats(
        self, target: str, seqs: list[int], latencies: bool = False
    ) -> dict[str, Any]:
        tgt = self.target(target)
        per_seq: dict[int, dict[str, Any]] = {}
        for seq in seqs:
            tally = tgt.tallies.get(seq)
            if tally is None:
                per_seq[seq] = {"count": 0}
                continue
            entry: dict[str, Any] = {
                "published": tally.published,
                "count": len(tally.times),
                "first": min(tally.times),
                "last": max(tally.times),
            }
            if latencies:
                entry["lat_ms"] = [round((t - tally.published) * 1000, 3) for t in tally.times]
            per_seq[seq] = entry
        sample = next((tgt.samples[s] for s in seqs if s in tgt.samples), b"")
        return {"seqs": per_seq, "sample": sample.decode(), **self._health(tgt)}

    def _health(self, tgt: Target) -> dict[str, Any]:
        readers = tgt.readers
        bad = [r for r in readers if r.errors]
        codes = sorted({c for r in readers for c in r.close_codes})
        return {
            "readers": len(readers),
            "open": sum(1 for r in readers if r.conn is not None),
            "errors": sum(r.errors for r in readers),
            "readers_with_errors": len(bad),
            "first_errors": [r.first_error for r in bad[:3]],
            "resets": sum(r.resets for r in readers),
            "resumes": sum(r.resumes for r in readers),
            "missed": sum(r.missed for r in readers),
            "closed_by_server": sum(r.closed_by_server for r in readers),
            "close_codes": codes,
            "frames": tgt.frames,
            "event_frames": tgt.event_frames,
            "pings": tgt.pings,
        }

    async def do_health(self, target: str) -> dict[str, Any]:
        return self._health(self.target(target))

    async def do_drop(self, target: str, time_limit: float = 30.0) -> dict[str, Any]:
        """Cut every connection of `target` at once, as a proxy reload or a network blip
        would; the readers keep their cursors for the reconnect."""
        tgt = self.target(target)
        conns = [r.conn for r in tgt.readers if r.conn is not None]
        for conn in conns:
            if conn.transport is not None:
                conn.transport.abort()
        if conns:
            await asyncio.wait([c.lost for c in conns], timeout=time_limit)
        return {"dropped": len(conns)}

    async def do_quit(self) -> dict[str, Any]:
        for tgt in self.targets.values():
            await self.do_drop(tgt.name, time_limit=5)
        return {"bye": True}


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 2)}


async def serve_commands() -> None:
    """Read commands from stdin, answer on stdout, until `quit` or end of input."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    worker = Worker()
    while line := await stdin.readline():
        command = json.loads(line)
        quitting = command.get("cmd") == "quit"
        try:
            reply = await worker.handle(command)
        except Exception as exc:  # report, so the orchestrator can say what broke
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if quitting:
            return


def main() -> None:
    eventloop.run(serve_commands())  # the same loop as the hub and the floor


if __name__ == "__main__":
    main()
