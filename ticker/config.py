"""Settings: one typed object, built once at start-up from flags and environment.

Every knob lives here and nowhere else, so docs/configuration.md can list them all
and the rest of the code receives its settings instead of reading globals.

Each knob has one row in a table (`SETTINGS`): its environment variable, its flag if the
command line has one, how the text is read and what values are accepted. A value that
does not fit stops the process before anything starts, with one line that names where the
value came from and what would be accepted: a typo in a deployment fails loudly at once
instead of listening on the wrong port or dropping clients hours later.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .roles import LEGACY_ROLES, ROLES

DEFAULT_EDITIONS = ("en", "ar", "es")
DEFAULT_REGIONS = (
    "Africa",
    "Asia",
    "Asia-Pacific",
    "Europe",
    "Latin America",
    "MENA",
    "Palestine",
    "US & Canada",
)
DEFAULT_CATEGORIES = (
    "Politics",
    "Economy",
    "Sports",
    "Arts&Culture",
    "Health",
    "Miscellaneous",
    "Technology",
    "Environment",
)
RTL_EDITIONS = frozenset({"ar", "fa", "he", "ur"})
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Schemes of one Redis; redis+cluster:// and redis+sentinel:// are checked by _redis_url.
REDIS_SCHEMES = ("redis", "rediss", "unix")
REDIS_URLS = (
    "a URL starting with redis://, rediss:// or unix://, "
    "or redis+cluster://host:port[,host:port...], "
    "or redis+sentinel://host:port[,host:port...]/service[/db]"
)


@dataclass(frozen=True)
class Vocabulary:
    """What an item may be tagged with. Newsrooms differ, so it is configuration."""

    editions: tuple[str, ...] = DEFAULT_EDITIONS
    regions: tuple[str, ...] = DEFAULT_REGIONS
    categories: tuple[str, ...] = DEFAULT_CATEGORIES


@dataclass(frozen=True)
class Limits:
    """Sizes that keep one careless or hostile client from hurting everyone else."""

    headline_max: int = 300
    source_max: int = 80
    link_max: int = 2000
    body_max_bytes: int = 16 * 1024
    max_tags: int = 8
    max_expiry_seconds: int = 7 * 24 * 3600
    history: int = 1000
    idempotency_seconds: int = 24 * 3600
    ws_frame_max_bytes: int = 4096
    ws_frames_per_10s: int = 50
    ws_frames_window_seconds: float = 10.0
    ws_write_buffer_max_bytes: int = 256 * 1024
    # The live ticker holds at most this many items per edition; a new one retires the
    # oldest that is not pinned. At most `max_pinned` of them may be pinned.
    max_live: int = 20
    max_pinned: int = 3
    # How far ahead an item may be scheduled (`publish_at`).
    max_schedule_seconds: int = 30 * 24 * 3600
    # The expiry an item gets when the editor sets none, by urgency (0: none).
    expiry_flash: int = 6 * 3600
    expiry_default: int = 24 * 3600


@dataclass(frozen=True)
class Settings:
    """Everything a ticker process needs to know, read once at start-up."""

    host: str = "127.0.0.1"
    port: int = 8000
    hub_host: str = "127.0.0.1"
    hub_port: int = 8001
    redis_url: str | None = None
    db_path: Path = Path("ticker.db")
    web_dir: Path = field(default_factory=lambda: _default_web_dir())
    allowed_origins: tuple[str, ...] = ()
    public_hub_url: str | None = None
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    heartbeat_interval: float = 25.0
    coalesce_ms: float = 5.0
    fanout_chunk: int = 128  # writes before the fan-out lets other work run
    handshake_timeout: float = 10.0
    accept_backlog: int = 4096
    shutdown_grace: float = 3.0
    hub_workers: int = 1
    publisher_workers: int = 1
    header_timeout: float = 10.0  # the publisher: seconds to deliver complete request headers
    keep_alive_timeout: float = 5.0  # the publisher: an idle keep-alive connection is closed
    max_connections_per_address: int = 256  # the publisher: open connections per client IP
    # Abuse limits of the publisher, in the `limits` syntax ("60/minute;10/second"), or "off".
    post_rate: str = "60/minute;10/second"  # posts, corrections, withdrawals per editor token
    auth_failure_rate: str = "10/minute"  # failed authentications per client address
    # Abuse limits of the hub, per client address; 0 turns each off.
    hub_max_connections_per_address: int = 0
    hub_handshakes_per_second: float = 0.0
    hub_handshake_burst: int = 20
    # With it, hub worker N also answers on hub_metrics_port + N, so each can be scraped.
    hub_metrics_port: int | None = None
    # Peers whose X-Forwarded-For is believed: addresses or networks.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1",)
    # How long the audit trail keeps an entry, in days.
    audit_days: int = 90
    # The roles of a token made before roles existed (every edition).
    legacy_token_role: tuple[str, ...] = LEGACY_ROLES
    log_level: str = "info"
    # Webhooks (docs/webhooks.md): retries, when a webhook is disabled, what may be called.
    webhook_delivery: bool = True
    webhook_retry_base: float = 5.0
    webhook_retry_max_delay: float = 3600.0
    webhook_retry_horizon: float = 86400.0
    webhook_disable_after: int = 20
    webhook_connect_timeout: float = 5.0
    webhook_timeout: float = 15.0
    webhook_concurrency: int = 16
    webhook_allow_networks: tuple[str, ...] = ()
    # Web Push (docs/push.md): who push services may contact, and how delivery behaves.
    push_contact: str = "mailto:webmaster@localhost"
    push_allow_networks: tuple[str, ...] = ()  # private networks push endpoints may be on
    push_subscribe_rate: str = "20/minute"  # subscription changes per client address
    push_concurrency: int = 64  # push messages in flight at once
    push_ttl: int = 6 * 3600  # seconds a push service keeps an undelivered message
    vocabulary: Vocabulary = field(default_factory=Vocabulary)
    limits: Limits = field(default_factory=Limits)

    def hub_url(self) -> str:
        """The URL browsers use to reach the hub, as the publisher tells its pages."""
        if self.public_hub_url:
            return self.public_hub_url
        host = "127.0.0.1" if self.hub_host in ("0.0.0.0", "::", "") else self.hub_host
        return f"ws://{host}:{self.hub_port}/ws"

    def origins(self) -> list[str | None] | None:
        """Origins the hub accepts; None (no header) is a non-browser client and always allowed.

        The publisher's own pages (the console, the demo) may always connect from a
        browser; configured origins are added to them. `*` turns the check off, for a
        public feed that anyone may embed.
        """
        if "*" in self.allowed_origins:
            return None
        own = (f"http://localhost:{self.port}", f"http://127.0.0.1:{self.port}")
        extra = [o for o in self.allowed_origins if o not in own]
        return [None, *own, *extra]


@dataclass(frozen=True)
class ClientSettings:
    """What `ticker post` and `ticker tail` need: where the service is, and who posts."""

    url: str = "http://127.0.0.1:8000"
    token: str | None = None
    hub_url: str = "ws://127.0.0.1:8001/ws"


def _default_web_dir() -> Path:
    """web/ of the source tree, or the copy a wheel installs as ticker/web."""
    here = Path(__file__).resolve().parent
    source = here.parent / "web"
    return source if source.is_dir() else here / "web"


class ConfigError(ValueError):
    """A setting has a value the service cannot run with. The message is one line that
    names the variable or flag, the value and what is accepted."""

    def __init__(self, source: str, value: str, accepted: str) -> None:
        super().__init__(f"{source}={value} is not valid: {accepted}")
        self.source = source
        self.value = value
        self.accepted = accepted


# --- readers and checks ----------------------------------------------------------------------


def _integer(raw: str) -> int:
    return int(raw.strip())


def _number(raw: str) -> float:
    return float(raw.strip())


def _word(raw: str) -> str:
    return raw.strip()


def _lower(raw: str) -> str:
    return raw.strip().lower()


def _switch(raw: str) -> bool:
    word = raw.strip().lower()
    if word in ("on", "true", "1", "yes"):
        return True
    if word in ("off", "false", "0", "no"):
        return False
    raise ValueError(raw)


def _names(raw: str) -> tuple[str, ...]:
    """A comma-separated list. Empty parts are kept, so the check can refuse them: `en,,ar`
    is more likely a mistake than a wish."""
    return tuple(part.strip() for part in raw.split(","))


def _is_int(value: Any, low: int, high: int | None = None) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def _is_number(value: Any, low: float, *, inclusive: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return value >= low if inclusive else value > low


def _positive_int(value: Any) -> bool:
    return _is_int(value, 1)


def _seconds(value: Any) -> bool:
    return _is_number(value, 0, inclusive=False)


def _port(value: Any) -> bool:
    return _is_int(value, 0, 65535)


def _host(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not re.search(r"[\s/,]", value)


def _url(schemes: Iterable[str]) -> Callable[[Any], bool]:
    allowed = tuple(schemes)

    def check(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        parts = urlsplit(value)
        return parts.scheme in allowed and (parts.scheme == "unix" or bool(parts.netloc))

    return check


def _redis_url(value: Any) -> bool:
    """One Redis, a cluster (its nodes, no path) or a sentinel-named master (the sentinels,
    the service name, perhaps a database number)."""
    if _url(REDIS_SCHEMES)(value):
        return True
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    if parts.scheme not in ("redis+cluster", "redis+sentinel"):
        return False
    nodes = parts.netloc.rpartition("@")[2].split(",")
    if not all(re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+)(:\d{1,5})?", n) for n in nodes):
        return False
    path = [segment for segment in parts.path.split("/") if segment]
    if parts.scheme == "redis+cluster":
        return not path and not parts.query
    return 1 <= len(path) <= 2 and (len(path) == 1 or path[1].isdigit())


def _hub_address(value: Any) -> bool:
    """A ws(s):// URL, or a path on the pages' own origin (`/ws`): the widget then dials
    whatever host the page came from, so one proxy can serve any name."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
        return value.isascii() and value.isprintable() and " " not in value
    return _url(("ws", "wss"))(value)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _list_of(item: Callable[[str], bool]) -> Callable[[Any], bool]:
    """A non-empty tuple of distinct strings, each passing `item`."""

    def check(value: Any) -> bool:
        return (
            isinstance(value, tuple)
            and len(value) > 0
            and len(set(value)) == len(value)
            and all(isinstance(v, str) and item(v) for v in value)
        )

    return check


_EDITION = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})?")
_ORIGIN = re.compile(r"https?://[^/\s,]+")


def _edition(value: str) -> bool:
    return bool(_EDITION.fullmatch(value))


def _name(value: str) -> bool:
    return bool(value) and value == value.strip() and "," not in value


def _origin(value: str) -> bool:
    return value == "*" or bool(_ORIGIN.fullmatch(value))


def _origins(value: Any) -> bool:
    return value == () or _list_of(_origin)(value)


def _file_path(value: Any) -> bool:
    return isinstance(value, Path) and not value.is_dir()


def _dir_path(value: Any) -> bool:
    return isinstance(value, Path) and not value.is_file()


def _log_level(value: Any) -> bool:
    return value in LOG_LEVELS


def _token(value: Any) -> bool:
    return value is None or (isinstance(value, str) and bool(value) and value.isprintable())


_RATE = re.compile(r"\s*[1-9][0-9]*\s*(/|per)\s*([1-9][0-9]*\s*)?(second|minute|hour|day)s?\s*")


def _rate(value: Any) -> bool:
    """`off`, or rates in the `limits` syntax, separated by `;`: every one must hold."""
    return isinstance(value, str) and (
        value == "off" or all(_RATE.fullmatch(part) for part in value.split(";"))
    )


def _network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def _contact(value: Any) -> bool:
    """The VAPID `sub` claim: a mailto: address or an https:// URL (RFC 8292 section 2.1)."""
    return isinstance(value, str) and bool(
        re.fullmatch(r"mailto:[^@\s]+@[^@\s]+|https://[^\s/]+(/\S*)?", value)
    )


def _networks_or_none(value: Any) -> bool:
    return value == () or _list_of(_network)(value)


def _count_or_off(value: Any) -> bool:
    return _is_int(value, 0)


_DURATION = re.compile(r"([0-9]{1,9})\s*([smhd]?)", re.ASCII)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(raw: str) -> int:
    """`6h`, `90m`, `45s`, `2d`, a number of seconds, or `off` (0): the units people use
    for how long a headline stays up."""
    text = raw.strip().lower()
    if text == "off":
        return 0
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(raw)
    return int(match[1]) * _UNIT_SECONDS[match[2]]


PORT = "a port is 1-65535, or 0 for any free port"
SECONDS = "a number of seconds above 0"
COUNT = "a whole number, 1 or more"
NAMES = "comma-separated names, none empty, none twice"


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One knob: where it lives, where its value comes from and what it may be."""

    path: str  # "port", "limits.history", "vocabulary.editions"
    env: str
    parse: Callable[[str], Any]
    check: Callable[[Any], bool]
    accepted: str
    flag: str | None = None
    blank_is_unset: bool = True  # TICKER_X= in a compose file means "use the default"

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]


DURATION = "a duration like 6h, 90m, 45s or 2d (or seconds), or off"

# Limits whose rows are not the plain "a whole number, 1 or more".
_LIMIT_ROWS = {
    "max_pinned": Setting(
        "limits.max_pinned",
        "TICKER_MAX_PINNED",
        _integer,
        _count_or_off,
        "a whole number, 0 (no pins) or more",
    ),
    "expiry_flash": Setting(
        "limits.expiry_flash", "TICKER_EXPIRY_FLASH", _duration, _count_or_off, DURATION
    ),
    "expiry_default": Setting(
        "limits.expiry_default", "TICKER_EXPIRY_DEFAULT", _duration, _count_or_off, DURATION
    ),
}


def _limit(f: Any) -> Setting:
    if f.name in _LIMIT_ROWS:
        return _LIMIT_ROWS[f.name]
    if f.type == "float":
        return Setting(f"limits.{f.name}", f"TICKER_{f.name.upper()}", _number, _seconds, SECONDS)
    return Setting(f"limits.{f.name}", f"TICKER_{f.name.upper()}", _integer, _positive_int, COUNT)


# docs/configuration.md mirrors this table; tests/test_docs.py checks that it does.
SETTINGS: tuple[Setting, ...] = (
    Setting("host", "TICKER_HOST", _word, _host, "a host name or IP address", "--host"),
    Setting("port", "TICKER_PORT", _integer, _port, PORT, "--port"),
    Setting("hub_host", "TICKER_HUB_HOST", _word, _host, "a host name or IP address", "--hub-host"),
    Setting("hub_port", "TICKER_HUB_PORT", _integer, _port, PORT, "--hub-port"),
    Setting(
        "redis_url",
        "TICKER_REDIS_URL",
        _word,
        _optional(_redis_url),
        REDIS_URLS,
        "--redis-url",
    ),
    Setting("db_path", "TICKER_DB", Path, _file_path, "a file path, not a directory", "--db"),
    Setting("web_dir", "TICKER_WEB_DIR", Path, _dir_path, "a directory, not a file"),
    Setting(
        "allowed_origins",
        "TICKER_ALLOWED_ORIGINS",
        _names,
        _origins,
        "comma-separated origins like https://news.example (no path), or *",
        "--allowed-origin",
    ),
    Setting(
        "public_hub_url",
        "TICKER_PUBLIC_HUB_URL",
        _word,
        _optional(_hub_address),
        "a URL starting with ws:// or wss://, or a path such as /ws when one proxy serves "
        "the publisher and the hubs on one origin",
        "--public-hub-url",
    ),
    Setting("ping_interval", "TICKER_PING_INTERVAL", _number, _seconds, SECONDS),
    Setting("ping_timeout", "TICKER_PING_TIMEOUT", _number, _seconds, SECONDS),
    Setting("heartbeat_interval", "TICKER_HEARTBEAT_INTERVAL", _number, _seconds, SECONDS),
    Setting(
        "coalesce_ms",
        "TICKER_COALESCE_MS",
        _number,
        lambda v: _is_number(v, 0, inclusive=True),
        "a number of milliseconds, 0 or more",
    ),
    Setting("fanout_chunk", "TICKER_FANOUT_CHUNK", _integer, _positive_int, COUNT),
    Setting("handshake_timeout", "TICKER_HANDSHAKE_TIMEOUT", _number, _seconds, SECONDS),
    Setting("accept_backlog", "TICKER_ACCEPT_BACKLOG", _integer, _positive_int, COUNT),
    Setting(
        "shutdown_grace",
        "TICKER_SHUTDOWN_GRACE",
        _number,
        lambda v: _is_number(v, 0, inclusive=True),
        "a number of seconds, 0 or more",
    ),
    Setting("hub_workers", "TICKER_HUB_WORKERS", _integer, _positive_int, COUNT, "--workers"),
    Setting(
        "publisher_workers",
        "TICKER_PUBLISHER_WORKERS",
        _integer,
        _positive_int,
        COUNT,
        "--workers",
    ),
    Setting("header_timeout", "TICKER_HEADER_TIMEOUT", _number, _seconds, SECONDS),
    Setting("keep_alive_timeout", "TICKER_KEEP_ALIVE_TIMEOUT", _number, _seconds, SECONDS),
    Setting(
        "max_connections_per_address",
        "TICKER_MAX_CONNECTIONS_PER_ADDRESS",
        _integer,
        _positive_int,
        COUNT,
    ),
    Setting(
        "post_rate",
        "TICKER_POST_RATE",
        _lower,
        _rate,
        "rates like 60/minute, several joined by ; (each must hold), or off",
    ),
    Setting(
        "auth_failure_rate",
        "TICKER_AUTH_FAILURE_RATE",
        _lower,
        _rate,
        "rates like 10/minute, several joined by ; (each must hold), or off",
    ),
    Setting(
        "hub_max_connections_per_address",
        "TICKER_HUB_MAX_CONNECTIONS_PER_ADDRESS",
        _integer,
        _count_or_off,
        "a whole number, 0 (no cap) or more",
    ),
    Setting(
        "hub_handshakes_per_second",
        "TICKER_HUB_HANDSHAKES_PER_SECOND",
        _number,
        lambda v: _is_number(v, 0, inclusive=True),
        "a number, 0 (no limit) or more",
    ),
    Setting("hub_handshake_burst", "TICKER_HUB_HANDSHAKE_BURST", _integer, _positive_int, COUNT),
    Setting(
        "hub_metrics_port",
        "TICKER_HUB_METRICS_PORT",
        _integer,
        _optional(lambda v: _is_int(v, 1, 65535)),
        "a port, 1-65535; hub worker N listens on this port + N",
    ),
    Setting(
        "trusted_proxies",
        "TICKER_TRUSTED_PROXIES",
        _names,
        _list_of(_network),
        "comma-separated IP addresses or networks like 127.0.0.1,10.0.0.0/8, none twice",
    ),
    Setting(
        "audit_days",
        "TICKER_AUDIT_DAYS",
        _integer,
        lambda v: _is_int(v, 1, 36500),
        "a whole number of days, 1-36500",
    ),
    Setting(
        "legacy_token_role",
        "TICKER_LEGACY_TOKEN_ROLE",
        _names,
        _list_of(lambda v: v in ROLES),
        f"one or more of {', '.join(ROLES)}, comma-separated, none twice",
    ),
    Setting(
        "webhook_delivery",
        "TICKER_WEBHOOK_DELIVERY",
        _switch,
        lambda v: isinstance(v, bool),
        "on or off",
    ),
    Setting("webhook_retry_base", "TICKER_WEBHOOK_RETRY_BASE", _number, _seconds, SECONDS),
    Setting(
        "webhook_retry_max_delay", "TICKER_WEBHOOK_RETRY_MAX_DELAY", _number, _seconds, SECONDS
    ),
    Setting("webhook_retry_horizon", "TICKER_WEBHOOK_RETRY_HORIZON", _number, _seconds, SECONDS),
    Setting(
        "webhook_disable_after", "TICKER_WEBHOOK_DISABLE_AFTER", _integer, _positive_int, COUNT
    ),
    Setting(
        "webhook_connect_timeout", "TICKER_WEBHOOK_CONNECT_TIMEOUT", _number, _seconds, SECONDS
    ),
    Setting("webhook_timeout", "TICKER_WEBHOOK_TIMEOUT", _number, _seconds, SECONDS),
    Setting("webhook_concurrency", "TICKER_WEBHOOK_CONCURRENCY", _integer, _positive_int, COUNT),
    Setting(
        "webhook_allow_networks",
        "TICKER_WEBHOOK_ALLOW_NETWORKS",
        _names,
        lambda v: v == () or _list_of(_network)(v),
        "comma-separated IP addresses or networks like 127.0.0.1,10.0.0.0/8, none twice",
    ),
    Setting(
        "push_contact",
        "TICKER_PUSH_CONTACT",
        _word,
        _contact,
        "a mailto: address or an https:// URL where push services can reach the operator",
    ),
    Setting(
        "push_allow_networks",
        "TICKER_PUSH_ALLOW_NETWORKS",
        _names,
        _networks_or_none,
        "comma-separated networks like 10.1.0.0/16,127.0.0.1/32 where push endpoints may be",
    ),
    Setting(
        "push_subscribe_rate",
        "TICKER_PUSH_SUBSCRIBE_RATE",
        _lower,
        _rate,
        "rates like 20/minute, several joined by ; (each must hold), or off",
    ),
    Setting("push_concurrency", "TICKER_PUSH_CONCURRENCY", _integer, _positive_int, COUNT),
    Setting(
        "push_ttl",
        "TICKER_PUSH_TTL",
        _integer,
        lambda v: _is_int(v, 0, 28 * 24 * 3600),
        "a whole number of seconds from 0 to 2419200 (28 days)",
    ),
    Setting(
        "log_level",
        "TICKER_LOG_LEVEL",
        _lower,
        _log_level,
        f"one of {', '.join(LOG_LEVELS)}",
        "--log-level",
    ),
    Setting(
        "vocabulary.editions",
        "TICKER_EDITIONS",
        _names,
        _list_of(_edition),
        "comma-separated lowercase language codes like en,ar,es or pt-br, none twice",
        blank_is_unset=False,
    ),
    Setting(
        "vocabulary.regions",
        "TICKER_REGIONS",
        _names,
        _list_of(_name),
        NAMES,
        blank_is_unset=False,
    ),
    Setting(
        "vocabulary.categories",
        "TICKER_CATEGORIES",
        _names,
        _list_of(_name),
        NAMES,
        blank_is_unset=False,
    ),
    *(_limit(f) for f in fields(Limits)),
)

CLIENT_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "url", "TICKER_URL", _word, _url(("http", "https")), "an http:// or https:// URL", "--url"
    ),
    Setting("token", "TICKER_TOKEN", _word, _token, "an editor token", "--token"),
    Setting(
        "hub_url", "TICKER_HUB_URL", _word, _url(("ws", "wss")), "a ws:// or wss:// URL", "--hub"
    ),
)

# Environment variable -> its setting, by section (tests/test_docs.py reads these).
_ENV = {s.env: s for s in SETTINGS if "." not in s.path}
_VOCAB_ENV = {s.env: s for s in SETTINGS if s.path.startswith("vocabulary.")}
_LIMIT_ENV = {s.env: s for s in SETTINGS if s.path.startswith("limits.")}
_CLIENT_ENV = {s.env: s for s in CLIENT_SETTINGS}


def setting(name: str) -> Setting:
    """The row for a field, by its name (`port`, `history`, `editions`, `url`)."""
    for row in (*SETTINGS, *CLIENT_SETTINGS):
        if row.name == name:
            return row
    raise KeyError(name)


# --- building --------------------------------------------------------------------------------


def from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from the environment, then apply flag values (which win).

    `overrides` are keyed by field name (`port`, `history`, `editions`; or whole `limits` and
    `vocabulary` objects). A string is read as the flag would be; an error names the flag.
    Raises ConfigError for the first value that is not accepted.
    """
    whole = {k: overrides.pop(k) for k in ("limits", "vocabulary") if k in overrides}
    values, sources = _resolve(SETTINGS, os.environ if env is None else env, overrides)
    top = {k: v for k, v in values.items() if "." not in k}
    vocabulary = replace(
        whole.get("vocabulary") or Vocabulary(),
        **{k.partition(".")[2]: v for k, v in values.items() if k.startswith("vocabulary.")},
    )
    limits = replace(
        whole.get("limits") or Limits(),
        **{k.partition(".")[2]: v for k, v in values.items() if k.startswith("limits.")},
    )
    settings = Settings(**top, vocabulary=vocabulary, limits=limits)
    for name in ("vocabulary", "limits"):
        if name in whole:  # a whole object from code is held to the same rules
            for row in SETTINGS:
                if row.path.startswith(f"{name}.") and row.path not in sources:
                    _check(row, _get(settings, row.path), f"{name}.{row.name}")
    _check_together(settings, sources)
    return settings


def client_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> ClientSettings:
    """Settings of the command-line clients (`ticker post`, `ticker tail`)."""
    values, _ = _resolve(CLIENT_SETTINGS, os.environ if env is None else env, overrides)
    return ClientSettings(**values)


def _resolve(
    table: tuple[Setting, ...], env: Mapping[str, str], overrides: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """Values that were given (by flag or environment), each read and checked, and where
    each came from, as written there. Anything not given keeps the dataclass default."""
    rows = {row.name: row for row in table}
    unknown = set(overrides) - set(rows)
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    sources: dict[str, tuple[str, str]] = {}
    for row in table:
        given: list[tuple[str, str, Any]] = []  # (source, as shown, value), the winner last
        if row.env in env and (env[row.env].strip() or not row.blank_is_unset):
            raw = env[row.env]
            given.append((row.env, _show(raw), _read(row, raw, row.env)))
        flagged = overrides.get(row.name)
        if flagged is not None:
            source = row.flag or row.name
            value = _read(row, flagged, source) if isinstance(flagged, str) else flagged
            given.append((source, _show(flagged), _normalise(value)))
        # A flag wins, but a bad variable under it is still refused: it is a mistake
        # waiting for the day the flag is dropped.
        for source, shown, value in given:
            _check(row, value, source, shown)
        if given:
            source, shown, values[row.path] = given[-1]
            sources[row.path] = (source, shown)
    return values, sources


def _read(row: Setting, raw: str, source: str) -> Any:
    try:
        return row.parse(raw)
    except ValueError:
        raise ConfigError(source, _show(raw), row.accepted) from None


def _normalise(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _check(row: Setting, value: Any, source: str, shown: str | None = None) -> None:
    try:
        ok = row.check(value)
    except (TypeError, ValueError, OSError):
        ok = False
    if not ok:
        raise ConfigError(source, _show(value) if shown is None else shown, row.accepted)


def _check_together(settings: Settings, sources: dict[str, tuple[str, str]]) -> None:
    """Rules between two settings. The error names the one that was given."""
    if settings.webhook_connect_timeout > settings.webhook_timeout:
        if "webhook_connect_timeout" in sources:
            accepted = f"{SECONDS}, at most the webhook timeout ({settings.webhook_timeout:g})"
            raise ConfigError(*sources["webhook_connect_timeout"], accepted)
        accepted = f"{SECONDS}, at least the connect timeout ({settings.webhook_connect_timeout:g})"
        raise ConfigError(*sources["webhook_timeout"], accepted)
    if settings.ping_timeout > settings.ping_interval:
        if "ping_timeout" in sources:
            accepted = f"{SECONDS}, at most the ping interval ({settings.ping_interval:g})"
            raise ConfigError(*sources["ping_timeout"], accepted)
        accepted = f"{SECONDS}, at least the ping timeout ({settings.ping_timeout:g})"
        raise ConfigError(*sources["ping_interval"], accepted)
    limits = settings.limits
    if limits.max_pinned > limits.max_live:
        if "limits.max_pinned" in sources:
            accepted = f"a whole number from 0 to the live items' cap ({limits.max_live})"
            raise ConfigError(*sources["limits.max_pinned"], accepted)
        accepted = f"a whole number, at least the pinned items' cap ({limits.max_pinned})"
        raise ConfigError(*_source(sources, "limits.max_live", limits.max_live), accepted)
    for name in ("expiry_flash", "expiry_default"):
        if getattr(limits, name) > limits.max_expiry_seconds:
            row = _LIMIT_ROWS[name]
            if row.path not in sources and "limits.max_expiry_seconds" in sources:
                accepted = f"{COUNT}, at least {row.env} ({getattr(limits, name)} seconds)"
                raise ConfigError(*sources["limits.max_expiry_seconds"], accepted)
            accepted = (
                f"{DURATION}, at most TICKER_MAX_EXPIRY_SECONDS ({limits.max_expiry_seconds})"
            )
            raise ConfigError(*_source(sources, row.path, getattr(limits, name), row.env), accepted)


def _source(
    sources: dict[str, tuple[str, str]], path: str, value: Any, env: str = ""
) -> tuple[str, str]:
    """Where a value came from, or (for a default that clashes with another setting, or a
    whole Limits object from code) the variable that would set it."""
    return sources.get(path) or (env or f"TICKER_{path.rpartition('.')[2].upper()}", _show(value))


def _get(settings: Settings, path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _show(value: Any) -> str:
    """A value as it would be typed in a shell, so quotes show what was really there."""
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return shlex.quote(str(value))
