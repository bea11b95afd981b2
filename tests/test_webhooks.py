"""Webhooks end to end: the API, and deliveries from a running publisher to a real HTTP
receiver that verifies every signature with `standardwebhooks`, on both stores."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import pytest
from webhookreceiver import Receiver

from stack import Stack
from ticker.audit import AuditQuery
from ticker.auth import create_token

LOOPBACK = ("127.0.0.0/8", "::1")
FAST = {
    "webhook_allow_networks": LOOPBACK,
    "webhook_retry_base": 0.05,
    "webhook_retry_max_delay": 0.2,
    "webhook_connect_timeout": 0.5,
    "webhook_timeout": 1.0,
}


@contextlib.asynccontextmanager
async def admin_stack(tmp_path, url, **settings):
    """A stack whose token may manage webhooks (admin) and post (chief)."""
    async with Stack(tmp_path, url, **settings) as running:
        running.token = await create_token(running.broker.tokens, "boss", roles=("admin", "chief"))
        yield running


@pytest.fixture(params=["embedded", "redis"])
def store_url(request):
    """None for the embedded store, or the URL of a real, empty Redis."""
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


@pytest.fixture
async def stack(store_url, tmp_path):
    async with admin_stack(tmp_path, store_url, **FAST) as running:
        yield running


@pytest.fixture
async def receiver():
    made = Receiver()
    await made.start()
    try:
        yield made
    finally:
        await made.close()


async def register(stack, receiver, path="/hook", **fields):
    body = {"url": receiver.url(path), "filters": {"edition": "en"}, **fields}
    response = await stack.http.post("/api/webhooks", json=body, headers=stack.auth)
    assert response.status_code == 201, response.text
    created = response.json()
    receiver.secrets[path] = created["secret"]
    return created


async def test_every_event_arrives_once_in_order_through_a_flaky_receiver(stack, receiver):
    # Slow, 500s, dropped connections and answers lost after the message was handled, in a
    # fixed pattern that never lets three attempts in a row fail.
    pattern = ["ok", "500", "ok", "drop", "slow", "500", "lost", "ok", "ok", "slow"]
    receiver.plan = lambda n: pattern[n % len(pattern)]
    receiver.slow_seconds = 0.2
    webhook_id = (await register(stack, receiver))["id"]
    posted = [await stack.post(headline=f"alert {n}") for n in range(12)]
    corrected = await stack.correct(posted[0]["id"], headline="alert 0, corrected")
    withdrawn = await stack.withdraw(posted[1]["id"])
    await receiver.wait_for(14, timeout=60)

    got = receiver.messages()
    assert [(m["kind"], m["item"]["id"]) for m in got] == [
        *(("posted", p["id"]) for p in posted),
        ("corrected", corrected["id"]),
        ("withdrawn", withdrawn["id"]),
    ]
    offsets = [int(m["cursor"].rsplit(":", 1)[1]) for m in got]
    assert offsets == sorted(offsets)
    assert all(m["type"] == "event" and m["edition"] == "en" for m in got)
    assert receiver.bad_signatures == 0
    assert all(r.verified for r in receiver.requests)
    # Retries carried the same id; every failed id was tried again and then delivered once.
    by_id: dict[str, list] = {}
    for r in receiver.requests:
        by_id.setdefault(r.headers["webhook-id"], []).append(r)
    assert len(by_id) == 14
    assert any(len(tries) > 1 for tries in by_id.values())
    # Each lost answer was sent again with its id, and the receiver handled it once.
    lost = [r.headers["webhook-id"] for r in receiver.requests if r.action == "lost"]
    assert lost
    assert all(len(by_id[lost_id]) > 1 for lost_id in lost)
    assert receiver.duplicates_handled == len(lost)
    assert receiver.most_in_flight["/hook"] == 1  # one at a time, in order

    url = f"/api/webhooks/{webhook_id}/deliveries"
    log = (await stack.http.get(url, headers=stack.auth)).json()
    outcomes = {a["outcome"] for a in log["deliveries"]}
    assert outcomes == {"delivered", "failed"}
    failed = [a for a in log["deliveries"] if a["outcome"] == "failed"]
    assert any(a["status"] == 500 and "HTTP 500" in a["error"] for a in failed)
    assert any(a["status"] is None and a["error"] for a in failed)  # dropped
    assert all(a["duration_ms"] >= 0 and a["at"] for a in log["deliveries"])
    assert len(log["deliveries"]) == len(receiver.requests)


async def test_each_retry_is_signed_afresh_with_the_same_id(store_url, tmp_path, receiver):
    start = time.time()
    receiver.plan = lambda n: "500" if time.time() - start < 2.2 else "ok"
    async with admin_stack(tmp_path, store_url, **{**FAST, "webhook_disable_after": 1000}) as stack:
        await register(stack, receiver)
        await stack.post(headline="retried")
        await receiver.wait_for(1, timeout=20)
    tries = receiver.requests
    assert len(tries) > 1
    assert len({r.headers["webhook-id"] for r in tries}) == 1
    first, last = (
        int(tries[0].headers["webhook-timestamp"]),
        int(tries[-1].headers["webhook-timestamp"]),
    )
    assert last >= first + 2  # signed when sent, not when queued
    assert all(r.verified for r in tries)
    assert len({r.headers["webhook-signature"] for r in tries}) >= 2


async def test_no_more_attempts_in_flight_than_the_setting(store_url, tmp_path, receiver):
    """Six webhooks on a slow receiver, at most two attempts at once in the process."""
    receiver.plan = lambda n: "slow"
    receiver.slow_seconds = 0.3
    async with admin_stack(tmp_path, store_url, **FAST, webhook_concurrency=2) as stack:
        paths = [f"/hook{n}" for n in range(6)]
        for path in paths:
            await register(stack, receiver, path)
        await stack.post(headline="To everyone")
        for path in paths:
            await receiver.wait_for(1, path, timeout=20)
    assert receiver.most_in_flight_total == 2


async def test_filters_and_formats(stack, receiver):
    await register(
        stack,
        receiver,
        "/flash",
        filters={"edition": "en", "urgency": 1, "regions": ["MENA"]},
        format="ninjs",
    )
    await register(stack, receiver, "/sports", filters={"edition": "en", "categories": ["Sports"]})
    await stack.post(headline="routine", urgency=3, regions=["MENA"])
    flash = await stack.post(headline="flash", urgency=1, regions=["MENA"])
    await stack.post(headline="flash elsewhere", urgency=1, regions=["Asia"])
    sports = await stack.post(headline="goal", categories=["Sports"], expires_in=1)
    await stack.withdraw(flash["id"])
    await receiver.wait_for(2, "/flash")
    await receiver.wait_for(2, "/sports", timeout=15)
    ninjs = receiver.messages("/flash")
    assert [n["headlines"][0]["value"] for n in ninjs] == ["flash", "flash"]
    assert [n["pubstatus"] for n in ninjs] == ["usable", "canceled"]
    got = [(m["kind"], m["item"]["id"]) for m in receiver.messages("/sports")]
    assert got == [("posted", sports["id"]), ("expired", sports["id"])]
    await asyncio.sleep(0.3)
    assert len(receiver.messages("/sports")) == 2 and len(receiver.messages("/flash")) == 2


async def audited(stack) -> list[dict]:
    """The webhook operations in the audit trail, oldest first."""
    page = await stack.broker.audit.query(AuditQuery(limit=100), datetime.now(UTC))
    return [
        {"actor": e.actor, "action": e.action, "webhook": e.subject, "changes": e.changes}
        for e in reversed(page.entries)
        if e.action.startswith("webhook.")
    ]


async def test_the_api(stack, receiver):
    created = await register(stack, receiver, description="partner A")
    webhook_id = created["id"]
    assert created["secret"].startswith("whsec_")
    assert created["enabled"] is True and created["description"] == "partner A"
    listed = (await stack.http.get("/api/webhooks", headers=stack.auth)).json()["webhooks"]
    assert [h["id"] for h in listed] == [webhook_id]
    assert "secret" not in listed[0] and listed[0]["queued"] == 0
    one = await stack.http.get(f"/api/webhooks/{webhook_id}", headers=stack.auth)
    assert one.status_code == 200 and "secret" not in one.json()
    assert one.json()["filters"] == {"edition": "en", "urgency": 9, "regions": [], "categories": []}

    tested = await stack.http.post(f"/api/webhooks/{webhook_id}/test", headers=stack.auth)
    assert tested.status_code == 200
    assert tested.json()["outcome"] == "delivered" and tested.json()["status"] == 204
    assert receiver.messages()[0]["type"] == "test" and receiver.requests[0].verified
    assert receiver.requests[0].headers["webhook-id"].startswith("msg_test_")
    log = await stack.http.get(f"/api/webhooks/{webhook_id}/deliveries", headers=stack.auth)
    assert log.json()["deliveries"][0]["msg_id"] == receiver.requests[0].headers["webhook-id"]

    deleted = await stack.http.delete(f"/api/webhooks/{webhook_id}", headers=stack.auth)
    assert deleted.status_code == 200 and deleted.json()["id"] == webhook_id
    for method, url in (
        ("GET", f"/api/webhooks/{webhook_id}"),
        ("DELETE", f"/api/webhooks/{webhook_id}"),
        ("POST", f"/api/webhooks/{webhook_id}/test"),
        ("POST", f"/api/webhooks/{webhook_id}/enable"),
        ("GET", f"/api/webhooks/{webhook_id}/deliveries"),
        ("GET", "/api/webhooks/not-an-id"),
    ):
        response = await stack.http.request(method, url, headers=stack.auth)
        assert response.status_code == 404, (method, url)
        assert response.json()["error"] == "not_found"
    assert [(a["actor"], a["action"], a["webhook"]) for a in await audited(stack)] == [
        ("boss", "webhook.created", webhook_id),
        ("boss", "webhook.tested", webhook_id),
        ("boss", "webhook.deleted", webhook_id),
    ]


async def test_redirects_are_not_followed_and_a_silent_receiver_times_out(stack, receiver):
    actions = ["redirect", "hang"]
    receiver.plan = lambda n: actions[n]
    webhook_id = (await register(stack, receiver))["id"]
    test = f"/api/webhooks/{webhook_id}/test"
    redirected = (await stack.http.post(test, headers=stack.auth)).json()
    assert (redirected["outcome"], redirected["status"]) == ("failed", 302)
    assert redirected["error"] == "HTTP 302"
    started = time.monotonic()
    silent = (await stack.http.post(test, headers=stack.auth)).json()
    assert time.monotonic() - started < 3
    assert (silent["outcome"], silent["status"]) == ("failed", None)
    assert silent["error"] == "no answer within 1 s"
    assert [r.path for r in receiver.requests] == ["/hook", "/hook"]  # never /elsewhere


async def test_a_message_past_the_horizon_is_given_up_and_the_next_is_sent(
    store_url, tmp_path, receiver
):
    failing = True
    receiver.plan = lambda n: "500" if failing else "ok"
    settings = {**FAST, "webhook_retry_horizon": 0.5, "webhook_disable_after": 1000}
    async with admin_stack(tmp_path, store_url, **settings) as stack:
        webhook_id = (await register(stack, receiver))["id"]
        late = await stack.post(headline="never delivered")
        url = f"/api/webhooks/{webhook_id}/deliveries"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            log = (await stack.http.get(url, headers=stack.auth)).json()["deliveries"]
            if log and log[0]["outcome"] == "given_up":
                break
            await asyncio.sleep(0.05)
        assert log[0]["outcome"] == "given_up" and "horizon" in log[0]["error"]
        failing = False
        sent = await stack.post(headline="delivered")
        await receiver.wait_for(1)
        assert [m["item"]["id"] for m in receiver.messages()] == [sent["id"]]
        assert late["id"] not in {m["item"]["id"] for m in receiver.messages()}
        metrics = (await stack.http.get("/metrics")).text
        assert 'ticker_webhook_deliveries_total{result="given_up"}' in metrics


async def test_admins_only(stack, receiver):
    for method, url in (
        ("GET", "/api/webhooks"),
        ("POST", "/api/webhooks"),
        ("GET", "/api/webhooks/wh_aaaaaaaaaaaaaaaa"),
        ("POST", "/api/webhooks/wh_aaaaaaaaaaaaaaaa/test"),
    ):
        response = await stack.http.request(method, url, headers={"Authorization": "Bearer tkr_x"})
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_failed_authentications_count_against_the_address(tmp_path):
    async with admin_stack(tmp_path, None, auth_failure_rate="3/minute", **FAST) as stack:
        bad = {"Authorization": "Bearer tkr_guess"}
        codes = [(await stack.http.get("/api/webhooks", headers=bad)).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        limited = await stack.http.get("/api/webhooks", headers=bad)
        assert limited.json()["error"] == "rate_limited" and limited.headers["retry-after"]
        # A good token always passes.
        assert (await stack.http.get("/api/webhooks", headers=stack.auth)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://10.0.0.7/", "filters": {"edition": "en"}},
        {"url": "http://[::ffff:10.0.0.7]/", "filters": {"edition": "en"}},
        {"url": "http://169.254.169.254/", "filters": {"edition": "en"}},
        {"url": "http://u:p@hooks.example/", "filters": {"edition": "en"}},
        {"url": "gopher://hooks.example/", "filters": {"edition": "en"}},
    ],
)
async def test_refused_urls_are_400_naming_url(stack, body):
    response = await stack.http.post("/api/webhooks", json=body, headers=stack.auth)
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["url"]
    assert (await stack.http.get("/api/webhooks", headers=stack.auth)).json()["webhooks"] == []


async def test_bad_bodies_are_4xx(stack):
    post = stack.http.post
    assert (
        await post(
            "/api/webhooks",
            content=b"{",
            headers={**stack.auth, "content-type": "application/json"},
        )
    ).status_code == 400
    assert (await post("/api/webhooks", content=b"{}", headers=stack.auth)).status_code == 415
    lone = b'{"url": "http://x.example", "filters": {"edition": "en"}, "\\ud800": 1}'
    response = await post(
        "/api/webhooks", content=lone, headers={**stack.auth, "content-type": "application/json"}
    )
    assert response.status_code == 400 and "\\ud800" in response.json()["fields"]


async def test_auto_disable_and_re_enable(store_url, tmp_path, receiver):
    failing = True
    receiver.plan = lambda n: "500" if failing else "ok"
    async with admin_stack(tmp_path, store_url, webhook_disable_after=4, **FAST) as stack:
        created = await register(stack, receiver)
        webhook_id = created["id"]
        await stack.post(headline="one")
        await stack.post(headline="two")
        deadline = time.monotonic() + 15
        while True:
            shown = (await stack.http.get(f"/api/webhooks/{webhook_id}", headers=stack.auth)).json()
            if not shown["enabled"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert shown["enabled"] is False
        assert shown["disabled_reason"].startswith("4 failed attempts in a row")
        assert "HTTP 500" in shown["disabled_reason"]
        assert shown["queued"] == 2
        assert len(receiver.requests) == 4
        await stack.post(headline="three, while disabled")
        await asyncio.sleep(0.5)
        assert len(receiver.requests) == 4  # nothing is sent, or queued, while disabled
        metrics = (await stack.http.get("/metrics")).text
        assert "ticker_webhooks_disabled 1.0" in metrics

        failing = False
        enabled = await stack.http.post(f"/api/webhooks/{webhook_id}/enable", headers=stack.auth)
        assert enabled.status_code == 200
        assert enabled.json()["enabled"] is True and enabled.json()["disabled_reason"] is None
        await receiver.wait_for(2)
        assert [m["item"]["headline"] for m in receiver.messages()] == ["one", "two"]
        actions = [(a["actor"], a["action"]) for a in await audited(stack)]
        assert actions == [
            ("boss", "webhook.created"),
            ("system", "webhook.disabled"),
            ("boss", "webhook.enabled"),
        ]
        metrics = (await stack.http.get("/metrics")).text
        assert 'ticker_webhook_deliveries_total{result="delivered"}' in metrics
        assert "ticker_webhook_retries_total" in metrics
        assert f'ticker_webhook_queue_depth{{webhook="{webhook_id}"}}' in metrics


async def test_a_name_that_resolves_to_loopback_is_refused_at_delivery(tmp_path, receiver):
    async with admin_stack(tmp_path, None, **{**FAST, "webhook_allow_networks": ()}) as stack:
        body = {"url": f"http://localhost:{receiver.port}/hook", "filters": {"edition": "en"}}
        response = await stack.http.post("/api/webhooks", json=body, headers=stack.auth)
        assert response.status_code == 201  # a name is checked when it is resolved
        webhook_id = response.json()["id"]
        tested = await stack.http.post(f"/api/webhooks/{webhook_id}/test", headers=stack.auth)
        assert tested.json()["outcome"] == "failed"
        assert "localhost resolves to a loopback address" in tested.json()["error"]
        await stack.post(headline="never sent")
        deadline = time.monotonic() + 10
        log: list = []
        while time.monotonic() < deadline and len(log) < 2:
            got = await stack.http.get(f"/api/webhooks/{webhook_id}/deliveries", headers=stack.auth)
            log = got.json()["deliveries"]
            await asyncio.sleep(0.05)
        assert log[0]["outcome"] == "refused" and "loopback" in log[0]["error"]
        assert receiver.requests == []


async def test_a_gap_in_the_log_is_a_reset_notice_then_the_retained_events(store_url, tmp_path):
    """The worker was away while more happened than the history keeps: the webhook hears a
    `reset` notice, then the events still in the log, in order."""
    from ticker import config
    from ticker.brokers import make_broker
    from ticker.brokers.base import Change
    from ticker.items import create
    from ticker.webhooks.api import start_queueing
    from ticker.webhooks.rules import Filters, Webhook, new_secret
    from ticker.webhooks.store import webhook_store
    from ticker.webhooks.worker import Dispatcher, worker_settings

    settings = config.from_env(
        {},
        db_path=tmp_path / "t.db",
        redis_url=store_url,
        history=3,
        **FAST,
    )
    broker = make_broker(settings)
    await broker.start()
    receiver = Receiver()
    await receiver.start()
    try:
        store = webhook_store(broker)
        secret = new_secret()
        receiver.secrets["/hook"] = secret
        hook = Webhook(
            "wh_gapgapgapgapgapg", receiver.url(), Filters("en"), "event", secret, "t", "desk"
        )
        await store.create(hook)
        await start_queueing(store, broker, hook)
        for n in range(6):
            item = create(
                {"edition": "en", "headline": f"n{n}"},
                editor="desk",
                vocabulary=settings.vocabulary,
                limits=settings.limits,
            )
            await broker.publish(Change("posted", item))
        dispatcher = Dispatcher(broker, store, worker_settings(settings), ("en",))
        dispatcher.start()
        try:
            await receiver.wait_for(4)
        finally:
            await dispatcher.stop()
        got = receiver.messages()
        assert got[0]["type"] == "reset" and got[0]["edition"] == "en"
        assert got[0]["reason"] == "history trimmed"
        assert [m["item"]["headline"] for m in got[1:]] == ["n3", "n4", "n5"]
        assert receiver.bad_signatures == 0
    finally:
        await receiver.close()
        await broker.close()


async def test_a_new_webhook_hears_nothing_older_than_itself(store_url, tmp_path):
    """Even when no worker followed the log since an earlier webhook was deleted."""
    from ticker import config
    from ticker.brokers import make_broker
    from ticker.brokers.base import Change
    from ticker.items import create
    from ticker.webhooks.api import start_queueing
    from ticker.webhooks.rules import Filters, Webhook, new_secret
    from ticker.webhooks.store import webhook_store
    from ticker.webhooks.worker import Dispatcher, worker_settings

    settings = config.from_env({}, db_path=tmp_path / "t.db", redis_url=store_url, **FAST)
    broker = make_broker(settings)
    await broker.start()
    receiver = Receiver()
    await receiver.start()

    async def publish(headline):
        item = create(
            {"edition": "en", "headline": headline},
            editor="desk",
            vocabulary=settings.vocabulary,
            limits=settings.limits,
        )
        await broker.publish(Change("posted", item))

    def hook(webhook_id):
        secret = new_secret()
        receiver.secrets["/hook"] = secret
        return Webhook(webhook_id, receiver.url(), Filters("en"), "event", secret, "t", "desk")

    try:
        store = webhook_store(broker)
        first = hook("wh_firstfirstfirst")
        await store.create(first)
        await start_queueing(store, broker, first)
        await store.delete(first.id)
        for n in range(3):
            await publish(f"before {n}")
        second = hook("wh_secondsecondsec")
        await store.create(second)
        await start_queueing(store, broker, second)
        dispatcher = Dispatcher(broker, store, worker_settings(settings), ("en",))
        dispatcher.start()
        try:
            await asyncio.sleep(0.3)
            await publish("after")
            await receiver.wait_for(1)
            await asyncio.sleep(0.3)
        finally:
            await dispatcher.stop()
        assert [m["item"]["headline"] for m in receiver.messages()] == ["after"]
    finally:
        await receiver.close()
        await broker.close()


async def test_with_delivery_off_nothing_is_queued_or_sent(tmp_path, receiver):
    async with admin_stack(tmp_path, None, **{**FAST, "webhook_delivery": False}) as stack:
        webhook_id = (await register(stack, receiver))["id"]
        await stack.post(headline="not sent")
        tested = await stack.http.post(f"/api/webhooks/{webhook_id}/test", headers=stack.auth)
        assert tested.status_code == 503
        await asyncio.sleep(0.5)
        shown = await stack.http.get(f"/api/webhooks/{webhook_id}", headers=stack.auth)
        assert shown.json()["queued"] == 0
        assert receiver.requests == []


async def test_only_admins_manage_webhooks(tmp_path, receiver):
    async with Stack(tmp_path, None, **FAST) as stack:  # its token is a chief's, not an admin's
        body = {"url": receiver.url("/hook"), "filters": {"edition": "en"}}
        refused = await stack.http.post("/api/webhooks", json=body, headers=stack.auth)
        assert refused.status_code == 403 and "admin" in refused.json()["message"]
        listed = await stack.http.get("/api/webhooks", headers=stack.auth)
        assert listed.status_code == 403
        assert (await stack.http.get("/api/webhooks")).status_code == 401
