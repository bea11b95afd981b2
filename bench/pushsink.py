"""A push service for the benchmark, in a process of its own: it answers every push with
201 Created and counts what arrived per Topic, with the times of the first and last.

It does not decrypt (tests/pushservice.py does, and checks every header and the VAPID
token): here it must only keep up. `GET /count?topic=T` answers the counts as JSON.

    python -m bench.pushsink PORT
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import uvicorn

counts: dict[str, list[float]] = {}  # topic -> [count, first, last]
missing: list[int] = [0]  # pushes without TTL, Urgency, Topic, Authorization or a body


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    if scope["method"] == "GET":
        topic = scope["query_string"].decode().partition("topic=")[2]
        count, first, last = counts.get(topic, [0, 0.0, 0.0])
        body = json.dumps(
            {"count": int(count), "first": first, "last": last, "incomplete": missing[0]}
        ).encode()
        await _answer(send, 200, body)
        return
    headers = dict(scope["headers"])
    topic = headers.get(b"topic", b"").decode()
    if not (size and topic and b"ttl" in headers and b"urgency" in headers):
        missing[0] += 1
    if not headers.get(b"authorization", b"").startswith(b"vapid t="):
        missing[0] += 1
    now = time.time()
    entry = counts.setdefault(topic, [0, now, now])
    entry[0] += 1
    entry[2] = now
    await _answer(send, 201, b"", [(b"location", b"/m")])


async def _answer(send: Any, status: int, body: bytes, headers: list | None = None) -> None:
    headers = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        interface="asgi3",
        http="httptools",
        loop="uvloop",
        backlog=4096,
        access_log=False,
    )
