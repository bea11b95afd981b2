"""The publisher's HTTP API over real HTTP (uvicorn on a free port), on both stores."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import Route

from stack import Client, Stack, settings_for
from ticker import items as rules
from ticker.auth import create_token
from ticker.brokers.base import Change
from ticker.brokers.embedded import EmbeddedBroker
from ticker.publisher import CatchUnexpected, SecurityHeaders, create_app, expiry_sweeper


@pytest.fixture
async def stack(tmp_path):
    async with Stack(tmp_path) as running:
        yield running


async def test_health_and_readiness(stack):
    assert (await stack.http.get("/healthz")).json() == {"status": "ok"}
    assert (await stack.http.get("/readyz")).status_code == 200


async def test_config_lists_the_vocabulary(stack):
    config = (await stack.http.get("/api/config")).json()
    assert [e["code"] for e in config["editions"]] == ["en", "ar", "es"]
    assert {"code": "ar", "dir": "rtl"} in config["editions"]
    assert "US & Canada" in config["regions"] and "Arts&Culture" in config["categories"]


async def test_post_list_correct_withdraw(stack):
    older = await stack.post(headline="Older")
    newer = await stack.post(headline="Newer", regions=["Europe"])
    assert newer["editor"] == "desk" and newer["version"] == 1
    listing = (await stack.http.get("/api/items", params={"edition": "en"})).json()
    assert [i["id"] for i in listing["items"]] == [newer["id"], older["id"]]
    assert listing["cursor"].endswith(":2")
    filtered = await stack.http.get("/api/items", params={"edition": "en", "region": "Europe"})
    assert [i["id"] for i in filtered.json()["items"]] == [newer["id"]]

    fixed = await stack.correct(older["id"], headline="Older, corrected")
    assert (fixed["version"], fixed["headline"]) == (2, "Older, corrected")
    one = (await stack.http.get(f"/api/items/{older['id']}")).json()
    assert one["headline"] == "Older, corrected"

    gone = await stack.withdraw(older["id"])
    assert gone["status"] == "withdrawn"
    assert (await stack.http.get(f"/api/items/{older['id']}")).status_code == 404
    again = await stack.http.delete(f"/api/items/{older['id']}", headers=stack.auth)
    assert again.status_code == 404 and "withdrawn" in again.json()["message"]


async def test_ninjs_format(stack):
    item = await stack.post(headline="Ushakov: talks stay confidential", regions=["Europe"])
    ninjs = (await stack.http.get(f"/api/items/{item['id']}", params={"format": "ninjs"})).json()
    assert ninjs["uri"].endswith(item["id"]) and ninjs["pubstatus"] == "usable"


async def test_editors_only(stack):
    body = {"edition": "en", "headline": "Forged"}
    for headers in ({}, {"Authorization": "Bearer tkr_wrong"}, {"Authorization": "Basic x"}):
        response = await stack.http.post("/api/items", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    item = await stack.post(headline="Real")
    assert (
        await stack.http.patch(f"/api/items/{item['id']}", json={"headline": "x"})
    ).status_code == 401
    assert (await stack.http.delete(f"/api/items/{item['id']}")).status_code == 401
    listing = (await stack.http.get("/api/items", params={"edition": "en"})).json()
    assert [i["headline"] for i in listing["items"]] == ["Real"]


async def test_revoked_token_is_refused(stack):
    await stack.broker.tokens.revoke("desk")
    response = await stack.http.post(
        "/api/items", json={"edition": "en", "headline": "x"}, headers=stack.auth
    )
    assert response.status_code == 401


async def test_idempotency_key_makes_one_item(stack):
    body = {"edition": "en", "headline": "Double-clicked"}
    headers = {**stack.auth, "Idempotency-Key": "click-1"}
    responses = await asyncio.gather(
        *(stack.http.post("/api/items", json=body, headers=headers) for _ in range(5))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 4
    listing = (await stack.http.get("/api/items", params={"edition": "en"})).json()
    assert len(listing["items"]) == 1
    other = await stack.http.post("/api/items", json={**body, "headline": "Other"}, headers=headers)
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("content", "headers", "status", "error"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400, "malformed_json"),
        (b'{"edition": "en"', {"Content-Type": "application/json"}, 400, "malformed_json"),
        (b"[" * 100000 + b"]" * 100000, {"Content-Type": "application/json"}, 413, "too_large"),
        (b"x" * 20000, {"Content-Type": "application/json"}, 413, "too_large"),
        (
            b'{"edition":"en","headline":"x"}',
            {"Content-Type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        (
            b'{"edition":"en","headline":"x"}',
            {"Content-Type": "application/json", "Idempotency-Key": "k" * 200},
            400,
            "invalid_header",
        ),
        (b"[]", {"Content-Type": "application/json"}, 422, "invalid"),
        (b'"just a string"', {"Content-Type": "application/json"}, 422, "invalid"),
    ],
)
async def test_bad_requests_get_clear_4xx_and_write_nothing(stack, content, headers, status, error):
    response = await stack.http.post(
        "/api/items", content=content, headers={**stack.auth, **headers}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"] == error and response.json()["message"]
    listing = (await stack.http.get("/api/items", params={"edition": "en"})).json()
    assert listing["items"] == [] and listing["cursor"].endswith(":0")


async def test_deeply_nested_json_is_a_400_not_a_500(stack):
    response = await stack.http.post(
        "/api/items",
        content=b"[" * 5000 + b"]" * 5000,
        headers={**stack.auth, "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422), response.text


async def test_validation_names_each_field(stack):
    response = await stack.http.post(
        "/api/items",
        json={"edition": "fr", "headline": "", "link": "ftp://x", "urgency": 11},
        headers=stack.auth,
    )
    assert response.status_code == 422
    assert set(response.json()["fields"]) == {"edition", "headline", "link", "urgency"}


async def test_correction_validation_and_pinned_version(stack):
    item = await stack.post(headline="Original")
    bad = await stack.http.patch(
        f"/api/items/{item['id']}", json={"urgency": "high"}, headers=stack.auth
    )
    assert bad.status_code == 422 and "urgency" in bad.json()["fields"]
    await stack.correct(item["id"], headline="Second")
    stale = await stack.http.patch(
        f"/api/items/{item['id']}", json={"headline": "Third", "version": 1}, headers=stack.auth
    )
    assert stale.status_code == 422 and "version" in stale.json()["fields"]
    current = (await stack.http.get(f"/api/items/{item['id']}")).json()
    assert (current["headline"], current["version"]) == ("Second", 2)


async def test_concurrent_corrections_all_land_in_sequence(stack):
    item = await stack.post(headline="Base")
    results = await asyncio.gather(*(stack.correct(item["id"], urgency=n) for n in range(1, 6)))
    assert sorted(r["version"] for r in results) == [2, 3, 4, 5, 6]


async def test_unknown_items_and_routes(stack):
    assert (await stack.http.get("/api/items/en-nope")).status_code == 404
    assert (await stack.http.get("/api/items/" + "x" * 500)).status_code == 404
    assert (
        await stack.http.patch("/api/items/zz-nope", json={"headline": "x"}, headers=stack.auth)
    ).status_code == 404
    missing = await stack.http.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert (await stack.http.put("/api/items", json={})).status_code == 405
    assert (await stack.http.get("/api/items", params={"edition": "fr"})).status_code == 400
    bad_region = await stack.http.get("/api/items", params={"edition": "en", "region": "Mars"})
    assert bad_region.status_code == 400 and "Mars" in bad_region.json()["message"]


async def test_strict_security_headers(stack):
    response = await stack.http.get("/api/config")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert f"ws://127.0.0.1:{stack.settings.hub_port}" in csp
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_security_headers_wrap_the_whole_app(tmp_path):
    """Outside Starlette's own error middleware too, so even its last-resort answer has them."""
    app = create_app(settings_for(tmp_path), EmbeddedBroker(":memory:", editions=("en",)))
    outermost = app.build_middleware_stack()
    assert isinstance(outermost, SecurityHeaders)
    assert isinstance(outermost.app, ServerErrorMiddleware)
    assert isinstance(outermost.app.app, CatchUnexpected)


async def test_expiry_removes_the_item_everywhere(stack):
    async with Client.connect(stack.ws_url()) as client:
        await client.next()
        item = await stack.post(headline="Short-lived", expires_in=1)
        assert (await client.next_event())["kind"] == "posted"
        sweeper = asyncio.create_task(expiry_sweeper(stack.broker, interval=0.1))
        try:
            expired = await client.next_event(timeout=5)
        finally:
            sweeper.cancel()
        assert (expired["kind"], expired["item"]["id"]) == ("expired", item["id"])
        assert expired["item"]["status"] == "expired"
    assert (await stack.http.get(f"/api/items/{item['id']}")).status_code == 404
    assert await stack.broker.due(datetime.now(UTC) + timedelta(days=30)) == []


# --- hostile input, on both stores ------------------------------------------------------


@pytest.fixture(params=["embedded", "redis"])
async def any_stack(request, tmp_path):
    """The publisher on each store in turn: bad input must be refused the same way on both."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with Stack(tmp_path, redis_url) as running:
        yield running


JSON = {"Content-Type": "application/json"}


def assert_secured(response):
    """The security headers are on every answer, errors included."""
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def assert_clean_error(response, status):
    """A refusal is a JSON body with `error` and `message`, encodable as strict UTF-8."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = json.loads(response.content.decode("utf-8"))
    assert body["error"] and body["message"]
    assert_secured(response)
    return body


async def assert_connection_kept(stack, response):
    """The keep-alive connection that carried `response` serves the next request too."""
    after = await stack.http.get("/healthz")
    assert after.status_code == 200
    assert after.extensions["network_stream"] is response.extensions["network_stream"]


async def assert_nothing_written(stack, edition="en"):
    listing = (await stack.http.get("/api/items", params={"edition": edition})).json()
    assert listing["items"] == [] and listing["cursor"].endswith(":0")


@pytest.mark.parametrize(
    "value",
    [
        b"-1e20",
        b"-Infinity",
        b"-1e308",
        b"1e308",
        b"Infinity",
        b"1e400",
        b"NaN",
        b"true",
        b"false",
        b"-100000000000000000000000000000",
        b"100000000000000000000000000000",
        b"0",
        b'"60"',
        b"[60]",
    ],
)
async def test_hostile_expires_in_is_a_422_naming_the_field(any_stack, value):
    stack = any_stack
    response = await stack.http.post(
        "/api/items",
        content=b'{"edition": "en", "headline": "x", "expires_in": %s}' % value,
        headers={**stack.auth, **JSON},
    )
    body = assert_clean_error(response, 422)
    assert set(body["fields"]) == {"expires_in"} and "expires_in" in body["message"]
    await assert_connection_kept(stack, response)
    item = await stack.post(headline="Kept")
    fixed = await stack.http.patch(
        f"/api/items/{item['id']}",
        content=b'{"expires_in": %s}' % value,
        headers={**stack.auth, **JSON},
    )
    assert set(assert_clean_error(fixed, 422)["fields"]) == {"expires_in"}
    await assert_connection_kept(stack, fixed)


async def test_a_lone_surrogate_in_a_field_name_gets_a_clean_422(any_stack):
    stack = any_stack
    response = await stack.http.post(
        "/api/items",
        content=rb'{"edition": "en", "headline": "x", "\ud800": 1, "a\udfffb": 2}',
        headers={**stack.auth, **JSON},
    )
    body = assert_clean_error(response, 422)
    assert set(body["fields"]) == {r"\ud800", r"a\udfffb"}
    assert body["fields"][r"\ud800"] == "unknown field"
    await assert_connection_kept(stack, response)
    await assert_nothing_written(stack)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("link", r'"https://news.example/\ud800"'),
        ("link", r'"https://\udc00.example/"'),
        ("headline", r'"Breaking \udbff news"'),
        ("source", r'"Agency \ud83d"'),
        ("regions", r'["\ud800Europe"]'),
        ("categories", r'["Politics\udc00"]'),
        ("expires", r'"2026-05-07T15:42:00\ud800Z"'),
    ],
)
async def test_a_lone_surrogate_in_a_value_is_a_422_naming_the_field(any_stack, field, value):
    stack = any_stack
    body = {"edition": '"en"', "headline": '"x"', field: value}
    content = ("{" + ", ".join(f'"{k}": {v}' for k, v in body.items()) + "}").encode()
    response = await stack.http.post("/api/items", content=content, headers={**stack.auth, **JSON})
    assert set(assert_clean_error(response, 422)["fields"]) == {field}
    await assert_connection_kept(stack, response)
    await assert_nothing_written(stack)

    item = await stack.post(headline="Kept")
    content = f'{{"{field}": {value}}}'.encode()
    fixed = await stack.http.patch(
        f"/api/items/{item['id']}", content=content, headers={**stack.auth, **JSON}
    )
    assert set(assert_clean_error(fixed, 422)["fields"]) == {field}
    await assert_connection_kept(stack, fixed)
    current = (await stack.http.get(f"/api/items/{item['id']}")).json()
    assert current["version"] == 1


@pytest.mark.parametrize(
    "invisible",
    [
        "\u200b",
        "\u200c",
        "\u200d",
        "\ufeff",
        "\u3164",
        "\u2800",
        "\u115f\u1160",
        "\uffa0",
        "\u2060\u2061\u2062\u2063\u2064",
        "\u180e",
        "\u00ad",
        "\u034f",
        "\u17b4\u17b5",
        "\ufe0f",
        "\U000e0041\U000e0042",
        "\u3000\u200b",
        " \u200b \u2800 ",
    ],
)
async def test_invisible_headlines_and_sources_are_refused(any_stack, invisible):
    stack = any_stack
    response = await stack.http.post(
        "/api/items", json={"edition": "en", "headline": invisible * 3}, headers=stack.auth
    )
    body = assert_clean_error(response, 422)
    assert body["fields"] == {"headline": "has no visible character"}
    assert body["message"] == "headline has no visible character"
    source = await stack.http.post(
        "/api/items",
        json={"edition": "en", "headline": "Visible", "source": invisible},
        headers=stack.auth,
    )
    assert assert_clean_error(source, 422)["fields"] == {"source": "has no visible character"}
    await assert_nothing_written(stack)
    item = await stack.post(headline="Visible")
    blanked = await stack.http.patch(
        f"/api/items/{item['id']}", json={"headline": invisible}, headers=stack.auth
    )
    assert assert_clean_error(blanked, 422)["fields"] == {"headline": "has no visible character"}


async def test_invisible_joiners_inside_visible_text_are_kept(any_stack):
    stack = any_stack
    for headline in (
        "Coders \U0001f469\u200d\U0001f4bb meet",
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
    ):
        assert (await stack.post(headline=headline))["headline"] == headline


async def test_an_idempotency_key_is_scoped_to_the_editor_and_the_edition(any_stack):
    stack = any_stack
    headers = {**stack.auth, "Idempotency-Key": "desk-42"}

    async def post(**body):
        return await stack.http.post("/api/items", json=body, headers=headers)

    first = await post(edition="en", headline="Ceasefire announced")
    assert first.status_code == 201
    replay = await post(edition="en", headline="Ceasefire announced")
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    # Same key, same edition, another body: refused, nothing written.
    other = await post(edition="en", headline="Ceasefire collapses")
    body = assert_clean_error(other, 422)
    assert body["error"] == "idempotency_key_reused" and "edition" in body["message"]
    # Same key in another edition: a separate request, which makes its own item...
    arabic = await post(edition="ar", headline="\u0625\u0639\u0644\u0627\u0646 \u0648\u0642\u0641")
    assert arabic.status_code == 201 and "idempotent-replayed" not in arabic.headers
    assert arabic.json()["id"].startswith("ar-")
    # ...and is replayed and guarded within that edition in turn.
    again = await post(edition="ar", headline="\u0625\u0639\u0644\u0627\u0646 \u0648\u0642\u0641")
    assert again.json()["id"] == arabic.json()["id"] and again.headers["idempotent-replayed"]
    assert (await post(edition="ar", headline="Other")).status_code == 422
    # Another editor's identical key is theirs alone.
    token = await create_token(stack.broker.tokens, "night")
    theirs = await stack.http.post(
        "/api/items",
        json={"edition": "en", "headline": "Ceasefire announced"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "desk-42"},
    )
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    for edition, count in (("en", 2), ("ar", 1), ("es", 0)):
        listing = (await stack.http.get("/api/items", params={"edition": edition})).json()
        assert len(listing["items"]) == count, edition


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/items?edition=%ED%A0%80", 400),
        ("GET", "/api/items?edition=en&region=%ED%A0%80&category=%00", 400),
        ("GET", "/api/items?edition=en&format=%ff%fe", 400),
        ("GET", "/api/items?edition=" + "e" * 5000, 400),
        ("GET", "/api/items?%ff=1&&&=&edition", 400),
        ("GET", "/api/items/%ED%A0%80", 404),
        ("GET", "/api/items/en-%ED%A0%80%00", 404),
        ("GET", "/api/items/en-%F0%9F%98%80?format=ninjs", 404),
        ("GET", "/api/items/-", 404),
        ("GET", "/api/items/en-" + "x" * 5000, 404),
        ("GET", "/api/items/en-%25%", 404),
        ("DELETE", "/api/items/%ED%A0%80", 404),
        ("DELETE", "/api/items/en-%00", 404),
        ("DELETE", "/api/items/" + "x" * 5000, 404),
        ("GET", "/static/%00", 404),
        ("GET", "/static/..%2F..%2Fetc%2Fpasswd", 404),
        ("GET", "/%ED%A0%80", 404),
    ],
)
async def test_odd_paths_and_queries_get_clean_answers(any_stack, method, path, status):
    stack = any_stack
    response = await stack.http.request(method, path, headers=stack.auth)
    if status == 200:
        assert response.status_code == 200 and response.json()["items"] == []
        assert_secured(response)
    else:
        assert_clean_error(response, status)
    await assert_connection_kept(stack, response)


@pytest.mark.parametrize(
    "content",
    [b"[]", b"null", b"1", b'"headline"', b"true", b"[{}]", b"{}", b'{"version": 1}'],
)
async def test_a_correction_that_is_not_an_object_is_a_422(any_stack, content):
    stack = any_stack
    item = await stack.post(headline="Kept")
    response = await stack.http.patch(
        f"/api/items/{item['id']}", content=content, headers={**stack.auth, **JSON}
    )
    assert_clean_error(response, 422)
    await assert_connection_kept(stack, response)
    assert (await stack.http.get(f"/api/items/{item['id']}")).json()["version"] == 1


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer tkr_\u00e9".encode("latin-1"),
        "Bearer tkr_\u00e9\u00e8".encode(),
        b"Bearer tkr_\xff\xfe\xed\xa0\x80",
        b"\xff\xfe",
        "B\u00e9arer x".encode(),
        b"Bearer " + b"tkr_" + b"\x80" * 150,
        b"Bearer",
        b"bearer  tkr_",
    ],
)
async def test_odd_authorization_headers_are_a_401(any_stack, authorization):
    stack = any_stack
    for method, path, body in (
        ("GET", "/api/whoami", None),
        ("POST", "/api/items", {"edition": "en", "headline": "x"}),
        ("PATCH", "/api/items/en-nope", {"headline": "x"}),
        ("DELETE", "/api/items/en-nope", None),
    ):
        response = await stack.http.request(
            method, path, json=body, headers={"Authorization": authorization}
        )
        assert_clean_error(response, 401)
        await assert_connection_kept(stack, response)
    await assert_nothing_written(stack)


async def test_a_non_ascii_idempotency_key_is_a_400(any_stack):
    stack = any_stack
    response = await stack.http.post(
        "/api/items",
        content=b'{"edition": "en", "headline": "x"}',
        headers={**stack.auth, **JSON, "Idempotency-Key": "\u00e9".encode("latin-1")},
    )
    assert_clean_error(response, 400)


@pytest.mark.parametrize("store", ["embedded", "redis"])
async def test_an_unexpected_error_is_a_clean_json_500_on_a_kept_connection(
    request, tmp_path, caplog, store
):
    redis_url = request.getfixturevalue("redis_url") if store == "redis" else None
    stack = Stack(tmp_path, redis_url)

    async def fails(request):
        if request.method == "POST":  # a bug after the change was saved
            item = rules.create(
                {"edition": "en", "headline": "Saved before the bug"},
                editor="desk",
                vocabulary=stack.settings.vocabulary,
                limits=stack.settings.limits,
            )
            await stack.broker.publish(Change("posted", item))
        raise RuntimeError("a bug, not the editor's fault")

    stack.publisher.server.config.app.router.routes.append(
        Route("/fails", fails, methods=["GET", "POST"])
    )
    caplog.set_level(logging.ERROR, logger="ticker.publisher")
    async with stack:
        read = await stack.http.get("/fails")
        body = assert_clean_error(read, 500)
        assert body["error"] == "internal" and "nothing was changed" in body["message"]
        assert "Traceback" not in read.text and "a bug" not in read.text
        await assert_connection_kept(stack, read)

        write = await stack.http.post("/fails", json={}, headers=stack.auth)
        body = assert_clean_error(write, 500)
        assert "nothing was changed" not in body["message"]
        assert "may or may not" in body["message"]
        await assert_connection_kept(stack, write)
        listing = (await stack.http.get("/api/items", params={"edition": "en"})).json()
        assert [i["headline"] for i in listing["items"]] == ["Saved before the bug"]
    failures = [r for r in caplog.records if r.name == "ticker.publisher"]
    assert len(failures) == 2 and all(r.exc_info for r in failures)
