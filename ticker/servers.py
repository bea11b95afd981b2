"""What the publisher and the hub share as processes: listening sockets, uvicorn as ticker
runs it, waiting for a stop signal, and logging.

uvicorn waits forever for a client to finish its request headers, and lets one address open
as many connections as it likes: a few hundred slow sockets (slowloris) hold the publisher
open indefinitely. `guarded` wraps uvicorn's HTTP protocol with a header deadline and a cap
on connections per client address; the rest of uvicorn is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .config import Settings


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def listen(host: str, port: int, *, backlog: int, reuse_port: bool = False) -> socket.socket:
    """A listening socket, bound before anything starts, so a port in use is one clear
    error. With `reuse_port`, sibling workers bind the same port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(backlog)
    return sock


async def until_signal(*tasks: asyncio.Task[Any]) -> None:
    """Wait for SIGTERM or SIGINT, or for any of `tasks` to end."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()


class Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: ticker stops the hub and the publisher
    together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def web_server(
    settings: Settings, app: Any, *, http: type[asyncio.Protocol] | None = None
) -> Server:
    """uvicorn for the publisher, with every timeout and limit taken from the settings."""
    protocol = guarded(
        http or AutoHTTPProtocol,
        header_timeout=settings.header_timeout,
        max_per_address=settings.max_connections_per_address,
    )
    return Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            http=protocol,
            ws="none",
            lifespan="on",
            log_level=settings.log_level,
            backlog=settings.accept_backlog,
            timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=settings.shutdown_grace,  # type: ignore[arg-type]
            server_header=False,
            # X-Forwarded-For (and -Proto) are believed from these peers only: the rightmost
            # address that is not one of them becomes the request's client.
            proxy_headers=True,
            forwarded_allow_ips=list(settings.trusted_proxies),
        )
    )


def guarded(
    base: type[asyncio.Protocol], *, header_timeout: float, max_per_address: int
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol `base` (httptools or h11), which also

    - closes a connection whose request headers are not complete `header_timeout` seconds
      after it opened or after its previous response, and
    - closes at once a connection from an address that already has `max_per_address` open.
      (The address is the socket's: request headers, and so X-Forwarded-For, come later.)

    Each call makes a class of its own, so each server counts its own connections.
    """
    open_per_address: Counter[str] = Counter()

    class Guarded(base):  # type: ignore[valid-type, misc]
        _address: str | None = None
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            address = self.client[0] if self.client else None  # None: a Unix socket
            if address is not None:
                if open_per_address[address] >= max_per_address:
                    transport.close()
                    return
                open_per_address[address] += 1
                self._address = address
            self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._address is not None:
                open_per_address[self._address] -= 1
                if not open_per_address[self._address]:
                    del open_per_address[self._address]
                self._address = None
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._await_headers()

        def _await_headers(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _headers_late(self) -> None:
            self._header_timer = None
            # A request whose headers arrived has a cycle until its response completes.
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                self.transport.close()

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded
