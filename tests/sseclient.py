"""A raw Server-Sent Events reader for tests: the response head and parsed events, read
from a real socket with nothing in between."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SseEvent:
    id: str | None
    event: str | None
    data: str
    comments: list[str] = field(default_factory=list)

    @property
    def message(self) -> Any:
        return json.loads(self.data)


class SseReader:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.retry: int | None = None
        self.body = b""  # for an error response

    @classmethod
    async def open(cls, port: int, target: str, headers: dict[str, str] | None = None) -> SseReader:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = [f"GET {target} HTTP/1.1", "Host: hub", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        stream = cls(reader, writer)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status_line, *header_lines = head.decode().split("\r\n")
        stream.status = int(status_line.split()[1])
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                stream.headers[name.strip().lower()] = value.strip()
        if stream.status != 200:
            size = int(stream.headers.get("content-length", "0"))
            stream.body = await asyncio.wait_for(reader.readexactly(size), 5)
        return stream

    async def next(self, timeout: float = 5.0) -> SseEvent:
        """The next event; `retry:`-only blocks are recorded and skipped."""
        while True:
            block = await asyncio.wait_for(self.reader.readuntil(b"\n\n"), timeout)
            event = SseEvent(None, None, "")
            data: list[str] = []
            for line in block.decode().split("\n"):
                if not line:
                    continue
                if line.startswith(":"):
                    event.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "retry":
                    self.retry = int(value)
                elif name == "id":
                    event.id = value
                elif name == "event":
                    event.event = value
                elif name == "data":
                    data.append(value)
            event.data = "\n".join(data)
            if data or event.id is not None or event.comments:
                return event

    async def next_event(self, timeout: float = 5.0) -> SseEvent:
        """The next change, skipping heartbeats."""
        while True:
            event = await self.next(timeout)
            if event.event != "heartbeat":
                return event

    async def ended(self, timeout: float = 5.0) -> bool:
        rest = await asyncio.wait_for(self.reader.read(), timeout)
        return rest == b""

    def close(self) -> None:
        self.writer.close()
