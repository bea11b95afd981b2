"""A TCP proxy for tests that need a link that goes silent without closing.

`freeze()` makes every connection open at that moment drop what it would forward, in both
directions, while its sockets stay open: what a dead NAT entry or a stalled load balancer
looks like to both ends. Connections made afterwards are forwarded as usual.
"""

from __future__ import annotations

import asyncio
import contextlib


class Link:
    def __init__(self) -> None:
        self.frozen = False
        self.tasks: list[asyncio.Task[None]] = []
        self.writers: list[asyncio.StreamWriter] = []


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.links: list[Link] = []
        self.server: asyncio.Server | None = None
        self.accepted = 0

    async def __aenter__(self) -> TcpProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for link in self.links:
            for writer in link.writers:
                writer.transport.abort()
            for task in link.tasks:
                task.cancel()
        await asyncio.gather(
            *(t for link in self.links for t in link.tasks), return_exceptions=True
        )

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        for link in self.links:
            link.frozen = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = Link()
        self.links.append(link)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link.writers = [writer, up_writer]
        link.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, link)),
            asyncio.create_task(self._pipe(up_reader, writer, link)),
        ]

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: Link) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await source.read(65536):
                if not link.frozen:
                    sink.write(data)
                    await sink.drain()
            if not link.frozen:
                sink.close()
