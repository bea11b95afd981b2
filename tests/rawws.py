"""A raw WebSocket client for byte-level tests: handshake, masked frames, frame parsing."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

HANDSHAKE = (
    "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class Frame:
    opcode: int
    data: bytes

    @property
    def close_code(self) -> int:
        assert self.opcode == CLOSE
        return int.from_bytes(self.data[:2], "big")


def masked(opcode: int, data: bytes, *, fin: bool = True) -> bytes:
    """A client frame (clients must mask), as RFC 6455 §5.2 lays it out."""
    key = os.urandom(4)
    size = len(data)
    head = bytes(((0x80 if fin else 0) | opcode,))
    if size < 126:
        head += bytes((0x80 | size,))
    elif size < 65536:
        head += bytes((0x80 | 126,)) + size.to_bytes(2, "big")
    else:
        head += bytes((0x80 | 127,)) + size.to_bytes(8, "big")
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(data))


def parse_frames(data: bytes) -> list[Frame]:
    """Unmasked server frames; a truncated tail is an error."""
    frames, at = [], 0
    while at < len(data):
        opcode, size = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if size == 126:
            size, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif size == 127:
            size, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        assert at + size <= len(data), "truncated frame"
        frames.append(Frame(opcode, data[at : at + size]))
        at += size
    return frames


async def open_raw(
    port: int, target: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Connect and upgrade; returns the stream and the status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HANDSHAKE.format(target=target).encode())
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head.split(b"\r\n", 1)[0]


async def read_to_end(
    reader: asyncio.StreamReader,
    timeout: float = 5.0,
    after_close: float = 0.3,
    already: bytes = b"",
) -> bytes:
    """Everything until the server's Close, and whatever follows it for `after_close`
    seconds (or until the server ends the connection). `already` is what was read before."""
    received = already
    async with asyncio.timeout(timeout):
        while not _has_close(received):
            chunk = await reader.read(65536)
            if not chunk:
                return received
            received += chunk
    loop = asyncio.get_running_loop()
    until = loop.time() + after_close
    while (left := until - loop.time()) > 0:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            break
        if not chunk:
            break
        received += chunk
    return received


def _has_close(data: bytes) -> bool:
    try:
        return any(f.opcode == CLOSE for f in parse_frames(data))
    except (AssertionError, IndexError):
        return False


async def read_until_quiet(reader: asyncio.StreamReader, quiet: float = 0.2) -> bytes:
    """Whatever arrives until the connection ends or stays silent for `quiet` seconds."""
    received = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), quiet)
        except TimeoutError:
            return received
        if not chunk:
            return received
        received += chunk
