"""Request bodies within their limit on every route, before they are read.

A route that takes a body (POST, PUT or PATCH) accepts at most `max_bytes`; every other
route takes none, and a body sent to it is refused. A `Content-Length` over the limit is
answered 413 without handing a byte of the body to the app (a body under 256 KiB is read
and dropped first, so a proxy that is still sending it sees the 413, not a reset); a
chunked body is cut off the moment it passes the limit. Either way the connection is
closed after the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


# A body a little over the limit is read and dropped before the 413: a proxy in front
# (nginx buffers up to its own limit, 64 KiB) is still writing it, and an answer that
# cuts it short becomes the proxy's 502 instead of our 413. Anything larger is not read,
# and no client may take more than a moment to send it.
DRAIN_MAX_BYTES = 256 * 1024
DRAIN_SECONDS = 2.0


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


class BodyTooLarge(Exception):
    """Raised from `receive` when a body passes its limit while the app reads it."""


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        routes: list[BaseRoute],
        on_refusal: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refusal = on_refusal
        self.routes = routes

    def limit(self, scope: Scope) -> int:
        """`max_bytes` for a route that takes a body, 0 for one that takes none. A request
        no route takes is held to `max_bytes`, and gets its 404 or 405."""
        for route in self.routes:
            if route.matches(scope)[0] is Match.FULL:
                takes_body = isinstance(route, Route) and scope["method"] in BODY_METHODS
                return self.max_bytes if takes_body else 0
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        declared, chunked = None, False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None and declared.isdigit() and int(declared) > limit:
            if int(declared) <= DRAIN_MAX_BYTES:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_drain(receive), DRAIN_SECONDS)
            await self.refuse(limit, send)
            return
        if declared is None and not chunked:
            await self.app(scope, receive, send)
            return

        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        if limit == 0 and chunked:
            # A route that takes no body never reads one: look at the first chunk here.
            try:
                first = await counted()
            except BodyTooLarge:
                await self.refuse(limit, send)
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return first
                return await counted()

            await self.app(scope, replay, watch)
            return
        try:
            await self.app(scope, counted, watch)
        except BodyTooLarge:
            if started:
                raise
            await self.refuse(limit, send)

    async def refuse(self, limit: int, send: Send) -> None:
        if self.on_refusal is not None:
            self.on_refusal()
        message = (
            f"the body must be at most {limit} bytes"
            if limit
            else "this route takes no request body"
        )
        body = json.dumps({"error": "too_large", "message": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
