"""Production shape end to end: a publisher and two hubs, each with its own Redis connection,
against a real redis-server that the tests restart, pause and wipe."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx
import pytest

from stack import Client, Publisher, hub_url, settings_for
from ticker.auth import create_token
from ticker.brokers import make_broker
from ticker.hub import Hub


class RedisStack:
    def __init__(self, tmp_path, redis_url: str, hubs: int = 2) -> None:
        # These tests count every event: the cap of live items (and its retirements) stays
        # out of the way.
        self.settings = settings_for(tmp_path, redis_url, limits={"max_live": 100})
        self.publisher_broker = make_broker(self.settings)
        self.publisher = Publisher(self.settings, self.publisher_broker, own_broker=True)
        self.hub_brokers = [make_broker(self.settings) for _ in range(hubs)]
        self.hubs = [Hub(self.settings, broker) for broker in self.hub_brokers]

    async def __aenter__(self) -> RedisStack:
        base = await self.publisher.start()
        self.http = httpx.AsyncClient(base_url=base, timeout=10)
        for broker, hub in zip(self.hub_brokers, self.hubs, strict=True):
            await broker.start()
            await hub.start(port=0)
            await asyncio.wait_for(hub.ready.wait(), 10)
        self.token = await create_token(self.publisher_broker.tokens, "desk")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        for broker, hub in zip(self.hub_brokers, self.hubs, strict=True):
            await hub.stop()
            await broker.close()
        await self.publisher.stop()

    async def post(self, key: str | None = None, **fields: Any) -> httpx.Response:
        fields.setdefault("edition", "en")
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Idempotency-Key": key or str(uuid.uuid4()),
        }
        return await self.http.post("/api/items", json=fields, headers=headers)

    async def post_until_accepted(self, headline: str) -> dict[str, Any]:
        """Post as a newsroom tool does: retry 503s and timeouts with the same key."""
        key = str(uuid.uuid4())
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                response = await self.post(key, headline=headline)
                if response.status_code == 201:
                    return response.json()
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"]
            await asyncio.sleep(0.1)
        raise AssertionError(f"{headline!r} was never accepted")


@pytest.fixture
async def rstack(tmp_path, redis_url):
    async with RedisStack(tmp_path, redis_url) as running:
        yield running


async def test_an_item_reaches_clients_of_every_hub_and_only_its_edition(rstack):
    async with (
        Client.connect(hub_url(rstack.hubs[0])) as a,
        Client.connect(hub_url(rstack.hubs[1])) as b,
        Client.connect(hub_url(rstack.hubs[1], edition="es")) as es,
    ):
        for client in (a, b, es):
            await client.next()
        item = (await rstack.post(headline="Syrian Foreign Ministry thanks UN voters")).json()
        for client in (a, b):
            event = await client.next_event()
            assert (event["kind"], event["item"]["id"]) == ("posted", item["id"])
        await es.expect_silence()


async def test_cursor_from_one_hub_resumes_on_another(rstack):
    async with Client.connect(hub_url(rstack.hubs[0])) as client:
        cursor = (await client.next())["cursor"]
    missed = [(await rstack.post(headline=f"Missed {n}")).json() for n in range(3)]
    await asyncio.sleep(0.2)
    async with Client.connect(hub_url(rstack.hubs[1], since=cursor)) as client:
        assert (await client.next())["missed"] == 3
        assert [(await client.next_event())["item"]["id"] for _ in range(3)] == [
            m["id"] for m in missed
        ]


async def test_redis_restart_while_posting_loses_nothing_at_the_clients(rstack, redis_server):
    async with (
        Client.connect(hub_url(rstack.hubs[0])) as a,
        Client.connect(hub_url(rstack.hubs[1])) as b,
    ):
        await a.next()
        await b.next()

        async def poster() -> list[dict[str, Any]]:
            return [await rstack.post_until_accepted(f"Alert {n}") for n in range(30)]

        posting = asyncio.create_task(poster())
        await asyncio.sleep(0.3)
        await asyncio.to_thread(redis_server.restart)
        accepted = await asyncio.wait_for(posting, 60)

        for client in (a, b):
            seen = []
            while len(seen) < len(accepted):
                event = await client.next_event(timeout=15)
                seen.append(event["item"]["id"])
            assert seen == [item["id"] for item in accepted]
            await client.expect_silence(0.5)
    listing = (await rstack.http.get("/api/items", params={"edition": "en"})).json()
    assert len(listing["items"]) == 30


async def test_paused_redis_gives_503_then_recovers(rstack, redis_server):
    redis_server.pause()
    try:
        response = await rstack.post(headline="During the outage")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert "unreachable" in response.json()["message"]
        assert (await rstack.http.get("/readyz")).status_code == 503
    finally:
        redis_server.resume()
    accepted = await rstack.post_until_accepted("After the outage")
    listing = (await rstack.http.get("/api/items", params={"edition": "en"})).json()
    assert [i["id"] for i in listing["items"]] == [accepted["id"]]


async def test_a_retried_post_after_a_restart_makes_one_item(rstack, redis_server):
    first = await rstack.post("same-key", headline="Posted once")
    assert first.status_code == 201
    await asyncio.to_thread(redis_server.restart)
    for _ in range(50):
        with contextlib.suppress(httpx.TransportError):
            again = await rstack.post("same-key", headline="Posted once")
            if again.status_code == 201:
                break
        await asyncio.sleep(0.1)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    listing = (await rstack.http.get("/api/items", params={"edition": "en"})).json()
    assert len(listing["items"]) == 1


async def test_redis_that_lost_its_data_resets_clients(rstack, redis_server):
    async with Client.connect(hub_url(rstack.hubs[0])) as client:
        await client.next()
        await rstack.post(headline="Soon forgotten")
        assert (await client.next_event())["kind"] == "posted"
        await asyncio.to_thread(redis_server.restart, True)
        # The hub notices at once if a post reveals the new epoch, or on reconnect anyway.
        reset = await client.next_event(timeout=15)
        assert reset["type"] == "snapshot" and reset["reset"] is True
        assert reset["items"] == []
        # Tokens were lost with the rest of the data.
        rstack.token = await create_token(rstack.publisher_broker.tokens, "desk")
        fresh = await rstack.post_until_accepted("After the loss")
        event = await client.next_event(timeout=10)
        assert event["item"]["id"] == fresh["id"]
        assert event["cursor"].split(":")[0] == reset["cursor"].split(":")[0]
