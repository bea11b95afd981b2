"""One push message on the wire: encrypted for the browser (RFC 8291, aes128gcm, by
`http_ece`), signed for the push service (RFC 8292 VAPID, by `py_vapid`), sent with an async
HTTP client (RFC 8030). The cryptography is the libraries'; this module only wires it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from . import rules
from .store import VapidKeys

JWT_SECONDS = 12 * 3600  # push services accept at most 24 h (RFC 8292 section 2)
JWT_RENEW = 3600  # a token with less than this left is signed again
RESOLVE_SECONDS = 60.0

Outcome = Literal["sent", "gone", "retry", "failed", "refused"]


def new_keys() -> VapidKeys:
    """A fresh P-256 key pair for VAPID."""
    vapid = Vapid02()
    vapid.generate_keys()
    return VapidKeys(
        private_pem=vapid.private_pem().decode(),
        public_key=public_key_of(vapid),
        created=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )


def public_key_of(vapid: Vapid02) -> str:
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Signer:
    """VAPID `Authorization` headers, one per push-service origin, signed once and reused
    for JWT_SECONDS, so signing is not a per-message cost."""

    def __init__(self, keys: VapidKeys, contact: str) -> None:
        self.vapid = Vapid02.from_pem(keys.private_pem.encode())
        self.contact = contact
        self._cache: dict[str, tuple[str, float]] = {}

    def authorization(self, origin: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        cached = self._cache.get(origin)
        if cached is not None and cached[1] - now > JWT_RENEW:
            return cached[0]
        expires = int(now) + JWT_SECONDS
        header = self.vapid.sign({"aud": origin, "exp": expires, "sub": self.contact})
        self._cache[origin] = (header["Authorization"], expires)
        return header["Authorization"]


def encrypt(body: bytes, p256dh: str, auth: str) -> bytes:
    """aes128gcm with a fresh sender key and salt per message, as RFC 8291 requires."""
    return http_ece.encrypt(
        body,
        salt=os.urandom(16),
        private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=rules.b64decode(p256dh),
        auth_secret=rules.b64decode(auth),
        version="aes128gcm",
    )


def origin_of(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    status: int = 0
    retry_after: float | None = None
    detail: str = ""


class Resolver:
    """Checks that a push endpoint's host resolves only to allowed addresses, right before
    sending (a name that pointed outside when the reader subscribed may point inside
    now). Answers are kept for a minute, so a flash to many readers of one push service
    costs one lookup."""

    def __init__(self, allowed: tuple[rules.Network, ...]) -> None:
        self.allowed = allowed
        self._cache: dict[str, tuple[bool, float]] = {}

    async def allowed_host(self, host: str, port: int) -> bool:
        now = time.monotonic()
        cached = self._cache.get(host)
        if cached is not None and now - cached[1] < RESOLVE_SECONDS:
            return cached[0]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            ok = False
        else:
            ok = bool(infos) and all(
                rules.address_allowed(str(info[4][0]), self.allowed) for info in infos
            )
        self._cache[host] = (ok, now)
        return ok


class Sender:
    """Sends one message to one subscription and says what became of it."""

    def __init__(
        self,
        signer: Signer,
        resolver: Resolver,
        *,
        concurrency: int = 64,
        timeout: float = 10.0,
        verify: Any = True,
    ) -> None:
        self.signer = signer
        self.resolver = resolver
        self.client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, ssl=verify),
            timeout=aiohttp.ClientTimeout(total=timeout),
            trust_env=False,
        )

    async def close(self) -> None:
        await self.client.close()

    async def send(
        self,
        subscription: rules.Subscription,
        body: bytes,
        *,
        ttl: int,
        urgency: str,
        topic: str,
    ) -> Result:
        parts = urlsplit(subscription.endpoint)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if not await self.resolver.allowed_host(host, port):
            return Result("refused", detail=f"{host} resolves to an address that is not allowed")
        headers = {
            "TTL": str(ttl),
            "Urgency": urgency,
            "Topic": topic,
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": self.signer.authorization(origin_of(subscription.endpoint)),
        }
        payload = encrypt(body, subscription.p256dh, subscription.auth)
        try:
            async with self.client.post(
                subscription.endpoint, data=payload, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                detail = (await response.text(errors="replace"))[:200] if status >= 300 else ""
                wait = response.headers.get("retry-after")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Result("retry", detail=f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return Result("sent", status)
        if status in (404, 410):
            return Result("gone", status)
        if status == 429 or status >= 500:
            return Result("retry", status, rules.retry_after(wait, time.time()))
        return Result("failed", status, detail=detail)
