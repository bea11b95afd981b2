"""The fan-out benchmark: `python -m bench` (see `--help`, and docs/performance.md).

One run starts a private redis-server, the publisher, the hub and a raw floor server,
connects N WebSocket readers to each from several client processes and source
addresses, and measures, in this order: RSS per connection and per Server-Sent Events
stream, idle (keepalive) CPU, CPU per delivery against the floor, publish-to-receive
latency, bursts of 20, a reconnect storm with cursors, publisher throughput, conditional
GETs, streams against WebSocket readers, the archive and Web Push. Every reader checks every
event it gets (same epoch, offset + 1), so a run also proves nothing was lost,
repeated or reordered; it exits non-zero when anything was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ticker import config, eventloop
from ticker.events import parse_cursor

from . import archive, push, report
from .http import FILLER, HttpConnection, Poster
from .procs import (
    BenchError,
    Managed,
    cpu_seconds,
    create_token,
    free_port,
    http_ok,
    machine,
    rss_kb,
    start_redis,
    tcp_counters,
    ticker_command,
    wait_for,
)
from .wire import bench_headline

BURST = 20
SOURCES_PER_POOL = 16
HUB_POOL, FLOOR_POOL, STORM_POOL, STREAM_POOL, PEER_POOL = 1, 2, 3, 4, 5
FLOOR_EPOCH = "f1oor000"
STORM_TIME_LIMIT = 150.0
ROOT = Path(__file__).resolve().parent.parent
# The full run's results, committed: docs/performance.md and docs/operations.md quote them.
LATEST = ROOT / "bench" / "results" / "latest.json"


@dataclass
class Options:
    clients: int = 10_000
    workers: int = 0  # 0: one client process per 2,500 readers, at least 2
    rounds: int = 3
    messages: int = 10  # per round and per server
    idle_seconds: float = 20.0  # the hub's ping interval: one keepalive round per window
    settle_seconds: float = 3.0
    posts: int = 3000
    post_concurrency: int = 32
    connect_concurrency: int = 25  # per client process, for the initial connect only
    timeout: float = 60.0
    json_path: Path | None = None  # None: LATEST for a full run, a temporary file for smoke
    profile: Path | None = None
    hub_args: list[str] = field(default_factory=list)
    publisher_args: list[str] = field(default_factory=list)
    tracemalloc: Path | None = None
    archive_items: int = 100_000  # per store, in the archive phase
    archive_queries: int = 200  # per kind of archive query and store
    smoke: bool = False
    serve: bool = False  # one `ticker serve` on the embedded store instead of Redis
    push_subscriptions: int = 100_000  # the Web Push phase: a flash to this many

    @property
    def client_processes(self) -> int:
        return self.workers or min(8, max(2, math.ceil(self.clients / 2500)))


def sources(pool: int) -> list[str]:
    """Source addresses for one phase. Each phase gets its own, so the ports left in
    TIME_WAIT by an earlier phase never run a later one out of ephemeral ports."""
    return [f"127.0.{pool}.{i}" for i in range(1, SOURCES_PER_POOL + 1)]


# --- client processes --------------------------------------------------------------------


class WorkerPool:
    """The client processes, each holding a share of the readers."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self.processes = processes

    @classmethod
    async def start(cls, count: int, logdir: Path) -> WorkerPool:
        processes = []
        for i in range(count):
            stderr = (logdir / f"clients-{i}.log").open("ab")
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.clients",
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    limit=1 << 28,
                    cwd=ROOT,
                )
            )
        return cls(processes)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.processes)

    def shares(self, total: int) -> list[int]:
        n = len(self.processes)
        return [total // n + (i < total % n) for i in range(n)]

    async def _call(self, process: asyncio.subprocess.Process, command: dict) -> dict:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write((json.dumps(command) + "\n").encode())
        await process.stdin.drain()
        line = await process.stdout.readline()
        if not line:
            raise BenchError(f"a client process exited (code {process.returncode}); see logs")
        reply = json.loads(line)
        if "error" in reply:
            raise BenchError(f"a client process failed on {command['cmd']}: {reply['error']}")
        return reply

    async def each(self, commands: list[dict]) -> list[dict]:
        """One command per process, all at once."""
        return list(
            await asyncio.gather(
                *(self._call(p, c) for p, c in zip(self.processes, commands, strict=True))
            )
        )

    async def all(self, command: dict) -> list[dict]:
        return await self.each([dict(command) for _ in self.processes])

    async def health(self, target: str) -> dict[str, Any]:
        replies = await self.all({"cmd": "health", "target": target})
        return _sum_health(replies)

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                try:
                    await asyncio.wait_for(self._call(process, {"cmd": "quit"}), 10)
                    await asyncio.wait_for(process.wait(), 10)
                except (TimeoutError, BenchError, ConnectionError):
                    process.kill()
                    await process.wait()


def _sum_health(replies: list[dict]) -> dict[str, Any]:
    summed: dict[str, Any] = {}
    for reply in replies:
        for key, value in reply.items():
            if key in ("seqs", "sample"):
                continue
            if isinstance(value, list):
                summed[key] = sorted(set(summed.get(key, [])) | set(value))
            else:
                summed[key] = summed.get(key, 0) + value
    return summed


class FloorProcess:
    """The floor server, driven over its stdin like the client processes."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    @classmethod
    async def start(cls, logdir: Path) -> FloorProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.floor",
            "--epoch",
            FLOOR_EPOCH,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(logdir / "floor.log").open("ab"),
            cwd=ROOT,
        )
        assert process.stdout is not None
        hello = json.loads(await process.stdout.readline())
        return cls(process, hello["listening"])

    @property
    def pid(self) -> int:
        return self.process.pid

    async def call(self, command: dict) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        return json.loads(await self.process.stdout.readline())

    async def stop(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


# --- the run -----------------------------------------------------------------------------


class Bench:
    def __init__(self, options: Options, logdir: Path) -> None:
        self.options = options
        self.logdir = logdir
        self.n = options.clients
        self.results: dict[str, Any] = {}
        self.managed: list[Managed] = []
        self.floor: FloorProcess | None = None
        self.pool: WorkerPool | None = None
        self.profiler: subprocess.Popen[bytes] | None = None
        self.next_seq = 0
        self.floor_offset = 0
        self.floor_template: dict[str, Any] | None = None
        self.hub_port = free_port()
        self.publisher_port = free_port()

    # --- set-up and tear-down ---------------------------------------------------------

    async def start(self) -> None:
        # The bench posts far faster than an editor may: it lifts the per-token post rate.
        env = {"TICKER_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1", "TICKER_POST_RATE": "off"}
        env["TICKER_PUSH_ALLOW_NETWORKS"] = "127.0.0.0/8"  # the push phase's local push service
        if self.options.serve:
            self._start_serve(env)
        else:
            self._start_on_redis(env)
        wait_for(lambda: http_ok(self.publisher_port, "/healthz"), self.publisher, "publisher")
        wait_for(lambda: http_ok(self.hub_port, "/readyz"), self.hub, "the hub to be ready")
        self.floor = await FloorProcess.start(self.logdir)
        self.pool = await WorkerPool.start(self.options.client_processes, self.logdir)
        self.poster = Poster("127.0.0.1", self.publisher_port, self.token)
        self.post_conns = await self.poster.connect(BURST)

    def _start_serve(self, env: dict[str, str]) -> None:
        """The one-process default: publisher and hub share one event loop."""
        store = ["--db", str(self.logdir / "ticker.db")]
        self.token = create_token(store, self.logdir)
        self.publisher = self.hub = self._spawn(
            "serve",
            self._hub_command(
                "serve",
                *store,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.publisher_port),
                "--hub-host",
                "127.0.0.1",
                "--hub-port",
                str(self.hub_port),
                *self.options.hub_args,
            ),
            {**env, **self._traced_env()},
        )

    def _start_on_redis(self, env: dict[str, str]) -> None:
        redis, self.redis_url = start_redis(self.logdir)
        self.managed.append(redis)
        self.token = create_token(["--redis-url", self.redis_url], self.logdir)
        self.publisher = self._spawn(
            "publisher",
            ticker_command(
                "publisher",
                "--redis-url",
                self.redis_url,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.publisher_port),
                *self.options.publisher_args,
            ),
            env,
        )
        self.hub = self._spawn(
            "hub",
            self._hub_command(
                "hub",
                "--redis-url",
                self.redis_url,
                "--hub-host",
                "127.0.0.1",
                "--hub-port",
                str(self.hub_port),
                *self.options.hub_args,
            ),
            {**env, **self._traced_env()},
        )

    def _hub_command(self, *args: str) -> list[str]:
        """`ticker hub`, or the same through bench.traced when memory tracing is asked."""
        if self.options.tracemalloc:
            return [sys.executable, "-m", "bench.traced", *args]
        return ticker_command(*args)

    def _traced_env(self) -> dict[str, str]:
        if not self.options.tracemalloc:
            return {}
        return {"BENCH_TRACEMALLOC": str(self.options.tracemalloc.resolve())}

    def _trace_memory(self) -> None:
        """Ask a traced hub to write what was allocated since the last call."""
        if self.options.tracemalloc:
            os.kill(self.hub.pid, signal.SIGUSR1)
            time.sleep(2.0)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> Managed:
        process = Managed(name, command, self.logdir, env)
        self.managed.append(process)
        return process

    async def stop(self) -> None:
        self._stop_profiler()
        for conn in getattr(self, "post_conns", []):
            await conn.close()
        if self.pool is not None:
            await self.pool.stop()
        if self.floor is not None:
            await self.floor.stop()
        for process in reversed(self.managed):
            process.stop()

    def seq(self) -> int:
        self.next_seq += 1
        return self.next_seq

    # --- primitives --------------------------------------------------------------------

    async def wait(self, target: str, seqs: list[int]) -> None:
        assert self.pool is not None
        replies = await self.pool.all(
            {"cmd": "wait", "target": target, "seqs": seqs, "time_limit": self.options.timeout}
        )
        if not all(r["complete"] for r in replies):
            counts = [r["counts"] for r in replies]
            raise BenchError(f"{target}: not every reader got {seqs} in time: {counts}")

    async def stats(self, target: str, seqs: list[int], latencies: bool = False) -> dict:
        """Per-seq receive data merged over the client processes, plus their health."""
        assert self.pool is not None
        replies = await self.pool.all(
            {"cmd": "stats", "target": target, "seqs": seqs, "latencies": latencies}
        )
        merged: dict[int, dict[str, Any]] = {}
        for reply in replies:
            for key, entry in reply["seqs"].items():
                seq = int(key)
                into = merged.setdefault(seq, {"count": 0, "lat_ms": [], "last": 0.0})
                into["count"] += entry["count"]
                if entry["count"]:
                    into["published"] = entry["published"]
                    into["last"] = max(into["last"], entry["last"])
                    into["lat_ms"] += entry.get("lat_ms", [])
        sample = next((r["sample"] for r in replies if r["sample"]), "")
        return {"seqs": merged, "sample": sample, "health": _sum_health(replies)}

    async def post_hub(
        self, seq: int, conn: HttpConnection | None = None, edition: str = "en"
    ) -> float:
        posted = await self.poster.post(conn or self.post_conns[0], seq, edition=edition)
        if posted.status != 201:
            raise BenchError(f"posting item {seq} failed: {posted.status} {posted.body}")
        return posted.began

    async def hub_message(self) -> int:
        seq = self.seq()
        await self.post_hub(seq)
        await self.wait("hub", [seq])
        return seq

    async def floor_message(self) -> int:
        assert self.floor is not None
        seq = self.seq()
        self.floor_offset += 1
        await self.floor.call({"cmd": "send", "payload": self._floor_payload(seq)})
        await self.wait("floor", [seq])
        return seq

    def _floor_payload(self, seq: int) -> str:
        """A copy of a real hub event, with the floor's cursor and a fresh bench headline,
        so both servers deliver messages of the same size."""
        assert self.floor_template is not None
        message = json.loads(json.dumps(self.floor_template))
        message["cursor"] = f"{FLOOR_EPOCH}:{self.floor_offset}"
        message["item"]["headline"] = bench_headline(seq, time.time(), FILLER)
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"))

    async def connect(
        self,
        target: str,
        port: int,
        pool: int,
        *,
        since: bool = False,
        path: str = "/ws?edition=en",
        stream: bool = False,
        readers: int | None = None,
    ) -> dict:
        assert self.pool is not None
        commands = [
            {
                "cmd": "connect",
                "target": target,
                "host": "127.0.0.1",
                "port": port,
                "path": path,
                "stream": stream,
                "count": share,
                "sources": sources(pool),
                "concurrency": 0 if since else self.options.connect_concurrency,
                # A storm overflowing a short accept queue leaves clients retrying their SYN
                # for up to two minutes (1+2+4+...+64 s); give them that long.
                "time_limit": max(self.options.timeout, STORM_TIME_LIMIT)
                if since
                else self.options.timeout,
                "since": since,
            }
            for share in self.pool.shares(self.n if readers is None else readers)
        ]
        replies = await self.pool.each(commands)
        began = min(r["began"] for r in replies)
        ended = max(r["ended"] for r in replies)
        connected = sum(r["connected"] for r in replies)
        return {
            "connected": connected,
            "failed": sum(r["failed"] for r in replies),
            "retried": sum(r["retried"] for r in replies),
            "failures": sorted({f for r in replies for f in r["failures"]})[:5],
            "seconds": round(ended - began, 3),
            "per_second": round(connected / max(ended - began, 1e-9)),
            "handshake_ms_p50": max(r["handshake_ms"].get("p50", 0) for r in replies),
            "handshake_ms_p99": max(r["handshake_ms"].get("p99", 0) for r in replies),
        }

    # --- phases ------------------------------------------------------------------------

    async def measure_memory(self) -> dict[str, Any]:
        """RSS before and after N idle readers (keepalive on), for the hub and the floor,
        and for N/2 idle streams on the hub."""
        assert self.floor is not None
        out: dict[str, Any] = {}
        for name, pid, port, pool in (
            ("hub", self.hub.pid, self.hub_port, HUB_POOL),
            ("floor", self.floor.pid, self.floor.port, FLOOR_POOL),
        ):
            if name == "hub":
                self._trace_memory()
            before, cpu0 = rss_kb(pid), cpu_seconds(pid)
            connect = await self.connect(name, port, pool)
            connect["server_cpu_us_per_connect"] = round((cpu_seconds(pid) - cpu0) / self.n * 1e6)
            if connect["failed"]:
                raise BenchError(f"{connect['failed']} readers could not connect to the {name}")
            await asyncio.sleep(self.options.settle_seconds)
            after = rss_kb(pid)
            if name == "hub":
                self._trace_memory()
            out[name] = {
                "rss_before_kb": before,
                "rss_after_kb": after,
                "kb_per_connection": round((after - before) / self.n, 2),
                "connect": connect,
            }
            if name == "hub":
                out["streams"] = await self._stream_memory()
        return out

    async def _stream_memory(self) -> dict[str, Any]:
        """RSS before and after N/2 idle Server-Sent Events streams, beside the N readers on
        the fresh hub, whose heap has no freed room yet to hide them in; then they go."""
        assert self.pool is not None
        half = max(self.n // 2, 1)
        before = rss_kb(self.hub.pid)
        connect = await self.connect(
            "idle-sse",
            self.hub_port,
            STREAM_POOL,
            path="/sse?edition=ar",
            stream=True,
            readers=half,
        )
        if connect["failed"]:
            raise BenchError(f"{connect['failed']} stream readers could not connect")
        await asyncio.sleep(self.options.settle_seconds)
        after = rss_kb(self.hub.pid)
        await self.pool.all({"cmd": "drop", "target": "idle-sse"})
        await asyncio.sleep(self.options.settle_seconds)  # the hub lets them go, before idle
        return {
            "streams": half,
            "rss_before_kb": before,
            "rss_after_kb": after,
            "kb_per_stream": round((after - before) / half, 2),
            "connect": connect,
        }

    async def measure_idle(self) -> dict[str, Any]:
        """CPU the hub spends on N idle readers: keepalive pings and heartbeats."""
        assert self.pool is not None and self.floor is not None
        before = await self.pool.health("hub")
        hub0, floor0, t0 = cpu_seconds(self.hub.pid), cpu_seconds(self.floor.pid), time.time()
        await asyncio.sleep(self.options.idle_seconds)
        hub1, floor1, t1 = cpu_seconds(self.hub.pid), cpu_seconds(self.floor.pid), time.time()
        after = await self.pool.health("hub")
        return {
            "seconds": round(t1 - t0, 2),
            "hub_cpu_seconds": round(hub1 - hub0, 4),
            "floor_cpu_seconds": round(floor1 - floor0, 4),
            "heartbeat_frames": after["frames"] - before["frames"],
            "pings_answered": after["pings"] - before["pings"],
        }

    async def warm_up(self) -> None:
        """One item through the whole path; its bytes become the floor's message."""
        seq = await self.hub_message()
        sample = (await self.stats("hub", [seq]))["sample"]
        if not sample:
            raise BenchError("no reader kept a copy of the warm-up event")
        self.floor_template = json.loads(sample)
        self.results["message"] = {
            "hub_event_bytes": len(sample.encode()),
            "floor_event_bytes": len(self._floor_payload(0).encode()),
            "hub_epoch": parse_cursor(self.floor_template["cursor"]).epoch,
            "sample": sample,
        }
        await self.floor_message()

    async def _round(self, target: str, pid: int) -> dict[str, Any]:
        assert self.pool is not None
        send = self.hub_message if target == "hub" else self.floor_message
        frames0 = (await self.pool.health(target))["frames"]
        cpu0, clients0, t0 = cpu_seconds(pid), self.pool.cpu_seconds(), time.time()
        seqs = [await send() for _ in range(self.options.messages)]
        cpu1, clients1, t1 = cpu_seconds(pid), self.pool.cpu_seconds(), time.time()
        frames1 = (await self.pool.health(target))["frames"]
        return {
            "cpu_seconds": cpu1 - cpu0,
            "client_cpu_seconds": clients1 - clients0,
            "seconds": t1 - t0,
            "deliveries": frames1 - frames0,
            "bench_deliveries": len(seqs) * self.n,
            "seqs": seqs,
        }

    async def measure_fanout(self) -> dict[str, Any]:
        """Rounds of M lone messages to the floor, then M to the hub, each sent once the
        previous one reached every reader; interleaved so drift hits both alike."""
        assert self.floor is not None
        rounds: dict[str, list[dict[str, Any]]] = {"floor": [], "hub": []}
        for _ in range(self.options.rounds):
            rounds["floor"].append(await self._round("floor", self.floor.pid))
            rounds["hub"].append(await self._round("hub", self.hub.pid))
        out: dict[str, Any] = {"rounds": self.options.rounds, "messages": self.options.messages}
        for target, done in rounds.items():
            seqs = [s for r in done for s in r["seqs"]]
            stats = await self.stats(target, seqs, latencies=True)
            out[target] = {**_cpu_summary(done), **_latency_summary(stats["seqs"])}
        hub, floor = out["hub"], out["floor"]
        out["ratio"] = round(hub["us_per_delivery"] / floor["us_per_delivery"], 3)
        out["ratio_per_round"] = [
            round(_us(h) / _us(f), 3) for h, f in zip(rounds["hub"], rounds["floor"], strict=True)
        ]
        return out

    async def measure_burst(self, concurrent: bool) -> dict[str, Any]:
        """20 items posted back to back: all at once on 20 connections, or one after
        another on one connection. Until every reader has all 20, in order."""
        assert self.pool is not None
        await self._open_burst_connections()
        before = await self.pool.health("hub")
        seqs = [self.seq() for _ in range(BURST)]
        cpu0, t0 = cpu_seconds(self.hub.pid), time.time()
        if concurrent:
            await asyncio.gather(
                *(self.post_hub(s, c) for s, c in zip(seqs, self.post_conns, strict=True))
            )
        else:
            for seq in seqs:
                await self.post_hub(seq)
        posted = time.time()
        await self.wait("hub", seqs)
        cpu1 = cpu_seconds(self.hub.pid)
        stats = await self.stats("hub", seqs)
        after = stats["health"]
        last = max(e["last"] for e in stats["seqs"].values())
        return {
            "mode": "concurrent" if concurrent else "sequential",
            "items": BURST,
            "posting_seconds": round(posted - t0, 4),
            "seconds_until_all": round(last - t0, 4),
            "complete": all(e["count"] == self.n for e in stats["seqs"].values()),
            "order_errors": after["errors"] - before["errors"],
            "frames_per_client": round(
                (after["event_frames"] - before["event_frames"]) / self.n, 2
            ),
            "hub_cpu_seconds": round(cpu1 - cpu0, 4),
        }

    async def _open_burst_connections(self) -> None:
        """The burst's 20 connections, open and accepted before the clock starts: as an
        editor's, kept alive, rather than closed by the server while the bench did other
        things."""
        await self.poster.reopen(self.post_conns)
        await asyncio.sleep(0.1)

    async def measure_storm(self) -> dict[str, Any]:
        """Every reader drops, an item is posted while they are away, and all reconnect at
        once with their cursors: each must get that item exactly once, by resume."""
        assert self.pool is not None
        before = await self.pool.health("hub")
        await self.pool.all({"cmd": "drop", "target": "hub"})
        await asyncio.sleep(self.options.settle_seconds)
        seq = self.seq()
        await self.post_hub(seq)
        await asyncio.sleep(0.2)
        rss0, cpu0, tcp0 = rss_kb(self.hub.pid), cpu_seconds(self.hub.pid), tcp_counters()
        connect = await self.connect("hub", self.hub_port, STORM_POOL, since=True)
        cpu1, tcp1 = cpu_seconds(self.hub.pid), tcp_counters()
        if connect["connected"] == self.n:
            await self.wait("hub", [seq])  # a reader that never got back cannot have it
        stats = await self.stats("hub", [seq])
        after = stats["health"]
        return {
            **connect,
            "hub_cpu_seconds": round(cpu1 - cpu0, 3),
            "hub_cpu_us_per_handshake": round((cpu1 - cpu0) / self.n * 1e6, 1),
            "rss_before_kb": rss0,
            "tcp": {k: tcp1[k] - tcp0.get(k, 0) for k in tcp1},
            "item_posted_while_away_received_by": stats["seqs"][seq]["count"],
            "resumed": after["resumes"] - before["resumes"],
            "resets": after["resets"] - before["resets"],
            "order_errors": after["errors"] - before["errors"],
        }

    async def measure_publisher(self) -> dict[str, Any]:
        """Posts per second through the publisher and Redis, at a few concurrencies, to an
        edition nobody reads, with the hub still following. The headline figure is the
        best throughput whose p99 stays within target; the sweep shows the trade-off."""
        levels = (2, 8) if self.options.smoke else (4, 16, self.options.post_concurrency)
        sweep = [await self._publisher_level(c) for c in levels]
        within = [s for s in sweep if s["p99_ms"] <= report.TARGETS["post_p99_ms"]]
        best = max(within or sweep, key=lambda s: s["posts_per_second"])
        return {**best, "sweep": sweep}

    async def measure_conditional(self) -> dict[str, Any]:
        """Readers that pull: conditional GETs of the catch-up and a feed while nothing
        changes, each answered 304, on as many connections as the bursts use."""
        total = 500 if self.options.smoke else 6000
        return {
            "catch_up": await self._conditional("/api/events?edition=en", total),
            "feed": await self._conditional("/feeds/en.rss", total),
        }

    async def _conditional(self, path: str, total: int) -> dict[str, Any]:
        conns = [await HttpConnection("127.0.0.1", self.publisher_port).open() for _ in range(8)]
        status, _ = await conns[0].request("GET", path, b"", {})
        tag = conns[0].etag
        if status != 200 or not tag:
            raise BenchError(f"{path}: no ETag to ask with ({status})")
        todo = iter(range(total))
        statuses: dict[int, int] = {}

        async def run(conn: HttpConnection) -> None:
            for _ in todo:
                got, _ = await conn.request("GET", path, b"", {"If-None-Match": tag})
                statuses[got] = statuses.get(got, 0) + 1

        cpu0, t0 = cpu_seconds(self.publisher.pid), time.time()
        await asyncio.gather(*(run(c) for c in conns))
        elapsed = time.time() - t0
        cpu1 = cpu_seconds(self.publisher.pid)
        for conn in conns:
            await conn.close()
        return {
            "requests": total,
            "not_modified": statuses.get(304, 0),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "per_second": round(total / elapsed),
            "publisher_cpu_us_per_request": round((cpu1 - cpu0) / total * 1e6, 1),
        }

    async def _publisher_level(self, concurrency: int) -> dict[str, Any]:
        total = self.options.posts
        conns = await self.poster.connect(concurrency)
        todo = iter(range(total))
        latencies: list[float] = []
        failures: list[int] = []

        async def run(conn: HttpConnection) -> None:
            for i in todo:
                posted = await self.poster.post(conn, 1_000_000 + i, edition="es")
                latencies.append(posted.seconds * 1000)
                if posted.status != 201:
                    failures.append(posted.status)

        # On `ticker serve` the store is in the publisher's process: no separate figure.
        redis_pid = self.publisher.pid if self.options.serve else self.managed[0].pid
        cpu0 = (cpu_seconds(self.publisher.pid), cpu_seconds(redis_pid), cpu_seconds(self.hub.pid))
        t0 = time.time()
        await asyncio.gather(*(run(c) for c in conns))
        elapsed = time.time() - t0
        cpu1 = (cpu_seconds(self.publisher.pid), cpu_seconds(redis_pid), cpu_seconds(self.hub.pid))
        for conn in conns:
            await conn.close()
        ordered = sorted(latencies)
        used = [round((b - a) / total * 1e6, 1) for a, b in zip(cpu0, cpu1, strict=True)]
        return {
            "posts": total,
            "concurrency": concurrency,
            "seconds": round(elapsed, 3),
            "posts_per_second": round(total / elapsed),
            "p50_ms": round(_quantile(ordered, 0.5), 2),
            "p99_ms": round(_quantile(ordered, 0.99), 2),
            "failed": len(failures),
            "publisher_cpu_us_per_post": used[0],
            "redis_cpu_us_per_post": used[1],
            "hub_cpu_us_per_post": used[2],
        }

    # --- profiling ---------------------------------------------------------------------

    def _start_profiler(self, phase: str) -> None:
        """py-spy on the hub for one phase, so each phase's hot path shows on its own."""
        self._stop_profiler()
        if self.options.profile is None:
            return
        self.options.profile.mkdir(parents=True, exist_ok=True)
        self.profiler = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(self.hub.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(self.options.profile / f"hub-{phase}.txt"),
            ],
            stdout=(self.logdir / "py-spy.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        time.sleep(1.0)  # py-spy needs a moment to attach

    def _stop_profiler(self) -> None:
        if self.profiler is not None and self.profiler.poll() is None:
            self.profiler.send_signal(signal.SIGINT)
            self.profiler.wait(30)
        self.profiler = None

    async def measure_streams(self) -> dict[str, Any]:
        """Server-Sent Events readers (edition ar) beside WebSocket readers (edition en) on
        the same hub. First N/2 of each, in interleaved rounds of lone items, so the two
        paths' CPU per delivery compare in the same minutes and over groups of the same
        size. Then N/2 more streams, and a burst of 20 to all N. (Memory per stream is
        measured on the fresh hub, in the memory phase.)"""
        assert self.pool is not None
        half = max(self.n // 2, 1)
        connect = await self.connect(
            "sse", self.hub_port, STREAM_POOL, path="/sse?edition=ar", stream=True, readers=half
        )
        if connect["failed"]:
            raise BenchError(f"{connect['failed']} stream readers could not connect")
        await asyncio.sleep(self.options.settle_seconds)
        peer = await self.connect("ws", self.hub_port, PEER_POOL, readers=half)
        if peer["failed"]:
            raise BenchError(f"{peer['failed']} WebSocket readers could not connect")
        rounds: dict[str, list[dict[str, Any]]] = {"ws": [], "sse": []}
        for _ in range(self.options.rounds):
            for target, edition in (("ws", "en"), ("sse", "ar")):
                rounds[target].append(await self._edition_round(target, edition))
        out: dict[str, Any] = {
            "readers": self.n,
            "compared_readers": half,
            "websocket_readers": half,
            "kb_per_stream": self.results["memory"]["streams"]["kb_per_stream"],
            "connect": connect,
        }
        for target, done in rounds.items():
            seqs = [seq for r in done for seq in r["seqs"]]
            stats = await self.stats(target, seqs, latencies=True)
            out[target] = {**_cpu_summary(done), **_latency_summary(stats["seqs"])}
            out[target]["received"] = sum(e["count"] for e in stats["seqs"].values())
            out[target]["expected"] = len(seqs) * half
        out["ratio"] = round(out["sse"]["us_per_delivery"] / out["ws"]["us_per_delivery"], 3)
        more = await self.connect(
            "sse",
            self.hub_port,
            STREAM_POOL,
            path="/sse?edition=ar",
            stream=True,
            readers=self.n - half,
        )
        if more["failed"]:
            raise BenchError(f"{more['failed']} stream readers could not connect")
        await asyncio.sleep(self.options.settle_seconds)  # their greetings first
        out["burst"] = await self._stream_burst()
        out["health"] = await self.pool.health("sse")
        return out

    async def _edition_round(self, target: str, edition: str) -> dict[str, Any]:
        assert self.pool is not None
        frames0 = (await self.pool.health(target))["frames"]
        cpu0, clients0, t0 = cpu_seconds(self.hub.pid), self.pool.cpu_seconds(), time.time()
        seqs = []
        for _ in range(self.options.messages):
            seq = self.seq()
            await self.post_hub(seq, edition=edition)
            await self.wait(target, [seq])
            seqs.append(seq)
        cpu1, clients1, t1 = cpu_seconds(self.hub.pid), self.pool.cpu_seconds(), time.time()
        frames1 = (await self.pool.health(target))["frames"]
        readers = (await self.pool.health(target))["readers"]
        return {
            "cpu_seconds": cpu1 - cpu0,
            "client_cpu_seconds": clients1 - clients0,
            "seconds": t1 - t0,
            "deliveries": frames1 - frames0,
            "bench_deliveries": len(seqs) * readers,
            "seqs": seqs,
        }

    async def _stream_burst(self) -> dict[str, Any]:
        """20 items posted at once on 20 connections, until every stream reader has all."""
        await self._open_burst_connections()
        before = await self.pool.health("sse")  # type: ignore[union-attr]
        seqs = [self.seq() for _ in range(BURST)]
        t0 = time.time()
        await asyncio.gather(
            *(
                self.post_hub(seq, conn, edition="ar")
                for seq, conn in zip(seqs, self.post_conns, strict=True)
            )
        )
        posted = time.time()
        await self.wait("sse", seqs)
        stats = await self.stats("sse", seqs)
        after = stats["health"]
        last = max(e["last"] for e in stats["seqs"].values())
        return {
            "items": BURST,
            "posting_seconds": round(posted - t0, 4),
            "seconds_until_all": round(last - t0, 4),
            "complete": all(e["count"] == self.n for e in stats["seqs"].values()),
            "order_errors": after["errors"] - before["errors"],
        }

    # --- everything --------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        r = self.results
        r["machine"] = machine()
        r["options"] = _public_options(self.options)
        r["machine"]["client_event_loop"] = eventloop.loop_name()
        await self.start()
        r["memory"] = await self.measure_memory()
        r["idle"] = await self.measure_idle()
        await self.warm_up()
        self._start_profiler("fanout")
        r["fanout"] = await self.measure_fanout()
        self._start_profiler("bursts")
        r["bursts"] = [await self.measure_burst(True), await self.measure_burst(False)]
        self._stop_profiler()
        assert self.pool is not None
        await self.pool.all({"cmd": "drop", "target": "floor"})
        r["hub_after_traffic_rss_kb"] = rss_kb(self.hub.pid)
        self._start_profiler("storm")
        r["storm"] = await self.measure_storm()
        self._stop_profiler()
        r["keepalive"] = await self.keepalive_state()
        await self.pool.all({"cmd": "drop", "target": "hub"})
        r["publisher"] = await self.measure_publisher()
        r["conditional"] = await self.measure_conditional()
        self._start_profiler("streams")
        r["streams"] = await self.measure_streams()
        self._stop_profiler()
        r["archive"] = await archive.measure(
            self.logdir, self.options.archive_items, self.options.archive_queries
        )
        r["push"] = await self.measure_push()
        r["summary"] = report.summarize(r)
        return r

    async def measure_push(self) -> dict[str, Any]:
        store = (
            ["--db", str(self.logdir / "ticker.db")]
            if self.options.serve
            else ["--redis-url", self.redis_url]
        )
        return await push.measure(
            store=store,
            publisher_port=self.publisher_port,
            poster=self.poster,
            token=self.token,
            subscriptions=self.options.push_subscriptions,
            routine_posts=50 if self.options.smoke else 300,
            logdir=self.logdir,
            seconds=self.options.timeout if self.options.smoke else 300.0,
        )

    async def keepalive_state(self) -> dict[str, Any]:
        """Whether the readers stayed connected through the hub's keepalive."""
        assert self.pool is not None
        health = await self.pool.health("hub")
        return {
            "ping_interval_s": config.from_env().ping_interval,
            "pings_answered": health["pings"],
            "closed_by_server": health["closed_by_server"],
            "close_codes": health["close_codes"],
            "open": health["open"],
            "readers": health["readers"],
            "errors": health["errors"],
            "first_errors": health["first_errors"],
            "resets": health["resets"],
        }


def _us(done: dict[str, Any]) -> float:
    return done["cpu_seconds"] / max(done["deliveries"], 1) * 1e6


def _cpu_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    cpu = sum(r["cpu_seconds"] for r in rounds)
    deliveries = sum(r["deliveries"] for r in rounds)
    return {
        "cpu_seconds": round(cpu, 4),
        "deliveries": deliveries,
        "heartbeat_deliveries": deliveries - sum(r["bench_deliveries"] for r in rounds),
        "window_seconds": round(sum(r["seconds"] for r in rounds), 3),
        "us_per_delivery": round(cpu / max(deliveries, 1) * 1e6, 3),
        "us_per_delivery_per_round": [round(_us(r), 3) for r in rounds],
        "client_us_per_delivery": round(
            sum(r["client_cpu_seconds"] for r in rounds) / max(deliveries, 1) * 1e6, 3
        ),
    }


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latency_summary(seqs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    lat = sorted(x for e in seqs.values() for x in e["lat_ms"])
    until_last = sorted((e["last"] - e["published"]) * 1000 for e in seqs.values() if e["count"])
    return {
        "latency_p50_ms": round(_quantile(lat, 0.5), 2),
        "latency_p99_ms": round(_quantile(lat, 0.99), 2),
        "until_last_client_median_ms": round(_quantile(until_last, 0.5), 2),
        "until_last_client_max_ms": round(until_last[-1], 2) if until_last else None,
        "received": sum(e["count"] for e in seqs.values()),
    }


def shown_path(path: Path) -> str:
    """A path as the results file keeps it: relative to the checkout when inside it, so a
    committed file names no machine's folders."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def _public_options(options: Options) -> dict[str, Any]:
    out = {k: (shown_path(v) if isinstance(v, Path) else v) for k, v in vars(options).items()}
    out["client_processes"] = options.client_processes
    return out


# --- command line ------------------------------------------------------------------------


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--clients", type=int, default=10_000, help="readers per server")
    parser.add_argument("--workers", type=int, default=0, help="client processes (0: auto)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=10, help="messages per round")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=None,
        help="the idle phase's window (default: the hub's ping interval, so that it holds "
        "exactly one keepalive round)",
    )
    parser.add_argument("--posts", type=int, default=3000, help="publisher throughput posts")
    parser.add_argument("--post-concurrency", type=int, default=32)
    parser.add_argument(
        "--archive-items", type=int, default=100_000, help="items per store, archive phase"
    )
    parser.add_argument(
        "--archive-queries", type=int, default=200, help="archive queries per kind and store"
    )
    parser.add_argument(
        "--json",
        type=Path,
        dest="json_path",
        help=f"where to write the results (default: {LATEST.relative_to(ROOT)} for a full run, "
        "which docs/performance.md quotes; a temporary file with --smoke)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="write py-spy profiles of the hub, one per phase, to this folder",
    )
    parser.add_argument(
        "--hub-arg", action="append", default=[], dest="hub_args", help="extra hub flag"
    )
    parser.add_argument(
        "--publisher-arg",
        action="append",
        default=[],
        dest="publisher_args",
        help="extra publisher flag, e.g. --publisher-arg=--workers=2",
    )
    parser.add_argument(
        "--tracemalloc", type=Path, help="trace the hub's allocations per phase into here"
    )
    parser.add_argument("--smoke", action="store_true", help="200 readers, a few seconds (CI)")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="measure one `ticker serve` (embedded store, publisher and hub in one process)",
    )
    parser.add_argument(
        "--push-subscriptions",
        type=int,
        default=100_000,
        help="the Web Push phase: push a flash to this many subscriptions (300 with --smoke)",
    )
    args = parser.parse_args(argv)
    options = Options(**{k: v for k, v in vars(args).items() if k != "smoke"})
    if args.idle_seconds is None:
        options.idle_seconds = config.from_env().ping_interval
    if args.smoke:
        options.smoke = True
        options.clients = 200 if args.clients == 10_000 else args.clients
        options.rounds, options.messages = 1, 5
        options.idle_seconds, options.settle_seconds = 0.5, 0.5
        options.posts = 100
        options.archive_items, options.archive_queries = 300, 10
        options.timeout = 20.0
        if args.push_subscriptions == 100_000:
            options.push_subscriptions = 300
    if options.json_path is None:
        options.json_path = (
            Path(tempfile.gettempdir()) / "ticker-bench-smoke.json" if options.smoke else LATEST
        )
    return options


async def run(options: Options) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ticker-bench-") as tmp:
        bench = Bench(options, Path(tmp))
        try:
            return await bench.run()
        except BaseException:
            _keep_logs(Path(tmp))
            raise
        finally:
            await bench.stop()


def _keep_logs(logdir: Path) -> None:
    """Copy the processes' logs next to the results before the temporary folder goes."""
    keep = Path(tempfile.mkdtemp(prefix="ticker-bench-logs-"))
    for log in logdir.glob("*.log"):
        (keep / log.name).write_bytes(log.read_bytes())
    print(f"bench: logs kept in {keep}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        results = asyncio.run(run(options))
    except BenchError as exc:
        raise SystemExit(f"bench: {exc}") from None
    results["command"] = command.strip()
    results["measured_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert options.json_path is not None
    options.json_path.parent.mkdir(parents=True, exist_ok=True)
    options.json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(report.render(results))
    print(f"\nresults written to {options.json_path}")
    if not results["summary"]["correct"]:
        raise SystemExit("bench: some reader lost, repeated or reordered an event (see above)")
