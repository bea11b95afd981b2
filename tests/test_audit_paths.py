"""Every way anything changes writes exactly one audit entry: over HTTP, in the service's
own workers (releases, retirements, expiries) and from the shell, on both stores.

Each step below is one change path; the test reads the trail after each and expects exactly
the entries that step made, no more and no fewer. A change path added without an entry, or
writing two, fails here."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from procs import ticker
from webhookreceiver import Receiver

from stack import Stack
from ticker.auth import create_token


class Trail:
    """The audit trail as an admin and chief reads it, one step at a time."""

    def __init__(self, stack: Stack, auth: dict[str, str]) -> None:
        self.stack, self.auth = stack, auth
        self.seen: set[str] = set()

    async def read(self) -> list[dict[str, Any]]:
        answer = await self.stack.http.get("/api/audit", params={"limit": 500}, headers=self.auth)
        assert answer.status_code == 200, answer.text
        return answer.json()["entries"]

    async def new(self) -> list[dict[str, Any]]:
        fresh = [e for e in reversed(await self.read()) if e["id"] not in self.seen]
        self.seen.update(e["id"] for e in fresh)
        return fresh

    async def expect(self, *actions: str, timeout: float = 0.0) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        found: list[dict[str, Any]] = []
        while True:
            found += await self.new()
            if len(found) >= len(actions) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)  # nothing more comes of the same step
        found += await self.new()
        assert [e["action"] for e in found] == list(actions)
        return found


@pytest.fixture(params=["embedded", "redis"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path):
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with Stack(
        tmp_path,
        url,
        limits={"max_live": 2},
        webhook_allow_networks=("127.0.0.0/8",),
    ) as running:
        running.store_flags = ("--redis-url", url) if url else ("--db", str(tmp_path / "ticker.db"))
        yield running


async def shell(stack: Stack, *args: str) -> str:
    """A `ticker` command beside the running service (off this loop: the receiver is on it)."""
    done = await asyncio.to_thread(
        ticker, *args, *stack.store_flags, env={"TICKER_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8"}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_every_change_path_writes_exactly_one_entry(stack: Stack) -> None:
    boss = await create_token(stack.broker.tokens, "boss", roles=("admin", "chief"))
    auth = {"Authorization": f"Bearer {boss}"}
    http = stack.http
    trail = Trail(stack, auth)
    await trail.new()  # what the set-up wrote

    async def post(**fields: Any) -> dict[str, Any]:
        answer = await http.post("/api/items", json={"edition": "en", **fields}, headers=auth)
        assert answer.status_code == 201, answer.text
        return answer.json()

    async def patch(item: dict[str, Any], **fields: Any) -> None:
        answer = await http.patch(f"/api/items/{item['id']}", json=fields, headers=auth)
        assert answer.status_code == 200, answer.text

    async def delete(item: dict[str, Any]) -> None:
        answer = await http.delete(f"/api/items/{item['id']}", headers=auth)
        assert answer.status_code == 200, answer.text

    # Items, by an editor.
    first = await post(headline="First")
    await trail.expect("posted")
    await patch(first, headline="First, corrected")
    await trail.expect("corrected")
    await patch(first, pinned=True)
    (pinned,) = await trail.expect("corrected")
    assert pinned["changes"]["pinned"] == [False, True]
    second = await post(headline="Second")
    await trail.expect("posted")
    # Past the cap of 2 live items, the oldest that is not pinned retires.
    await post(headline="Third")
    _, retired = await trail.expect("posted", "expired")
    assert (retired["item"], retired["actor"]) == (second["id"], "system")
    third = [
        i
        for i in (await http.get("/api/items?edition=en")).json()["items"]
        if i["headline"] == "Third"
    ][0]
    await delete(third)
    await trail.expect("withdrawn")

    # The expiry sweeper.
    await post(headline="Brief", expires_in=1)
    await trail.expect("posted")
    (expired,) = await trail.expect("expired", timeout=10)
    assert expired["actor"] == "system"

    # Scheduling: kept apart, edited, released by the release worker; another cancelled.
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    held = await post(headline="Embargoed", publish_at=soon)
    await trail.expect("scheduled")
    await patch(held, headline="Embargoed, edited")
    await trail.expect("corrected")
    (released,) = await trail.expect("posted", timeout=10)
    assert (released["item"], released["actor"]) == (held["id"], "boss")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await delete(await post(headline="Later", publish_at=later))
    await trail.expect("scheduled", "withdrawn")

    # Tokens over HTTP.
    made = await http.post("/api/tokens", json={"name": "amal", "roles": "editor"}, headers=auth)
    assert made.status_code == 201, made.text
    await trail.expect("token.created")
    assert (await http.post("/api/tokens/amal/rotate", headers=auth)).status_code == 200
    await trail.expect("token.rotated")
    assert (await http.delete("/api/tokens/amal", headers=auth)).status_code == 200
    await trail.expect("token.revoked")

    # Webhooks over HTTP.
    receiver = Receiver()
    await receiver.start()
    try:
        hook = await http.post(
            "/api/webhooks",
            json={"url": receiver.url(), "filters": {"edition": "es"}},
            headers=auth,
        )
        assert hook.status_code == 201, hook.text
        hook_id = hook.json()["id"]
        receiver.secrets["/hook"] = hook.json()["secret"]
        await trail.expect("webhook.created")
        assert (await http.post(f"/api/webhooks/{hook_id}/test", headers=auth)).status_code == 200
        await trail.expect("webhook.tested")
        assert (await http.delete(f"/api/webhooks/{hook_id}", headers=auth)).status_code == 200

        await trail.expect("webhook.deleted")

        # The same from the shell, as the operator.
        await shell(stack, "token", "create", "rana", "--role", "chief")
        await shell(stack, "token", "rotate", "rana")
        await shell(stack, "token", "revoke", "rana")
        entries = await trail.expect("token.created", "token.rotated", "token.revoked")
        assert {e["role"] for e in entries} == {"operator"}
        made_hook = await shell(stack, "webhooks", "create", receiver.url(), "--edition", "es")
        hook_id, receiver.secrets["/hook"] = made_hook.split()
        await shell(stack, "webhooks", "test", hook_id)
        await shell(stack, "webhooks", "delete", hook_id)
        await trail.expect("webhook.created", "webhook.tested", "webhook.deleted")
    finally:
        await receiver.close()
    await shell(stack, "push", "keys", "create")
    await shell(stack, "push", "keys", "create", "--replace")
    await trail.expect("push.keys_created", "push.keys_replaced")
    await shell(stack, "archive", "prune", "--before", "2000-01-01", "--edition", "ar")
    (pruned,) = await trail.expect("archive.pruned")
    assert (pruned["subject"], pruned["changes"]["removed"]) == ("ar", [None, 0])
