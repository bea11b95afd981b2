"""The hub at the byte level over real sockets: bad input gets a close code and one log
line at most, and nothing but control frames follows the hub's Close."""

from __future__ import annotations

import json
import logging

import pytest
from rawws import BINARY, CLOSE, PING, PONG, TEXT, masked, open_raw, parse_frames, read_to_end

from stack import Stack


@pytest.fixture
async def stack(tmp_path):
    async with Stack(tmp_path) as running:
        yield running


@pytest.mark.parametrize(
    "query",
    [
        "edition=en&since=a:%C2%B2",  # a superscript two: a digit to str.isdigit, not to us
        "edition=en&since=a:%D9%A1",  # an Arabic-Indic one
        "&".join(f"p{n}=1" for n in range(11)),
        "edition=en&since=%ED%A0%80:1",  # a lone surrogate, percent-encoded
        "edition=%FF",
    ],
)
async def test_a_bad_query_closes_with_4400_and_logs_no_traceback(stack, caplog, query):
    caplog.set_level(logging.DEBUG)
    reader, writer, status = await open_raw(stack.hub.port, f"/ws?{query}")
    assert status == b"HTTP/1.1 101 Switching Protocols"
    frames = parse_frames(await read_to_end(reader))
    writer.close()
    assert [f.opcode for f in frames] == [CLOSE] and frames[0].close_code == 4400
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_subscribe_with_a_bad_cursor_closes_with_4400(stack, caplog):
    caplog.set_level(logging.DEBUG)
    reader, writer, _ = await open_raw(stack.hub.port, "/ws?edition=en")
    greeting = parse_frames(await reader.read(65536))
    assert json.loads(greeting[0].data)["type"] == "snapshot"
    message = {"type": "subscribe", "edition": "en", "since": "a:\u00b2"}
    writer.write(masked(TEXT, json.dumps(message).encode()))
    frames = parse_frames(await read_to_end(reader))
    writer.close()
    assert [f.opcode for f in frames] == [CLOSE] and frames[0].close_code == 4400
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (masked(TEXT, b"not json"), 4400),
        (masked(BINARY, b"\x00\x01"), 1003),
        (masked(TEXT, b"\xff\xfe"), 1007),
        (masked(TEXT, b'{"type":"nope"}'), 4400),
    ],
    ids=["not-json", "binary", "not-utf8", "unknown-type"],
)
@pytest.mark.parametrize(
    "good",
    [
        masked(TEXT, b'{"type":"ping"}'),
        masked(TEXT, b'{"type":"subscribe","edition":"ar"}'),
    ],
    ids=["ping", "subscribe"],
)
async def test_nothing_but_control_frames_after_the_close(stack, bad, code, good):
    """A bad frame and a good message in one write, then the good message again after the
    hub's Close: the hub answers neither (RFC 6455 §5.5.1)."""
    reader, writer, _ = await open_raw(stack.hub.port, "/ws?edition=en")
    greeting = parse_frames(await reader.read(65536))
    assert [f.opcode for f in greeting] == [TEXT]
    writer.write(bad + good)
    await writer.drain()
    first = await reader.read(65536)
    writer.write(good + masked(PING, b"still there?"))
    frames = parse_frames(await read_to_end(reader, already=first))
    writer.close()
    assert frames[0].opcode == CLOSE and frames[0].close_code == code
    assert all(f.opcode in (CLOSE, PING, PONG) for f in frames), frames


async def test_a_pong_answers_a_ping_while_open(stack):
    reader, writer, _ = await open_raw(stack.hub.port, "/ws?edition=en")
    parse_frames(await reader.read(65536))
    writer.write(masked(TEXT, b'{"type":"ping"}'))
    frames = parse_frames(await reader.read(65536))
    writer.close()
    assert frames == [type(frames[0])(TEXT, b'{"type":"pong"}')]


@pytest.mark.parametrize(
    ("origin", "host", "status"),
    [
        ("http://news.example:8080", "news.example:8080", b"101"),  # the page's own host
        ("https://NEWS.example", "news.example", b"101"),
        ("http://evil.example", "news.example:8080", b"403"),
        ("http://news.example:8080", "news.example", b"403"),  # another port, another origin
        ("http://other.example", None, b"403"),
    ],
)
async def test_a_page_from_the_host_it_asks_is_the_hubs_own_origin(stack, origin, host, status):
    """Behind one proxy, pages and hubs share an origin under any name: no list needed."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", stack.hub.port)
    lines = [
        "GET /ws?edition=en HTTP/1.1",
        *([f"Host: {host}"] if host else []),
        f"Origin: {origin}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.split(b" ", 2)[1] == status, head
