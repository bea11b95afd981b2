"""The archive over real HTTP on both stores: who may read it, its answers, its refusals, and
the backfill of a store written before it existed."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis
from test_broker_conformance import dated, fix

from stack import Stack
from ticker import archive
from ticker.brokers.base import Change
from ticker.brokers.embedded import EmbeddedBroker
from ticker.brokers.redis import RedisBroker
from ticker.items import withdraw


@pytest.fixture(params=["embedded", "redis"])
async def stack(request, tmp_path):
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with Stack(tmp_path, redis_url=url) as running:
        yield running


async def test_the_archive_is_for_editors_and_the_live_list_for_everyone(stack):
    item = await stack.post(headline="Quake hits the coast")
    await stack.withdraw(item["id"])
    live = await stack.http.get("/api/items", params={"edition": "en", "status": "live"})
    assert live.status_code == 200 and live.json()["items"] == []
    assert live.headers["access-control-allow-origin"] == "*"
    for asked in ({"status": "all"}, {"status": "withdrawn"}, {"q": "quake"}, {"limit": "5"}):
        refused = await stack.http.get("/api/items", params={"edition": "en", **asked})
        assert refused.status_code == 401, asked
        assert refused.json()["error"] == "unauthorized"
    answer = await stack.http.get(
        "/api/items", params={"edition": "en", "status": "all"}, headers=stack.auth
    )
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "private, no-store"
    assert "access-control-allow-origin" not in answer.headers
    body = answer.json()
    assert body.keys() == {"edition", "status", "items", "next"}
    assert (body["edition"], body["status"], body["next"]) == ("en", "all", None)
    [gone] = body["items"]
    assert (gone["id"], gone["status"], gone["version"]) == (item["id"], "withdrawn", 2)


async def test_search_and_paging_over_http(stack):
    posted = [await stack.post(headline=f"Política número {n}") for n in range(5)]
    await stack.post(headline="Weather", edition="es")
    seen: list[str] = []
    params = {"edition": "en", "q": "POLITICA", "limit": "2"}
    while True:
        answer = await stack.http.get("/api/items", params=params, headers=stack.auth)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["items"]) <= 2
        seen += [item["id"] for item in body["items"]]
        if body["next"] is None:
            break
        params["cursor"] = body["next"]
    assert seen == [item["id"] for item in reversed(posted)]
    mine = await stack.http.get(
        "/api/items",
        params={"edition": "en", "editor": "desk", "status": "live"},
        headers=stack.auth,
    )
    assert len(mine.json()["items"]) == 5


@pytest.mark.parametrize(
    ("asked", "field"),
    [
        ({"edition": "en", "status": "gone"}, "status"),
        ({"edition": "xx", "status": "all"}, "edition"),
        ({"status": "all"}, "edition"),
        ({"edition": "en", "from": "yesterday"}, "from"),
        ({"edition": "en", "to": "2026-02-30"}, "to"),
        ({"edition": "en", "cursor": "bm9wZQ"}, "cursor"),
        ({"edition": "en", "limit": "0"}, "limit"),
        ({"edition": "en", "limit": "1000"}, "limit"),
        ({"edition": "en", "q": "x" * 201}, "q"),
        ({"edition": "en", "q": "...", "region": "Europe"}, "region"),
    ],
)
async def test_bad_archive_parameters_are_a_400_naming_the_field(stack, asked, field):
    answer = await stack.http.get("/api/items", params=asked, headers=stack.auth)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == "invalid_parameter"
    assert list(body["fields"]) == [field]


async def test_the_openapi_document_describes_the_archive(stack):
    doc = (await stack.http.get("/openapi.json")).json()
    listing = doc["paths"]["/api/items"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    assert {"status", "q", "editor", "from", "to", "cursor", "limit"} <= names
    assert {"400", "401", "503"} <= listing["responses"].keys()
    assert "ArchivePage" in doc["components"]["schemas"]


# --- a store written before the archive --------------------------------------------------------


async def old_store_embedded(broker: EmbeddedBroker) -> None:
    """What the file looked like before: no archive tables at all."""
    broker.db.executescript(
        "DROP TABLE archive; DROP TABLE archive_terms; DROP TABLE archive_backfilled;"
    )


async def old_store_redis(broker: RedisBroker) -> None:
    """What Redis held before: no archive keys, and no mark on the editions' meta."""
    client = Redis.from_url(broker.url)
    try:
        keys = [key async for key in client.scan_iter("ticker:*:archive*")]
        assert keys
        await client.delete(*keys)
        for edition in broker.editions:
            await client.hdel(f"ticker:{{{edition}}}:meta", "archived")
    finally:
        await client.aclose()


@pytest.mark.parametrize("store", ["embedded", "redis"])
async def test_the_backfill_archives_an_older_store_once(store, tmp_path, request):
    def make():
        if store == "embedded":
            return EmbeddedBroker(tmp_path / "t.db", editions=("en", "ar", "es"), history=3)
        return RedisBroker(
            request.getfixturevalue("redis_url"), editions=("en", "ar", "es"), history=3
        )

    broker = make()
    await broker.start()
    items = [dated(f"Item {n}", n) for n in range(6)]
    for item in items:
        await broker.publish(Change("posted", item))
    # The history keeps the last 3 events: the withdrawals of items 0 and 2 are there, and
    # nowhere else (withdrawn items are not live).
    await broker.publish(Change("withdrawn", withdraw(items[0], editor="chief"), 1))
    await fix(broker, items[1], headline="Item one, corrected")
    await broker.publish(Change("withdrawn", withdraw(items[2], editor="chief"), 1))
    await (old_store_embedded if store == "embedded" else old_store_redis)(broker)
    await broker.close()

    broker = make()
    await broker.start()
    try:
        page = await broker.archive(archive.ArchiveQuery("en"))
        found = {item["headline"]: (item["status"], item["version"]) for item in page.items}
        assert found == {
            "Item 5": ("live", 1),
            "Item 4": ("live", 1),
            "Item 3": ("live", 1),
            "Item 2": ("withdrawn", 2),
            "Item one, corrected": ("live", 2),
            "Item 0": ("withdrawn", 2),
        }
        # From then on every publish archives itself, across restarts.
        await broker.publish(Change("posted", dated("Item 6", 6)))
        await broker.close()
        broker = make()
        await broker.start()
        words = tuple(archive.words("item"))
        page = await broker.archive(archive.ArchiveQuery("en", words=words))
        assert len(page.items) == 7
        assert json.dumps(page.items[0]["headline"]) == '"Item 6"'
    finally:
        await broker.close()
