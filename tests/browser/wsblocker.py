"""A proxy in front of the hub that breaks WebSockets, as some corporate proxies do, and
passes everything else (Server-Sent Events included) through untouched."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class WebSocketBlocker:
    def __init__(self, hub_port: int) -> None:
        self.hub_port = hub_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refused = 0  # WebSocket upgrades cut
        self.passed: list[str] = []  # request lines let through
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                client.close()
                return
            head += chunk
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        if b"upgrade: websocket" in head.lower():
            self.refused += 1
            client.close()  # the upgrade never happens: the page sees a failed WebSocket
            return
        upstream = socket.create_connection(("127.0.0.1", self.hub_port))
        upstream.sendall(head)
        with self._lock:
            self.passed.append(request_line)
            self._open |= {client, upstream}
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                # Shut before closing: a socket closed while the other pipe's thread waits
                # in recv on it stays open in the kernel, and the peer would never know.
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                with suppress(OSError):
                    end.close()

    def drop_all(self) -> None:
        """Cut every connection passing through, as a network blip would."""
        with self._lock:
            # Every socket is set to reset before any is shut: shutting one wakes its pipe,
            # which then closes the other end itself (see _pipe).
            for sock in self._open:
                with suppress(OSError):
                    # A reset, as a blip on the network looks to the browser.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with suppress(OSError):
                    sock.close()
            self._open.clear()

    def close(self) -> None:
        self.listener.close()
        self.drop_all()


@contextmanager
def websocket_blocker(hub_port: int) -> Iterator[WebSocketBlocker]:
    blocker = WebSocketBlocker(hub_port)
    threading.Thread(target=blocker.serve, daemon=True).start()
    try:
        yield blocker
    finally:
        blocker.close()
