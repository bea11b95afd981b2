"""The publisher's uvicorn against slow and greedy clients: real sockets, both HTTP parsers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ticker import config, servers


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def slow(request: object) -> PlainTextResponse:
    await asyncio.sleep(0.8)
    return PlainTextResponse("late but whole")


APP = Starlette(routes=[Route("/", hello), Route("/slow", slow)])


@contextlib.asynccontextmanager
async def serving(http: type[asyncio.Protocol], **settings: object) -> AsyncIterator[int]:
    """`servers.web_server` on a free port, as the publisher runs it; yields the port."""
    options = replace(config.from_env({}), log_level="warning", **settings)
    sock = servers.listen("127.0.0.1", 0, backlog=options.accept_backlog)
    server = servers.web_server(options, APP, http=http)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closes the connection within `within` seconds (anything it sent
    before closing is read and ignored)."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


PARSERS = pytest.mark.parametrize(
    "http", [HttpToolsProtocol, H11Protocol], ids=["httptools", "h11"]
)


@PARSERS
async def test_late_headers_close_the_connection_while_others_are_served(http):
    async with serving(http, header_timeout=0.6) as port:
        slow = []
        for partial in (b"", b"GE", b"GET / HTTP/1.1\r\nHost: x\r\n", b"GET / HTTP/1.1\r\nHo"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(partial)
            slow.append((reader, writer))
        # One that finished a request, then dawdles over its second one on the same connection.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        writer.write(b"GET / HTTP/1.1\r\n")
        slow.append((reader, writer))

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(8):  # a normal client keeps working, across the deadline
                assert (await client.get("/")).text == "ok"
                await asyncio.sleep(0.1)
        started = asyncio.get_running_loop().time()
        for reader, writer in slow:
            assert await closed_by_server(reader, within=3)
            writer.close()
        assert asyncio.get_running_loop().time() - started < 3


@PARSERS
async def test_a_request_in_progress_is_not_cut_by_the_header_deadline(http):
    async with (
        serving(http, header_timeout=0.3) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        assert (await client.get("/slow")).text == "late but whole"


@PARSERS
async def test_connections_over_the_per_address_cap_are_closed_at_once(http):
    async with serving(http, max_connections_per_address=5) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port)
        extra_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await closed_by_server(extra_reader, within=2)
        # The held ones still work; once one is gone, a new connection is welcome again.
        reader, writer = held.pop()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
        writer.close()
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/")).text == "ok"
        for _, writer in held:
            writer.close()
