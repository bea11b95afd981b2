"""Webhook deliveries survive a SIGKILL of the process that makes them: run as real
`ticker` processes, on the embedded store and on a real Redis with two publishers, into a
real receiver that is slow, answers 500 and drops connections."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import httpx
from procs import TICKER, free_port, stop, ticker
from webhookreceiver import Receiver

from ticker.config import Settings

ENV = {
    "TICKER_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
    "TICKER_WEBHOOK_RETRY_BASE": "0.05",
    "TICKER_WEBHOOK_RETRY_MAX_DELAY": "0.2",
    "TICKER_WEBHOOK_CONNECT_TIMEOUT": "0.5",
    "TICKER_WEBHOOK_TIMEOUT": "1",
    "TICKER_WEBHOOK_DISABLE_AFTER": "1000",
    "TICKER_POST_RATE": "off",
}
PATTERN = ["slow", "ok", "500", "slow", "drop", "ok", "slow", "slow"]


def start(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [*TICKER, *args, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **ENV},
    )
    return process, f"http://127.0.0.1:{port}"


async def ready(base: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(base + "/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{base} never became ready")


async def post(base: str, token: str, headline: str) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        response = await http.post(
            "/api/items",
            json={"edition": "en", "headline": headline},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 201, response.text
    return response.json()


async def register(base: str, token: str, receiver: Receiver) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        response = await http.post(
            "/api/webhooks",
            json={"url": receiver.url(), "filters": {"edition": "en"}},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 201, response.text
    receiver.secrets["/hook"] = response.json()["secret"]
    return response.json()["id"]


async def flaky_receiver() -> Receiver:
    receiver = Receiver(plan=lambda n: PATTERN[n % len(PATTERN)], slow_seconds=0.15)
    await receiver.start()
    return receiver


def with_retirements(posts: int) -> int:
    """What a webhook gets for `posts` posts: each one past the cap retires the oldest."""
    return posts + max(0, posts - Settings().limits.max_live)


def assert_all_in_order(receiver: Receiver, posted: list[dict]) -> None:
    got = receiver.messages()
    # Past the cap of live items, each post retires the oldest: those come as `expired`.
    assert {m["kind"] for m in got} <= {"posted", "expired"}
    assert [m["item"]["id"] for m in got if m["kind"] == "posted"] == [p["id"] for p in posted]
    cursors = [int(m["cursor"].rpartition(":")[2]) for m in got]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    assert receiver.bad_signatures == 0
    assert receiver.most_in_flight["/hook"] == 1


async def test_a_killed_serve_resumes_its_queue_with_nothing_lost(tmp_path):
    store = ("--db", str(tmp_path / "ticker.db"))
    token = ticker("token", "create", "desk", "--role", "admin,chief", *store).stdout.strip()
    receiver = await flaky_receiver()
    serve, base = start("serve", *store, "--hub-port", "0")
    try:
        await ready(base)
        webhook_id = await register(base, token, receiver)
        listed = ticker("webhooks", "list", *store)  # beside the running server
        assert listed.returncode == 0 and listed.stdout.startswith(webhook_id)
        posted = [await post(base, token, f"alert {n}") for n in range(24)]
        await receiver.wait_for(5)
        assert len(receiver.messages()) < len(posted)
        serve.send_signal(signal.SIGKILL)
        serve.wait()
        sent_before = len(receiver.messages())

        serve, base = start("serve", *store, "--hub-port", "0")
        await ready(base)
        posted.append(await post(base, token, "after the restart"))
        await receiver.wait_for(with_retirements(len(posted)), timeout=60)
        assert sent_before < len(posted)
        assert_all_in_order(receiver, posted)
    finally:
        stop(serve)
        await receiver.close()


async def test_two_publishers_on_redis_one_killed_deliver_in_order(redis_url):
    store = ("--redis-url", redis_url)
    token = ticker("token", "create", "desk", "--role", "admin,chief", *store).stdout.strip()
    receiver = await flaky_receiver()
    first, first_url = start("publisher", *store)
    second, second_url = start("publisher", *store)
    try:
        await ready(first_url)
        await ready(second_url)
        await register(first_url, token, receiver)
        posted = [await post(first_url, token, f"alert {n}") for n in range(12)]
        await receiver.wait_for(4)
        first.send_signal(signal.SIGKILL)
        first.wait()
        # The log goes on while one publisher is dead; the other queues and delivers it,
        # taking over the lease once it expires.
        posted += [await post(second_url, token, f"more {n}") for n in range(6)]
        first, first_url = start("publisher", *store)
        await ready(first_url)
        posted += [await post(first_url, token, f"last {n}") for n in range(6)]
        await receiver.wait_for(with_retirements(len(posted)), timeout=90)
        assert_all_in_order(receiver, posted)
    finally:
        stop(first)
        stop(second)
        await receiver.close()
