"""The floor: the least a Python server can do to deliver one message to N sockets.

Run as `python -m bench.floor --port P`. It accepts WebSocket clients (handshake and a
tiny greeting, nothing else: no tasks, no keepalive, no parsing) and, on each `send`
command from stdin, writes one pre-built frame to every socket with transport.write.
The hub's CPU per delivery is reported as a multiple of this, measured in the same run
on the same clients, because on a shared machine only the ratio is stable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from ticker import eventloop

from .wire import server_frame, server_response


class FloorConnection(asyncio.Protocol):
    """Handshake, greeting, then silence: incoming pongs and closes are ignored."""

    def __init__(self, members: set[asyncio.Transport], greeting: bytes) -> None:
        self.members = members
        self.greeting = greeting
        self.transport: asyncio.Transport | None = None
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.head is None:
            return
        self.head += data
        if b"\r\n\r\n" not in self.head:
            return
        response = server_response(self.head)
        self.head = None  # type: ignore[assignment]
        assert self.transport is not None
        if response is None:
            self.transport.close()
            return
        self.transport.write(response + self.greeting)
        self.members.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.members.discard(self.transport)


class Floor:
    def __init__(self, epoch: str) -> None:
        self.members: set[asyncio.Transport] = set()
        self.greeting = server_frame(
            json.dumps(
                {"type": "snapshot", "cursor": f"{epoch}:0", "reset": False, "items": []}
            ).encode()
        )

    def send(self, payload: str) -> dict[str, Any]:
        """The floor's whole hot path: one frame, the same bytes to every socket."""
        frame = server_frame(payload.encode())
        began = time.time()
        for transport in self.members:
            transport.write(frame)
        return {"sent": len(self.members), "began": began, "ended": time.time()}


async def run(port: int, epoch: str) -> None:
    loop = asyncio.get_running_loop()
    floor = Floor(epoch)
    server = await loop.create_server(
        lambda: FloorConnection(floor.members, floor.greeting), "127.0.0.1", port, backlog=4096
    )
    stdin = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print(json.dumps({"listening": server.sockets[0].getsockname()[1]}), flush=True)
    while line := await stdin.readline():
        command = json.loads(line)
        if command["cmd"] != "send":
            break
        print(json.dumps(floor.send(command["payload"])), flush=True)
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--epoch", default="floor")
    args = parser.parse_args()
    eventloop.run(run(args.port, args.epoch))  # the hub's own loop, so the two compare fairly


if __name__ == "__main__":
    main()
