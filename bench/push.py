"""The Web Push phase: a flash to many subscriptions through a local push service
(bench/pushsink.py), and whether the publisher stays quick while it pushes.

Subscriptions are written into the store directly (`add_many`), each with its own endpoint
on the sink; the publisher's worker encrypts, signs and sends one message per subscription,
as it would to the browsers' push services. Routine posts (urgency 3, pushed to nobody) are
timed before any subscription exists and again while the flash is being pushed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ticker import config
from ticker.brokers import make_broker
from ticker.push import rules
from ticker.push.store import push_store_for

from .http import HttpConnection, Poster
from .procs import BenchError, Managed, free_port, http_ok, ticker_command, wait_for

KEYS = 16  # distinct browser keys, shared round-robin: the sink does not decrypt


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _browser_keys() -> list[tuple[str, str]]:
    keys = []
    for _ in range(KEYS):
        point = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        )
        keys.append((_b64(point), _b64(uuid.uuid4().bytes)))
    return keys


async def _subscribe(settings: config.Settings, port: int, count: int) -> float:
    keys = _browser_keys()
    subs = []
    for i in range(count):
        endpoint = f"http://127.0.0.1:{port}/push/{i}"
        p256dh, auth = keys[i % KEYS]
        subs.append(
            rules.Subscription(rules.subscription_id(endpoint), endpoint, p256dh, auth, "en")
        )
    broker = make_broker(settings)
    await broker.start()
    try:
        started = time.perf_counter()
        await push_store_for(broker).add_many(subs)
        return time.perf_counter() - started
    finally:
        await broker.close()


async def _routine_posts(poster: Poster, port: int, total: int) -> dict[str, Any]:
    conns = await poster.connect(2)
    todo = iter(range(total))
    latencies: list[float] = []
    failed = 0

    async def run(conn: HttpConnection) -> None:
        nonlocal failed
        for i in todo:
            posted = await poster.post(conn, 3_000_000 + i, edition="es")
            latencies.append(posted.seconds * 1000)
            failed += posted.status != 201
            await asyncio.sleep(0.01)  # an editor's pace, not a flood

    await asyncio.gather(*(run(c) for c in conns))
    for conn in conns:
        await conn.close()
    ordered = sorted(latencies)
    return {
        "posts": total,
        "failed": failed,
        "p50_ms": round(ordered[len(ordered) // 2], 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


async def _count(port: int, topic: str) -> dict[str, Any]:
    conn = await HttpConnection("127.0.0.1", port).open()
    try:
        status, body = await conn.request("GET", f"/count?topic={topic}", b"", {})
    finally:
        await conn.close()
    if status != 200:
        raise BenchError(f"push sink answered {status}")
    return json.loads(body)


async def measure(
    *,
    store: list[str],
    publisher_port: int,
    poster: Poster,
    token: str,
    subscriptions: int,
    routine_posts: int,
    logdir: Path,
    seconds: float,
) -> dict[str, Any]:
    sink_port = free_port()
    sink = Managed("pushsink", [sys.executable, "-m", "bench.pushsink", str(sink_port)], logdir, {})
    try:
        wait_for(lambda: _sink_up(sink_port), sink, "the push sink")
        without = await _routine_posts(poster, publisher_port, routine_posts)
        done = await asyncio.to_thread(
            subprocess.run,
            ticker_command("push", "keys", "create", *store),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise BenchError(f"ticker push keys create failed: {done.stderr.strip()}")
        flag, value = store
        settings = config.from_env(
            {}, **({"redis_url": value} if flag == "--redis-url" else {"db_path": Path(value)})
        )
        stored_in = await _subscribe(settings, sink_port, subscriptions)

        conn = await HttpConnection("127.0.0.1", publisher_port).open()
        item = {"edition": "en", "headline": "Bench flash", "urgency": 1, "source": "Bench"}
        headers = {**poster.headers, "Idempotency-Key": str(uuid.uuid4())}
        posted_at = time.time()
        status, body = await conn.request("POST", "/api/items", json.dumps(item).encode(), headers)
        await conn.close()
        if status != 201:
            raise BenchError(f"the flash was refused: {status} {body[:200]!r}")
        topic = rules.topic(json.loads(body)["id"])
        during = asyncio.create_task(_routine_posts(poster, publisher_port, routine_posts))
        deadline = time.monotonic() + seconds
        counted = await _count(sink_port, topic)
        while counted["count"] < subscriptions and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            counted = await _count(sink_port, topic)
        while_pushing = await during
        elapsed = counted["last"] - posted_at if counted["count"] else float("nan")
        sending = counted["last"] - counted["first"] if counted["count"] > 1 else float("nan")
        return {
            "subscriptions": subscriptions,
            "stored_in_seconds": round(stored_in, 2),
            "delivered": counted["count"],
            "incomplete_requests": counted["incomplete"],
            "complete": counted["count"] == subscriptions and counted["incomplete"] == 0,
            "first_after_seconds": round(counted["first"] - posted_at, 3),
            "all_after_seconds": round(elapsed, 2),
            "pushes_per_second": round(counted["count"] / sending) if sending > 0 else None,
            "post_latency_without_push": without,
            "post_latency_while_pushing": while_pushing,
        }
    finally:
        sink.stop()


def _sink_up(port: int) -> bool:
    return http_ok(port, "/count?topic=none")
