"""The publisher's HTTP API over real HTTP, on the embedded broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from stack import Client, Stack
from ticker.publisher import expiry_sweeper


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
