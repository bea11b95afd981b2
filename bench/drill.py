"""The fault drill: `python -m bench.drill` (see `--help`, and docs/reliability.md).

Each scenario starts its own stack of real processes: a redis-server with an append-only
file (`appendfsync always`), one publisher and two hubs on their own ports. Readers
(`bench.drillclients`, spread over both hubs) check every offset and reconnect on their
own, with their cursor, to the other hub when theirs goes away. A poster sends items at a
steady rate, each with an Idempotency-Key, retried with the same key on 503, 401 and
connection errors. Then one fault is injected, the posts go on, and once every reader has
caught up, the drill prints one row per scenario: acknowledged posts lost, reader gaps and
duplicates, 500s, the longest time a reader was behind, readers reset and reconnected.

The drill exits non-zero when a column that must be 0 is not, or when a scenario's own
promise (every reader of a stopped hub gets 1001, the hub exits within 5 s, a store that
lost its data resets every reader) does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ticker import eventloop
from ticker.auth import TOKEN_PREFIX, digest

from .http import FILLER, HttpConnection
from .procs import (
    BenchError,
    Managed,
    _die_with_parent,
    free_port,
    http_ok,
    machine,
    start_redis,
    ticker_command,
)
from .run import ROOT, WorkerPool, shown_path
from .tcpproxy import FreezableProxy
from .wire import bench_headline

RESULTS = ROOT / "bench" / "results" / "drill.json"
# fsync the AOF before answering: an acknowledged post is on disk, not only in the kernel.
APPENDFSYNC = "always"
EDITOR = "drill"
HOST = "127.0.0.1"
HUB_STOP_LIMIT = 5.0  # seconds a hub may take to exit on SIGTERM

SCENARIOS = {
    "redis-kill": "Redis killed (SIGKILL), restarted from its AOF",
    "redis-freeze": "Redis frozen (SIGSTOP), then SIGCONT",
    "redis-empty": "Redis restarted empty (no AOF)",
    "hub-kill": "hub killed (SIGKILL), restarted",
    "hub-term": "hub sent SIGTERM, restarted",
    "publisher-kill": "publisher killed (SIGKILL) mid-post, restarted",
    "redis-link-freeze": "hub 1 to Redis link frozen (TCP proxy), then resumed",
    "reader-link-freeze": "readers to hub 1 link frozen (TCP proxy), then resumed",
}
# The columns that must be 0 in every row.
MUST_BE_ZERO = ("lost", "gaps", "duplicates", "errors_500")


@dataclass
class Options:
    readers: int = 1000
    rate: float = 20.0
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    freeze: float = 10.0  # seconds Redis or a link stays frozen
    down: float = 2.0  # seconds a killed process stays dead before its restart
    warmup: float = 3.0  # seconds of posting before the fault
    after: float = 5.0  # seconds of posting after the fault is over
    settle: float = 60.0  # seconds readers get to catch up at the end
    client_processes: int = 2
    smoke: bool = False
    json_path: Path | None = None
    keep_logs: bool = False
    appendfsync: str = APPENDFSYNC


# --- Redis, spoken to directly -------------------------------------------------------------


def _resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def redis_call(port: int, *args: str) -> bytes:
    with socket.create_connection((HOST, port), 5) as sock:
        sock.sendall(_resp(*args))
        return sock.recv(4096)


def add_token(port: int, token: str) -> None:
    """What `ticker token create` stores (ticker/brokers/add_token.lua), for a token this
    drill already holds: after Redis lost its data, the editor's token is put back."""
    record = json.dumps({"digest": digest(token), "created": datetime.now(UTC).isoformat()})
    redis_call(port, "HSET", "ticker:{tokens}", EDITOR, record)
    redis_call(port, "HSET", "ticker:{tokens}:digests", digest(token), EDITOR)


async def ready(check: Callable[[], bool], process: Managed, what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(check):
        process.check()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}; see {process.log_path}")
        await asyncio.sleep(0.05)


def redis_ready(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with contextlib.suppress(OSError):
            return redis_call(port, "PING").startswith(b"+PONG")
        return False

    return check


# --- the stack -----------------------------------------------------------------------------


class Stack:
    """Redis with its AOF, a publisher and two hubs. With `proxied` "redis", hub 1 reaches
    Redis through a freezable proxy; with "readers", readers reach hub 1 through one."""

    def __init__(
        self, logdir: Path, *, proxied: str | None = None, appendfsync: str = APPENDFSYNC
    ) -> None:
        self.logdir = logdir
        self.appendfsync = appendfsync
        self.proxied = proxied
        self.redis_port = free_port()
        self.redis_data = Path(tempfile.mkdtemp(prefix="redis-", dir=logdir))
        self.publisher_port = free_port()
        self.hub_ports = [free_port(), free_port()]
        self.token = TOKEN_PREFIX + uuid.uuid4().hex
        self.managed: list[Managed] = []
        self.redis: Managed | None = None
        self.publisher: Managed | None = None
        self.hubs: list[Managed | None] = [None, None]
        self.proxy: FreezableProxy | None = None
        self.starts: Counter[str] = Counter()
        self.env = {"TICKER_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1", "TICKER_POST_RATE": "off"}

    def _name(self, base: str) -> str:
        self.starts[base] += 1
        return base if self.starts[base] == 1 else f"{base}-{self.starts[base]}"

    async def start(self) -> None:
        await self.start_redis()
        add_token(self.redis_port, self.token)
        if self.proxied == "redis":
            self.proxy = FreezableProxy(HOST, self.redis_port)
            await self.proxy.start()
        elif self.proxied == "readers":
            self.proxy = FreezableProxy(HOST, self.hub_ports[1])
            await self.proxy.start()
        self.spawn_publisher()
        self.spawn_hub(0)
        self.spawn_hub(1)
        await self.wait_publisher()
        await self.wait_hub(0)
        await self.wait_hub(1)

    async def start_redis(self, data: Path | None = None) -> None:
        self.redis, _ = await asyncio.to_thread(
            start_redis,
            self.logdir,
            port=self.redis_port,
            data=data or self.redis_data,
            appendfsync=self.appendfsync,
            name=self._name("redis"),
            death_signal=signal.SIGKILL,  # it may be frozen when the drill dies
        )
        self.managed.append(self.redis)

    def redis_url(self, hub: int | None = None) -> str:
        proxied = self.proxy is not None and self.proxied == "redis" and hub == 1
        port = self.proxy.port if proxied else self.redis_port
        return f"redis://{HOST}:{port}/0"

    def _spawn(self, base: str, command: list[str]) -> Managed:
        process = Managed(self._name(base), command, self.logdir, self.env)
        self.managed.append(process)
        return process

    def spawn_publisher(self) -> None:
        self.publisher = self._spawn(
            "publisher",
            ticker_command(
                "publisher",
                "--redis-url",
                self.redis_url(),
                "--host",
                HOST,
                "--port",
                str(self.publisher_port),
            ),
        )

    def spawn_hub(self, index: int) -> None:
        self.hubs[index] = self._spawn(
            f"hub-{index}",
            ticker_command(
                "hub",
                "--redis-url",
                self.redis_url(index),
                "--hub-host",
                HOST,
                "--hub-port",
                str(self.hub_ports[index]),
            ),
        )

    async def wait_publisher(self) -> None:
        assert self.publisher is not None
        port = self.publisher_port
        await ready(lambda: http_ok(port, "/readyz"), self.publisher, "the publisher")

    async def wait_hub(self, index: int) -> None:
        hub = self.hubs[index]
        assert hub is not None
        port = self.hub_ports[index]
        await ready(lambda: http_ok(port, "/readyz"), hub, f"hub {index} to be ready")

    @staticmethod
    async def kill(process: Managed | None, sig: int = signal.SIGKILL) -> None:
        assert process is not None
        process.process.send_signal(sig)
        if sig == signal.SIGKILL:
            await asyncio.to_thread(process.process.wait)

    @property
    def reader_ports(self) -> list[int]:
        """Where readers connect: each hub's port, or the proxy's in front of hub 1."""
        if self.proxy is not None and self.proxied == "readers":
            return [self.hub_ports[0], self.proxy.port]
        return list(self.hub_ports)

    async def stop(self) -> None:
        if self.redis is not None and self.redis.process.poll() is None:
            with contextlib.suppress(OSError):
                self.redis.process.send_signal(signal.SIGCONT)  # a frozen Redis cannot stop
        if self.proxy is not None:
            await self.proxy.close()
        for process in reversed(self.managed):
            await asyncio.to_thread(process.stop, 10.0)


# --- the poster ----------------------------------------------------------------------------


class AnsweredConnection(HttpConnection):
    """The benchmark's keep-alive client, keeping the last answer's Retry-After header."""

    retry_after: float | None = None

    async def _exchange(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        response = await self.reader.readuntil(b"\r\n\r\n")
        status = int(response.split(b" ", 2)[1])
        length = 0
        self.retry_after = None
        for line in response.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"retry-after":
                self.retry_after = float(value)
        return status, await self.reader.readexactly(length) if length else b""


@dataclass
class Post:
    seq: int
    key: str
    body: bytes
    sent: float
    acked: float | None = None
    item_id: str | None = None
    final: int | None = None  # the status it ended with
    attempts: int = 0
    replayed: bool = False


class Poster:
    """Posts at a steady rate, each post its own task, retried with the same key."""

    RETRYABLE = (503, 401)  # 401: the store lost its data, tokens included; put back soon
    GIVE_UP = 60.0

    def __init__(self, port: int, token: str, rate: float, first_seq: int) -> None:
        self.port = port
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
        }
        self.rate = rate
        self.next_seq = first_seq
        self.posts: dict[int, Post] = {}
        self.statuses: Counter[str] = Counter()
        self.in_flight = 0
        self.flying = asyncio.Event()  # set while a request waits for its answer
        self.idle: list[AnsweredConnection] = []
        self.without_retry_after = 0  # 503s that did not say when to come back
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        interval = 1 / self.rate
        next_at = time.monotonic()
        while not self.stopping.is_set():
            self.next_seq += 1
            task = asyncio.create_task(self._post(self.next_seq))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            next_at += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), max(0.0, next_at - time.monotonic()))

    async def finish(self, limit: float) -> None:
        self.stopping.set()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=limit)
        for task in list(self.tasks):
            task.cancel()
        for conn in self.idle:
            await conn.close()

    async def _post(self, seq: int) -> None:
        began = time.time()
        item = {
            "edition": "en",
            "headline": bench_headline(seq, began, FILLER),
            "source": "Drill wire",
            "regions": ["MENA"],
            "categories": ["Politics"],
        }
        post = self.posts[seq] = Post(seq, str(uuid.uuid4()), json.dumps(item).encode(), began)
        headers = {**self.headers, "Idempotency-Key": post.key}
        delay = 0.1
        while time.time() - began < self.GIVE_UP:
            post.attempts += 1
            status, body, retry_after = await self._send(post.body, headers)
            self.statuses[str(status)] += 1
            if status == 503 and not retry_after:
                self.without_retry_after += 1
            if status == 201:
                post.acked = time.time()
                post.final = 201
                answer = json.loads(body)
                post.item_id = answer.get("id")
                post.replayed = post.attempts > 1
                return
            if status != 0 and status not in self.RETRYABLE:
                post.final = status  # a 500 (a defect) or another refusal: recorded, not retried
                return
            # After the Retry-After the answer gave, else after a short jittered backoff
            # (a publisher being restarted refuses connections).
            await asyncio.sleep(max(retry_after, delay) * random.uniform(1.0, 1.5))
            delay = min(1.0, delay * 2)
        post.final = 0

    async def _send(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, float]:
        """One attempt: the status (0 for a connection error or no answer in time), the
        body, and the Retry-After the answer asked for (0 when none)."""
        conn = self.idle.pop() if self.idle else None
        self.in_flight += 1
        self.flying.set()
        try:
            if conn is None:
                conn = AnsweredConnection(HOST, self.port)
                await asyncio.wait_for(conn.open(), 5)
            status, answer = await asyncio.wait_for(
                conn.request("POST", "/api/items", body, headers), 15
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 1)
            return 0, b"", 0.0
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.flying.clear()
        self.idle.append(conn)
        return status, answer, conn.retry_after or 0.0


# --- the faults ----------------------------------------------------------------------------


@dataclass
class Fault:
    stack: Stack
    poster: Poster
    pool: WorkerPool
    target: str
    options: Options
    facts: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    async def where(self) -> list[int]:
        replies = await self.pool.all({"cmd": "where", "target": self.target})
        return [sum(r["on"][i] for r in replies) for i in range(2)]


async def redis_kill(f: Fault) -> None:
    await f.stack.kill(f.stack.redis)
    await asyncio.sleep(f.options.down)
    await f.stack.start_redis()
    tokens = redis_call(f.stack.redis_port, "HLEN", "ticker:{tokens}")
    f.facts["aof_reloaded"] = tokens.strip() == b":1"  # the token survived the kill


async def redis_freeze(f: Fault) -> None:
    assert f.stack.redis is not None
    await f.stack.kill(f.stack.redis, signal.SIGSTOP)
    await asyncio.sleep(f.options.freeze)
    await f.stack.kill(f.stack.redis, signal.SIGCONT)


async def redis_empty(f: Fault) -> None:
    await f.stack.kill(f.stack.redis)
    await asyncio.sleep(f.options.down)
    await f.stack.start_redis(Path(tempfile.mkdtemp(prefix="redis-empty-", dir=f.stack.logdir)))
    add_token(f.stack.redis_port, f.stack.token)  # the newsroom re-issues its tokens


async def hub_kill(f: Fault) -> None:
    f.facts["readers_on_killed_hub"] = (await f.where())[0]
    await f.stack.kill(f.stack.hubs[0])
    await asyncio.sleep(f.options.down)
    f.stack.spawn_hub(0)
    await f.stack.wait_hub(0)


async def hub_term(f: Fault) -> None:
    on = (await f.where())[0]
    f.facts["readers_on_stopped_hub"] = on
    hub = f.stack.hubs[0]
    assert hub is not None
    began = time.monotonic()
    hub.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(hub.process.wait, 30)
    except subprocess.TimeoutExpired:
        hub.process.kill()
        await asyncio.to_thread(hub.process.wait)
    took = time.monotonic() - began
    f.facts["hub_exit_seconds"] = round(took, 2)
    f.facts["hub_exit_code"] = hub.process.returncode
    if took > HUB_STOP_LIMIT:
        f.failures.append(f"the hub took {took:.1f} s to exit on SIGTERM (limit {HUB_STOP_LIMIT})")
    await asyncio.sleep(f.options.down)
    f.stack.spawn_hub(0)
    await f.stack.wait_hub(0)


async def publisher_kill(f: Fault) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(f.poster.flying.wait(), 5)
    f.facts["posts_in_flight_at_kill"] = f.poster.in_flight
    if f.poster.in_flight == 0:
        f.failures.append("no post was in flight when the publisher was killed")
    await f.stack.kill(f.stack.publisher)
    await asyncio.sleep(f.options.down)
    f.stack.spawn_publisher()
    await f.stack.wait_publisher()


async def link_freeze(f: Fault) -> None:
    assert f.stack.proxy is not None
    f.stack.proxy.freeze()
    await asyncio.sleep(f.options.freeze)
    f.stack.proxy.thaw()


FAULTS: dict[str, Callable[[Fault], Awaitable[None]]] = {
    "redis-kill": redis_kill,
    "redis-freeze": redis_freeze,
    "redis-empty": redis_empty,
    "hub-kill": hub_kill,
    "hub-term": hub_term,
    "publisher-kill": publisher_kill,
    "redis-link-freeze": link_freeze,
    "reader-link-freeze": link_freeze,
}


# --- one scenario --------------------------------------------------------------------------


async def run_scenario(name: str, index: int, options: Options, pool: WorkerPool, logdir: Path):
    scenario_dir = logdir / name
    scenario_dir.mkdir()
    proxied = {"redis-link-freeze": "redis", "reader-link-freeze": "readers"}.get(name)
    stack = Stack(scenario_dir, proxied=proxied, appendfsync=options.appendfsync)
    poster: Poster | None = None
    started_readers = False
    try:
        await stack.start()
        hubs = [[HOST, port] for port in stack.reader_ports]
        shares = pool.shares(options.readers)
        firsts = [sum(shares[:i]) for i in range(len(shares))]
        started_readers = True
        replies = await pool.each(
            [
                {"cmd": "start", "target": name, "hubs": hubs, "count": n, "first_index": first}
                for n, first in zip(shares, firsts, strict=True)
            ]
        )
        connected = sum(r["connected"] for r in replies)
        if connected != options.readers:
            raise BenchError(f"{name}: only {connected} of {options.readers} readers connected")
        poster = Poster(stack.publisher_port, stack.token, options.rate, index * 1_000_000)
        posting = asyncio.create_task(poster.run())
        await asyncio.sleep(options.warmup)
        fault = Fault(stack, poster, pool, name, options)
        began = time.monotonic()
        await FAULTS[name](fault)
        fault_seconds = time.monotonic() - began
        await asyncio.sleep(options.after)
        await poster.finish(Poster.GIVE_UP + 5)
        await posting
        acked = {str(p.seq): p.acked for p in poster.posts.values() if p.acked is not None}
        await pool.all(
            {"cmd": "wait", "target": name, "acked": acked, "time_limit": options.settle}
        )
        reports = await pool.all({"cmd": "report", "target": name, "acked": acked})
        return summarize(name, options, poster, reports, fault, fault_seconds, stack)
    finally:
        if poster is not None:
            await poster.finish(1)
        if started_readers:
            with contextlib.suppress(BenchError):
                await pool.all({"cmd": "stop", "target": name})
        await stack.stop()


def _spread(values: list[float]) -> dict[str, float]:
    """Median, 99th percentile and maximum of the readers' longest reconnects."""
    if not values:
        return {}
    ordered = sorted(values)
    at = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)  # noqa: E731
    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 2)}


def _merge_counts(reports: list[dict], key: str) -> dict[str, int]:
    merged: Counter[str] = Counter()
    for report in reports:
        merged.update(report[key])
    return dict(merged)


def summarize(
    name: str,
    options: Options,
    poster: Poster,
    reports: list[dict],
    fault: Fault,
    fault_seconds: float,
    stack: Stack,
) -> dict[str, Any]:
    posts = poster.posts.values()
    acked = {p.seq: p.acked for p in posts if p.acked is not None}
    silent = _merge_counts(reports, "lost")
    announced = _merge_counts(reports, "announced")
    duplicated = _merge_counts(reports, "duplicated")
    had_by = _merge_counts(reports, "had_by")
    last_had: dict[str, float] = {}
    for report in reports:
        for seq, t in report["last_had"].items():
            last_had[seq] = max(t, last_had.get(seq, 0.0))
    readers = sum(r["readers"] for r in reports)
    lags = [
        max(0.0, last_had[str(seq)] - ack)
        for seq, ack in acked.items()
        if had_by.get(str(seq), 0) == readers and str(seq) in last_had
    ]
    wiped = name == "redis-empty"
    # Only a store that lost its data may lose an acknowledged post, and only with a reset.
    lost = set(silent) if wiped else set(silent) | set(announced)
    closed_by = {}
    for report in reports:
        for hub, codes in report["closed_by"].items():
            into = closed_by.setdefault(hub, Counter())
            into.update(codes)
    row: dict[str, Any] = {
        "scenario": name,
        "title": SCENARIOS[name],
        "readers": readers,
        "posts": len(poster.posts),
        "acknowledged": len(acked),
        "lost": len(lost),
        "lost_reader_views": sum(silent.values()) + (0 if wiped else sum(announced.values())),
        "wiped_with_reset": len(announced) if wiped else 0,
        "gaps": sum(r["gaps"] for r in reports),
        "duplicates": sum(r["duplicates"] for r in reports) + sum(duplicated.values()),
        "errors_500": poster.statuses.get("500", 0),
        "answers": dict(sorted(poster.statuses.items())),
        "unacknowledged": sum(1 for p in posts if p.acked is None),
        "retried": sum(1 for p in posts if p.attempts > 1),
        "max_lag_s": round(max(lags, default=0.0), 2),
        "max_ack_s": round(max((p.acked - p.sent for p in posts if p.acked), default=0.0), 2),
        "readers_reset": sum(r["readers_reset"] for r in reports),
        "readers_reconnected": sum(r["readers_reconnected"] for r in reports),
        "readers_open_at_end": sum(r["open"] for r in reports),
        "longest_reconnect_s": round(max(r["longest_away_s"] for r in reports), 2),
        "reconnect_s": _spread([s for r in reports for s in r["away_s"]]),
        "failed_connection_attempts": _merge_counts(reports, "failed_attempts"),
        "close_codes_by_hub": {h: dict(c) for h, c in closed_by.items()},
        "fault_seconds": round(fault_seconds, 2),
        "first_errors": [e for r in reports for e in r["errors"]][:5],
        **fault.facts,
    }
    failures = list(fault.failures)
    failures += [f"{column} = {row[column]}" for column in MUST_BE_ZERO if row[column]]
    row["503_without_retry_after"] = poster.without_retry_after
    if poster.without_retry_after:
        failures.append(f"{poster.without_retry_after} answers 503 had no Retry-After")
    if row["unacknowledged"]:
        failures.append(f"{row['unacknowledged']} posts were never acknowledged")
    if name == "redis-empty" and row["readers_reset"] != readers:
        failures.append(f"only {row['readers_reset']} of {readers} readers got a reset")
    if name == "hub-term":
        got = closed_by.get("0", Counter()).get("1001", 0)
        row["readers_closed_1001"] = got
        if got != row["readers_on_stopped_hub"]:
            failures.append(
                f"{got} of {row['readers_on_stopped_hub']} readers of the stopped hub got 1001"
            )
    if row["readers_open_at_end"] != readers:
        failures.append(f"only {row['readers_open_at_end']} of {readers} readers connected at end")
    row["failures"] = failures
    row["ok"] = not failures
    return row


# --- the table -----------------------------------------------------------------------------

COLUMNS = (
    ("scenario", "scenario"),
    ("acknowledged", "acked posts"),
    ("lost", "acked lost"),
    ("gaps", "gaps"),
    ("duplicates", "duplicates"),
    ("errors_500", "500s"),
    ("max_lag_s", "max behind (s)"),
    ("max_ack_s", "max post to 201 (s)"),
    ("wiped_with_reset", "acked lost with the data, reset"),
    ("readers_reset", "readers reset"),
    ("readers_reconnected", "readers reconnected"),
    ("ok", "ok"),
)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in rows:
        cells = []
        for key, _ in COLUMNS:
            value = row[key]
            if key == "ok":
                value = "yes" if value else "NO"
            cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------------


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def drill(options: Options, logdir: Path) -> dict[str, Any]:
    load_before = _load()
    pool = await DrillPool.start(options.client_processes, logdir)
    rows: list[dict[str, Any]] = []
    try:
        for i, name in enumerate(options.scenarios, start=1):
            began = time.monotonic()
            row = await run_scenario(name, i, options, pool, logdir)
            row["seconds"] = round(time.monotonic() - began, 1)
            rows.append(row)
            mark = "ok" if row["ok"] else "FAILED: " + "; ".join(row["failures"])
            print(f"# {name}: {row['seconds']} s, {mark}", file=sys.stderr, flush=True)
    finally:
        await pool.stop()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python -m bench.drill", *map(shlex.quote, sys.argv[1:])]),
        # Other work on the machine shows in the timings, never in the must-be-0 columns.
        "load_average": {"start": load_before, "end": _load()},
        "machine": machine(),
        "options": {
            k: shown_path(v) if isinstance(v, Path) else v for k, v in asdict(options).items()
        },
        "appendfsync": options.appendfsync,
        "rows": rows,
        "ok": all(r["ok"] for r in rows),
    }


class DrillPool(WorkerPool):
    """The benchmark's client pool, running the drill's self-reconnecting readers."""

    @classmethod
    async def start(cls, count: int, logdir: Path) -> DrillPool:
        processes = []
        for i in range(count):
            stderr = (logdir / f"drillclients-{i}.log").open("ab")
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.drillclients",
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    limit=1 << 28,
                    cwd=ROOT,
                    preexec_fn=_die_with_parent,
                )
            )
        return cls(processes)


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.drill",
        description="Fault drill: real processes, real faults, every reader checked.",
    )
    parser.add_argument("--readers", type=int, help="readers over both hubs (default 1000)")
    parser.add_argument("--rate", type=float, default=20.0, help="posts per second (20)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        dest="scenarios",
        help="run only this scenario (repeatable; default all)",
    )
    parser.add_argument("--freeze", type=float, help="seconds of each freeze (10; smoke 2)")
    parser.add_argument("--smoke", action="store_true", help="50 readers, 2 s freezes: for CI")
    parser.add_argument("--json", type=Path, dest="json_path", help="write the results here")
    parser.add_argument(
        "--appendfsync",
        choices=["always", "everysec"],
        default=APPENDFSYNC,
        help=f"Redis's AOF fsync policy ({APPENDFSYNC})",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the processes' logs even when all is well"
    )
    args = parser.parse_args(argv)
    options = Options(
        rate=args.rate,
        smoke=args.smoke,
        json_path=args.json_path,
        keep_logs=args.keep_logs,
        appendfsync=args.appendfsync,
    )
    if args.smoke:
        options.readers, options.freeze, options.down = 50, 2.0, 0.5
        options.warmup, options.after, options.settle = 1.0, 1.5, 30.0
        options.client_processes = 1
    if args.readers is not None:
        options.readers = args.readers
    if args.freeze is not None:
        options.freeze = args.freeze
    if args.scenarios:
        options.scenarios = list(dict.fromkeys(args.scenarios))
    full = options.scenarios == list(SCENARIOS) and options.appendfsync == APPENDFSYNC
    if options.json_path is None and not options.smoke and full and args.readers is None:
        options.json_path = RESULTS
    return options


async def _main(options: Options, logdir: Path) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    return await drill(options, logdir)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="ticker-drill-"))
    print(f"# logs in {logdir}", file=sys.stderr, flush=True)
    try:
        result = eventloop.run(_main(options, logdir))
    except asyncio.CancelledError:
        print("drill: interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return 2
    print(table(result["rows"]))
    for row in result["rows"]:
        for failure in row["failures"]:
            print(f"FAILED {row['scenario']}: {failure}")
    if options.json_path is not None:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"# results in {options.json_path}", file=sys.stderr)
    if result["ok"] and not options.keep_logs:
        shutil.rmtree(logdir, ignore_errors=True)
    else:
        print(f"# logs kept in {logdir}", file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
