"""Settings: every value is read and checked once, and a bad one is one exact line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticker import config
from ticker.config import ConfigError, Limits, Vocabulary, client_from_env, from_env

PORT = "a port is 1-65535, or 0 for any free port"
SECONDS = "a number of seconds above 0"
COUNT = "a whole number, 1 or more"
EDITIONS = "comma-separated lowercase language codes like en,ar,es or pt-br, none twice"
NAMES = "comma-separated names, none empty, none twice"

BAD_ENV = [
    ({"TICKER_PORT": "99999"}, f"TICKER_PORT=99999 is not valid: {PORT}"),
    ({"TICKER_HUB_PORT": "99999"}, f"TICKER_HUB_PORT=99999 is not valid: {PORT}"),
    ({"TICKER_HUB_PORT": "-1"}, f"TICKER_HUB_PORT=-1 is not valid: {PORT}"),
    ({"TICKER_PORT": "80.5"}, f"TICKER_PORT=80.5 is not valid: {PORT}"),
    ({"TICKER_HISTORY": "-5"}, f"TICKER_HISTORY=-5 is not valid: {COUNT}"),
    ({"TICKER_HISTORY": "0"}, f"TICKER_HISTORY=0 is not valid: {COUNT}"),
    ({"TICKER_PING_INTERVAL": "0"}, f"TICKER_PING_INTERVAL=0 is not valid: {SECONDS}"),
    ({"TICKER_PING_INTERVAL": "nan"}, f"TICKER_PING_INTERVAL=nan is not valid: {SECONDS}"),
    ({"TICKER_PING_TIMEOUT": "inf"}, f"TICKER_PING_TIMEOUT=inf is not valid: {SECONDS}"),
    ({"TICKER_HEARTBEAT_INTERVAL": "-1"}, f"TICKER_HEARTBEAT_INTERVAL=-1 is not valid: {SECONDS}"),
    (
        {"TICKER_COALESCE_MS": "nan"},
        "TICKER_COALESCE_MS=nan is not valid: a number of milliseconds, 0 or more",
    ),
    (
        {"TICKER_WS_FRAMES_WINDOW_SECONDS": "inf"},
        f"TICKER_WS_FRAMES_WINDOW_SECONDS=inf is not valid: {SECONDS}",
    ),
    ({"TICKER_HUB_WORKERS": "abc"}, f"TICKER_HUB_WORKERS=abc is not valid: {COUNT}"),
    ({"TICKER_PUBLISHER_WORKERS": "0"}, f"TICKER_PUBLISHER_WORKERS=0 is not valid: {COUNT}"),
    ({"TICKER_FANOUT_CHUNK": "0"}, f"TICKER_FANOUT_CHUNK=0 is not valid: {COUNT}"),
    ({"TICKER_ACCEPT_BACKLOG": "many"}, f"TICKER_ACCEPT_BACKLOG=many is not valid: {COUNT}"),
    ({"TICKER_HANDSHAKE_TIMEOUT": "0"}, f"TICKER_HANDSHAKE_TIMEOUT=0 is not valid: {SECONDS}"),
    ({"TICKER_HEADER_TIMEOUT": "-3"}, f"TICKER_HEADER_TIMEOUT=-3 is not valid: {SECONDS}"),
    (
        {"TICKER_MAX_CONNECTIONS_PER_ADDRESS": "0"},
        f"TICKER_MAX_CONNECTIONS_PER_ADDRESS=0 is not valid: {COUNT}",
    ),
    (
        {"TICKER_SHUTDOWN_GRACE": "-1"},
        "TICKER_SHUTDOWN_GRACE=-1 is not valid: a number of seconds, 0 or more",
    ),
    (
        {"TICKER_PING_TIMEOUT": "30"},
        f"TICKER_PING_TIMEOUT=30 is not valid: {SECONDS}, at most the ping interval (20)",
    ),
    (
        {"TICKER_PING_INTERVAL": "5"},
        f"TICKER_PING_INTERVAL=5 is not valid: {SECONDS}, at least the ping timeout (20)",
    ),
    ({"TICKER_EDITIONS": ""}, f"TICKER_EDITIONS='' is not valid: {EDITIONS}"),
    ({"TICKER_EDITIONS": " , "}, f"TICKER_EDITIONS=' , ' is not valid: {EDITIONS}"),
    ({"TICKER_EDITIONS": "en,EN"}, f"TICKER_EDITIONS=en,EN is not valid: {EDITIONS}"),
    ({"TICKER_EDITIONS": "en,en"}, f"TICKER_EDITIONS=en,en is not valid: {EDITIONS}"),
    ({"TICKER_EDITIONS": "english"}, f"TICKER_EDITIONS=english is not valid: {EDITIONS}"),
    ({"TICKER_REGIONS": "MENA,,Europe"}, f"TICKER_REGIONS=MENA,,Europe is not valid: {NAMES}"),
    (
        {"TICKER_CATEGORIES": "Sports,Sports"},
        f"TICKER_CATEGORIES=Sports,Sports is not valid: {NAMES}",
    ),
    ({"TICKER_CATEGORIES": ""}, f"TICKER_CATEGORIES='' is not valid: {NAMES}"),
    (
        {"TICKER_LOG_LEVEL": "loud"},
        "TICKER_LOG_LEVEL=loud is not valid: one of debug, info, warning, error, critical",
    ),
    (
        {"TICKER_REDIS_URL": "http://redis:6379"},
        "TICKER_REDIS_URL=http://redis:6379 is not valid: "
        "a URL starting with redis://, rediss:// or unix://, "
        "or redis+cluster://host:port[,host:port...], "
        "or redis+sentinel://host:port[,host:port...]/service[/db]",
    ),
    (
        {"TICKER_REDIS_URL": "redis+sentinel://a:26379"},
        "TICKER_REDIS_URL=redis+sentinel://a:26379 is not valid: "
        "a URL starting with redis://, rediss:// or unix://, "
        "or redis+cluster://host:port[,host:port...], "
        "or redis+sentinel://host:port[,host:port...]/service[/db]",
    ),
    (
        {"TICKER_PUBLIC_HUB_URL": "https://news.example/ws"},
        "TICKER_PUBLIC_HUB_URL=https://news.example/ws is not valid: "
        "a URL starting with ws:// or wss://, or a path such as /ws when one proxy serves "
        "the publisher and the hubs on one origin",
    ),
    (
        {"TICKER_ALLOWED_ORIGINS": "https://news.example/"},
        "TICKER_ALLOWED_ORIGINS=https://news.example/ is not valid: "
        "comma-separated origins like https://news.example (no path), or *",
    ),
    (
        {"TICKER_HOST": "local host"},
        "TICKER_HOST='local host' is not valid: a host name or IP address",
    ),
    ({"TICKER_MAX_LIVE": "0"}, "TICKER_MAX_LIVE=0 is not valid: a whole number, 1 or more"),
    (
        {"TICKER_MAX_PINNED": "-1"},
        "TICKER_MAX_PINNED=-1 is not valid: a whole number, 0 (no pins) or more",
    ),
    (
        {"TICKER_MAX_PINNED": "21"},
        "TICKER_MAX_PINNED=21 is not valid: a whole number from 0 to the live items' cap (20)",
    ),
    (
        {"TICKER_MAX_LIVE": "2"},
        "TICKER_MAX_LIVE=2 is not valid: a whole number, at least the pinned items' cap (3)",
    ),
    (
        {"TICKER_MAX_SCHEDULE_SECONDS": "soon"},
        "TICKER_MAX_SCHEDULE_SECONDS=soon is not valid: a whole number, 1 or more",
    ),
    (
        {"TICKER_EXPIRY_FLASH": "6 hours"},
        "TICKER_EXPIRY_FLASH='6 hours' is not valid: "
        "a duration like 6h, 90m, 45s or 2d (or seconds), or off",
    ),
    (
        {"TICKER_EXPIRY_DEFAULT": "8d"},
        "TICKER_EXPIRY_DEFAULT=8d is not valid: "
        "a duration like 6h, 90m, 45s or 2d (or seconds), or off, "
        "at most TICKER_MAX_EXPIRY_SECONDS (604800)",
    ),
    (
        {"TICKER_MAX_EXPIRY_SECONDS": "3600"},
        "TICKER_MAX_EXPIRY_SECONDS=3600 is not valid: "
        "a whole number, 1 or more, at least TICKER_EXPIRY_FLASH (21600 seconds)",
    ),
]


@pytest.mark.parametrize(("env", "message"), BAD_ENV, ids=[m.split(" ")[0] for _, m in BAD_ENV])
def test_a_bad_variable_is_one_exact_line(env: dict[str, str], message: str):
    with pytest.raises(ConfigError) as raised:
        from_env(env)
    assert str(raised.value) == message
    assert "\n" not in str(raised.value)


BAD_FLAGS = [
    ({"port": "99999"}, f"--port=99999 is not valid: {PORT}"),
    ({"hub_port": "http"}, f"--hub-port=http is not valid: {PORT}"),
    ({"hub_workers": "abc"}, f"--workers=abc is not valid: {COUNT}"),
    ({"publisher_workers": "-2"}, f"--workers=-2 is not valid: {COUNT}"),
    (
        {"log_level": "verbose"},
        "--log-level=verbose is not valid: one of debug, info, warning, error, critical",
    ),
    (
        {"redis_url": "localhost:6379"},
        "--redis-url=localhost:6379 is not valid: "
        "a URL starting with redis://, rediss:// or unix://, "
        "or redis+cluster://host:port[,host:port...], "
        "or redis+sentinel://host:port[,host:port...]/service[/db]",
    ),
    (
        {"allowed_origins": ["https://ok.example", "news.example"]},
        "--allowed-origin=https://ok.example,news.example is not valid: "
        "comma-separated origins like https://news.example (no path), or *",
    ),
]


@pytest.mark.parametrize(
    ("flags", "message"), BAD_FLAGS, ids=[m.split("=")[0] for _, m in BAD_FLAGS]
)
def test_a_bad_flag_is_named_as_the_flag(flags: dict[str, object], message: str):
    with pytest.raises(ConfigError) as raised:
        from_env({}, **flags)
    assert str(raised.value) == message


def test_a_flag_wins_but_a_bad_variable_under_it_is_still_refused():
    assert from_env({"TICKER_PORT": "9000"}, port="9001").port == 9001
    with pytest.raises(ConfigError, match="^TICKER_HUB_WORKERS=abc "):
        from_env({"TICKER_HUB_WORKERS": "abc"}, hub_workers="2")


def test_a_directory_is_not_a_database(tmp_path: Path):
    with pytest.raises(ConfigError) as raised:
        from_env({"TICKER_DB": str(tmp_path)})
    assert str(raised.value) == f"TICKER_DB={tmp_path} is not valid: a file path, not a directory"


def test_good_values_are_read_into_their_types(tmp_path: Path):
    settings = from_env(
        {
            "TICKER_PORT": "0",
            "TICKER_HUB_PORT": " 65535 ",
            "TICKER_REDIS_URL": "rediss://:secret@redis.example:6380/2",
            "TICKER_DB": str(tmp_path / "ticker.db"),
            "TICKER_PING_INTERVAL": "15",
            "TICKER_PING_TIMEOUT": "7.5",
            "TICKER_COALESCE_MS": "0",
            "TICKER_SHUTDOWN_GRACE": "0",
            "TICKER_HUB_WORKERS": "4",
            "TICKER_FANOUT_CHUNK": "512",
            "TICKER_HEADER_TIMEOUT": "2.5",
            "TICKER_MAX_CONNECTIONS_PER_ADDRESS": "10",
            "TICKER_LOG_LEVEL": "WARNING",
            "TICKER_EDITIONS": "en, pt-br ,ar",
            "TICKER_REGIONS": "US & Canada,MENA",
            "TICKER_ALLOWED_ORIGINS": "https://news.example,http://127.0.0.1:8080",
            "TICKER_HISTORY": "50",
            "TICKER_WS_FRAMES_WINDOW_SECONDS": "2.5",
        }
    )
    assert (settings.port, settings.hub_port) == (0, 65535)
    assert settings.db_path == tmp_path / "ticker.db"
    assert (settings.ping_interval, settings.ping_timeout) == (15.0, 7.5)
    assert settings.hub_workers == 4 and settings.fanout_chunk == 512
    assert settings.header_timeout == 2.5 and settings.max_connections_per_address == 10
    assert settings.log_level == "warning"
    assert settings.vocabulary.editions == ("en", "pt-br", "ar")
    assert settings.vocabulary.regions == ("US & Canada", "MENA")
    assert settings.allowed_origins == ("https://news.example", "http://127.0.0.1:8080")
    assert settings.limits.history == 50 and settings.limits.ws_frames_window_seconds == 2.5


def test_durations_and_caps_are_read():
    limits = from_env(
        {
            "TICKER_EXPIRY_FLASH": "90m",
            "TICKER_EXPIRY_DEFAULT": "off",
            "TICKER_MAX_LIVE": "5",
            "TICKER_MAX_PINNED": "0",
            "TICKER_MAX_EXPIRY_SECONDS": "7200",
        }
    ).limits
    assert (limits.expiry_flash, limits.expiry_default) == (5400, 0)
    assert (limits.max_live, limits.max_pinned, limits.max_expiry_seconds) == (5, 0, 7200)
    assert from_env({"TICKER_EXPIRY_DEFAULT": "2d"}).limits.expiry_default == 2 * 86400
    assert from_env({"TICKER_EXPIRY_DEFAULT": " 45s "}).limits.expiry_default == 45
    assert from_env({"TICKER_EXPIRY_DEFAULT": "600"}).limits.expiry_default == 600
    defaults = from_env({}).limits
    assert (defaults.max_live, defaults.max_pinned) == (20, 3)
    assert (defaults.expiry_flash, defaults.expiry_default) == (6 * 3600, 24 * 3600)
    assert defaults.max_schedule_seconds == 30 * 86400


def test_an_empty_variable_means_the_default():
    settings = from_env({"TICKER_PORT": "", "TICKER_REDIS_URL": "", "TICKER_HUB_WORKERS": " "})
    assert settings == from_env({})
    assert settings.redis_url is None and settings.port == 8000


def test_settings_from_code_are_checked_too():
    assert from_env({}, port=0, hub_port=0, allowed_origins=("*",)).allowed_origins == ("*",)
    with pytest.raises(ConfigError, match="^limits.history=0 "):
        from_env({}, limits=Limits(history=0))
    with pytest.raises(ConfigError, match="^vocabulary.editions='' "):
        from_env({}, vocabulary=Vocabulary(editions=()))
    with pytest.raises(TypeError):
        from_env({}, no_such_setting=1)


def test_every_setting_has_one_row_and_every_field_a_row():
    rows = [row.path for row in config.SETTINGS]
    assert len(rows) == len(set(rows))
    fields = {f for f in config.Settings.__dataclass_fields__ if f not in ("vocabulary", "limits")}
    fields |= {f"limits.{f}" for f in Limits.__dataclass_fields__}
    fields |= {f"vocabulary.{f}" for f in Vocabulary.__dataclass_fields__}
    assert set(rows) == fields
    assert all(row.env.startswith("TICKER_") for row in config.SETTINGS)


def test_client_settings():
    assert client_from_env({}) == config.ClientSettings()
    client = client_from_env(
        {"TICKER_URL": "https://desk.example", "TICKER_TOKEN": "tkr_a"}, token="tkr_b"
    )
    assert (client.url, client.token) == ("https://desk.example", "tkr_b")
    with pytest.raises(ConfigError) as raised:
        client_from_env({"TICKER_HUB_URL": "http://127.0.0.1:8001/ws"})
    assert str(raised.value) == (
        "TICKER_HUB_URL=http://127.0.0.1:8001/ws is not valid: a ws:// or wss:// URL"
    )
    with pytest.raises(ConfigError, match="^--url=127.0.0.1:8000 "):
        client_from_env({}, url="127.0.0.1:8000")


def test_the_public_hub_url_may_be_a_path_on_the_pages_own_origin() -> None:
    assert config.from_env({"TICKER_PUBLIC_HUB_URL": "/ws"}).hub_url() == "/ws"
    for bad in ("//evil.example/ws", "ws", "http://news.example/ws", "/w s"):
        with pytest.raises(config.ConfigError, match="TICKER_PUBLIC_HUB_URL"):
            config.from_env({"TICKER_PUBLIC_HUB_URL": bad})
