"""A minimal HTTP/1.1 keep-alive client for posting items.

An HTTP library spends more CPU per request than the publisher's own handler does, and
here both share two cores. This client sends a request and reads a Content-Length
response on a kept-alive connection, and nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .wire import bench_headline

FILLER = "Talks resume"


@dataclass(frozen=True, slots=True)
class Posted:
    status: int
    seq: int
    began: float
    seconds: float
    body: dict[str, Any]


class HttpConnection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.etag: str | None = None  # of the last answer, for conditional requests

    async def open(self) -> HttpConnection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """Send once; if the server had closed the idle connection (uvicorn does after
        5 s), reopen and send again. Posts carry an Idempotency-Key, so that is safe."""
        try:
            return await self._exchange(method, path, body, headers)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            await self.open()
            return await self._exchange(method, path, body, headers)

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
        for line in response.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"etag":
                self.etag = value.strip().decode()
        return status, await self.reader.readexactly(length) if length else b""

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self.writer.wait_closed()


class Poster:
    """Posts bench items as an editor would: JSON body, bearer token, idempotency key."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
        }

    async def connect(self, count: int) -> list[HttpConnection]:
        return list(
            await asyncio.gather(
                *(HttpConnection(self.host, self.port).open() for _ in range(count))
            )
        )

    async def reopen(self, conns: list[HttpConnection]) -> None:
        """Open the connections anew: uvicorn closes one after 5 s idle, and a burst sent on
        closed ones would time reconnecting (each send fails, then opens and sends again)."""
        await asyncio.gather(*(conn.close() for conn in conns))
        await asyncio.gather(*(conn.open() for conn in conns))

    async def post(self, conn: HttpConnection, seq: int, edition: str = "en") -> Posted:
        """Post item `seq`; its headline carries the time the request started."""
        began = time.time()
        item = {
            "edition": edition,
            "headline": bench_headline(seq, began, FILLER),
            "source": "Bench wire",
            "regions": ["MENA"],
            "categories": ["Politics"],
        }
        headers = {**self.headers, "Idempotency-Key": str(uuid.uuid4())}
        status, body = await conn.request("POST", "/api/items", json.dumps(item).encode(), headers)
        seconds = time.time() - began
        return Posted(status, seq, began, seconds, json.loads(body) if body else {})
