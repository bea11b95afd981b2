"""One client connection of the hub: websockets' sans-I/O protocol on an asyncio transport.

A reader's connection sits idle almost all the time, so it should cost little: no task, no
receive queue, no keepalive timer, no handshake headers kept. It is one small object with
its transport and the protocol state machine; the hub writes shared frames straight to the
transport and hears about the connection only when something happens on it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from . import protocol
from .protocol import CloseCode, ProtocolError

if TYPE_CHECKING:
    from .hub import Group, Hub

OPEN = State.OPEN
CONNECTING = State.CONNECTING
CLOSE_TIMEOUT = 2.0  # how long a closing peer may take before the socket is cut

# websockets logs every connection at INFO; at a reconnect storm's rate that costs more
# than the handshake. Its warnings and errors still come through.
_quiet = logging.getLogger("ticker.hub.websocket")
_quiet.setLevel(logging.WARNING)


class Connection(asyncio.Protocol):
    __slots__ = (
        "hub",
        "transport",
        "ws",
        "group",
        "heard",
        "opened",
        "opened_ws",
        "window",
        "count",
    )

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.ws = ServerProtocol(
            origins=hub.origins, max_size=hub.limits.ws_frame_max_bytes, logger=_quiet
        )
        self.group: Group | None = None
        self.heard = 0.0  # loop time the peer last sent anything
        self.opened = 0.0  # loop time of connection_made
        self.opened_ws = False  # the WebSocket handshake succeeded
        self.window = 0.0  # start of the current 10 s window of client messages
        self.count = 0  # client messages in that window

    # --- asyncio callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        limit = self.hub.limits.ws_write_buffer_max_bytes
        self.transport.set_write_buffer_limits(high=limit, low=limit // 4)
        self.heard = self.opened = self.hub.loop.time()
        self.hub.alive.add(self)

    def data_received(self, data: bytes) -> None:
        self.heard = self.hub.loop.time()
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                try:
                    self._message(event.opcode, event.data, event.fin)
                except ProtocolError as exc:
                    self.hub.metrics.protocol_errors += 1
                    self.close(exc.code, exc.reason)
            # Pings are answered and closes echoed by the protocol itself.
        self.flush()
        if self.group is not None and ws.state is not OPEN:
            self.hub.leave(self)  # the client closed, or broke the protocol

    def eof_received(self) -> bool:
        self.ws.receive_eof()
        self.flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws.receive_eof()
        self.hub.lost(self)

    def pause_writing(self) -> None:
        # Called by the transport, during a write, when unsent data passes the limit.
        if self.group is not None:
            self.group.backlogged.append(self)

    def resume_writing(self) -> None:
        pass

    # --- protocol -------------------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        response = self.hub.route(self, request)
        if response is None:
            response = self.ws.accept(request)
        self.ws.send_response(response)
        if self.ws.state is OPEN:
            self.flush()  # the 101 must go before the greeting
            self.hub.opened(self, request.path)

    def _message(self, opcode: Opcode, data: bytes, fin: bool) -> None:
        """Clients send little; a flood or an unknown message ends only their connection."""
        if opcode is Opcode.BINARY:
            raise ProtocolError(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
        if opcode is Opcode.CONT or not fin:
            raise ProtocolError(CloseCode.BAD_REQUEST, "fragmented messages are not accepted")
        now = self.heard
        if now - self.window > 10:
            self.window, self.count = now, 0
        self.count += 1
        if self.count > self.hub.limits.ws_frames_per_10s:
            raise ProtocolError(CloseCode.TOO_MANY_MESSAGES, "too many messages")
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise ProtocolError(CloseCode.INVALID_DATA, "text frames must be UTF-8") from None
        self.hub.received(self, protocol.parse_client_message(text, self.hub.vocabulary))

    # --- output ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what the protocol produced; an empty chunk means: close the TCP connection."""
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
            else:
                self.transport.close()
                # A peer that never reads would keep a closing socket open forever.
                self.hub.loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; the connection leaves its group at once."""
        if self.group is not None:
            self.hub.leave(self)
        if self.ws.state is OPEN:
            self.ws.send_close(code, reason)
            self.flush()
            self.hub.loop.call_later(CLOSE_TIMEOUT, self.transport.abort)
        elif self.ws.state is CONNECTING:
            self.transport.abort()

    def fail(self, code: int, reason: str) -> None:
        """Close without waiting for the peer: for a peer that no longer answers."""
        if self.group is not None:
            self.hub.leave(self)
        if self.ws.state is OPEN:
            self.ws.fail(code, reason)
            self.flush()
        else:
            self.transport.abort()

    @property
    def peer(self) -> object:
        return self.transport.get_extra_info("peername") if self.transport else None
