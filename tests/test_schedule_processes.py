"""Scheduling survives the processes: a scheduled item is released exactly once after the
publisher that took it was killed, on `ticker serve` and with two publishers on one Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from procs import TICKER, free_port, read_until, stop, ticker

from ticker.brokers.embedded import EmbeddedBroker
from ticker.brokers.redis import RedisBroker


def wait_ready(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the publisher on {port} never became ready")


def schedule(port: int, token: str, headlines: list[str], seconds: float) -> list[str]:
    when = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    ids = []
    for headline in headlines:
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/items",
            json={"edition": "en", "headline": headline, "publish_at": when},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "scheduled"
        ids.append(response.json()["id"])
    return ids


def live_ids(port: int) -> set[str]:
    listing = httpx.get(f"http://127.0.0.1:{port}/api/items", params={"edition": "en"}).json()
    return {item["id"] for item in listing["items"]}


def wait_live(port: int, ids: list[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not set(ids) <= live_ids(port):
        assert time.monotonic() < deadline, "the scheduled items never went live"
        time.sleep(0.1)


async def posted_counts(broker: EmbeddedBroker | RedisBroker, ids: list[str]) -> dict[str, int]:
    await broker.start()
    try:
        state = await broker.state("en")
    finally:
        await broker.close()
    return {
        item_id: sum(1 for e in state.events if e.kind == "posted" and e.item["id"] == item_id)
        for item_id in ids
    }


def test_serve_releases_what_was_scheduled_before_it_was_killed(tmp_path: Path) -> None:
    db = str(tmp_path / "ticker.db")
    port, hub_port = free_port(), free_port()
    args = [*TICKER, "serve", "--db", db, "--port", str(port), "--hub-port", str(hub_port)]
    token = ticker("token", "create", "desk", "--db", db).stdout.strip()
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        read_until(first, "Create an editor token")
        ids = schedule(port, token, ["Embargo A", "Embargo B"], seconds=1.5)
    finally:
        stop(first, signal.SIGKILL)
    time.sleep(2.5)  # the time passes while no process runs
    again = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        read_until(again, "Create an editor token")
        wait_live(port, ids)
        time.sleep(1)  # any second release would have happened by now
    finally:
        stop(again)
    counts = asyncio.run(posted_counts(EmbeddedBroker(db, editions=("en", "ar", "es")), ids))
    assert counts == dict.fromkeys(ids, 1)


def test_two_publishers_on_one_redis_release_each_item_once(redis_url: str) -> None:
    ports = [free_port(), free_port(), free_port()]
    token = ticker("token", "create", "desk", "--redis-url", redis_url).stdout.strip()

    def publisher(port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*TICKER, "publisher", "--redis-url", redis_url, "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TICKER_POST_RATE": "off"},  # 20 posts at once
        )

    taker = publisher(ports[0])
    try:
        wait_ready(ports[0])
        ids = schedule(ports[0], token, [f"Embargo {n}" for n in range(20)], seconds=2)
    finally:
        stop(taker, signal.SIGKILL)
    others = [publisher(ports[1]), publisher(ports[2])]
    try:
        for port in ports[1:]:
            wait_ready(port)
        wait_live(ports[1], ids)
        time.sleep(1)
    finally:
        for process in others:
            stop(process)
    counts = asyncio.run(posted_counts(RedisBroker(redis_url, editions=("en", "ar", "es")), ids))
    assert counts == dict.fromkeys(ids, 1)
