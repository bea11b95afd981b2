"""The bits of RFC 6455 and of the ticker protocol the benchmark needs, with no I/O.

The load generator must cost far less than the server it measures, and both share two
cores. A full WebSocket client library spends tens of microseconds per message on its
own bookkeeping; these few functions parse a frame with a handful of slices, so one
client process can hold thousands of sockets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from ticker.events import parse_cursor

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
HEADLINE_TAG = "BENCH"


# --- handshake -----------------------------------------------------------------------------


def new_key() -> bytes:
    return base64.b64encode(os.urandom(16))


def accept_for(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept value a server must answer `key` with."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def client_request(host: str, port: int, path: str, key: bytes) -> bytes:
    """The opening handshake, without Origin: a non-browser client, as the hub allows."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def stream_request(host: str, port: int, path: str) -> bytes:
    """A Server-Sent Events request, as EventSource sends it (without Origin)."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode()


def server_response(request: bytes) -> bytes | None:
    """The 101 answer to a client's handshake, or None when it is not one."""
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_for(value.strip())
                + b"\r\n\r\n"
            )
    return None


def split_response(data: bytes) -> tuple[int, bytes, bytes] | None:
    """(status, headers, rest) once the whole HTTP response head has arrived."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    status_line = head.split(b"\r\n", 1)[0]
    parts = status_line.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, head, rest


# --- frames --------------------------------------------------------------------------------


def server_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """An unmasked final frame, as a server sends it (RFC 6455 §5.2)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
    return header + payload


def client_frame(payload: bytes, opcode: int) -> bytes:
    """A masked final frame, as a client must send it; only small control frames here."""
    if len(payload) > 125:
        raise ValueError("the benchmark client sends only control frames")
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


class FrameReader:
    """Incremental frame parser for the client side: bytes in, (opcode, payload) out.

    The common case, one whole unmasked frame per read, takes a few slices and no copy
    of the buffer. Fragmented messages are reassembled, though the hub never sends them.
    """

    __slots__ = ("buffer", "fragments", "fragment_opcode")

    def __init__(self) -> None:
        self.buffer = b""
        self.fragments: list[bytes] = []
        self.fragment_opcode = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buffer + data if self.buffer else data
        frames: list[tuple[int, bytes]] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            mask = b""
            if b1 & 0x80:
                mask, head = buf[pos + head : pos + head + 4], head + 4
            stop = pos + head + length
            if stop > end:
                break
            payload = buf[pos + head : stop]
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            self._collect(frames, b0, payload)
            pos = stop
        self.buffer = buf[pos:] if pos < end else b""
        return frames

    def _collect(self, frames: list[tuple[int, bytes]], b0: int, payload: bytes) -> None:
        opcode, final = b0 & 0x0F, b0 & 0x80
        if opcode >= 0x8 or (final and opcode and not self.fragments):
            frames.append((opcode, payload))
            return
        if opcode:
            self.fragment_opcode = opcode
        self.fragments.append(payload)
        if final:
            frames.append((self.fragment_opcode, b"".join(self.fragments)))
            self.fragments = []


class EventSplitter:
    """Incremental Server-Sent Events reader: bytes in, whole events out (`split_events`
    reads them). The hub writes one `data:` line per event."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = b""

    def whole(self, data: bytes) -> bytes:
        """The whole events received so far, as one chunk; a partial one waits for the rest.
        The hub writes whole events, so this is usually `data` itself."""
        if not self.buffer and data.endswith(b"\n\n"):
            return data
        buf = self.buffer + data
        last = buf.rfind(b"\n\n")
        if last < 0:
            self.buffer = buf
            return b""
        self.buffer = buf[last + 2 :]
        return buf[: last + 2]


def split_events(chunk: bytes) -> list[tuple[bytes, bytes]]:
    """(event type, data) for each whole event in `chunk`."""
    events: list[tuple[bytes, bytes]] = []
    for block in chunk.split(b"\n\n"):
        kind, payload = b"message", b""
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                payload = line[6:]
            elif line.startswith(b"event: "):
                kind = line[7:]
        if payload:
            events.append((kind, payload))
    return events


def close_code(payload: bytes) -> int | None:
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


# --- ticker messages -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Greeting:
    """A snapshot or a resume: where the client stands in the edition's log."""

    kind: str
    epoch: str
    offset: int
    reset: bool
    missed: int


@dataclass(frozen=True, slots=True)
class Delivered:
    """One event: its place in the log, and the benchmark's tag when it is a bench item."""

    epoch: str
    offset: int
    seq: int  # -1 for an event the benchmark did not post
    published: float


Message = Greeting | Delivered


def bench_headline(seq: int, published: float, filler: str) -> str:
    """A headline that carries its own sequence number and publish time, in fixed width,
    so every bench event has the same size and the client needs no side channel."""
    return f"{HEADLINE_TAG} {seq:06d} {published:.6f} {filler}"


def parse_bench_headline(headline: str) -> tuple[int, float]:
    parts = headline.split(" ", 3)
    if len(parts) >= 3 and parts[0] == HEADLINE_TAG:
        return int(parts[1]), float(parts[2])
    return -1, 0.0


def interpret(payload: bytes) -> tuple[Message, ...]:
    """What one frame means to a client, in order. Identical frames give identical results,
    so the client worker caches this per distinct payload."""
    value = json.loads(payload)
    out: list[Message] = []
    for message in value if isinstance(value, list) else [value]:
        parsed = _interpret_one(message)
        if parsed is not None:
            out.append(parsed)
    return tuple(out)


def _interpret_one(message: dict[str, Any]) -> Message | None:
    kind = message.get("type")
    if kind in ("snapshot", "resumed"):
        cursor = parse_cursor(message["cursor"])
        reset = bool(message.get("reset"))
        return Greeting(kind, cursor.epoch, cursor.offset, reset, int(message.get("missed") or 0))
    if kind == "event":
        cursor = parse_cursor(message["cursor"])
        item = message.get("item") or {}
        seq, published = parse_bench_headline(item.get("headline", ""))
        if message.get("kind") != "posted":
            seq = -1
        return Delivered(cursor.epoch, cursor.offset, seq, published)
    return None
