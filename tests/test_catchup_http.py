"""GET /api/events over HTTP on both stores: pages, resets, conditional requests, bad input."""

from __future__ import annotations

import asyncio

import pytest

from stack import Client, Stack


@pytest.fixture(params=["embedded", "redis"])
async def stack(request, tmp_path):
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with Stack(tmp_path, redis_url=url) as running:
        yield running


async def test_catch_up_gives_the_websocket_messages_after_a_cursor(stack):
    start = (await stack.http.get("/api/events", params={"edition": "en"})).json()
    assert [m["type"] for m in start["messages"]] == ["snapshot"]
    posted = [await stack.post(headline=f"Item {n}") for n in range(3)]
    await stack.withdraw(posted[0]["id"])
    async with Client.connect(stack.ws_url(since=start["cursor"])) as ws:
        assert (await ws.next())["type"] == "resumed"
        over_ws = [await ws.next_event() for _ in range(4)]
    answer = await stack.http.get("/api/events", params={"edition": "en", "since": start["cursor"]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["messages"] == over_ws and body["more"] is False
    assert body["cursor"] == over_ws[-1]["cursor"]
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["cache-control"] == "public, no-cache"


async def test_pages_follow_the_cursor_until_there_is_no_more(stack):
    start = (await stack.http.get("/api/events", params={"edition": "ar"})).json()["cursor"]
    ids = [(await stack.post(edition="ar", headline=f"عاجل {n}"))["id"] for n in range(5)]
    seen, cursor, more = [], start, True
    while more:
        body = (
            await stack.http.get(
                "/api/events", params={"edition": "ar", "since": cursor, "limit": 2}
            )
        ).json()
        seen += [m["item"]["id"] for m in body["messages"]]
        cursor, more = body["cursor"], body["more"]
    assert seen == ids


async def test_nothing_changed_is_a_304_and_a_change_a_new_etag(stack):
    await stack.post(headline="First")
    first = await stack.http.get("/api/events", params={"edition": "en"})
    tag = first.headers["etag"]
    again = await stack.http.get(
        "/api/events", params={"edition": "en"}, headers={"If-None-Match": tag}
    )
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    weak = await stack.http.get(
        "/api/events", params={"edition": "en"}, headers={"If-None-Match": f'"x", W/{tag}'}
    )
    assert weak.status_code == 304
    await stack.post(headline="Second")
    changed = await stack.http.get(
        "/api/events", params={"edition": "en"}, headers={"If-None-Match": tag}
    )
    assert changed.status_code == 200 and changed.headers["etag"] != tag


async def test_a_lost_cursor_gets_the_reset_snapshot(stack):
    await stack.post(headline="Kept")
    body = (await stack.http.get("/api/events", params={"edition": "en", "since": "gone:4"})).json()
    (snapshot,) = body["messages"]
    assert snapshot["type"] == "snapshot" and snapshot["reset"] is True
    assert [i["headline"] for i in snapshot["items"]] == ["Kept"]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"edition": "xx"}, "edition must be one of"),
        ({"edition": "en", "region": "Mars"}, "region 'Mars' is not known"),
        ({"edition": "en", "since": "a:\u00b2"}, "is not a cursor"),
        ({"edition": "en", "limit": "0"}, "limit must be a whole number from 1 to 1000"),
        ({"edition": "en", "limit": "\u0661"}, "limit must be"),
        ({"edition": "en", "limit": "5000"}, "limit must be"),
        ({"edition": "en", "nope": "1"}, "unknown parameter 'nope'"),
    ],
)
async def test_bad_parameters_are_a_400_with_the_reason(stack, params, reason):
    answer = await stack.http.get("/api/events", params=params)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_parameter" and reason in answer.json()["message"]


async def test_a_repeated_parameter_is_a_400(stack):
    answer = await stack.http.get("/api/events?edition=en&edition=ar")
    assert answer.status_code == 400 and "once" in answer.json()["message"]


async def test_a_change_saved_elsewhere_ends_the_304s_within_the_cursor_cache(stack):
    from ticker import items
    from ticker.brokers.base import Change
    from ticker.cursor_cache import TTL_SECONDS

    tag = (await stack.http.get("/api/events", params={"edition": "es"})).headers["etag"]
    # Another publisher process saves a change: this one has not seen it.
    item = items.create(
        {"edition": "es", "headline": "Última hora"},
        editor="desk",
        vocabulary=stack.settings.vocabulary,
        limits=stack.settings.limits,
    )
    await stack.broker.publish(Change("posted", item))
    await asyncio.sleep(TTL_SECONDS * 1.5)
    changed = await stack.http.get(
        "/api/events", params={"edition": "es"}, headers={"If-None-Match": tag}
    )
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert changed.json()["messages"][0]["items"][0]["id"] == item.id
