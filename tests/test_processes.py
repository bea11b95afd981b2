"""`ticker publisher` and `ticker hub` as separate processes on Redis, as in production."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import time

import httpx
from procs import TICKER, free_port, stop, ticker

from stack import Client


def wait_for(url: str, status: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2).status_code
            if last == status:
                return
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status} (last: {last})")


async def post(port: int, token: str, edition: str, headline: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"http://127.0.0.1:{port}/api/items",
            json={"edition": edition, "headline": headline},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 201, response.text


async def test_processes_start_before_redis_and_serve_once_it_is_up(redis_server):
    redis_server.ensure_running()
    redis_server.flush()
    redis_server.stop()
    port, hub_port = free_port(), free_port()
    env_args = ["--redis-url", redis_server.url]
    publisher = subprocess.Popen(
        [*TICKER, "publisher", *env_args, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    hub = subprocess.Popen(
        [*TICKER, "hub", *env_args, "--hub-port", str(hub_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", 503)
        wait_for(f"http://127.0.0.1:{hub_port}/readyz", 503)
        redis_server.start()
        wait_for(f"http://127.0.0.1:{port}/readyz", 200)
        wait_for(f"http://127.0.0.1:{hub_port}/readyz", 200)

        token = ticker("token", "create", "desk", *env_args).stdout.strip()
        async with Client.connect(f"ws://127.0.0.1:{hub_port}/ws?edition=es") as client:
            assert (await client.next())["items"] == []
            await post(port, token, "es", "Última hora: acuerdo en Ginebra")
            event = await client.next_event()
            assert event["item"]["headline"] == "Última hora: acuerdo en Ginebra"

            hub.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert await asyncio.to_thread(hub.wait, 10) == 0
            assert time.monotonic() - started < 6
    finally:
        for process in (publisher, hub):
            stop(process)
        redis_server.ensure_running()


def scrape(hub_port: int) -> dict[str, str]:
    text = httpx.get(f"http://127.0.0.1:{hub_port}/metrics", timeout=5).text
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))


async def test_hub_workers_share_the_port_and_all_deliver(redis_url):
    port, hub_port = free_port(), free_port()
    args = ["--redis-url", redis_url]
    publisher = subprocess.Popen(
        [*TICKER, "publisher", *args, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    hub = subprocess.Popen(
        [*TICKER, "hub", *args, "--hub-port", str(hub_port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", 200)
        wait_for(f"http://127.0.0.1:{hub_port}/readyz", 200)
        token = ticker("token", "create", "desk", *args).stdout.strip()
        url = f"ws://127.0.0.1:{hub_port}/ws?edition=en"
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(Client.connect(url)) for _ in range(24)]
            for client in clients:
                await client.next()
            seen: dict[str, int] = {}
            for _ in range(40):  # each scrape lands on one worker
                samples = scrape(hub_port)
                for key, value in samples.items():
                    if key.startswith("ticker_hub_open_connections{"):
                        seen[key] = int(float(value))
            assert set(seen) == {
                'ticker_hub_open_connections{worker="0"}',
                'ticker_hub_open_connections{worker="1"}',
            }
            assert sum(seen.values()) == 24 and min(seen.values()) > 0
            await post(port, token, "en", "To every worker")
            for client in clients:
                assert (await client.next_event())["item"]["headline"] == "To every worker"
            hub.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(hub.wait, 10) == 0
    finally:
        for process in (publisher, hub):
            stop(process, signal.SIGKILL)


async def test_publisher_workers_share_the_port(redis_url):
    port = free_port()
    args = ["--redis-url", redis_url]
    publisher = subprocess.Popen(
        [*TICKER, "publisher", *args, "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", 200)
        children = subprocess.run(
            ["pgrep", "-P", str(publisher.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 2
        token = ticker("token", "create", "desk", *args).stdout.strip()
        for n in range(10):
            await post(port, token, "en", f"Item {n}")
        listing = httpx.get(f"http://127.0.0.1:{port}/api/items", params={"edition": "en"})
        assert len(listing.json()["items"]) == 10
        publisher.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(publisher.wait, 10) == 0
    finally:
        stop(publisher, signal.SIGKILL)


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(child) for child in found.split()]


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its reaper does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_hub_workers_stop_when_their_supervisor_is_killed(redis_url):
    hub_port = free_port()
    hub = subprocess.Popen(
        [*TICKER, "hub", "--redis-url", redis_url, "--hub-port", str(hub_port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        wait_for(f"http://127.0.0.1:{hub_port}/readyz", 200)
        workers = children(hub.pid)
        assert len(workers) == 2
        hub.kill()  # SIGKILL: the supervisor gets no chance to stop anyone
        hub.wait()
        deadline = time.monotonic() + 5
        while any(running(pid) for pid in workers):
            assert time.monotonic() < deadline, "workers outlived their supervisor"
            await asyncio.sleep(0.05)
    finally:
        stop(hub, signal.SIGKILL)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_hub_worker_that_cannot_start_stops_the_supervisor(redis_url):
    """Another program holds the hub port without SO_REUSEPORT: every worker fails to bind.
    The supervisor tries a few times, with pauses, then stops and says why."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [*TICKER, "hub", "--redis-url", redis_url, "--hub-port", str(port), "--workers", "2"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert time.monotonic() - started < 45
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"ticker: hub worker [01] exited with code 1, 5 times in a row within 5 s of "
        r"starting; stopping all workers",
        last,
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr or "address" in result.stderr
