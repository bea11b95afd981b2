"""A push service for tests (RFC 8030), on a free loopback port, in a thread of its own.

It checks what a real one checks, and more: the VAPID JWT (RFC 8292: ES256 signature by
the `k` key, `aud` = this origin, `exp` at most 24 h ahead, `sub` present), the TTL,
Urgency and Topic headers, and it decrypts each message (RFC 8291, aes128gcm) with the
subscription's private key. It refuses a message over 4096 bytes with 413, as real ones do
(RFC 8030 section 7.2), and answers 201 Created with a Location, or what a test scripts for
an endpoint: 429 with Retry-After, 500, 404, 410. It counts the requests in flight.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import http_ece
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """A browser's side of one subscription: its keys, as PushManager.subscribe makes them."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64(raw)

    def subscription(self, **choices: Any) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": b64(self.auth)},
            **choices,
        }


@dataclass
class Delivery:
    name: str
    headers: dict[str, str]
    message: dict[str, Any]
    at: float


class PushService:
    def __init__(self, vapid_public_key: str | None = None) -> None:
        self.vapid_public_key = vapid_public_key
        self.browsers: dict[str, Browser] = {}
        self.delivered: list[Delivery] = []
        self.problems: list[str] = []
        self.attempts: dict[str, int] = defaultdict(int)
        self.scripts: dict[str, deque[tuple[int, dict[str, str]]]] = defaultdict(deque)
        self.decrypt = True
        self.delay = 0.0  # seconds before each answer: a slow push service
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def browser(self, name: str) -> Browser:
        browser = Browser(f"{self.origin}/push/{name}")
        self.browsers[name] = browser
        return browser

    def script(self, name: str, *answers: tuple[int, dict[str, str]]) -> None:
        """The next answers for this endpoint, before it goes back to 201."""
        self.scripts[name].extend(answers)

    def messages(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [d.message for d in self.delivered if d.name == name]

    def start(self) -> PushService:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="warning", interface="asgi3"
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the push service did not start"
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender died mid-request: nothing was delivered
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            with self.lock:
                self.in_flight -= 1
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        name = scope["path"].rsplit("/", 1)[-1]
        status, extra = self._answer(scope["method"], name, headers, body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in extra.items()],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    def _answer(
        self, method: str, name: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str]]:
        with self.lock:
            self.attempts[name] += 1
            if self.scripts[name]:
                return self.scripts[name].popleft()
        problem = self._check(method, headers)
        if problem is None and len(body) > 4096:
            with self.lock:
                self.problems.append(f"a message of {len(body)} bytes")
            return 413, {}
        message: dict[str, Any] = {}
        if problem is None and self.decrypt:
            browser = self.browsers.get(name)
            if browser is None:
                return 404, {}
            try:
                plain = http_ece.decrypt(
                    body, private_key=browser.key, auth_secret=browser.auth, version="aes128gcm"
                )
                message = json.loads(plain)
            except Exception as exc:  # the test fails on any problem recorded
                problem = f"cannot decrypt: {exc!r}"
        if problem is not None:
            with self.lock:
                self.problems.append(problem)
            return 400, {}
        with self.lock:
            self.delivered.append(Delivery(name, headers, message, time.time()))
            count = len(self.delivered)
        return 201, {"location": f"{self.origin}/message/{count}"}

    def _check(self, method: str, headers: dict[str, str]) -> str | None:
        if method != "POST":
            return f"method {method}"
        ttl = headers.get("ttl", "")
        if not ttl.isdigit():
            return f"TTL {ttl!r}"
        if headers.get("urgency") not in ("very-low", "low", "normal", "high"):
            return f"Urgency {headers.get('urgency')!r}"
        topic = headers.get("topic")
        if topic is not None and not TOPIC.fullmatch(topic):
            return f"Topic {topic!r}"
        if headers.get("content-encoding") != "aes128gcm":
            return f"Content-Encoding {headers.get('content-encoding')!r}"
        return self._check_vapid(headers.get("authorization", ""))

    def _check_vapid(self, header: str) -> str | None:
        match = re.fullmatch(r"vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)", header)
        if match is None:
            return f"Authorization {header[:40]!r}"
        token, k = match.groups()
        if self.vapid_public_key is not None and k != self.vapid_public_key:
            return "k is not the service's public key"
        try:
            head, claims, signature = token.split(".")
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(k))
            raw = unb64(signature)
            der = encode_dss_signature(
                int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            )
            key.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
            header_json = json.loads(unb64(head))
            payload = json.loads(unb64(claims))
        except Exception as exc:
            return f"bad VAPID token: {exc!r}"
        if header_json.get("alg") != "ES256" or len(raw) != 64:
            return f"JWT alg {header_json.get('alg')!r}"
        if payload.get("aud") != self.origin:
            return f"aud {payload.get('aud')!r}"
        exp = payload.get("exp")
        now = time.time()
        if not isinstance(exp, int) or not now < exp <= now + 24 * 3600:
            return f"exp {exp!r}"
        if not payload.get("sub"):
            return "no sub"
        return None


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
