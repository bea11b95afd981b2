"""The compose file validates with docker-compose and has the shape the docs promise."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compose(*args: str) -> str:
    binary = shutil.which("docker-compose")
    assert binary, (
        "docker-compose is missing: scripts/test installs it (apt-get install docker-compose)"
    )
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_compose_file_validates():
    compose("config", "-q")


def test_compose_has_redis_publisher_two_hubs_and_a_proxy():
    services = set(compose("config", "--services").split())
    assert services == {"redis", "publisher", "hub-1", "hub-2", "proxy"}
    config = compose("config")
    assert "appendonly" in config and "TICKER_REDIS_URL" in config


def test_proxy_sends_ws_and_sse_to_the_hubs_and_the_rest_to_the_publisher():
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "location = /ws" in nginx and "proxy_pass http://hubs" in nginx
    assert "location = /sse" in nginx
    assert "server hub-1:8001" in nginx and "server hub-2:8001" in nginx
    assert "proxy_pass http://publisher" in nginx
    assert "Upgrade $http_upgrade" in nginx


def environment(name: str) -> str:
    found = re.search(rf"^\s+{name}: (.+)$", compose("config"), re.MULTILINE)
    assert found, f"docker-compose.yml sets no {name}"
    return found[1].strip("'\"")


def test_compose_defaults_work_under_any_name():
    # Pages dial /ws on their own host; the hubs accept a page from the host it asks.
    assert environment("TICKER_PUBLIC_HUB_URL") == "/ws"
    assert environment("TICKER_ALLOWED_ORIGINS") == ""
    from ticker import config

    settings = config.from_env({"TICKER_PUBLIC_HUB_URL": "/ws", "TICKER_ALLOWED_ORIGINS": ""})
    assert settings.hub_url() == "/ws"


def test_the_public_origin_is_two_settings_documented_at_the_top(monkeypatch):
    monkeypatch.setenv("TICKER_PUBLIC_HUB_URL", "wss://news.example/ws")
    monkeypatch.setenv("TICKER_ALLOWED_ORIGINS", "https://news.example")
    assert environment("TICKER_PUBLIC_HUB_URL") == "wss://news.example/ws"
    assert environment("TICKER_ALLOWED_ORIGINS") == "https://news.example"
    head = (ROOT / "docker-compose.yml").read_text().split("\nx-ticker")[0]
    assert "TICKER_PUBLIC_HUB_URL" in head and "TICKER_ALLOWED_ORIGINS" in head


def test_nginx_may_open_a_descriptor_for_every_connection():
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    connections = int(re.search(r"worker_connections (\d+);", nginx)[1])
    rlimit = int(re.search(r"worker_rlimit_nofile (\d+);", nginx)[1])
    assert rlimit >= connections + 1024  # listeners, logs and epoll besides connections
    hard = int(re.search(r"nofile: (\d+)", (ROOT / "docker-compose.yml").read_text())[1])
    assert hard >= rlimit


def test_the_proxy_keeps_metrics_from_the_public():
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    block = nginx.split("location = /metrics", 1)[1].split("}", 1)[0]
    assert "return 404" in block
