"""Server-Sent Events: the live ticker for readers whose network breaks WebSockets.

`GET /sse?edition=en[&region=…][&category=…][&since=…]` on the hub's port. The subscription
rules, resume and reset are the WebSocket's; only the framing differs. Every message goes
out as one event whose `id:` is its cursor, `event:` its type and `data:` the very JSON a
WebSocket reader gets, so EventSource's automatic reconnection sends the last cursor back
as `Last-Event-ID` and resumes exactly.

A group of streams shares its frames like any other group: each message is framed once per
group, whatever the number of readers.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus

from .. import protocol
from ..config import Settings
from ..events import Cursor
from ..fanout import WireFormat
from ..protocol import CloseCode, ProtocolError, Subscription

RETRY_MS = 2000  # EventSource waits this long before reconnecting on its own
_TYPE = re.compile(rb'^\{"type":"([a-z]+)"')
_CURSOR = re.compile(rb'"cursor":"([^"]*)"')
_LAST_EVENT_ID_MAX = 64


def sse_event(message: bytes) -> bytes:
    """One message as an event. Messages are compact JSON, so never hold a line break."""
    kind = _TYPE.match(message)
    cursor = _CURSOR.search(message)
    head = b""
    if kind is not None and kind[1] == b"heartbeat":
        head = b": heartbeat\n"  # a comment line: proxies see traffic, parsers skip it
    if cursor is not None:
        head += b"id: " + cursor[1] + b"\n"
    if kind is not None:
        head += b"event: " + kind[1] + b"\n"
    return head + b"data: " + message + b"\n\n"


def _frame(messages: list[bytes]) -> bytes:
    return b"".join(sse_event(m) for m in messages)


SSE = WireFormat("sse", _frame)


def closing_event(code: int, reason: str) -> bytes:
    """The last event of a stream that the hub ends: the WebSocket close code and reason.
    EventSource reconnects after a closed stream on its own, with its last cursor."""
    body = json.dumps(
        {"type": "close", "code": code, "reason": reason}, separators=(",", ":")
    ).encode()
    return b"event: close\ndata: " + body + b"\n\n"


def parse_request(
    query: str, last_event_id: str | None, settings: Settings
) -> tuple[Subscription, Cursor | None]:
    """The subscription and the cursor to resume from. `Last-Event-ID` wins over `since`:
    EventSource reconnects to the URL it started with, whose `since` is old by then, and
    sends the cursor of the last event it saw in that header."""
    subscription, since = protocol.parse_query(query, settings.vocabulary)
    if last_event_id:
        if len(last_event_id) > _LAST_EVENT_ID_MAX:
            raise ProtocolError(CloseCode.BAD_REQUEST, "Last-Event-ID is not a cursor")
        since = protocol.cursor_from(last_event_id)
    return subscription, since


def allowed_origin(
    origin: str | None, origins: list[str | None] | None, host: str | None = None
) -> tuple[bool, str | None]:
    """Whether a page from `origin` may read the feed, and the CORS header to send, given
    `Settings.origins()` (read once by the endpoint). A page from the very host it asks
    (one proxy in front of publisher and hubs) is the hub's own origin, so no list needs
    to name it."""
    if origin is None:
        return True, None  # not a browser page: no CORS involved
    if origins is None:
        return True, "*"
    if origin in origins or (host is not None and same_host(origin, host)):
        return True, origin
    return False, origin


def same_host(origin: str, host: str) -> bool:
    """`https://news.example:8443` against a Host header of `news.example:8443`."""
    scheme, sep, rest = origin.partition("://")
    return bool(sep) and scheme in ("http", "https") and rest.lower() == host.strip().lower()


def response_head(cors_origin: str | None) -> bytes:
    """The 200 that opens a stream, and the reconnection delay."""
    lines = [
        "HTTP/1.1 200 OK",
        "Content-Type: text/event-stream; charset=utf-8",
        "Cache-Control: no-store",
        "X-Accel-Buffering: no",  # nginx: pass each event on at once
        "Connection: close",  # the stream ends when the connection does
    ]
    if cors_origin is not None:
        lines.append(f"Access-Control-Allow-Origin: {cors_origin}")
        if cors_origin != "*":
            lines.append("Vary: Origin")
    return ("\r\n".join(lines) + f"\r\n\r\nretry: {RETRY_MS}\n\n").encode()


def error_response(
    status: HTTPStatus, reason: str, cors_origin: str | None, *, retry_after: int | None = None
) -> bytes:
    """A refusal with the reason in words: EventSource gives up on anything but a 200."""
    body = (reason + "\n").encode()
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if retry_after is not None:
        lines.append(f"Retry-After: {retry_after}")
    if cors_origin is not None:
        lines.append(f"Access-Control-Allow-Origin: {cors_origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
