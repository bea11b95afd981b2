"""Web Push in Chromium: the widget's opt-in (permission asked only after a click, the
subscription the page sends, blocked and unsupported browsers said in text), the service
worker's notifications (one per item, replaced by a correction, closed by a withdrawal) and a
reader's click on one (the item's link, or the publisher's live page, opens in a new tab).

Chromium here cannot reach its vendor's push service, so `PushManager.subscribe` is the
one thing replaced in the page: it records what the page asked for and returns a
subscription on the test's own push service, whose keys the test holds. From there on
everything is real: the publisher stores the subscription, and its worker encrypts and
sends the flash to that push service, which decrypts it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browserkit import (
    CHROMIUM_ARGS,
    ROOT,
    VIEWPORT,
    PageWatch,
    Server,
    find_chromium,
    news_site,
    serve,
    ticker_command,
    watched_context,
    watching,
)
from desktopbus import NotificationServer, desktop_notifications
from playwright.sync_api import Browser, BrowserContext, Page, expect
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


class Worker:
    """The service worker `page` registers from `script`, sent push messages through
    DevTools the way its push service would send them."""

    def __init__(self, context: BrowserContext, page: Page, script: str) -> None:
        self.page = page
        self.origin = page.evaluate("location.origin")
        self.cdp = context.new_cdp_session(page)
        self.sent: list[dict] = []
        registrations: list[dict] = []
        self.cdp.on(
            "ServiceWorker.workerRegistrationUpdated",
            lambda event: registrations.extend(event["registrations"]),
        )
        self.cdp.send("ServiceWorker.enable")
        page.evaluate(
            "s => navigator.serviceWorker.register(s).then(() => navigator.serviceWorker.ready)",
            script,
        )
        deadline = time.monotonic() + 5
        while not registrations and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        self.registration = registrations[-1]["registrationId"]

    def push(self, message: dict) -> None:
        if all(message is not m for m in self.sent):
            self.sent.append(message)
        self.cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": self.origin,
                "registrationId": self.registration,
                "data": json.dumps(message),
            },
        )

    def shown(self) -> list[dict]:
        return self.page.evaluate(
            """navigator.serviceWorker.ready
                 .then((r) => r.getNotifications())
                 .then((list) => list.map((n) => ({tag: n.tag, title: n.title, body: n.body,
                                                   url: n.data && n.data.url})))"""
        )

    def wait_until(self, check: Callable[[list[dict]], bool], redeliver: bool = True) -> list[dict]:
        """Until `check` holds. DevTools drops a push that reaches the worker while it
        starts or stops, so every message so far is delivered again, in order, every
        2 s meanwhile (unless `redeliver` is false): together they leave the same
        notifications (one per tag)."""
        deadline = time.monotonic() + 20
        again = time.monotonic() + 2
        while True:
            now = self.shown()
            if check(now) or time.monotonic() > deadline:
                return now
            if redeliver and time.monotonic() > again:
                for message in list(self.sent):
                    self.push(message)
                again = time.monotonic() + 2
            self.page.wait_for_timeout(50)


def test_the_service_worker_shows_replaces_and_closes_notifications(
    browser: Browser, watch: PageWatch, push_server: Server
) -> None:
    with watched_context(browser, watch, permissions=["notifications"]) as context:
        page = context.new_page()
        page.goto(f"{push_server.base}/demo")
        worker = Worker(context, page, "/sw.js")
        base = {"edition": "en", "urgency": 1, "source": "Desk"}
        worker.push(
            {
                **base,
                "kind": "posted",
                "id": "en-one",
                "version": 1,
                "headline": "Quake",
                "url": "https://x.example/q",
            }
        )
        worker.push(
            {
                **base,
                "kind": "posted",
                "id": "en-two",
                "version": 1,
                "headline": "Storm",
                "url": "/live/en",
            }
        )
        now = worker.wait_until(lambda n: len(n) == 2)
        assert sorted((n["tag"], n["body"]) for n in now) == [
            ("en-one", "Quake"),
            ("en-two", "Storm"),
        ]
        assert {n["title"] for n in now} == {"Desk"}

        worker.push(
            {
                **base,
                "kind": "corrected",
                "id": "en-one",
                "version": 2,
                "headline": "Quake: magnitude 6",
                "url": "https://x.example/q",
            }
        )
        now = worker.wait_until(lambda n: any(x["body"] == "Quake: magnitude 6" for x in n))
        assert sorted((n["tag"], n["body"]) for n in now) == [
            ("en-one", "Quake: magnitude 6"),
            ("en-two", "Storm"),
        ]  # one notification per item, with the corrected text

        worker.push({"kind": "withdrawn", "id": "en-two", "version": 2})
        now = worker.wait_until(lambda n: len(n) == 1)
        assert [(n["tag"], n["url"]) for n in now] == [("en-one", "https://x.example/q")]


@pytest.fixture
def desktop(
    browser: Browser, watch: PageWatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BrowserContext, NotificationServer]]:
    """A browser that shows its notifications on a desktop's notification server, where the
    test clicks them as a reader does. It has a profile of its own (a persistent context):
    Chromium sends a click back to a browser profile, never to a context made by DevTools."""
    with desktop_notifications(tmp_path_factory.mktemp("bus")) as server:
        context = browser.browser_type.launch_persistent_context(
            tmp_path_factory.mktemp("profile"),
            executable_path=find_chromium(),
            args=CHROMIUM_ARGS,
            env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": server.address},
            permissions=["notifications"],
            viewport=VIEWPORT,
        )
        with watching(context, watch):
            yield context, server


@pytest.mark.parametrize("registered_by", ["publisher", "news site"])
def test_a_click_opens_the_items_link_or_its_live_page_and_closes_the_notification(
    desktop: tuple[BrowserContext, NotificationServer],
    push_server: Server,
    tmp_path: Path,
    registered_by: str,
) -> None:
    context, notifications = desktop
    mark = f"click{time.time_ns()}"
    with news_site(tmp_path / "site") as site:
        story = site.page("quake.html", f"<!doctype html><title>Quake</title><h1>{mark}</h1>")
        linked = push_server.post(edition="en", headline=f"Quake {mark}", link=story)
        unlinked = push_server.post(edition="es", headline=f"Terremoto {mark}", source="Agencia")
        page = context.new_page()
        if registered_by == "publisher":
            page.goto(f"{push_server.base}/demo")
            worker = Worker(context, page, "/sw.js")
        else:
            # A news site serves its copy of sw.js and names the publisher, as the widget
            # registers it (`?publisher=`): the live page is the publisher's, not the site's.
            (site.folder / "ticker-sw.js").write_bytes((ROOT / "web" / "sw.js").read_bytes())
            page.goto(site.page("front.html", "<!doctype html><title>Front page</title>"))
            worker = Worker(context, page, f"/ticker-sw.js?publisher={push_server.base}")
        # What the publisher sends for each (docs/push.md): the link, or the live page.
        for item, url in ((linked, story), (unlinked, "/live/es")):
            fields = ("id", "version", "edition", "headline", "source", "urgency")
            worker.push({"kind": "posted", **{k: item[k] for k in fields}, "url": url})
        worker.wait_until(lambda n: len(n) == 2)

        live = f"{push_server.base}/live/es"
        for item, opens in ((linked, story), (unlinked, live)):
            on_screen = notifications.wait_for(
                lambda item=item: [
                    n for n in notifications.shown.values() if n.body.endswith(item["headline"])
                ]
            )
            assert len(on_screen) == 1, (notifications.shown, notifications.calls)
            shown = on_screen[0]
            assert shown.title == (item["source"] or "Breaking news")
            with context.expect_page() as opened:
                notifications.click(shown.id)
            tab = opened.value
            expect(tab).to_have_url(opens)
            if item is linked:
                expect(tab.locator("h1")).to_have_text(mark)
            else:
                expect(tab.locator(f"li[id='{item['id']}']")).to_contain_text(item["headline"])
            # The worker closed it: gone from the desktop and from the worker's list (and
            # not delivered again, which would show it again).
            closed = notifications.wait_for(lambda shown=shown: shown.id in notifications.closed)
            assert closed, notifications.calls
            left = worker.wait_until(
                lambda n, item=item: all(x["tag"] != item["id"] for x in n), redeliver=False
            )
            assert all(n["tag"] != item["id"] for n in left)
            tab.close()
        assert worker.shown() == []
