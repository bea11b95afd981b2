"""A real HTTP receiver of webhooks on a free loopback port, for tests.

It verifies every request's signature with the `standardwebhooks` library, as a partner
would, and deduplicates by `webhook-id`. It can be made slow, answer 500 or drop the
connection without an answer, by a plan the test chooses per request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

# What to do with the n-th request (counted from 0): "ok", "slow", "500", "drop" (close
# without an answer), "lost" (handle the message, then close without an answer: the sender
# cannot know it arrived), "hang" (no answer for 5 s), "redirect" (302 to /elsewhere).
Plan = Callable[[int], str]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    verified: bool
    action: str


@dataclass
class Receiver:
    plan: Plan = lambda n: "ok"  # noqa: E731
    slow_seconds: float = 0.3
    secrets: dict[str, str] = field(default_factory=dict)  # path -> whsec_ secret
    requests: list[Request] = field(default_factory=list)
    delivered: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # path -> messages
    seen: set[tuple[str, str]] = field(default_factory=set)  # (path, webhook-id) handled
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)
    total_in_flight: int = 0
    most_in_flight_total: int = 0  # across every path: every webhook of a process
    bad_signatures: int = 0
    duplicates_handled: int = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    def messages(self, path: str = "/hook") -> list[dict[str, Any]]:
        return self.delivered.get(path, [])

    async def wait_for(self, count: int, path: str = "/hook", timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages(path)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.messages(path))} of {count} messages arrived")
            await asyncio.sleep(0.05)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            path = request_line.split(" ")[1]
            headers = {}
            for line in lines:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            await self._answer(path, headers, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(
        self, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        action = self.plan(len(self.requests))
        verified = True
        try:
            Webhook(self.secrets[path]).verify(body, headers)
        except (WebhookVerificationError, KeyError, ValueError):
            verified = False
            self.bad_signatures += 1
        self.requests.append(Request(path, headers, body, time.time(), verified, action))
        self.in_flight[path] = self.in_flight.get(path, 0) + 1
        self.most_in_flight[path] = max(self.most_in_flight.get(path, 0), self.in_flight[path])
        self.total_in_flight += 1
        self.most_in_flight_total = max(self.most_in_flight_total, self.total_in_flight)
        try:
            if action == "drop":
                writer.transport.abort()
                return
            if action == "slow":
                await asyncio.sleep(self.slow_seconds)
            if action == "hang":
                await asyncio.sleep(5)
                return
            if action == "redirect":
                writer.write(
                    b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
                )
                await writer.drain()
                return
            if not verified:
                status = 400
            elif action == "500":
                status = 500
            else:
                status = 204
                key = (path, headers["webhook-id"])
                if key in self.seen:
                    self.duplicates_handled += 1  # handled once: a repeat is only answered
                else:
                    self.seen.add(key)
                    self.delivered.setdefault(path, []).append(json.loads(body))
                if action == "lost":
                    writer.transport.abort()
                    return
            reason = {204: "No Content", 400: "Bad Request", 500: "Server Error"}[status]
            text = b"" if status == 204 else b"nope"
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(text)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + text
            )
            await writer.drain()
        finally:
            self.in_flight[path] -= 1
            self.total_in_flight -= 1
