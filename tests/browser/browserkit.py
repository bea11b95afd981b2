"""Helpers for the browser tests: real `ticker` processes and headless Chromium.

The servers run as subprocesses started the way a newcomer starts them (`ticker serve`, or
`ticker publisher` and `ticker hub` on Redis), on free ports with a temporary store. The
browser is the Debian `chromium` package driven by Playwright; Playwright's own browser
download does not work here.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import procs
from playwright.sync_api import Browser, BrowserContext, Page, expect
from procs import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}

# Chromium reports a CSP violation on the console, but an event listener makes it
# unmistakable. Playwright's init scripts are not subject to the page's CSP.
REPORT_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""

expect.set_options(timeout=5_000)


def find_chromium() -> str:
    """The Debian chromium, installed with apt-get when that is allowed (root in CI).
    Anywhere else a missing browser stops the tests with instructions: never a skip."""
    if not Path(CHROMIUM).exists() and os.environ.get("CI") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-q"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=False)
    if not Path(CHROMIUM).exists():
        raise RuntimeError(
            f"{CHROMIUM} is missing: install the Debian package (`sudo apt-get install -y "
            "chromium`). Playwright's own browser download does not work here."
        )
    return CHROMIUM


def _env(**extra: str) -> dict[str, str]:
    """The environment for a ticker process: none of the caller's TICKER_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["TICKER_POST_RATE"] = "off"  # tests post faster than an editor; the limit has its own
    env.update(extra)
    return env


def ticker_command(*args: str, env: dict[str, str] | None = None) -> str:
    """Run a short `ticker` command (such as `token create`) and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "ticker.cli", *args],
        cwd=ROOT,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"ticker {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout.strip()


class TickerProcess:
    """One long-running `ticker` subprocess, with its output kept in a log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.args = args
        self.log = log
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ticker.cli", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, url: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.args[0]} did not get ready at {url}:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        procs.stop(self.process)
        self.process = None

    def freeze(self, frozen: bool) -> None:
        """SIGSTOP or SIGCONT: the process keeps its sockets but answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@dataclass
class Server:
    """A running ticker as a browser sees it, plus an API client for test set-up."""

    base: str
    hub_port: int
    token: str
    processes: list[TickerProcess] = field(default_factory=list)
    store: list[str] = field(default_factory=list)  # `--db PATH`, for `ticker token`
    env: dict[str, str] | None = None

    def make_token(self, name: str, *options: str) -> str:
        """A token of this server's store, made as an operator makes one:
        `ticker token create NAME --role chief`."""
        return ticker_command("token", "create", name, *options, *self.store, env=self.env)

    def api(self, method: str, path: str, body: Any = None, **headers: str) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.base}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}", **headers},
            timeout=10,
        )

    def post(self, **fields: Any) -> dict[str, Any]:
        response = self.api("POST", "/api/items", fields)
        assert response.status_code == 201, response.text
        return response.json()

    def correct(self, item_id: str, **fields: Any) -> dict[str, Any]:
        response = self.api("PATCH", f"/api/items/{item_id}", fields)
        assert response.status_code == 200, response.text
        return response.json()

    def withdraw(self, item_id: str) -> dict[str, Any]:
        response = self.api("DELETE", f"/api/items/{item_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def live_ids(self, edition: str) -> list[str]:
        response = self.api("GET", f"/api/items?edition={edition}")
        return [item["id"] for item in response.json()["items"]]

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@contextlib.contextmanager
def serve(tmp: Path, **extra_env: str) -> Iterator[Server]:
    """`ticker serve`: publisher, hub and embedded store in one process."""
    port, hub_port = free_port(), free_port()
    db = tmp / "ticker.db"
    token = ticker_command("token", "create", "browser-test", "--db", str(db))
    process = TickerProcess(
        ["serve", "--db", str(db), "--port", str(port), "--hub-port", str(hub_port)],
        tmp / "serve.log",
        _env(TICKER_LOG_LEVEL="warning", **extra_env),
    )
    server = Server(f"http://127.0.0.1:{port}", hub_port, token, [process], ["--db", str(db)])
    try:
        process.start()
        process.wait_ready(f"{server.base}/readyz")
        process.wait_ready(f"http://127.0.0.1:{hub_port}/readyz")
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def serve_on_redis(
    tmp: Path, redis_url: str, **extra_env: str
) -> Iterator[tuple[Server, TickerProcess]]:
    """`ticker publisher` and `ticker hub` as two processes on one Redis; yields the hub
    process too, so a test can stop it and start it again on the same port."""
    port, hub_port = free_port(), free_port()
    env = _env(
        TICKER_REDIS_URL=redis_url,
        TICKER_PORT=str(port),  # the hub lets the publisher's own pages connect
        TICKER_HUB_PORT=str(hub_port),
        TICKER_LOG_LEVEL="warning",
        **extra_env,
    )
    token = ticker_command("token", "create", "browser-test", env=env)
    publisher = TickerProcess(["publisher"], tmp / "publisher.log", env)
    hub = TickerProcess(["hub"], tmp / "hub.log", env)
    server = Server(f"http://127.0.0.1:{port}", hub_port, token, [publisher, hub], env=env)
    try:
        publisher.start()
        hub.start()
        publisher.wait_ready(f"{server.base}/readyz")
        hub.wait_ready(f"http://127.0.0.1:{hub_port}/readyz")
        yield server, hub
    finally:
        server.stop()


class PageWatch:
    """Everything a page should never do: log an error, throw, violate its CSP, or open
    a dialog (an `alert` would mean injected script ran)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def attach(self, page: Page) -> None:
        page.on(
            "console",
            lambda m: self.errors.append(f"{page.url}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: uncaught {e}"))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def allow(self, pattern: str) -> None:
        """Expect console errors like this one in this test (a 422 the test provokes)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@contextlib.contextmanager
def watched_context(browser: Browser, watch: PageWatch, **options: Any) -> Iterator[BrowserContext]:
    """A browser context whose pages are all watched; on exit, nothing went wrong in them."""
    with watching(browser.new_context(**{"viewport": VIEWPORT, **options}), watch) as context:
        yield context


@contextlib.contextmanager
def watching(context: BrowserContext, watch: PageWatch) -> Iterator[BrowserContext]:
    """Watch every page `context` opens from now on; on exit, close it and check that
    nothing went wrong in them."""
    context.add_init_script(REPORT_CSP)
    context.on("page", watch.attach)
    try:
        yield context
    finally:
        context.close()
    unexpected = watch.unexpected()
    assert not unexpected, "console errors or CSP violations:\n" + "\n".join(unexpected)
    assert not watch.dialogs, f"a dialog opened: {watch.dialogs}"


AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def serious(page: Page) -> list[dict[str, Any]]:
    """The serious and critical axe-core violations on the page as it is now (its CSP must
    be bypassed for axe's script to be added)."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


# English fragments of every message that another language says differently, found on the
# page: its title, visible text, the text of every option and the attributes read aloud.
_LEFTOVERS = r"""(lang) => {
    const { MESSAGES } = ConsoleI18n;
    const fragments = new Set();
    for (const [key, text] of Object.entries(MESSAGES.en)) {
        if (text === MESSAGES[lang][key]) continue;
        for (const part of text.split(/\{\w+\}/)) {
            const fragment = part.trim();
            if (/[A-Za-z]{3,}/.test(fragment)) fragments.add(fragment);
        }
    }
    const said = [...document.querySelectorAll("*")].flatMap((e) => [
        e.getAttribute("aria-label") || "", e.getAttribute("placeholder") || "",
        e.getAttribute("title") || "",
    ]);
    const options = [...document.querySelectorAll("option")].map((o) => o.textContent);
    const open = document.querySelector("dialog[open]");
    const text = [document.title, document.body.innerText, open ? open.innerText : "",
                  ...said, ...options].join("\n");
    // Whole words only: Spanish "Editor" is not the English "Edit" left over.
    const escaped = (f) => f.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return [...fragments].filter((f) =>
        new RegExp(`(^|[^\\p{L}])${escaped(f)}($|[^\\p{L}])`, "u").test(text));
}"""


def english_left(page: Page, lang: str) -> list[str]:
    """The console's English messages still on a page shown in another language."""
    return page.evaluate(_LEFTOVERS, lang)


class NewsSite:
    """Another origin, like the news site that embeds the widget: static pages on a port
    of their own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "favicon.ico").write_bytes(b"")  # what a browser asks every site for
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def page(self, name: str, html: str) -> str:
        (self.folder / name).write_text(html)
        return f"{self.origin}/{name}"


@contextlib.contextmanager
def news_site(folder: Path) -> Iterator[NewsSite]:
    folder.mkdir(parents=True, exist_ok=True)
    site = NewsSite(folder)
    thread = threading.Thread(target=site.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.httpd.shutdown()
        site.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
