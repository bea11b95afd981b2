"""Roles, scoped tokens and the audit trail over real HTTP, on both stores."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from procs import TICKER, free_port, stop, ticker
from test_processes import wait_for

from stack import Stack
from ticker.auth import create_token


@pytest.fixture(params=["embedded", "redis"])
async def stack(request: pytest.FixtureRequest, tmp_path: Any):
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with Stack(tmp_path, url) as running:
        yield running


async def token(stack: Stack, name: str, roles: tuple[str, ...], **scope: Any) -> dict[str, str]:
    secret = await create_token(stack.broker.tokens, name, roles=roles, **scope)
    return {"Authorization": f"Bearer {secret}"}


async def post(stack: Stack, auth: dict[str, str], edition: str = "en") -> httpx.Response:
    return await stack.http.post(
        "/api/items", json={"edition": edition, "headline": "Quake"}, headers=auth
    )


async def audit(stack: Stack, auth: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await stack.http.get("/api/audit", params=params, headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_editor_works_in_its_editions_only(stack: Stack) -> None:
    amal = await token(stack, "amal", ("editor",), editions=("en", "ar"))
    omar = await token(stack, "omar", ("editor",), editions=("en",))
    assert (await post(stack, amal, "ar")).status_code == 201
    refused = await post(stack, amal, "es")
    assert refused.status_code == 403
    assert "'es'" in refused.json()["message"] and refused.json()["fields"] == {
        "edition": "out of scope"
    }
    # A desk shares its editions: omar corrects and withdraws amal's English item,
    item = (await post(stack, amal)).json()
    fixed = await stack.http.patch(f"/api/items/{item['id']}", json={"urgency": 1}, headers=omar)
    assert fixed.status_code == 200 and fixed.json()["editor"] == "omar"
    # but not her Arabic one.
    arabic = (await post(stack, amal, "ar")).json()
    for attempt in (
        stack.http.patch(f"/api/items/{arabic['id']}", json={"urgency": 1}, headers=omar),
        stack.http.delete(f"/api/items/{arabic['id']}", headers=omar),
    ):
        answer = await attempt
        assert answer.status_code == 403 and "'ar'" in answer.json()["message"]
    assert (await stack.http.delete(f"/api/items/{item['id']}", headers=omar)).status_code == 200


async def test_a_chief_withdraws_anyones_item_and_an_admin_posts_nothing(stack: Stack) -> None:
    amal = await token(stack, "amal", ("editor",), editions=("es",))
    chief = await token(stack, "rana", ("chief",))
    admin = await token(stack, "ops", ("admin",))
    both = await token(stack, "lina", ("admin", "editor"), editions=("es",))
    item = (await post(stack, amal, "es")).json()
    assert (await stack.http.delete(f"/api/items/{item['id']}", headers=chief)).status_code == 200
    assert (await post(stack, chief, "ar")).status_code == 201
    refused = await post(stack, admin)
    assert refused.status_code == 403
    assert "editor or chief role" in refused.json()["message"]
    assert (await post(stack, both, "es")).status_code == 201
    assert (await post(stack, both, "en")).status_code == 403
    # Token management and the audit trail are not an editor's.
    for auth, status in ((amal, 403), (chief, 403), (admin, 200)):
        assert (await stack.http.get("/api/tokens", headers=auth)).status_code == status
    answer = await stack.http.get("/api/tokens", headers=amal)
    assert "admin role" in answer.json()["message"]
    assert (await stack.http.get("/api/audit", headers=amal)).status_code == 403
    assert (await stack.http.get("/api/audit", headers=chief)).status_code == 200
    assert (await stack.http.get("/api/audit", headers=admin)).status_code == 200


async def test_expired_revoked_and_unknown_tokens_say_which(stack: Stack) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    late = await token(stack, "late", ("editor",), expires=past)
    answer = await post(stack, late)
    assert answer.status_code == 401 and answer.json()["error"] == "token_expired"
    assert answer.json()["message"].startswith("token expired")
    gone = await token(stack, "gone", ("editor",))
    assert (await post(stack, gone)).status_code == 201
    await stack.broker.tokens.revoke("gone")
    answer = await post(stack, gone)
    assert answer.status_code == 401 and answer.json() == {
        "error": "token_revoked",
        "message": "token revoked",
    }
    answer = await post(stack, {"Authorization": "Bearer tkr_nope"})
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"


async def test_legacy_tokens_follow_the_setting(stack: Stack) -> None:
    # The stack's own token was made without roles, as every token was before them.
    me = (await stack.http.get("/api/whoami", headers=stack.auth)).json()
    assert me == {
        "editor": "desk",
        "name": "desk",
        "roles": ["chief"],
        "editions": None,
        "expires": None,
    }
    assert (await post(stack, stack.auth, "es")).status_code == 201
    assert (await stack.http.get("/api/tokens", headers=stack.auth)).status_code == 403


async def test_a_publisher_can_treat_legacy_tokens_as_editors(tmp_path: Any) -> None:
    async with Stack(tmp_path, legacy_token_role=("editor",)) as stack:
        me = (await stack.http.get("/api/whoami", headers=stack.auth)).json()
        assert (me["roles"], me["editions"]) == (["editor"], None)
        assert (await post(stack, stack.auth, "es")).status_code == 201


async def test_admins_manage_tokens_over_http(stack: Stack) -> None:
    admin = await token(stack, "ops", ("admin",))
    made = await stack.http.post(
        "/api/tokens",
        json={"name": "amal", "roles": "editor", "editions": ["en"], "expires": "90d"},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    secret = body.pop("token")
    assert secret.startswith("tkr_")
    expires = datetime.fromisoformat(body.pop("expires"))
    assert timedelta(days=89) < expires - datetime.now(UTC) < timedelta(days=91)
    assert body == {"name": "amal", "roles": ["editor"], "editions": ["en"]}
    amal = {"Authorization": f"Bearer {secret}"}
    me = (await stack.http.get("/api/whoami", headers=amal)).json()
    assert (me["name"], me["roles"], me["editions"]) == ("amal", ["editor"], ["en"])

    listing = (await stack.http.get("/api/tokens", headers=admin)).json()["tokens"]
    assert [t["name"] for t in listing] == ["amal", "desk", "ops"]
    assert secret not in str(listing) and "digest" not in str(listing)
    assert {t["name"]: t["legacy"] for t in listing} == {"amal": False, "desk": True, "ops": False}

    taken = await stack.http.post(
        "/api/tokens", json={"name": "amal", "roles": "editor"}, headers=admin
    )
    assert taken.status_code == 409

    rotated = await stack.http.post("/api/tokens/amal/rotate", headers=admin)
    assert rotated.status_code == 200
    fresh = {"Authorization": f"Bearer {rotated.json()['token']}"}
    assert (await post(stack, amal)).json()["error"] == "token_revoked"
    assert (await post(stack, fresh)).status_code == 201
    assert (await stack.http.get("/api/whoami", headers=fresh)).json()["editions"] == ["en"]

    assert (await stack.http.delete("/api/tokens/amal", headers=admin)).status_code == 200
    assert (await post(stack, fresh)).json()["error"] == "token_revoked"
    assert (await stack.http.delete("/api/tokens/amal", headers=admin)).status_code == 404
    assert (await stack.http.post("/api/tokens/amal/rotate", headers=admin)).status_code == 404

    actions = [e["action"] for e in (await audit(stack, admin))["entries"]]
    assert actions[:4] == ["token.revoked", "posted", "token.rotated", "token.created"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "roles": "writer"}, "roles"),
        ({"name": "x", "roles": []}, "roles"),
        ({"name": "x", "roles": 3}, "roles"),
        ({"name": "x", "roles": "editor", "editions": ["xx"]}, "editions"),
        ({"name": "x", "roles": "chief", "editions": ["en"]}, "editions"),
        ({"name": "x", "roles": "editor", "expires": "soon"}, "expires"),
        ({"name": "x", "roles": "editor", "expires": "2001-01-01"}, "expires"),
        ({"name": "no spaces", "roles": "editor"}, "name"),
        ({"roles": "editor"}, "name"),
        ({"name": "x", "roles": "editor", "colour": "red"}, "colour"),
    ],
)
async def test_bad_token_fields_are_named(stack: Stack, body: dict[str, Any], field: str) -> None:
    admin = await token(stack, "ops", ("admin",))
    answer = await stack.http.post("/api/tokens", json=body, headers=admin)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["fields"]


async def test_every_change_is_audited_with_who_and_from_where(stack: Stack) -> None:
    amal = await token(stack, "amal", ("editor",))
    chief = await token(stack, "rana", ("chief",))
    forwarded = {**amal, "X-Forwarded-For": "203.0.113.7", "User-Agent": "desk-console/2"}
    item = (await post(stack, forwarded)).json()
    await stack.http.patch(
        f"/api/items/{item['id']}", json={"headline": "Quake, 6.1"}, headers=forwarded
    )
    await stack.http.delete(f"/api/items/{item['id']}", headers=chief)
    # Failed changes leave nothing: a refused field, a pinned version that moved on.
    other = (await post(stack, amal)).json()
    bad = await stack.http.patch(f"/api/items/{other['id']}", json={"urgency": 99}, headers=amal)
    assert bad.status_code == 422
    stale = await stack.http.patch(
        f"/api/items/{other['id']}", json={"headline": "x", "version": 9}, headers=amal
    )
    assert stale.status_code == 422 and "version" in stale.json()["fields"]
    invalid = await stack.http.post("/api/items", json={"edition": "en"}, headers=amal)
    assert invalid.status_code == 422

    page = await audit(stack, chief, item=item["id"])
    assert [e["action"] for e in page["entries"]] == ["withdrawn", "corrected", "posted"]
    withdrawn, corrected, posted = page["entries"]
    assert (corrected["actor"], corrected["role"]) == ("amal", "editor")
    assert (corrected["address"], corrected["user_agent"]) == ("203.0.113.7", "desk-console/2")
    assert corrected["changes"]["headline"] == ["Quake", "Quake, 6.1"]
    assert (withdrawn["actor"], withdrawn["role"]) == ("rana", "chief")
    assert withdrawn["changes"]["status"] == ["live", "withdrawn"]
    assert withdrawn["address"] == "127.0.0.1"
    assert posted["changes"]["headline"] == [None, "Quake"]
    everything = await audit(stack, chief)
    assert [e["action"] for e in everything["entries"]] == [
        "posted",
        "withdrawn",
        "corrected",
        "posted",
        "token.created",
        "token.created",
        "token.created",
    ]
    assert [e["subject"] for e in everything["entries"][4:]] == ["rana", "amal", "desk"]
    assert [e["item"] for e in (await audit(stack, chief, editor="rana"))["entries"]] == [
        item["id"]
    ]


async def test_the_audit_pages_and_refuses_bad_filters(stack: Stack) -> None:
    chief = await token(stack, "rana", ("chief",))
    for _ in range(5):
        assert (await post(stack, chief)).status_code == 201
        await asyncio.sleep(0.003)
    first = await audit(stack, chief, limit=3)
    second = await audit(stack, chief, limit=3, cursor=first["cursor"])
    third = await audit(stack, chief, limit=3, cursor=second["cursor"])
    ids = [e["id"] for page in (first, second, third) for e in page["entries"]]
    # five posts and two tokens made (the stack's and the chief's)
    assert len(ids) == len(set(ids)) == 7 and third["cursor"] is None
    assert ids == [e["id"] for e in (await audit(stack, chief))["entries"]]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await audit(stack, chief, **{"from": future}))["entries"] == []
    assert len((await audit(stack, chief, to=future, edition="en"))["entries"]) == 5
    for params, field in (
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"edition": "xx"}, "edition"),
        ({"item": "nope"}, "item"),
        ({"who": "x"}, "who"),
    ):
        answer = await stack.http.get("/api/audit", params=params, headers=chief)
        assert answer.status_code == 400, (params, answer.text)
        assert field in answer.json()["fields"], answer.text


async def test_audit_entries_cannot_be_edited(stack: Stack) -> None:
    chief = await token(stack, "rana", ("chief",))
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        answer = await stack.http.request(method, "/api/audit", headers=chief, json={})
        assert answer.status_code == 405, method
        assert answer.headers["allow"] == "GET, HEAD"


async def test_last_use_is_noted_at_most_once_a_minute(stack: Stack) -> None:
    amal = await token(stack, "amal", ("editor",))
    admin = await token(stack, "ops", ("admin",))

    async def last_used(name: str) -> str | None:
        for _ in range(100):
            records = {r.name: r for r in await stack.broker.tokens.records()}
            if records[name].last_used is not None:
                return records[name].last_used
            await asyncio.sleep(0.02)
        return None

    assert (await post(stack, amal)).status_code == 201
    first = await last_used("amal")
    assert first is not None
    assert (await post(stack, amal)).status_code == 201
    await asyncio.sleep(0.1)
    assert await last_used("amal") == first  # within the minute: not written again
    listing = (await stack.http.get("/api/tokens", headers=admin)).json()["tokens"]
    assert {t["name"]: t["last_used"] for t in listing}["amal"] == first


async def test_a_request_reads_its_token_in_one_round_trip(redis_url: str, tmp_path: Any) -> None:
    """No cache of token validity, and no second read: one script call per request (and
    the note of its last use, at most once a minute)."""
    import redis.asyncio as aioredis

    async with Stack(tmp_path, redis_url) as stack:
        amal = await token(stack, "amal", ("editor",))
        assert (await stack.http.get("/api/whoami", headers=amal)).status_code == 200
        raw = aioredis.Redis.from_url(redis_url)
        try:
            await asyncio.sleep(0.1)  # the first request's note of its use is written
            await raw.config_resetstat()
            for _ in range(5):
                assert (await stack.http.get("/api/whoami", headers=amal)).status_code == 200
            stats = await raw.info("commandstats")
        finally:
            await raw.aclose()
        calls = {
            name: value["calls"]
            for name, value in stats.items()
            if not name.startswith(("cmdstat_config", "cmdstat_info"))
        }
        # One EVALSHA per request; Redis counts the script's two HGETs inside it too.
        assert calls == {"cmdstat_evalsha": 5, "cmdstat_hget": 10}, calls


async def test_a_revocation_counts_at_once_in_every_publisher_process(redis_url: str) -> None:
    """Two `ticker publisher` processes on one Redis: a token revoked or rotated through one
    is refused by the other at its very next request."""
    store = ("--redis-url", redis_url)
    admin = ticker("token", "create", "ops", "--role", "admin", *store).stdout.strip()
    amal = ticker("token", "create", "amal", "--role", "editor", *store).stdout.strip()
    rana = ticker("token", "create", "rana", "--role", "chief", *store).stdout.strip()
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            [*TICKER, "publisher", *store, "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port in ports:
            await asyncio.to_thread(wait_for, f"http://127.0.0.1:{port}/readyz", 200)
        first, second = (f"http://127.0.0.1:{port}" for port in ports)

        def bearer(secret: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {secret}"}

        item = {"edition": "en", "headline": "Quake"}
        async with httpx.AsyncClient(timeout=10) as http:
            for secret in (amal, rana):  # each process has seen both tokens work
                for base in (first, second):
                    answer = await http.post(f"{base}/api/items", json=item, headers=bearer(secret))
                    assert answer.status_code == 201, answer.text
            revoked = await http.delete(f"{first}/api/tokens/amal", headers=bearer(admin))
            assert revoked.status_code == 200, revoked.text
            refused = await http.post(f"{second}/api/items", json=item, headers=bearer(amal))
            assert (refused.status_code, refused.json()["error"]) == (401, "token_revoked")

            rotated = await http.post(f"{second}/api/tokens/rana/rotate", headers=bearer(admin))
            assert rotated.status_code == 200, rotated.text
            refused = await http.post(f"{first}/api/items", json=item, headers=bearer(rana))
            assert (refused.status_code, refused.json()["error"]) == (401, "token_revoked")
            renewed = bearer(rotated.json()["token"])
            answer = await http.post(f"{first}/api/items", json=item, headers=renewed)
            assert answer.status_code == 201, answer.text
    finally:
        for process in processes:
            stop(process)
