"""The hub's per-address limits at the handshake, and whom it takes for the client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from stack import Client, Stack
from ticker.forwarded import TrustedProxies
from ticker.transports.admission import Admission

WS_HEAD = (
    "GET /ws?edition=en HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


async def handshake(port: int, path: str = "/ws?edition=en", extra: str = "") -> tuple:
    """A raw handshake: (status line, whole head, the open streams)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if path.startswith("/ws"):
        head = WS_HEAD.replace("/ws?edition=en", path)
    else:
        head = f"GET {path} HTTP/1.1\r\nHost: x\r\n"
    writer.write((head + extra + "\r\n").encode())
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return answer.split(b"\r\n", 1)[0].decode(), answer.decode(), (reader, writer)


def refused_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ticker_hub_refused_total":
                return sample.value
    raise AssertionError("no ticker_hub_refused_total")


async def test_the_limits_are_off_by_default(tmp_path: Path):
    async with Stack(tmp_path) as stack:
        opened = [await handshake(stack.hub.port) for _ in range(30)]
        assert all(status.endswith("101 Switching Protocols") for status, _, _ in opened)
        for _, _, (_, writer) in opened:
            writer.close()


@pytest.mark.parametrize("path", ["/ws?edition=en", "/sse?edition=en"])
async def test_connections_per_address_are_capped(tmp_path: Path, path: str):
    async with Stack(tmp_path, hub_max_connections_per_address=2) as stack:
        port = stack.hub.port
        first = await handshake(port, path)
        second = await handshake(port, path)
        for opened in (first, second):
            assert opened[0].split()[1] == ("101" if path.startswith("/ws") else "200")
        status, head, (reader, third_writer) = await handshake(port, path)
        assert "429" in status
        body = await asyncio.wait_for(reader.read(), 5)
        assert b"too many connections from 127.0.0.1" in body
        # Closing one makes room for another.
        first[2][1].close()
        for _ in range(50):
            if sum(stack.hub.websockets.admission.open.values()) < 2:
                break
            await asyncio.sleep(0.05)
        again = await handshake(port, path)
        assert "429" not in again[0]
        metrics = await handshake(port, "/metrics")
        assert "200" in metrics[0]
        for conn in (second, again, metrics):
            conn[2][1].close()
        third_writer.close()


async def test_handshakes_per_second_are_paced(tmp_path: Path):
    async with Stack(tmp_path, hub_handshakes_per_second=1.0, hub_handshake_burst=3) as stack:
        statuses = []
        for _ in range(5):
            status, head, (_, writer) = await handshake(stack.hub.port)
            statuses.append(status.split()[1])
            writer.close()
        assert statuses == ["101", "101", "101", "429", "429"]
        assert "Retry-After: 1" in head
        # A real client hears the 429 too.
        with pytest.raises(InvalidStatus) as refused:
            async with Client.connect(stack.ws_url()):
                pass
        assert refused.value.response.status_code == 429
        _, _, (reader, writer) = await handshake(stack.hub.port, "/metrics")
        text = (await reader.read()).decode()
        assert refused_count(text) == 3
        writer.close()
        await asyncio.sleep(1.1)
        status, _, (_, writer) = await handshake(stack.hub.port)
        assert "101" in status
        writer.close()


async def test_x_forwarded_for_counts_from_a_trusted_proxy_only(tmp_path: Path):
    async with Stack(tmp_path, hub_max_connections_per_address=1) as stack:
        port = stack.hub.port
        # The test's own address, 127.0.0.1, is a trusted proxy by default: the client is
        # the rightmost untrusted address of the header, and each has its own cap.
        a = await handshake(port, extra="X-Forwarded-For: 198.51.100.7, 203.0.113.1\r\n")
        b = await handshake(port, extra="X-Forwarded-For: 198.51.100.7\r\n")
        again = await handshake(port, extra="X-Forwarded-For: 10.1.1.1, 203.0.113.1\r\n")
        assert "101" in a[0] and "101" in b[0]
        assert "429" in again[0]
        assert "203.0.113.1" in (await again[2][0].read()).decode()
        for conn in (a, b, again):
            conn[2][1].close()

    (tmp_path / "two").mkdir()
    async with Stack(
        tmp_path / "two", hub_max_connections_per_address=1, trusted_proxies=("10.0.0.0/8",)
    ) as stack:
        # Not trusted: the header is the client's own say-so, and is ignored.
        a = await handshake(stack.hub.port, extra="X-Forwarded-For: 198.51.100.7\r\n")
        b = await handshake(stack.hub.port, extra="X-Forwarded-For: 198.51.100.8\r\n")
        assert "101" in a[0] and "429" in b[0]
        assert "127.0.0.1" in (await b[2][0].read()).decode()
        for conn in (a, b):
            conn[2][1].close()


def test_the_rightmost_untrusted_address_is_the_client():
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"])
    assert proxies.client("127.0.0.1", "1.2.3.4") == "1.2.3.4"
    assert proxies.client("127.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.5") == "1.2.3.4"
    assert proxies.client("10.2.3.4", "10.0.0.9, 10.0.0.5") == "10.0.0.9"  # all trusted
    assert proxies.client("9.9.9.9", "1.2.3.4") == "9.9.9.9"  # an untrusted peer
    assert proxies.client("127.0.0.1", None) == "127.0.0.1"
    assert proxies.client("::ffff:127.0.0.1", "5.5.5.5") == "5.5.5.5"
    assert proxies.client("2001:db8::1", "2001:db8::2, 2a00::1") == "2a00::1"
    assert proxies.client("127.0.0.1", " , ") == "127.0.0.1"


def test_a_token_bucket_refills_and_forgets():
    admission = Admission(0, per_second=2.0, burst=2)
    assert admission.admit("a", 0.0) is None
    assert admission.admit("a", 0.0) is None
    assert admission.admit("a", 0.1) is not None
    assert admission.admit("b", 0.1) is None  # each address has its own
    assert admission.admit("a", 0.6) is None  # refilled by one
    admission.prune(10.0)
    assert admission.buckets == {}
    capped = Admission(1, 0, 1)
    assert capped.admit("a", 0) is None and capped.admit("a", 0) is not None
    capped.release("a")
    assert capped.open == {} and capped.admit("a", 0) is None
