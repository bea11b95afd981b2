"""PublisherClient against a real HTTP server that fails on purpose."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ticker.api_client import ApiError, PublisherClient, Unreachable


class Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next (status, body) of the server's script and
    records what it was sent."""

    def do_POST(self) -> None:  # noqa: N802 (the http.server convention)
        server = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server.seen.append((dict(self.headers), json.loads(body)))  # type: ignore[attr-defined]
        status, answer = server.script.pop(0)  # type: ignore[attr-defined]
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def publisher(script: list[tuple[int, dict]]) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.script = list(script)  # type: ignore[attr-defined]
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def client_for(server: ThreadingHTTPServer, **options: object) -> PublisherClient:
    host, port = server.server_address[:2]
    return PublisherClient(f"http://{host}:{port}/", "tkr_desk", sleep=lambda s: None, **options)


UNAVAILABLE = (503, {"error": "unavailable", "message": "the ticker store is unreachable"})


def test_a_post_is_retried_under_one_idempotency_key():
    item = {"id": "en-1", "version": 1}
    retries: list[str] = []
    with publisher([UNAVAILABLE, UNAVAILABLE, (201, item)]) as server:
        client = client_for(server, on_retry=retries.append)
        assert client.post_item("en", "Flash", urgency=1, source=None) == item
    sent = server.seen  # type: ignore[attr-defined]
    assert len(sent) == 3 and len(retries) == 2
    keys = {headers["Idempotency-Key"] for headers, _ in sent}
    assert len(keys) == 1 and len(keys.pop()) >= 32
    assert all(headers["Authorization"] == "Bearer tkr_desk" for headers, _ in sent)
    assert sent[0][1] == {"edition": "en", "headline": "Flash", "urgency": 1}


def test_a_refusal_is_not_retried():
    refusal = (422, {"error": "invalid", "message": "headline must not be empty"})
    with publisher([refusal]) as server, pytest.raises(ApiError) as raised:
        client_for(server).post_item("en", "")
    assert (raised.value.status, raised.value.error) == (422, "invalid")
    assert raised.value.message == "headline must not be empty"
    assert len(server.seen) == 1  # type: ignore[attr-defined]


def test_giving_up_after_the_last_attempt():
    with publisher([UNAVAILABLE] * 3) as server, pytest.raises(Unreachable):
        client_for(server, attempts=3).post_item("en", "Flash")
    assert len(server.seen) == 3  # type: ignore[attr-defined]
