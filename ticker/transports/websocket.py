"""The WebSocket transport: websockets' sans-I/O protocol on bare asyncio transports.

A reader's connection sits idle almost all the time, so it should cost little: no task, no
receive queue, no keepalive timer, no handshake headers kept. It is one small object with
its transport and the protocol state machine. The fan-out writes shared frames straight
to the transport and hears about the connection only when something happens on it.

Once a connection is closing, nothing but control frames leaves it (RFC 6455 §5.5.1): its
client's further messages are ignored, and it has already left its group.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
from collections.abc import Callable
from http import HTTPStatus

from websockets.datastructures import Headers
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from .. import protocol
from ..config import Settings
from ..events import Cursor
from ..fanout import FanOut, Group, WireFormat
from ..forwarded import TrustedProxies
from ..hub_routes import PlainAnswer
from ..metrics import HubMetrics
from ..protocol import CloseCode, ProtocolError, Subscription
from . import sse
from .admission import Admission

logger = logging.getLogger("ticker.hub.websocket")

OPEN = State.OPEN
CONNECTING = State.CONNECTING
CLOSE_TIMEOUT = 2.0  # how long a closing peer may take before the socket is cut
QUERY_CACHE_SIZE = 4096
PING_FRAME = b"\x89\x00"  # an unmasked, empty ping; browsers and libraries answer it
_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)

# websockets logs every connection at INFO; at a reconnect storm's rate that costs more
# than the handshake. Its warnings and errors still come through.
_quiet = logging.getLogger("ticker.hub.websocket.protocol")
_quiet.setLevel(logging.WARNING)


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (RFC 6455 §5.2), built once and written many times."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


def _frame(messages: list[bytes]) -> bytes:
    return text_frame(protocol.batch(messages))


WEBSOCKET = WireFormat("websocket", _frame, ping=PING_FRAME)
PONG_FRAME = text_frame(protocol.PONG)


class WebSocketEndpoint:
    """What the hub's WebSocket connections share: settings, the fan-out, the plain HTTP
    answers and the set of open connections."""

    def __init__(
        self,
        settings: Settings,
        fanout: FanOut,
        metrics: HubMetrics,
        plain: Callable[[str], PlainAnswer],
    ) -> None:
        self.settings = settings
        self.fanout = fanout
        self.metrics = metrics
        self.plain = plain
        self.vocabulary = settings.vocabulary
        self.limits = settings.limits
        self.origins = settings.origins()
        self.alive: set[Connection] = set()  # every TCP connection, from accept to close
        self._all_closed = asyncio.Event()
        self._queries: dict[str, tuple[Subscription, Cursor | None]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.admission = Admission(
            settings.hub_max_connections_per_address,
            settings.hub_handshakes_per_second,
            settings.hub_handshake_burst,
        )

    def connection(self) -> Connection:
        """The protocol factory for `loop.create_server`."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        return Connection(self)

    async def close_all(self, code: int, reason: str, grace: float) -> None:
        """Close every connection with `code`, wait up to `grace` for the peers' answers,
        then cut whatever is left."""
        for conn in list(self.alive):
            conn.close(code, reason)
        if self.alive:
            self._all_closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), grace)
        for conn in list(self.alive):
            conn.transport.abort()

    async def cut_stalled_handshakes(self) -> None:
        """A socket that never finishes its handshake would hold a file descriptor forever."""
        timeout = self.settings.handshake_timeout
        while True:
            await asyncio.sleep(timeout / 2)
            assert self.loop is not None
            now = self.loop.time()
            self.admission.prune(now)
            for conn in list(self.alive):
                if (
                    conn.stream is _NOT_A_STREAM
                    and conn.ws.state is CONNECTING
                    and now - conn.accepted_at > timeout
                ):
                    conn.transport.abort()

    # --- called by Connection -----------------------------------------------------------

    def respond(self, conn: Connection, request: Request) -> Response | None:
        """The upgrade for /ws, a stream for /sse (None: the stream answers itself), a
        plain answer for anything else."""
        path, _, query = request.path.partition("?")
        if path not in ("/ws", "/sse"):
            return _response(self.plain(path))
        forwarded = request.headers.get_all("X-Forwarded-For")
        if forwarded:
            conn.address = self.proxies.client(conn.address, ",".join(forwarded))
        if self.admission.enabled and conn.address is not None:
            assert self.loop is not None
            refusal = self.admission.admit(conn.address, self.loop.time())
            if refusal is not None:
                self.metrics.refused += 1
                # Debug only: a flood of refusals must not become a flood of log lines.
                logger.debug("refused %s: %s", conn.address, refusal)
                return self._refuse(conn, path, request, refusal)
            conn.admitted = True
        if path == "/ws":
            if not self.fanout.ready.is_set():
                # Refused before the upgrade, so a proxy sees a 503 and tries the next hub.
                return _response(
                    PlainAnswer(
                        HTTPStatus.SERVICE_UNAVAILABLE,
                        "the hub is not ready yet; try again shortly\n",
                    ),
                    retry_after=1,
                )
            allowed, _ = sse.allowed_origin(
                request.headers.get("Origin"), self.origins, request.headers.get("Host")
            )
            if not allowed:  # cross-site WebSocket hijacking: the page's origin is not ours
                return _response(
                    PlainAnswer(HTTPStatus.FORBIDDEN, "pages from this origin may not connect\n")
                )
            return conn.ws.accept(request)
        self._open_stream(conn, query, request)
        return None

    def _refuse(
        self, conn: Connection, path: str, request: Request, reason: str
    ) -> Response | None:
        """429 with the reason in words, for a WebSocket or a stream alike."""
        if path == "/ws":
            response = conn.ws.reject(HTTPStatus.TOO_MANY_REQUESTS, reason + "\n")
            response.headers["Retry-After"] = "1"
            return response
        _, cors = sse.allowed_origin(request.headers.get("Origin"), self.origins)
        conn.refuse(sse.error_response(HTTPStatus.TOO_MANY_REQUESTS, reason, cors, retry_after=1))
        return None

    def _open_stream(self, conn: Connection, query: str, request: Request) -> None:
        headers = request.headers
        allowed, cors = sse.allowed_origin(headers.get("Origin"), self.origins, headers.get("Host"))
        if not allowed:
            refusal = "pages from this origin may not read the ticker"
            conn.refuse(sse.error_response(HTTPStatus.FORBIDDEN, refusal, None))
            return
        try:
            subscription, since = sse.parse_request(
                query, headers.get("Last-Event-ID"), self.settings
            )
        except ProtocolError as exc:
            self.metrics.protocol_errors += 1
            conn.refuse(sse.error_response(HTTPStatus.BAD_REQUEST, exc.reason, cors))
            return
        conn.start_stream(sse.response_head(cors))
        self.metrics.connections += 1
        self.metrics.connections_total += 1
        if not self.fanout.ready.is_set():
            # A 200 that ends at once: EventSource retries on its own, unlike after a 503.
            conn.close(CloseCode.TRY_AGAIN_LATER, "the hub is not ready yet; try again shortly")
            return
        self.fanout.join(conn, subscription, since, sse.SSE)

    def upgraded(self, conn: Connection, target: str) -> None:
        """A WebSocket is open: join its group, or close it with the reason."""
        self.metrics.connections += 1
        self.metrics.connections_total += 1
        try:
            subscription, since = self._parse_query(target.partition("?")[2])
        except ProtocolError as exc:
            conn.fail_protocol(exc)
            return
        self.fanout.join(conn, subscription, since, WEBSOCKET)  # ready: checked before upgrading

    def _parse_query(self, query: str) -> tuple[Subscription, Cursor | None]:
        """Parsed once per distinct URL: in a reconnect storm most clients share theirs."""
        parsed = self._queries.get(query)
        if parsed is None:
            parsed = protocol.parse_query(query, self.vocabulary)
            if len(self._queries) >= QUERY_CACHE_SIZE:
                self._queries.clear()
            self._queries[query] = parsed
        return parsed

    def received(self, conn: Connection, message: protocol.Ping | protocol.Subscribe) -> None:
        if isinstance(message, protocol.Ping):
            conn.send(PONG_FRAME)
        else:
            self.fanout.leave(conn)
            self.fanout.join(conn, message.subscription, message.since, WEBSOCKET)

    def lost(self, conn: Connection) -> None:
        if conn.admitted:
            conn.admitted = False
            self.admission.release(conn.address)  # type: ignore[arg-type]
        self.fanout.leave(conn)
        self.alive.discard(conn)
        if not self.alive:
            self._all_closed.set()
        if conn.upgraded:
            self.metrics.connections -= 1


def _response(answer: PlainAnswer, retry_after: int | None = None) -> Response:
    body = answer.body.encode()
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", answer.content_type),
            ("Cache-Control", "no-store"),
        ]
    )
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Response(answer.status.value, answer.status.phrase, headers, body)


class Connection(asyncio.Protocol):
    """One reader's TCP connection: an HTTP request, then (for /ws) a WebSocket. It is a
    `fanout.Subscriber` once upgraded."""

    __slots__ = (
        "endpoint",
        "transport",
        "send",
        "ws",
        "group",
        "joined",
        "heard",
        "accepted_at",
        "upgraded",
        "window",
        "count",
        "stream",
        "address",
        "admitted",
    )

    def __init__(self, endpoint: WebSocketEndpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.send: Callable[[bytes], None] = _nowhere
        # Origins are checked in WebSocketEndpoint.respond, which also knows the Host.
        self.ws = ServerProtocol(max_size=endpoint.limits.ws_frame_max_bytes, logger=_quiet)
        self.group: Group | None = None
        self.joined = 0
        self.heard = 0.0  # loop time the peer last sent anything
        self.accepted_at = 0.0  # loop time the TCP connection was accepted
        self.upgraded = False  # the WebSocket handshake succeeded
        self.window = 0.0  # start of the current window of client messages
        self.count = 0  # client messages in that window
        self.stream = _NOT_A_STREAM  # or a Server-Sent Events stream, open or ended
        self.address: str | None = None  # the client's, behind a trusted proxy too
        self.admitted = False  # counted by the per-address limits until lost

    # --- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send = self.transport.write  # the fan-out's hot path calls this, nothing else
        limit = self.endpoint.limits.ws_write_buffer_max_bytes
        self.transport.set_write_buffer_limits(high=limit, low=limit // 4)
        assert self.endpoint.loop is not None
        self.heard = self.accepted_at = self.endpoint.loop.time()
        self.endpoint.alive.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):  # a Unix socket has no address
            self.address = peer[0]

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        except Exception as exc:  # a bug must cost one connection and one log line
            logger.error("closing %s after an unexpected error: %r", self.peer, exc)
            self.endpoint.fanout.leave(self)
            self.transport.abort()

    def _received(self, data: bytes) -> None:
        assert self.endpoint.loop is not None
        self.heard = self.endpoint.loop.time()
        if self.stream is not _NOT_A_STREAM:
            return  # a stream's reader has nothing more to say
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif event.opcode in _DATA and ws.state is OPEN:
                # Pings are answered and closes echoed by the protocol itself; data that
                # arrives once the connection is closing is ignored.
                try:
                    self._message(event.opcode, event.data, event.fin)
                except ProtocolError as exc:
                    self.fail_protocol(exc)
        if self.stream is not _NOT_A_STREAM:
            return  # the request became a stream
        self._flush()
        if self.group is not None and ws.state is not OPEN:
            self.endpoint.fanout.leave(self)  # the client closed, or broke the protocol

    def eof_received(self) -> bool:
        self.ws.receive_eof()
        self._flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws.receive_eof()
        self.endpoint.lost(self)

    def pause_writing(self) -> None:
        # Called by the transport, during a write, when unsent data passes the limit.
        self.endpoint.fanout.overflowing(self)

    def resume_writing(self) -> None:
        pass

    # --- the subscriber interface -------------------------------------------------------

    def unsent(self) -> int:
        return self.transport.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; the connection leaves its group at once."""
        self.endpoint.fanout.leave(self)
        if self.stream is not _NOT_A_STREAM:
            if self.stream is _STREAM_OPEN:
                self.stream = _STREAM_ENDED
                self.transport.write(sse.closing_event(code, reason))
                self._end()
            return
        state = self.ws.state
        if state is OPEN:
            self.ws.send_close(code, reason)
            self._flush()
            assert self.endpoint.loop is not None
            self.endpoint.loop.call_later(CLOSE_TIMEOUT, self.transport.abort)
        elif state is CONNECTING:
            self.transport.abort()

    # --- protocol -----------------------------------------------------------------------

    def fail_protocol(self, exc: ProtocolError) -> None:
        self.endpoint.metrics.protocol_errors += 1
        self.close(exc.code, exc.reason)

    def _handshake(self, request: Request) -> None:
        response = self.endpoint.respond(self, request)
        if response is None:
            return  # a stream, which answered for itself
        self.ws.send_response(response)
        if self.ws.state is OPEN:
            self.upgraded = True
            self._flush()  # the 101 must go before the greeting
            self.endpoint.upgraded(self, request.path)

    def _message(self, opcode: Opcode, data: bytes, fin: bool) -> None:
        """Clients send little; a flood or an unknown message ends only their connection."""
        if opcode is Opcode.BINARY:
            raise ProtocolError(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
        if opcode is Opcode.CONT or not fin:
            raise ProtocolError(CloseCode.BAD_REQUEST, "fragmented messages are not accepted")
        limits = self.endpoint.limits
        now = self.heard
        if now - self.window > limits.ws_frames_window_seconds:
            self.window, self.count = now, 0
        self.count += 1
        if self.count > limits.ws_frames_per_10s:
            raise ProtocolError(CloseCode.TOO_MANY_MESSAGES, "too many messages")
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise ProtocolError(CloseCode.INVALID_DATA, "text frames must be UTF-8") from None
        message = protocol.parse_client_message(text, self.endpoint.vocabulary)
        self.endpoint.received(self, message)

    # --- output -------------------------------------------------------------------------

    def _flush(self) -> None:
        """Write what the protocol produced. An empty chunk means the protocol is done
        sending: half-close our side (websockets' contract), and cut the socket if the
        peer never finishes its side."""
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
            else:
                if self.transport.can_write_eof():
                    self.transport.write_eof()
                else:
                    self.transport.close()
                assert self.endpoint.loop is not None
                self.endpoint.loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    def start_stream(self, head: bytes) -> None:
        """From here on this connection is a Server-Sent Events stream."""
        self.stream = _STREAM_OPEN
        self.upgraded = True
        self.transport.write(head)

    def refuse(self, response: bytes) -> None:
        """Answer a stream request with an error, and end the connection."""
        self.stream = _STREAM_ENDED
        self.transport.write(response)
        self._end()

    def _end(self) -> None:
        """Close once what is buffered is sent; cut the socket if the peer never reads it."""
        self.transport.close()
        assert self.endpoint.loop is not None
        self.endpoint.loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    @property
    def peer(self) -> object:
        """The client, for log lines: its address (from X-Forwarded-For behind a trusted
        proxy) or the socket's peer."""
        if self.address is not None:
            return self.address
        return self.transport.get_extra_info("peername") if self.transport else None


_NOT_A_STREAM, _STREAM_OPEN, _STREAM_ENDED = 0, 1, 2


def _nowhere(data: bytes) -> None:
    """`send` before the transport exists: nothing can be sent yet."""
