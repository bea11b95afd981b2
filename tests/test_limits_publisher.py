"""The publisher's limits against abuse, over HTTP, on both stores."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stack import Publisher, Stack, settings_for
from ticker.brokers import make_broker


@pytest.fixture(params=["embedded", "redis"])
def store(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_posts_per_token_are_limited_with_retry_after(tmp_path: Path, store):
    async with Stack(tmp_path, store, post_rate="3/minute") as stack:
        before = (await stack.http.get("/metrics")).text
        for n in range(3):
            await stack.post(headline=f"Allowed {n}")
        refused = await stack.http.post(
            "/api/items", json={"edition": "en", "headline": "One too many"}, headers=stack.auth
        )
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert "editor token" in refused.json()["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Corrections and withdrawals draw on the same budget; reading does not.
        live = (await stack.http.get("/api/items", params={"edition": "en"})).json()["items"]
        assert len(live) == 3
        patch = await stack.http.patch(
            f"/api/items/{live[0]['id']}", json={"urgency": 1}, headers=stack.auth
        )
        assert patch.status_code == 429
        assert (await stack.http.get("/api/whoami", headers=stack.auth)).status_code == 200
        after = (await stack.http.get("/metrics")).text
        limited = "ticker_publisher_rate_limited_total"
        assert value(after, limited, limit="posts") - value(before, limited, limit="posts") == 2


async def test_failed_authentication_is_limited_per_address(tmp_path: Path, store):
    async with Stack(tmp_path, store, auth_failure_rate="3/minute") as stack:
        wrong = {"Authorization": "Bearer not-a-token"}
        for _ in range(3):
            assert (await stack.http.get("/api/whoami", headers=wrong)).status_code == 401
        refused = await stack.http.get("/api/whoami", headers=wrong)
        assert refused.status_code == 429
        assert refused.json()["error"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        # A good token from the same address still passes: a stranger failing from a
        # newsroom's shared address must not lock its editors out.
        assert (await stack.http.get("/api/whoami", headers=stack.auth)).status_code == 200
        assert (await stack.http.get("/api/whoami", headers=wrong)).status_code == 429
        # Public reads need no token and go on.
        assert (await stack.http.get("/api/config")).status_code == 200


async def test_two_publishers_on_one_redis_share_the_limit(tmp_path: Path, redis_url: str):
    async with Stack(tmp_path, redis_url, post_rate="4/minute") as stack:
        other = Publisher(stack.settings, make_broker(stack.settings), own_broker=True)
        base = await other.start()
        try:
            async with httpx.AsyncClient(base_url=base, timeout=10) as second:
                codes = []
                for n in range(6):
                    http = stack.http if n % 2 else second
                    response = await http.post(
                        "/api/items",
                        json={"edition": "en", "headline": f"Shared {n}"},
                        headers=stack.auth,
                    )
                    codes.append(response.status_code)
        finally:
            await other.stop()
        assert codes == [201, 201, 201, 201, 429, 429]


async def test_limits_off_lets_everything_through(tmp_path: Path):
    async with Stack(tmp_path, post_rate="off", auth_failure_rate="off") as stack:
        for n in range(15):
            await stack.post(headline=f"Fast {n}")
        wrong = {"Authorization": "Bearer nope"}
        for _ in range(15):
            assert (await stack.http.get("/api/whoami", headers=wrong)).status_code == 401


# --- bodies ----------------------------------------------------------------------------------


def raw_request(port: int, head: bytes, body: bytes = b"", timeout: float = 5) -> bytes:
    """Send a request by hand; return everything the server sends before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(tmp_path: Path):
    async with Stack(tmp_path, limits={"body_max_bytes": 100}) as stack:
        port = stack.publisher.server.servers[0].sockets[0].getsockname()[1]
        head = (
            b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + stack.token.encode() + b"\r\n"
            b"Content-Length: 1000000\r\n\r\n"
        )
        # Not one byte of the body is sent: the answer comes anyway, and the connection ends.
        answer = await asyncio.to_thread(raw_request, port, head)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b'"too_large"' in answer


async def test_a_chunked_body_is_cut_off_once_past_the_limit(tmp_path: Path):
    async with Stack(tmp_path, limits={"body_max_bytes": 100}) as stack:
        port = stack.publisher.server.servers[0].sockets[0].getsockname()[1]
        head = (
            b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + stack.token.encode() + b"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        # Three chunks of 60 bytes, and no end: the answer comes once the limit is passed.
        body = b"3c\r\n" + b" " * 60 + b"\r\n"
        answer = await asyncio.to_thread(raw_request, port, head, body * 3)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"at most 100 bytes" in answer


async def test_routes_that_take_no_body_refuse_one(tmp_path: Path):
    async with Stack(tmp_path) as stack:
        for method, path in [
            ("GET", "/api/config"),
            ("DELETE", "/api/items/en-nothing"),
            ("GET", "/api/whoami"),
        ]:
            response = await stack.http.request(method, path, content=b"{}", headers=stack.auth)
            assert response.status_code == 413, (method, path)
            assert response.json()["error"] == "too_large"
            assert "no request body" in response.json()["message"]

        async def chunks():
            yield b"{}"

        response = await stack.http.request("GET", "/api/config", content=chunks())
        assert response.status_code == 413
        # Without a body, as ever.
        assert (await stack.http.get("/api/config")).status_code == 200
        assert (
            await stack.http.delete("/api/items/en-nothing", headers=stack.auth)
        ).status_code == 404


def test_settings_of_the_limits_are_checked(tmp_path: Path):
    from ticker import config

    assert settings_for(tmp_path, post_rate="5/second;100/minute").post_rate
    for env in (
        {"TICKER_POST_RATE": "fast"},
        {"TICKER_AUTH_FAILURE_RATE": "0/minute"},
        {"TICKER_TRUSTED_PROXIES": "10.0.0.0/8,proxy"},
        {"TICKER_HUB_MAX_CONNECTIONS_PER_ADDRESS": "-1"},
        {"TICKER_HUB_HANDSHAKES_PER_SECOND": "fast"},
    ):
        with pytest.raises(config.ConfigError) as caught:
            config.from_env(env)
        assert next(iter(env)) in str(caught.value)


# --- behind a proxy --------------------------------------------------------------------------


async def failures_then_status(base: str, forwarded: list[str]) -> list[int]:
    """One failed authentication per X-Forwarded-For value, in turn: their statuses."""
    codes = []
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for address in forwarded:
            response = await http.get(
                "/api/whoami",
                headers={"Authorization": "Bearer nope", "X-Forwarded-For": address},
            )
            codes.append(response.status_code)
    return codes


@pytest.mark.parametrize("trusted", [("127.0.0.1",), ("10.0.0.0/8",)], ids=["trusted", "not"])
async def test_the_publisher_believes_x_forwarded_for_from_trusted_proxies_only(
    tmp_path: Path, trusted: tuple[str, ...]
):
    from dataclasses import replace

    from ticker import servers
    from ticker.brokers.embedded import EmbeddedBroker
    from ticker.publisher import create_app

    settings = replace(
        settings_for(tmp_path),
        auth_failure_rate="2/minute",
        trusted_proxies=trusted,
        log_level="warning",
    )
    broker = EmbeddedBroker(tmp_path / "proxy.db", editions=("en",))
    sock = servers.listen("127.0.0.1", 0, backlog=16)
    server = servers.web_server(settings, create_app(settings, broker))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    try:
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        # The left part is the client's own say-so; the proxy appended the real address.
        codes = await failures_then_status(
            base, ["1.1.1.1, 198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.2"]
        )
    finally:
        server.should_exit = True
        await task
    if trusted == ("127.0.0.1",):
        assert codes == [401, 401, 429, 401]  # each client has its own budget
    else:
        assert codes == [401, 401, 429, 429]  # everyone is the peer, 127.0.0.1
