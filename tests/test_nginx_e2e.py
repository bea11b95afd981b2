"""The production shape on real processes: Redis, `ticker publisher`, two `ticker hub` and
Debian's nginx running the committed deploy/nginx.conf (tests/nginxproc.py renders it with
local addresses). Readers and editors go through nginx only.

The hubs and the publisher get the environment that docker-compose.yml gives them, with
its port 8080 replaced by nginx's port here, so the compose defaults are what is tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nginxproc import Nginx
from playwright.sync_api import sync_playwright
from procs import free_port, stop
from test_deploy import compose
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from ticker.protocol import parse_server_frame

ROOT = Path(__file__).resolve().parent.parent
TICKER = [sys.executable, "-m", "ticker.cli"]
SHUTDOWN_TIMEOUT = 3.0  # worker_shutdown_timeout in the test's nginx (30 s in production)
RETRY_SECONDS = 0.2  # the test readers' reconnect delay
CHROMIUM = "/usr/bin/chromium"


def wait_for(url: str, status: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2).status_code
            if last == status:
                return
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status} (last: {last})")


def compose_env(port: int) -> dict[str, str]:
    """The ticker settings docker-compose.yml resolves, for a proxy on `port`."""
    config = compose("config")
    env = {}
    for name in ("TICKER_PUBLIC_HUB_URL", "TICKER_ALLOWED_ORIGINS", "FORWARDED_ALLOW_IPS"):
        found = re.search(rf"^\s+{name}: (.+)$", config, re.MULTILINE)
        assert found, f"docker-compose.yml sets no {name}"
        env[name] = found[1].strip("'\"").replace(":8080", f":{port}")
    return env


class Stack:
    """Processes on free ports of 127.0.0.1, with their output in log files."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.logs = Path(tempfile.mkdtemp(prefix="ticker-e2e-"))
        self.port = free_port()
        self.hub_ports = [free_port(), free_port()]
        self.nginx = Nginx(
            hubs=self.hub_ports, publisher=self.port, shutdown_timeout=f"{SHUTDOWN_TIMEOUT:g}s"
        )
        self.env = {**os.environ, **compose_env(self.nginx.port), "TICKER_POST_RATE": "off"}
        self.publisher: subprocess.Popen[bytes] | None = None
        self.hubs: list[subprocess.Popen[bytes] | None] = [None, None]
        self.token = ""

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as out:
            return subprocess.Popen(
                [*TICKER, *args, "--redis-url", self.redis_url],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def start_hub(self, index: int) -> None:
        port = self.hub_ports[index]
        self.hubs[index] = self._spawn(f"hub-{index + 1}", "hub", "--hub-port", str(port))
        wait_for(f"http://127.0.0.1:{port}/readyz", 200)

    def kill_hub(self, index: int) -> None:
        hub = self.hubs[index]
        assert hub is not None
        stop(hub, signal.SIGKILL)
        self.hubs[index] = None

    def hub_connections(self, index: int) -> int:
        text = httpx.get(f"http://127.0.0.1:{self.hub_ports[index]}/metrics", timeout=5).text
        found = re.search(r"^ticker_hub_open_connections ([0-9.]+)$", text, re.MULTILINE)
        assert found, text
        return int(float(found[1]))

    def start(self) -> None:
        self.publisher = self._spawn("publisher", "publisher", "--port", str(self.port))
        for index in range(2):
            self.start_hub(index)
        wait_for(f"http://127.0.0.1:{self.port}/readyz", 200)
        created = subprocess.run(
            [*TICKER, "token", "create", "desk", "--redis-url", self.redis_url],
            capture_output=True,
            text=True,
            timeout=30,
            env=self.env,
        )
        self.token = created.stdout.strip()
        assert created.returncode == 0 and self.token, created.stderr
        self.nginx.start()

    def close(self) -> None:
        self.nginx.close()
        for process in [self.publisher, *self.hubs]:
            if process is not None:
                stop(process, signal.SIGKILL)

    @property
    def base(self) -> str:
        return self.nginx.base

    async def post(self, http: httpx.AsyncClient, headline: str) -> str:
        response = await http.post(
            f"{self.base}/api/items",
            json={"edition": "en", "headline": headline},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]


@pytest.fixture(scope="module")
def stack(redis_server) -> Iterator[Stack]:
    redis_server.ensure_running()
    redis_server.flush()
    running = Stack(redis_server.url)
    try:
        running.start()
        yield running
    finally:
        running.close()


# --- readers that reconnect with their cursor, as the widget does ------------------------


class Reader:
    """Follows the English edition through nginx and remembers every posted item it was
    told about, in order, and when each of its connections ended."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.cursor: str | None = None
        self.posted: list[str] = []
        self.resets = 0
        self.connects = 0
        self.drops: list[float] = []  # time.monotonic() of each lost connection
        self.refusals: list[int] = []  # HTTP statuses of failed attempts
        self.live = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def take(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            if self.connects > 1 or message["reset"]:
                self.resets += 1  # a resume that failed: the test wants none
            self.posted = [item["id"] for item in reversed(message["items"])]
        elif kind == "event" and message["kind"] == "posted":
            self.posted.append(message["item"]["id"])
        if kind in ("snapshot", "resumed"):
            self.live.set()
        if "cursor" in message:
            self.cursor = message["cursor"]

    async def session(self) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        while True:
            try:
                await self.session()
            except InvalidStatus as exc:
                self.refusals.append(exc.response.status_code)
            except (OSError, TimeoutError, WebSocketException, httpx.HTTPError):
                pass
            if self.live.is_set():
                self.drops.append(time.monotonic())
            self.live.clear()
            await asyncio.sleep(RETRY_SECONDS)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class WebSocketReader(Reader):
    async def session(self) -> None:
        url = f"ws://127.0.0.1:{self.stack.nginx.port}/ws?edition=en"
        if self.cursor:
            url += f"&since={self.cursor}"
        async with connect(url, open_timeout=5, compression=None) as ws:
            self.connects += 1
            async for frame in ws:
                for message in parse_server_frame(frame):
                    self.take(message)


class EventStreamReader(Reader):
    """What EventSource does: on reconnect, the last `id:` goes back as Last-Event-ID."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.last_event_id: str | None = None
        self.content_encoding: str | None = "unset"

    async def session(self) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        timeout = httpx.Timeout(5, read=60)
        async with (
            httpx.AsyncClient(timeout=timeout) as http,
            http.stream("GET", f"{self.stack.base}/sse?edition=en", headers=headers) as response,
        ):
            if response.status_code != 200:
                self.refusals.append(response.status_code)
                return  # the widget retries on its own after any refusal
            assert response.headers["content-type"].startswith("text/event-stream")
            self.content_encoding = response.headers.get("content-encoding")
            self.connects += 1
            data: list[str] = []
            async for line in response.aiter_lines():
                if line.startswith("id:"):
                    self.last_event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif not line and data:
                    self.take(json.loads("\n".join(data)))
                    data = []


async def until(check: Callable[[], bool], timeout: float = 15, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


# --- the small things, through nginx ---------------------------------------------------


def test_the_rendered_config_is_the_committed_one_with_local_addresses(stack):
    committed = (ROOT / "deploy" / "nginx.conf").read_text()
    rendered = stack.nginx.conf.read_text()
    for directive in (
        "worker_rlimit_nofile",
        "proxy_next_upstream error timeout http_503;",
        "max_fails=1",
        "error_page 413",
        "gzip on;",
        "proxy_buffering off;",
    ):
        assert directive in committed and directive in rendered


def test_a_body_nginx_refuses_gets_the_apis_json_error(stack):
    headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"}
    by_publisher = httpx.post(
        f"{stack.base}/api/items", content=b"x" * 20_000, headers=headers, timeout=10
    )
    by_nginx = httpx.post(
        f"{stack.base}/api/items", content=b"x" * 100_000, headers=headers, timeout=10
    )
    assert by_publisher.status_code == by_nginx.status_code == 413
    assert "nginx" not in by_nginx.text
    assert by_nginx.headers["content-type"] == "application/json"
    assert (
        by_nginx.json()
        == by_publisher.json()
        == {
            "error": "too_large",
            "message": "the body must be at most 16384 bytes",
        }
    )


def test_redirects_keep_the_port(stack):
    response = httpx.get(f"{stack.base}/demo/", follow_redirects=False, timeout=10)
    assert response.is_redirect
    assert response.headers["location"] == f"{stack.base}/demo"
    assert httpx.get(f"{stack.base}/demo/", follow_redirects=True, timeout=10).status_code == 200


@pytest.mark.parametrize("name", ["widget.js", "console.css"])
def test_scripts_and_styles_are_gzipped(stack, name):
    response = httpx.get(
        f"{stack.base}/static/{name}", headers={"Accept-Encoding": "gzip"}, timeout=10
    )
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    # httpx decoded it: the same bytes the publisher serves itself (scripts and styles go
    # out without their comments), in less than half the size.
    direct = httpx.get(f"http://127.0.0.1:{stack.port}/static/{name}", timeout=10)
    assert response.content == direct.content and len(direct.content) > 1000
    assert response.num_bytes_downloaded < len(response.content) / 2


async def test_pages_on_either_local_origin_reach_the_hubs(stack):
    config = httpx.get(f"{stack.base}/api/config", timeout=10).json()
    port = stack.nginx.port
    assert config["hub_url"] == "/ws"  # the compose default: the page's own host
    for host in ("127.0.0.1", "localhost"):
        url = f"ws://{host}:{port}{config['hub_url']}?edition=en"
        page = f"http://{host}:{port}"
        async with connect(url, origin=page, compression=None, open_timeout=5) as ws:
            assert parse_server_frame(await ws.recv())[0]["type"] == "snapshot"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"ws://127.0.0.1:{port}/ws?edition=en", origin="http://elsewhere.example"
        ):
            pass
    assert refused.value.response.status_code == 403


def test_the_demo_goes_live_in_a_browser_on_either_local_origin(stack):
    """A real page: the hub URL, the page's CSP and the hubs' origin check agree."""
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: ./scripts/test installs it (apt-get install chromium)"
    )
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            for host in ("127.0.0.1", "localhost"):
                page = browser.new_page()
                page.on("console", lambda m: m.type == "error" and errors.append(m.text))
                page.goto(f"http://{host}:{stack.nginx.port}/demo")
                page.wait_for_selector("#ticker-en[data-state=live]", timeout=10_000)
                page.close()
        finally:
            browser.close()
    assert errors == []


async def test_event_streams_get_a_retry_not_an_error_when_no_hub_serves_them():
    """EventSource gives up on an error status; nginx turns "no hub" into a stream that
    ends at once, as a hub that is not ready does, and EventSource reconnects."""

    async def not_ready(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    answering = await asyncio.start_server(not_ready, "127.0.0.1", 0)
    port = answering.sockets[0].getsockname()[1]
    for hubs in ([free_port(), free_port()], [port, port]):  # nothing listens; all say 503
        nginx = Nginx(hubs=hubs, publisher=free_port())
        try:
            await asyncio.to_thread(nginx.start)
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.get(f"{nginx.base}/sse?edition=en")
                websocket = await http.get(f"{nginx.base}/ws?edition=en")
        finally:
            nginx.close()
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-store"
        assert response.text == "retry: 2000\n\n"
        assert websocket.status_code in (502, 503)  # the widget retries a failed WebSocket
    answering.close()


# --- readers across a hub's death and a proxy reload ----------------------------------


async def test_readers_get_every_item_once_across_hub_deaths_and_a_reload(stack):
    readers: list[Reader] = [WebSocketReader(stack), EventStreamReader(stack)]
    posted: list[str] = []

    def everyone_has_everything() -> bool:
        return all(r.posted == posted for r in readers)

    async def post(http: httpx.AsyncClient, n: int, label: str) -> None:
        for i in range(n):
            posted.append(await stack.post(http, f"{label} {i}"))

    for reader in readers:
        reader.start()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await until(lambda: all(r.live.is_set() for r in readers), what="readers live")
            await post(http, 3, "Before anything")
            await until(everyone_has_everything, what="the first items")
            assert readers[1].content_encoding is None  # a live stream is never gzipped

            # A hub dies with its readers on it. They come back through nginx, which sends
            # them past the dead hub, and resume from their cursor.
            victim = 0 if stack.hub_connections(0) else 1
            survivor = 1 - victim
            moved = stack.hub_connections(victim)
            assert moved >= 1
            stack.kill_hub(victim)
            await post(http, 3, "While a hub is dead")
            await until(everyone_has_everything, what="resume after the first hub died")
            assert sum(len(r.drops) for r in readers) == moved
            await until(lambda: stack.hub_connections(survivor) == len(readers), what="moved")

            # The dead hub comes back; now the other one dies, with every reader on it.
            stack.start_hub(victim)
            stack.kill_hub(survivor)
            await post(http, 3, "While the other hub is dead")
            await until(everyone_has_everything, what="resume after the second hub died")
            assert all(len(r.drops) >= 1 for r in readers)
            await until(lambda: stack.hub_connections(victim) == len(readers), what="moved")

            # A reload: the old worker keeps its readers (they still get items live) until
            # worker_shutdown_timeout, then closes them; they resume through a new worker.
            workers = len(stack.nginx.workers())
            drops = [len(r.drops) for r in readers]
            reloaded = time.monotonic()
            stack.nginx.reload()
            await post(http, 1, "Right after the reload")
            await until(everyone_has_everything, what="live through the old worker")
            if time.monotonic() - reloaded < SHUTDOWN_TIMEOUT - 0.5:
                assert [len(r.drops) for r in readers] == drops, "closed before the timeout"
            await until(
                lambda: all(len(r.drops) > d for r, d in zip(readers, drops, strict=True)),
                timeout=SHUTDOWN_TIMEOUT + 5,
                what="the old worker to close its readers",
            )
            for reader, before in zip(readers, drops, strict=True):
                assert reader.drops[before] - reloaded < SHUTDOWN_TIMEOUT + 1.5
            await until(lambda: len(stack.nginx.workers()) == workers, what="old workers to exit")
            await post(http, 3, "After the reload")
            await until(everyone_has_everything, what="resume after the reload")
            await until(lambda: all(r.live.is_set() for r in readers), what="readers live")

        for reader in readers:
            assert reader.posted == posted  # every item, once, in order
            assert reader.resets == 0
        # While no hub could be reached, nginx answered 502 to the WebSocket (the widget
        # retries) and an empty 200 stream to EventSource, which gives up on a 502.
        assert readers[1].refusals == []
    finally:
        for reader in readers:
            await reader.stop()
