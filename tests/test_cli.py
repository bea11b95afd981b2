"""The `ticker` command as a newcomer uses it: real processes, real ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from procs import TICKER, free_port, read_until, stop, ticker
from redisserver import RedisServer

from ticker import cli, config
from ticker import items as rules
from ticker.archive import ArchiveQuery
from ticker.brokers.base import BrokerMisconfigured, Change
from ticker.brokers.embedded import EmbeddedBroker


def test_token_lifecycle(tmp_path: Path):
    db = str(tmp_path / "t.db")
    created = ticker("token", "create", "amal", "--db", db)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("tkr_") and len(token) > 40
    assert "shown once" in created.stderr
    assert token not in (tmp_path / "t.db").read_bytes().decode("latin-1")
    duplicate = ticker("token", "create", "amal", "--db", db)
    assert duplicate.returncode != 0 and "exists" in duplicate.stderr
    bad = ticker("token", "create", "no spaces allowed", "--db", db)
    assert bad.returncode != 0 and "token name" in bad.stderr
    assert ticker("token", "list", "--db", db).stdout.startswith("amal\t")
    assert ticker("token", "revoke", "amal", "--db", db).returncode == 0
    assert ticker("token", "list", "--db", db).stdout == ""
    assert ticker("token", "revoke", "amal", "--db", db).returncode != 0


def test_publisher_and_hub_refuse_to_start_without_redis():
    for command in ("publisher", "hub"):
        result = ticker(command, env={"TICKER_REDIS_URL": ""})
        # A setting the command cannot run without: exit code 2, one sentence, nothing else.
        assert result.returncode == 2, (command, result.returncode, result.stderr)
        assert result.stderr.strip() == (
            f"ticker {command} runs against Redis: pass --redis-url or set "
            "TICKER_REDIS_URL (or use `ticker serve` for one process)"
        ), (command, result.stderr)
        assert result.stdout == "", (command, result.stdout)


@pytest.fixture
def served(tmp_path: Path):
    port, hub_port = free_port(), free_port()
    db = str(tmp_path / "ticker.db")
    process = subprocess.Popen(
        [*TICKER, "serve", "--db", db, "--port", str(port), "--hub-port", str(hub_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        banner = read_until(process, "Create an editor token")
        token = ticker("token", "create", "desk", "--db", db).stdout.strip()
        yield process, banner, port, hub_port, token
    finally:
        stop(process, signal.SIGKILL)


def test_serve_post_tail_and_shutdown(served):
    process, banner, port, hub_port, token = served
    assert f"http://127.0.0.1:{port}/demo" in banner
    assert f"ws://127.0.0.1:{hub_port}/ws?edition=en" in banner

    tail = subprocess.Popen(
        [*TICKER, "tail", "--edition", "en", "--hub", f"ws://127.0.0.1:{hub_port}/ws"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        read_until(tail, "# ticker en: 0 live items")
        posted = ticker(
            "post",
            "--url",
            f"http://127.0.0.1:{port}",
            "--token",
            token,
            "--source",
            "Lebanese Presidency",
            "--urgency",
            "1",
            "--region",
            "MENA",
            "President has assigned former Ambassador Simon Karam",
        )
        assert posted.returncode == 0, posted.stderr
        assert posted.stdout.startswith("posted en-")
        line = read_until(tail, "Simon Karam")
        assert "[FLASH] Lebanese Presidency: President has assigned" in line

        refused = ticker(
            "post", "--url", f"http://127.0.0.1:{port}", "--token", "tkr_nope", "Forged"
        )
        assert refused.returncode != 0 and "401" in refused.stderr

        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 6
        read_until(tail, "disconnected (1001: hub shutting down)")
    finally:
        tail.kill()
        tail.wait()


def test_serve_keeps_the_ticker_across_a_restart_and_tail_resumes(tmp_path: Path):
    db = str(tmp_path / "ticker.db")
    port, hub_port = free_port(), free_port()
    args = [*TICKER, "serve", "--db", db, "--port", str(port), "--hub-port", str(hub_port)]
    token = ticker("token", "create", "desk", "--db", db).stdout.strip()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    tail = None
    try:
        for round_, headline in enumerate(["Survives restarts", "Posted after the restart"]):
            process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            try:
                read_until(process, "Create an editor token")
                if tail is None:
                    tail = subprocess.Popen(
                        [*TICKER, "tail", "--hub", f"ws://127.0.0.1:{hub_port}/ws"],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                    read_until(tail, "# ticker en")
                else:
                    resumed = read_until(tail, "# resumed, 0 missed", timeout=15)
                response = httpx.post(
                    f"{base}/api/items",
                    headers=headers,
                    json={"edition": "en", "headline": headline},
                )
                assert response.status_code == 201
                shown = read_until(tail, headline)
                if round_:  # after the resume: only the new item, the old one not again
                    assert "Survives restarts" not in resumed + shown
                listing = httpx.get(f"{base}/api/items", params={"edition": "en"}).json()
                assert len(listing["items"]) == round_ + 1
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=10)
    finally:
        if tail is not None and tail.poll() is None:
            tail.kill()


def test_a_port_in_use_is_one_clear_error(served, tmp_path: Path):
    _, _, port, hub_port, _ = served
    db = str(tmp_path / "other.db")
    for ports in ((port, free_port()), (free_port(), hub_port)):
        result = subprocess.run(
            [*TICKER, "serve", "--db", db, "--port", str(ports[0]), "--hub-port", str(ports[1])],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert str(ports[0] if ports[0] == port else ports[1]) in result.stderr


# --- settings are checked before anything starts ---------------------------------------------

BAD_SETTINGS = {
    "TICKER_PORT=99999": "a port is 1-65535, or 0 for any free port",
    "TICKER_HUB_PORT=99999": "a port is 1-65535, or 0 for any free port",
    "TICKER_HISTORY=-5": "a whole number, 1 or more",
    "TICKER_PING_INTERVAL=0": "a number of seconds above 0",
    "TICKER_HUB_WORKERS=abc": "a whole number, 1 or more",
    "TICKER_PING_TIMEOUT=30": "a number of seconds above 0, at most the ping interval (20)",
    "TICKER_EDITIONS=' , '": "comma-separated lowercase language codes like en,ar,es or "
    "pt-br, none twice",
    "TICKER_COALESCE_MS=nan": "a number of milliseconds, 0 or more",
    "TICKER_EXPIRY_DEFAULT=1w": "a duration like 6h, 90m, 45s or 2d (or seconds), or off",
    "TICKER_MAX_PINNED=30": "a whole number from 0 to the live items' cap (20)",
}
COMMANDS = {
    "serve": ["serve"],
    "publisher": ["publisher"],
    "hub": ["hub"],
    "token list": ["token", "list"],
    "publisher --workers 2": ["publisher", "--workers", "2"],
    "hub --workers 2": ["hub", "--workers", "2"],
}


def clean_env(**settings: str) -> dict[str, str]:
    """This machine's environment without its TICKER_* settings, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_")}
    return {**env, **settings}


def run_all(runs: list[tuple[list[str], dict[str, str]]]) -> list[tuple[int, str, str, float]]:
    """Run commands a few at a time: (exit code, stdout, stderr, seconds) for each."""

    def one(run: tuple[list[str], dict[str, str]]) -> tuple[int, str, str, float]:
        started = time.monotonic()
        done = subprocess.run(
            [*TICKER, *run[0]], capture_output=True, text=True, timeout=30, env=run[1]
        )
        return done.returncode, done.stdout, done.stderr, time.monotonic() - started

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, runs))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_process_refuses_a_bad_setting_with_one_line(command: str, tmp_path: Path):
    # Redis is configured but nothing listens there: only the settings check can end these.
    base = {"TICKER_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    if command in ("serve", "token list"):
        base = {"TICKER_DB": str(tmp_path / "t.db")}
    runs = []
    for assignment in BAD_SETTINGS:
        name, _, value = assignment.partition("=")
        runs.append((COMMANDS[command], clean_env(**base, **{name: value.strip("'")})))
    for (assignment, accepted), (code, out, err, seconds) in zip(
        BAD_SETTINGS.items(), run_all(runs), strict=True
    ):
        assert (code, err, out) == (2, f"ticker: {assignment} is not valid: {accepted}\n", "")
        assert seconds < 10, (assignment, seconds)


def test_bad_flags_are_one_line_naming_the_flag(tmp_path: Path):
    redis = ["--redis-url", f"redis://127.0.0.1:{free_port()}/0"]
    runs = [
        (["serve", "--db", str(tmp_path / "t.db"), "--port", "99999"], "--port=99999", "a port"),
        (["hub", *redis, "--workers", "abc"], "--workers=abc", "a whole number"),
        (["publisher", *redis, "--workers", "0"], "--workers=0", "a whole number"),
        (["hub", *redis, "--hub-port", "http"], "--hub-port=http", "a port"),
        (["token", "list", "--redis-url", "localhost:6379"], "--redis-url=", "a URL"),
        (["serve", "--db", str(tmp_path)], f"--db={tmp_path}", "a file path"),
        (["post", "--url", "127.0.0.1", "--token", "t", "Hi"], "--url=127.0.0.1", "an http"),
        (["tail", "--hub", "http://127.0.0.1/ws"], "--hub=http://127.0.0.1/ws", "a ws"),
    ]
    results = run_all([(args, clean_env()) for args, _, _ in runs])
    for (args, named, accepted), (code, _, err, _) in zip(runs, results, strict=True):
        assert code == 2, (args, err)
        assert err.count("\n") == 1 and err.startswith(f"ticker: {named}"), err
        assert f"is not valid: {accepted}" in err


def test_help_works_whatever_the_settings():
    env = clean_env(TICKER_HUB_WORKERS="abc", TICKER_PORT="99999", TICKER_URL="nowhere")
    commands = [["--help"], ["hub", "--help"], ["publisher", "--help"], ["post", "--help"]]
    for code, out, err, _ in run_all([(args, env) for args in commands]):
        assert code == 0 and "usage: ticker" in out and err == ""


def test_serve_with_port_zero_prints_the_ports_it_got(tmp_path: Path):
    process = subprocess.Popen(
        [*TICKER, "serve", "--db", str(tmp_path / "t.db"), "--port", "0", "--hub-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )
    try:
        banner = read_until(process, "WebSocket hub")
        demo = next(line for line in banner.splitlines() if "demo page" in line).split()[-1]
        assert ":0/" not in banner and ":0?" not in banner
        assert httpx.get(demo, timeout=5).status_code == 200
        hub = next(line for line in banner.splitlines() if "WebSocket hub" in line).split()[-1]
        hub_port = int(hub.split(":")[2].split("/")[0])
        assert httpx.get(f"http://127.0.0.1:{hub_port}/healthz", timeout=5).status_code == 200
    finally:
        stop(process)


# --- a store that refuses us stops the process -----------------------------------------------


class RefusingBroker(EmbeddedBroker):
    """A store that answers but refuses us, as Redis does for a wrong password."""

    async def start(self) -> None:
        raise BrokerMisconfigured("Redis refused the password")


@pytest.mark.parametrize(
    "args",
    [
        ["token", "list"],
        ["token", "create", "amal"],
        ["serve", "--port", "0", "--hub-port", "0"],
        ["publisher", "--port", "0", "--redis-url", "redis://127.0.0.1:1/0"],
        ["hub", "--hub-port", "0", "--redis-url", "redis://127.0.0.1:1/0"],
        ["hub", "--workers", "2", "--redis-url", "redis://127.0.0.1:1/0"],
    ],
    ids=" ".join,
)
def test_a_store_that_refuses_us_ends_the_command_with_one_line(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.setattr(
        cli,
        "make_broker",
        lambda settings, **_: RefusingBroker(tmp_path / "t.db", editions=("en",)),
    )
    for name in [k for k in os.environ if k.startswith("TICKER_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        cli.main([*args, "--log-level", "critical"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "ticker: Redis refused the password\n"


@pytest.fixture(scope="module")
def guarded_redis() -> Iterator[str]:
    """A Redis with a password, and its URL with another one."""
    server = RedisServer(extra_args=("--requirepass", "the-password"))
    server.start()
    try:
        yield server.url.replace("redis://", "redis://:not-the-password@")
    finally:
        server.close()


def test_the_redis_broker_reports_a_refused_password(guarded_redis: str):
    import asyncio

    from ticker.brokers.redis import RedisBroker

    async def start() -> None:
        broker = RedisBroker(guarded_redis, editions=("en",))
        try:
            await broker.start()
        finally:
            await broker.close()

    with pytest.raises(BrokerMisconfigured) as refused:
        asyncio.run(start())
    assert "not-the-password" not in str(refused.value)


def test_every_process_stops_on_a_refused_password(guarded_redis: str):
    url = guarded_redis
    runs = [
        ["token", "list", "--redis-url", url],
        ["serve", "--redis-url", url, "--port", "0", "--hub-port", "0"],
        ["publisher", "--redis-url", url, "--port", "0"],
        ["hub", "--redis-url", url, "--hub-port", "0"],
        ["hub", "--redis-url", url, "--workers", "2", "--hub-port", "0"],
        ["publisher", "--redis-url", url, "--workers", "2", "--port", "0"],
    ]
    for args, (code, _, err, seconds) in zip(
        runs, run_all([(args, clean_env()) for args in runs]), strict=True
    ):
        assert code == 2, (args, err)
        assert err.count("\n") == 1 and err.startswith("ticker: "), (args, err)
        assert "not-the-password" not in err
        assert seconds < 10


# --- the publisher's connections --------------------------------------------------------------


def test_serve_closes_slow_connections_and_keeps_serving(tmp_path: Path):
    port, hub_port = free_port(), free_port()
    env = clean_env(TICKER_HEADER_TIMEOUT="1", TICKER_MAX_CONNECTIONS_PER_ADDRESS="30")
    process = subprocess.Popen(
        [*TICKER, "serve", "--db", str(tmp_path / "t.db"), "--port", str(port)]
        + ["--hub-port", str(hub_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    slow: list[socket.socket] = []
    try:
        read_until(process, "Create an editor token")
        for n in range(20):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" if n % 2 else b"GE")
            slow.append(sock)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        for sock in slow:
            sock.settimeout(5)
            assert sock.recv(100) == b""  # closed by the server, well before 5 s
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        for sock in slow:
            sock.close()
        stop(process)


async def test_archive_prune(tmp_path: Path):
    db = str(tmp_path / "t.db")
    broker = EmbeddedBroker(db, editions=("en", "ar", "es"))
    await broker.start()
    for year in (2019, 2021):
        when = datetime(year, 1, 1, tzinfo=UTC)
        item = rules.create(
            {"edition": "en", "headline": f"From {year}"},
            editor="amal",
            vocabulary=config.Vocabulary(),
            limits=config.Limits(),
            now=when,
        )
        await broker.publish(Change("posted", item))
        await broker.publish(Change("withdrawn", rules.withdraw(item, editor="amal"), 1))
    await broker.close()
    pruned = ticker("archive", "prune", "--before", "2020-01-01", "--db", db)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines() == [
        "en: removed 1 items posted before 2020-01-01",
        "ar: removed 0 items posted before 2020-01-01",
        "es: removed 0 items posted before 2020-01-01",
    ]
    await broker.start()
    page = await broker.archive(ArchiveQuery("en"))
    await broker.close()
    assert [item["headline"] for item in page.items] == ["From 2021"]
    bad = ticker("archive", "prune", "--before", "last week", "--db", db)
    assert bad.returncode != 0 and "--before must be an ISO 8601 date" in bad.stderr
    unknown = ticker("archive", "prune", "--before", "2020-01-01", "--edition", "xx", "--db", db)
    assert unknown.returncode != 0 and "--edition must be one of en, ar, es" in unknown.stderr
