"""The `ticker` command as a newcomer uses it: real processes, real ports."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from procs import TICKER, free_port, read_until, stop, ticker


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
    result = ticker("hub", env={"TICKER_REDIS_URL": ""})
    assert result.returncode != 0 and "--redis-url" in result.stderr


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
