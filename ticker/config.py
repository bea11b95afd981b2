"""Settings: one typed object, built once at start-up from flags and environment.

Every knob lives here and nowhere else, so docs/configuration.md can list them all
and the rest of the code receives its settings instead of reading globals.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

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
    fanout_chunk: int = 512  # writes before the fan-out lets other work run
    handshake_timeout: float = 10.0
    accept_backlog: int = 4096
    shutdown_grace: float = 3.0
    hub_workers: int = 1
    publisher_workers: int = 1
    log_level: str = "info"
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

        Without configuration, only the publisher's own pages may connect from a browser.
        `*` turns the check off, for a public feed that anyone may embed.
        """
        configured = self.allowed_origins or (
            f"http://localhost:{self.port}",
            f"http://127.0.0.1:{self.port}",
        )
        if "*" in configured:
            return None
        return [None, *configured]


def _default_web_dir() -> Path:
    """web/ of the source tree, or the copy a wheel installs as ticker/web."""
    here = Path(__file__).resolve().parent
    source = here.parent / "web"
    return source if source.is_dir() else here / "web"


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


# Environment variable -> (settings field, converter). docs/configuration.md mirrors this.
_ENV: dict[str, tuple[str, object]] = {
    "TICKER_HOST": ("host", str),
    "TICKER_PORT": ("port", int),
    "TICKER_HUB_HOST": ("hub_host", str),
    "TICKER_HUB_PORT": ("hub_port", int),
    "TICKER_REDIS_URL": ("redis_url", str),
    "TICKER_DB": ("db_path", Path),
    "TICKER_WEB_DIR": ("web_dir", Path),
    "TICKER_ALLOWED_ORIGINS": ("allowed_origins", _split),
    "TICKER_PUBLIC_HUB_URL": ("public_hub_url", str),
    "TICKER_PING_INTERVAL": ("ping_interval", float),
    "TICKER_PING_TIMEOUT": ("ping_timeout", float),
    "TICKER_HEARTBEAT_INTERVAL": ("heartbeat_interval", float),
    "TICKER_COALESCE_MS": ("coalesce_ms", float),
    "TICKER_LOG_LEVEL": ("log_level", str),
}
_VOCAB_ENV = {
    "TICKER_EDITIONS": "editions",
    "TICKER_REGIONS": "regions",
    "TICKER_CATEGORIES": "categories",
}
_LIMIT_ENV = {f"TICKER_{f.name.upper()}": f.name for f in fields(Limits)}


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def from_env(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from the environment, then apply flag values (which win)."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, (attr, convert) in _ENV.items():
        if env.get(name):
            values[attr] = _convert(name, env[name], convert)
    vocab = {attr: _split(env[name]) for name, attr in _VOCAB_ENV.items() if env.get(name)}
    limits = {
        attr: _convert(name, env[name], int) for name, attr in _LIMIT_ENV.items() if env.get(name)
    }
    values["vocabulary"] = replace(Vocabulary(), **vocab)
    values["limits"] = replace(Limits(), **limits)
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)  # type: ignore[arg-type]
    if not settings.vocabulary.editions:
        raise ConfigError("TICKER_EDITIONS must name at least one edition")
    return settings


def _convert(name: str, raw: str, convert: object) -> object:
    try:
        return convert(raw)  # type: ignore[operator]
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not valid: {exc}") from None
