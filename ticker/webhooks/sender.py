"""One signed POST to a webhook's URL, over a connection to an address that was checked.

The name is resolved once, every address it resolves to is checked (`address_refusal`),
and the connection goes to one of those very addresses: a second resolution, which a
hostile DNS server could answer differently (DNS rebinding), never happens. Redirects are
not followed, and the answer's body is read only up to a cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook as Signer

from .rules import Address, Network, address_refusal, literal_address

USER_AGENT = "ticker-webhooks/1"
HEAD_MAX = 16 * 1024  # status line and headers of an answer


class Refused(Exception):
    """The URL resolves to an address the worker may not call."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None when no HTTP answer came
    duration_ms: int
    error: str | None  # why it failed, for the delivery log


@dataclass(frozen=True, slots=True)
class Limits:
    connect_timeout: float = 5.0
    timeout: float = 15.0  # the whole attempt: resolving, connecting, sending, the answer
    body_max_bytes: int = 4096  # of the answer, read for the delivery log


def signed_headers(secret: str, msg_id: str, body: bytes, now: datetime | None = None) -> dict:
    """The three Standard Webhooks headers, signed afresh for this attempt."""
    now = now or datetime.now(UTC)
    signature = Signer(secret).sign(msg_id, now, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


async def resolve(host: str, port: int, allow: Iterable[Network]) -> list[Address]:
    """Every address `host` stands for, each one checked; one refused address refuses the
    whole name, so a name cannot mix a public address with an internal one."""
    literal = literal_address(host)
    if literal is not None:
        found = [literal]
    else:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        found = []
        for *_, sockaddr in infos:
            address = ipaddress.ip_address(sockaddr[0].split("%")[0])
            if address not in found:
                found.append(address)
    allowed = tuple(allow)
    for address in found:
        refusal = address_refusal(address, allowed)
        if refusal:
            name = "" if literal is not None else f"{host} resolves to "
            raise Refused(f"refused: {name}{refusal}")
    if not found:
        raise OSError(f"{host} resolves to no address")
    return found


async def post(
    url: str, body: bytes, headers: dict[str, str], *, allow: Iterable[Network], limits: Limits
) -> Answer:
    """POST `body` to `url`: the HTTP status that came back, or why none did."""
    started = time.monotonic()

    def answer(status: int | None, error: str | None) -> Answer:
        return Answer(status, int((time.monotonic() - started) * 1000), error)

    try:
        async with asyncio.timeout(limits.timeout):
            status, text = await _exchange(url, body, headers, allow, limits)
    except Refused as exc:
        return answer(None, str(exc))
    except TimeoutError:
        return answer(None, f"no answer within {limits.timeout:g} s")
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError) as exc:
        return answer(None, f"{type(exc).__name__}: {exc}"[:300])
    if 200 <= status < 300:
        return answer(status, None)
    return answer(status, f"HTTP {status}" + (f": {text[:200]}" if text else ""))


async def _exchange(
    url: str, body: bytes, headers: dict[str, str], allow: Iterable[Network], limits: Limits
) -> tuple[int, str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    addresses = await resolve(host, port, allow)
    reader, writer = await _connect(addresses, port, host if tls else None, limits)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"POST {target} HTTP/1.1",
            f"Host: {parts.netloc}",
            f"User-Agent: {USER_AGENT}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        return await _read_answer(reader, limits.body_max_bytes)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 1)


async def _connect(
    addresses: list[Address], port: int, tls_name: str | None, limits: Limits
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = ssl.create_default_context() if tls_name else None
    error: Exception = OSError("no address to connect to")
    for address in addresses:
        try:
            async with asyncio.timeout(limits.connect_timeout):
                return await asyncio.open_connection(
                    str(address), port, ssl=context, server_hostname=tls_name, limit=HEAD_MAX
                )
        except TimeoutError:
            error = OSError(f"connecting to {address} took over {limits.connect_timeout:g} s")
        except OSError as exc:
            error = exc
    raise error


async def _read_answer(reader: asyncio.StreamReader, body_max: int) -> tuple[int, str]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/") or not (code.isascii() and code.isdigit()):
        raise ValueError(f"not an HTTP answer: {status_line[:60]!r}")
    length: int | None = None
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    text = b""
    if length is None or length > 0:
        want = body_max if length is None else min(length, body_max)
        try:
            while len(text) < want:
                chunk = await asyncio.wait_for(reader.read(want - len(text)), 1.0)
                if not chunk:
                    break
                text += chunk
        except (TimeoutError, OSError):
            pass  # the status is what counts; the body is only for the log
    return int(code), text.decode("utf-8", "replace").strip()
