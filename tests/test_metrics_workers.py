"""Every worker's metrics can be scraped: `ticker publisher --workers 2` adds up all of its
workers (and their Web Push delivery processes) at /metrics; `ticker hub --workers 2`
answers for worker N on its own port."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time

import httpx
from procs import TICKER, free_port, stop, ticker
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families
from pushservice import PushService
from test_processes import wait_for

from stack import Client
from ticker import config
from ticker.brokers import make_broker
from ticker.push import rules
from ticker.push.store import push_store_for


def parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_publisher_workers_are_added_up_at_metrics(redis_url, tmp_path):
    port = free_port()
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"")  # left by an earlier run: wiped at start
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    publisher = subprocess.Popen(
        [*TICKER, "publisher", "--redis-url", redis_url, "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", 200)
        before = parsed(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        key = (
            "ticker_publisher_requests_total",
            (("method", "GET"), ("route", "/healthz"), ("status", "200")),
        )
        # A new connection each time: the kernel spreads them over both workers.
        for _ in range(40):
            with httpx.Client(timeout=5) as http:
                assert http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        for _ in range(10):  # whichever worker answers, the totals are the same
            with httpx.Client(timeout=5) as http:
                response = http.get(f"http://127.0.0.1:{port}/metrics")
            after = parsed(response.text)
            assert after[key] - before.get(key, 0.0) == 40
            assert after[("ticker_publisher_workers", ())] == 2
        # Both workers served some of them, each counting in a file of its own.
        files = sorted(shared.glob("counter_*.db"))
        assert len(files) == 2
        served = []
        for n, file in enumerate(files):
            alone = tmp_path / f"worker{n}"
            alone.mkdir()
            shutil.copy(file, alone)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=str(alone))
            served.append(parsed(generate_latest(registry).decode()).get(key, 0.0))
        assert all(served) and sum(served) == after[key]
    finally:
        assert stop(publisher) == 0
    assert not list(shared.glob("gauge_livesum_*.db"))  # the stopped workers left the sum


async def test_push_counters_of_the_delivery_processes_are_added_up(redis_url, tmp_path):
    """With `--workers 2` each worker starts a delivery process; they count in the shared
    folder, and /metrics adds them up with the workers' own counts."""
    service = PushService().start()
    shared = tmp_path / "metrics"
    shared.mkdir()
    store = ("--redis-url", redis_url)
    made = ticker("push", "keys", "create", *store)
    assert made.returncode == 0, made.stderr
    service.vapid_public_key = made.stdout.strip()
    token = ticker("token", "create", "desk", *store).stdout.strip()
    broker = make_broker(config.from_env({}, redis_url=redis_url))
    await broker.start()
    allowed = rules.parse_networks(["127.0.0.0/8"])
    for name in ("reader", "gone"):
        body = service.browser(name).subscription(edition="en")
        await push_store_for(broker).add(rules.parse(body, config.Vocabulary(), allowed))
    await broker.close()
    service.script("gone", (410, {}))
    port = free_port()
    publisher = subprocess.Popen(
        [*TICKER, "publisher", *store, "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(shared),
            "TICKER_PUSH_ALLOW_NETWORKS": "127.0.0.0/8",
        },
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", 200)
        posted = httpx.post(
            f"http://127.0.0.1:{port}/api/items",
            json={"edition": "en", "headline": "Counted once", "urgency": 1},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert posted.status_code == 201, posted.text
        sent = ("ticker_push_sent_total", (("kind", "posted"),))
        removed = ("ticker_push_removed_total", ())
        for _ in range(300):
            with httpx.Client(timeout=5) as http:
                after = parsed(http.get(f"http://127.0.0.1:{port}/metrics").text)
            if after.get(sent) and after.get(removed):
                break
            time.sleep(0.05)
        assert (after[sent], after[removed]) == (1, 1)  # one delivery process sent it
        assert after[("ticker_push_queue_depth", ())] == 0
        assert len(service.messages("reader")) == 1
    finally:
        assert stop(publisher) == 0
        service.stop()
    assert service.problems == []
    assert not list(shared.glob("gauge_livesum_*.db"))  # the delivery processes left too


async def test_hub_workers_answer_metrics_on_their_own_ports(redis_url):
    hub_port, metrics_port = free_port(), free_port()
    while metrics_port + 1 == hub_port:
        metrics_port = free_port()
    hub = subprocess.Popen(
        [*TICKER, "hub", "--redis-url", redis_url, "--hub-port", str(hub_port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TICKER_HUB_METRICS_PORT": str(metrics_port)},
    )
    try:
        for port in (hub_port, metrics_port, metrics_port + 1):
            wait_for(f"http://127.0.0.1:{port}/readyz", 200)
        url = f"ws://127.0.0.1:{hub_port}/ws?edition=en"
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(Client.connect(url)) for _ in range(20)]
            for client in clients:
                await client.next()
            open_total = 0.0
            for worker in (0, 1):
                text = httpx.get(f"http://127.0.0.1:{metrics_port + worker}/metrics").text
                samples = parsed(text)
                labels = (("worker", str(worker)),)
                open_total += samples[("ticker_hub_open_connections", labels)]
                assert ("ticker_hub_connections_total", labels) in samples
            assert open_total == 20
    finally:
        assert stop(hub) == 0
