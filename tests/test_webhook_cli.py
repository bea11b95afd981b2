"""`ticker webhooks ...` from the shell, on the embedded store, against a real receiver."""

from __future__ import annotations

import asyncio
import json
import os

from procs import TICKER
from webhookreceiver import Receiver

from ticker.brokers.embedded import EmbeddedBroker
from ticker.webhooks.store import webhook_store

ALLOW = {"TICKER_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8"}


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *TICKER,
        "webhooks",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, out.decode(), err.decode()


async def test_create_list_test_deliveries_enable_delete(tmp_path):
    db = ("--db", str(tmp_path / "ticker.db"))
    receiver = Receiver()
    await receiver.start()
    try:
        code, out, err = await run("create", receiver.url(), *db)
        assert code != 0 and "url points at a loopback address" in err

        code, out, err = await run(
            "create", receiver.url(), "--urgency", "2", "--region", "mena", *db, env=ALLOW
        )
        assert code == 0, err
        webhook_id, secret = out.strip().split("\t")
        assert secret.startswith("whsec_") and "shown once" in err
        receiver.secrets["/hook"] = secret

        code, out, _ = await run("list", *db)
        assert out.split("\t")[:3] == [webhook_id, receiver.url(), "en"]
        assert out.strip().endswith("queued 0\tenabled")
        assert secret not in out

        code, out, err = await run("test", webhook_id, *db, env=ALLOW)
        assert code == 0, err
        assert json.loads(out)["outcome"] == "delivered"
        assert receiver.messages()[0]["type"] == "test" and receiver.requests[0].verified

        code, out, _ = await run("deliveries", webhook_id, *db)
        assert "\tdelivered\t204\t" in out

        broker = EmbeddedBroker(tmp_path / "ticker.db", editions=("en", "ar", "es"))
        await broker.start()
        await webhook_store(broker).disable(webhook_id, "2026-01-01T00:00:00Z", "20 failures")
        await broker.close()
        code, out, _ = await run("list", *db)
        assert out.strip().endswith("disabled: 20 failures")
        code, out, _ = await run("enable", webhook_id, *db)
        assert code == 0 and out.strip() == f"enabled {webhook_id}"
        code, out, _ = await run("list", *db)
        assert out.strip().endswith("enabled")

        code, out, _ = await run("delete", webhook_id, *db)
        assert code == 0 and out.strip() == f"deleted {webhook_id}"
        code, out, err = await run("delete", webhook_id, *db)
        assert code == 1 and "no webhook" in err
        code, out, _ = await run("list", *db)
        assert out == ""
    finally:
        await receiver.close()


async def test_a_bad_filter_is_one_line(tmp_path):
    code, _, err = await run(
        "create", "https://hooks.example/in", "--edition", "xx", "--db", str(tmp_path / "t.db")
    )
    assert code == 1
    assert err.strip() == "ticker: filters.edition must be one of en, ar, es"
