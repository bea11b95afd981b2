"""A publisher, or only its delivery process, killed (SIGKILL) while pushing a flash resumes
where it stopped: every subscription gets the flash, and none that had it recorded gets it
twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from procs import TICKER, free_port, stop, ticker
from pushservice import PushService, wait_for

from ticker import config
from ticker.brokers import make_broker
from ticker.push import rules
from ticker.push.store import push_store_for

SUBSCRIBERS = 300
CONCURRENCY = 8


def delivery_process(parent: int, other_than: int | None = None) -> int:
    """The publisher's delivery process (ticker/push/process.py), once it runs."""
    for _ in range(200):
        for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
            if int(child) == other_than:
                continue
            with contextlib.suppress(FileNotFoundError):
                if b"ticker.push.process" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
        time.sleep(0.05)
    raise AssertionError("no delivery process")


def running(pid: int) -> bool:
    """Whether the process exists and has not ended (a zombie has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("victim", ["publisher", "delivery"])
@pytest.mark.parametrize("store", ["embedded", "redis"])
async def test_a_killed_publisher_resumes_and_sends_nothing_twice(
    store: str, victim: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if store == "redis":
        redis_url = request.getfixturevalue("redis_url")
        args, command = ["--redis-url", redis_url], "publisher"
    else:
        args, command = ["--db", str(tmp_path / "ticker.db")], "serve"
    service = PushService().start()
    service.delay = 0.05  # 8 in flight: about 160 a second, so the kill lands mid-flash
    settings = config.from_env(
        {}, **({"redis_url": args[1]} if store == "redis" else {}), db_path=tmp_path / "ticker.db"
    )
    env = {
        **os.environ,
        "TICKER_PUSH_ALLOW_NETWORKS": "127.0.0.0/8",
        "TICKER_PUSH_CONCURRENCY": str(CONCURRENCY),
        "TICKER_POST_RATE": "off",
    }
    try:
        made = ticker("push", "keys", "create", *args)
        assert made.returncode == 0, made.stderr
        service.vapid_public_key = made.stdout.strip()
        token = ticker("token", "create", "desk", *args).stdout.strip()
        broker = make_broker(settings)
        await broker.start()
        push = push_store_for(broker)
        for n in range(SUBSCRIBERS):
            body = service.browser(f"r{n}").subscription(edition="en")
            await push.add(
                rules.parse(body, settings.vocabulary, rules.parse_networks(["127.0.0.0/8"]))
            )

        def start() -> tuple[subprocess.Popen[bytes], str]:
            port = free_port()
            process = subprocess.Popen(
                [*TICKER, command, *args, "--port", str(port), "--hub-port", "0"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            return process, f"http://127.0.0.1:{port}"

        process, base = start()
        try:
            for _ in range(200):  # the worker has read where the log stands
                if await push.cursor("en") is not None:
                    break
                await asyncio.sleep(0.05)
            assert await push.cursor("en") is not None
            async with httpx.AsyncClient(base_url=base) as http:
                answer = await http.post(
                    "/api/items",
                    json={"edition": "en", "headline": "Flash", "urgency": 1},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert answer.status_code == 201, answer.text
            delivering = delivery_process(process.pid)
            await wait_for(lambda: len(service.delivered) >= 60, 20)
            holder = await push._r.get(push._lease) if store == "redis" else None
            if victim == "publisher":
                process.send_signal(signal.SIGKILL)
                process.wait(10)
            else:
                os.kill(delivering, signal.SIGKILL)
            killed = time.time()
            before = {d.name for d in service.delivered if d.at < killed - 0.5}
            count_at_kill = len(service.delivered)
            assert count_at_kill < SUBSCRIBERS  # killed mid-flash

            if victim == "publisher":
                # Its delivery process sees its input end, and stops.
                await wait_for(lambda: not running(delivering), 10)
                process, base = start()
            else:  # the publisher starts a new one, which takes over once the lease ends
                delivery_process(process.pid, other_than=delivering)
            names = {f"r{n}" for n in range(SUBSCRIBERS)}
            await wait_for(lambda: names <= {d.name for d in service.delivered}, 60)
            if victim == "delivery" and store == "redis":
                # The publisher's next delivery process holds the lease under the same name,
                # so it goes on at once instead of waiting 15 s for the lease to run out.
                assert holder is not None
                assert await push._r.get(push._lease) == holder
            await asyncio.sleep(0.5)
        finally:
            stop(process, signal.SIGKILL)
            await broker.close()
        counts: dict[str, int] = {}
        for delivery in service.delivered:
            counts[delivery.name] = counts.get(delivery.name, 0) + 1
        twice = {name for name, n in counts.items() if n > 1}
        assert not twice & before  # recorded successes are never sent again
        assert len(twice) <= 2 * CONCURRENCY  # only what was in flight at the kill
        assert set(counts) == names
        assert service.problems == []
    finally:
        service.stop()
