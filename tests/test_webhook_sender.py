"""One signed POST over a real socket: the name is resolved once and checked, the
connection goes to the address that was checked, and the signature verifies."""

from __future__ import annotations

import pytest
from webhookreceiver import Receiver

from ticker.webhooks import rules, sender
from ticker.webhooks.sender import Limits, Refused

LIMITS = Limits(connect_timeout=0.5, timeout=2)


@pytest.fixture
async def receiver():
    made = Receiver()
    await made.start()
    try:
        yield made
    finally:
        await made.close()


async def test_a_name_is_sent_to_the_address_it_was_checked_as(receiver):
    secret = rules.new_secret()
    receiver.secrets["/in?partner=1"] = secret  # the request target, as sent
    body = b'{"type":"test"}'
    url = f"http://localhost:{receiver.port}/in?partner=1"
    headers = sender.signed_headers(secret, "msg_1", body)
    answer = await sender.post(
        url, body, headers, allow=rules.parse_networks(["127.0.0.0/8", "::1"]), limits=LIMITS
    )
    assert (answer.status, answer.error) == (204, None)
    request = receiver.requests[0]
    assert request.verified and request.headers["host"] == f"localhost:{receiver.port}"
    assert request.headers["webhook-id"] == "msg_1"
    assert request.headers["user-agent"] == sender.USER_AGENT


async def test_every_address_of_a_name_is_checked(receiver):
    with pytest.raises(Refused, match="localhost resolves to a loopback address"):
        await sender.resolve("localhost", receiver.port, ())
    with pytest.raises(Refused, match=r"a loopback address \(::ffff:7f00:1\)"):
        await sender.resolve("::ffff:127.0.0.1", receiver.port, ())
    allowed = await sender.resolve("127.0.0.1", receiver.port, rules.parse_networks(["127.0.0.1"]))
    assert [str(a) for a in allowed] == ["127.0.0.1"]


async def test_no_listener_is_a_failure_with_its_reason():
    from procs import free_port

    url = f"http://127.0.0.1:{free_port()}/"
    allow = rules.parse_networks(["127.0.0.0/8"])
    answer = await sender.post(url, b"{}", {}, allow=allow, limits=LIMITS)
    assert answer.status is None and "Connect" in answer.error


async def test_an_endless_answer_is_read_only_up_to_the_cap():
    import asyncio
    import time

    async def endless(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 500 Oops\r\n\r\n")
        try:
            for _ in range(200):  # 12.8 MB, and the connection stays open
                writer.write(b"x" * 65536)
                await writer.drain()
        except ConnectionError:
            pass

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        answer = await sender.post(
            f"http://127.0.0.1:{port}/",
            b"{}",
            {},
            allow=rules.parse_networks(["127.0.0.1"]),
            limits=Limits(connect_timeout=0.5, timeout=5, body_max_bytes=1000),
        )
        assert time.monotonic() - started < 2
        assert answer.status == 500
        assert answer.error == "HTTP 500: " + "x" * 200
    finally:
        server.close()
