"""Web Push in Chromium: the widget's opt-in (permission asked only after a click, the
subscription the page sends, blocked and unsupported browsers said in text) and the service
worker's notifications (one per item, replaced by a correction, closed by a withdrawal).

Chromium here cannot reach its vendor's push service, so `PushManager.subscribe` is the
one thing replaced in the page: it records what the page asked for and returns a
subscription on the test's own push service, whose keys the test holds. From there on
everything is real: the publisher stores the subscription, and its worker encrypts and
sends the flash to that push service, which decrypts it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from browserkit import PageWatch, Server, serve, ticker_command, watched_context
from playwright.sync_api import Browser, expect
from pushservice import PushService

# Counts permission requests, and stands in for the vendor's push service.
FAKE_SUBSCRIBE = """
window.__push = { permissionAsked: 0, subscribeOptions: null };
const askPermission = Notification.requestPermission.bind(Notification);
Notification.requestPermission = (...args) => {
  window.__push.permissionAsked += 1;
  return askPermission(...args);
};
let current = null;
PushManager.prototype.subscribe = async function (options) {
  const key = new Uint8Array(options.applicationServerKey);
  const text = btoa(String.fromCharCode(...key));
  window.__push.subscribeOptions = {
    userVisibleOnly: options.userVisibleOnly,
    key: text.replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, ""),
  };
  const json = SUBSCRIPTION;
  const unsubscribe = async () => { current = null; return true; };
  current = { endpoint: json.endpoint, toJSON: () => json, unsubscribe };
  return current;
};
PushManager.prototype.getSubscription = async function () { return current; };
"""


@pytest.fixture(scope="module")
def service() -> Iterator[PushService]:
    running = PushService().start()
    try:
        yield running
    finally:
        running.stop()
    assert running.problems == []


@pytest.fixture(scope="module")
def push_server(tmp_path_factory: pytest.TempPathFactory, service: PushService) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("push")
    with serve(tmp, TICKER_PUSH_ALLOW_NETWORKS="127.0.0.0/8") as server:
        key = ticker_command("push", "keys", "create", "--db", str(tmp / "ticker.db"))
        service.vapid_public_key = key
        yield server


def test_the_opt_in_asks_after_a_click_and_the_flash_arrives(
    browser: Browser, watch: PageWatch, push_server: Server, service: PushService
) -> None:
    reader = service.browser("chromium")
    script = FAKE_SUBSCRIBE.replace("SUBSCRIPTION", json.dumps(reader.subscription()))
    with watched_context(browser, watch, permissions=["notifications"]) as context:
        context.add_init_script(script)
        page = context.new_page()
        page.goto(f"{push_server.base}/demo")
        button = page.get_by_role("button", name="Get flash alerts")
        expect(button).to_be_visible()
        expect(button).to_have_attribute("aria-pressed", "false")
        page.wait_for_timeout(300)
        assert page.evaluate("window.__push.permissionAsked") == 0  # nothing before a click
        assert page.evaluate("navigator.serviceWorker.getRegistrations()") == []

        with page.expect_response("**/api/push/subscriptions") as posted:
            button.click()
        assert posted.value.status == 201
        sent = json.loads(posted.value.request.post_data or "{}")
        assert sent["edition"] == "en"
        assert sent["endpoint"] == reader.endpoint
        assert sent["keys"] == {
            "p256dh": reader.p256dh,
            "auth": reader.subscription()["keys"]["auth"],
        }
        expect(page.get_by_role("status")).to_have_text("Flash alerts are on for this edition.")
        expect(page.get_by_role("button", name="Stop flash alerts")).to_have_attribute(
            "aria-pressed", "true"
        )
        assert page.evaluate("window.__push.permissionAsked") == 1
        assert page.evaluate("window.__push.subscribeOptions") == {
            "userVisibleOnly": True,
            "key": service.vapid_public_key,
        }
        scope = page.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)")
        assert scope == f"{push_server.base}/"

        flash = push_server.post(edition="en", headline="Flash from the desk", urgency=1)
        deadline = time.monotonic() + 10
        while not service.messages("chromium") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.messages("chromium")[0]["id"] == flash["id"]
        assert service.messages("chromium")[0]["headline"] == "Flash from the desk"

        with page.expect_response("**/api/push/subscriptions/*") as removed:
            page.get_by_role("button", name="Stop flash alerts").click()
        assert removed.value.status == 204
        expect(page.get_by_role("status")).to_have_text("Flash alerts are off.")
        push_server.post(edition="en", headline="Not for this browser any more", urgency=1)
        time.sleep(1)
        assert len(service.messages("chromium")) == 1


def test_a_refused_permission_is_said_plainly(
    browser: Browser, watch: PageWatch, push_server: Server, service: PushService
) -> None:
    script = FAKE_SUBSCRIBE.replace("SUBSCRIPTION", json.dumps(service.browser("x").subscription()))
    with watched_context(browser, watch) as context:  # notifications not granted
        context.add_init_script(script)
        page = context.new_page()
        page.goto(f"{push_server.base}/demo")
        page.get_by_role("button", name="Get flash alerts").click()
        expect(page.get_by_role("status")).to_contain_text("Notifications are blocked")
        assert page.evaluate("window.__push.permissionAsked") == 1
        assert page.evaluate("window.__push.subscribeOptions") is None


def test_an_unsupported_browser_is_told_so(
    browser: Browser, watch: PageWatch, push_server: Server
) -> None:
    with watched_context(browser, watch) as context:
        context.add_init_script("delete window.PushManager;")
        page = context.new_page()
        page.goto(f"{push_server.base}/demo")
        expect(page.get_by_role("status")).to_have_text("This browser cannot show flash alerts.")
        expect(page.get_by_role("button", name="Get flash alerts")).to_be_disabled()


def test_the_service_worker_shows_replaces_and_closes_notifications(
    browser: Browser, watch: PageWatch, push_server: Server
) -> None:
    with watched_context(browser, watch, permissions=["notifications"]) as context:
        page = context.new_page()
        page.goto(f"{push_server.base}/demo")
        cdp = context.new_cdp_session(page)
        registrations: list[dict] = []
        cdp.on(
            "ServiceWorker.workerRegistrationUpdated",
            lambda event: registrations.extend(event["registrations"]),
        )
        cdp.send("ServiceWorker.enable")
        page.evaluate(
            "navigator.serviceWorker.register('/sw.js').then(() => navigator.serviceWorker.ready)"
        )
        deadline = time.monotonic() + 5
        while not registrations and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        registration = registrations[-1]["registrationId"]

        def push(message: dict) -> None:
            if all(message is not m for m in sent):
                sent.append(message)
            cdp.send(
                "ServiceWorker.deliverPushMessage",
                {
                    "origin": push_server.base,
                    "registrationId": registration,
                    "data": json.dumps(message),
                },
            )

        def shown() -> list[dict]:
            return page.evaluate(
                """navigator.serviceWorker.ready
                     .then((r) => r.getNotifications())
                     .then((list) => list.map((n) => ({tag: n.tag, title: n.title, body: n.body,
                                                       url: n.data && n.data.url})))"""
            )

        sent: list[dict] = []

        def wait_until(check) -> list[dict]:
            """Until `check` holds. DevTools drops a push that reaches the worker while it
            starts or stops, so every message so far is delivered again, in order, every
            2 s meanwhile: together they leave the same notifications (one per tag)."""
            deadline = time.monotonic() + 20
            again = time.monotonic() + 2
            while True:
                now = shown()
                if check(now) or time.monotonic() > deadline:
                    return now
                if time.monotonic() > again:
                    for message in list(sent):
                        push(message)
                    again = time.monotonic() + 2
                page.wait_for_timeout(50)

        base = {"edition": "en", "urgency": 1, "source": "Desk"}
        push(
            {
                **base,
                "kind": "posted",
                "id": "en-one",
                "version": 1,
                "headline": "Quake",
                "url": "https://x.example/q",
            }
        )
        push(
            {
                **base,
                "kind": "posted",
                "id": "en-two",
                "version": 1,
                "headline": "Storm",
                "url": "/live/en",
            }
        )
        now = wait_until(lambda n: len(n) == 2)
        assert sorted((n["tag"], n["body"]) for n in now) == [
            ("en-one", "Quake"),
            ("en-two", "Storm"),
        ]
        assert {n["title"] for n in now} == {"Desk"}

        push(
            {
                **base,
                "kind": "corrected",
                "id": "en-one",
                "version": 2,
                "headline": "Quake: magnitude 6",
                "url": "https://x.example/q",
            }
        )
        now = wait_until(lambda n: any(x["body"] == "Quake: magnitude 6" for x in n))
        assert sorted((n["tag"], n["body"]) for n in now) == [
            ("en-one", "Quake: magnitude 6"),
            ("en-two", "Storm"),
        ]  # one notification per item, with the corrected text

        push({"kind": "withdrawn", "id": "en-two", "version": 2})
        now = wait_until(lambda n: len(n) == 1)
        assert [(n["tag"], n["url"]) for n in now] == [("en-one", "https://x.example/q")]
