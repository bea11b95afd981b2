"""A running ticker for tests: broker, hub and publisher on free ports, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from ticker import config
from ticker.auth import create_token
from ticker.brokers import make_broker
from ticker.brokers.base import Broker
from ticker.hub import Hub
from ticker.protocol import parse_server_frame
from ticker.publisher import create_app


def settings_for(tmp_path: Path, redis_url: str | None = None, **overrides: Any) -> config.Settings:
    settings = config.from_env(
        {},
        db_path=tmp_path / "ticker.db",
        redis_url=redis_url,
        hub_port=0,
        port=0,
        allowed_origins=("http://news.example",),
        # The suite posts in bursts far above an editor's pace; tests of the limit set it.
        post_rate="off",
    )
    limits = overrides.pop("limits", {})
    return replace(settings, limits=replace(settings.limits, **limits), **overrides)


class Publisher:
    """The publisher app under a real uvicorn on a free port."""

    def __init__(self, settings: config.Settings, broker: Broker, own_broker: bool) -> None:
        app = create_app(settings, broker, own_broker=own_broker)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=0,
                ws="none",
                lifespan="on",
                log_level="warning",
                timeout_graceful_shutdown=2,
            )
        )
        self.server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task:
            await self.task


class Stack:
    """Broker + hub + publisher in this process, as `ticker serve` runs them."""

    def __init__(self, tmp_path: Path, redis_url: str | None = None, **overrides: Any) -> None:
        self.settings = settings_for(tmp_path, redis_url, **overrides)
        self.broker = make_broker(self.settings)
        self.hub = Hub(self.settings, self.broker)
        self.publisher = Publisher(self.settings, self.broker, own_broker=False)
        self.http: httpx.AsyncClient
        self.token = ""

    async def __aenter__(self) -> Stack:
        await self.broker.start()
        await self.hub.start(port=0)
        base = await self.publisher.start()
        self.http = httpx.AsyncClient(base_url=base, timeout=10)
        self.token = await create_token(self.broker.tokens, "desk")
        await asyncio.wait_for(self.hub.ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        await self.publisher.stop()
        await self.hub.stop()
        await self.broker.close()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def ws_url(self, **params: str) -> str:
        return hub_url(self.hub, **params)

    async def post(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("edition", "en")
        response = await self.http.post("/api/items", json=fields, headers=self.auth)
        assert response.status_code == 201, response.text
        return response.json()

    async def correct(self, item_id: str, **fields: Any) -> dict[str, Any]:
        response = await self.http.patch(f"/api/items/{item_id}", json=fields, headers=self.auth)
        assert response.status_code == 200, response.text
        return response.json()

    async def withdraw(self, item_id: str) -> dict[str, Any]:
        response = await self.http.delete(f"/api/items/{item_id}", headers=self.auth)
        assert response.status_code == 200, response.text
        return response.json()


def hub_url(hub: Hub, **params: str) -> str:
    params.setdefault("edition", "en")
    return f"ws://127.0.0.1:{hub.port}/ws?{urlencode(params)}"


class Client:
    """A real WebSocket client that reads the hub's frames as a flat list of messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.buffer: list[dict[str, Any]] = []
        self.cursor: str | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, **kwargs: Any) -> Any:
        async with connect(url, compression=None, **kwargs) as ws:
            yield cls(ws)

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        while not self.buffer:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            self.buffer.extend(parse_server_frame(frame))
        message = self.buffer.pop(0)
        if "cursor" in message:
            self.cursor = message["cursor"]
        return message

    async def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next event, skipping heartbeats."""
        while True:
            message = await self.next(timeout)
            if message["type"] != "heartbeat":
                return message

    async def expect_silence(self, seconds: float = 0.3) -> None:
        with contextlib.suppress(TimeoutError):
            message = await self.next(seconds)
            raise AssertionError(f"expected nothing, got {json.dumps(message)[:200]}")
