"""The rules of Web Push, with no I/O: what a subscription must be, which subscriptions an
item goes to, the headers and body of a push message, and how long to wait before a retry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from ..config import Vocabulary
from ..protocol import ProtocolError, parse_subscription

ENDPOINT_MAX = 1024  # the push services' endpoints are a few hundred characters
P256DH_BYTES = 65  # an uncompressed P-256 point: 0x04, x, y
AUTH_BYTES = 16
DEFAULT_URGENCY = 2  # flashes (1) and bulletins (2)
HIGH_URGENCY = 2  # items of urgency 1-2 go out with `Urgency: high`
TOPIC_MAX = 32  # RFC 8030 section 5.4
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII)
_SUBSCRIPTION_FIELDS = {"endpoint", "keys", "expirationTime", "edition", "urgency"} | {
    "region",
    "regions",
    "category",
    "categories",
}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class SubscriptionError(ValueError):
    """A subscription the service cannot use; `field` names the part that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Subscription:
    """A browser's push subscription and the reader's choices.

    `id` is derived from the endpoint (a subscription is its endpoint), so subscribing the
    same browser again replaces its choices instead of adding a second subscription."""

    id: str
    endpoint: str
    p256dh: str  # base64url, as the browser gives it
    auth: str  # base64url; also the reader's proof of ownership when unsubscribing
    edition: str
    urgency: int = DEFAULT_URGENCY  # the least urgent item wanted: 2 = flashes and bulletins
    regions: tuple[str, ...] = ()  # any of them; none chosen: every region
    categories: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Subscription:
        """Also reads a record stored with a single `region` and `category`."""
        fields = json.loads(raw)
        for one, many in (("region", "regions"), ("category", "categories")):
            single = fields.pop(one, None)
            fields[many] = tuple(fields.get(many) or ([single] if single else ()))
        return cls(**fields)

    def public(self) -> dict[str, Any]:
        """What the reader is shown back: never the keys."""
        return {
            "id": self.id,
            "edition": self.edition,
            "urgency": self.urgency,
            "regions": list(self.regions),
            "categories": list(self.categories),
        }


def subscription_id(endpoint: str) -> str:
    return _b64(hashlib.sha256(endpoint.encode()).digest())[:22]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """base64url with or without padding (browsers omit it); ValueError otherwise."""
    if (
        not isinstance(text, str)
        or not text.isascii()
        or not re.fullmatch(r"[A-Za-z0-9_=-]*", text)
    ):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """The networks push endpoints may be on besides the public Internet (for tests, or a
    push service inside the newsroom's network)."""
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def address_allowed(address: str, allowed: tuple[Network, ...]) -> bool:
    """A push service is on the public Internet: private, loopback, link-local and other
    special addresses are refused unless a configured network holds them, so a reader cannot
    make the service send requests into its own network."""
    try:
        ip: Address = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed):
        return True
    return ip.is_global and not ip.is_multicast


def check_endpoint(endpoint: Any, allowed: tuple[Network, ...]) -> str:
    """An https:// URL on a public host name or address. http:// is accepted only for a host
    given as an address in an allowed network (a test's local push service). A host name
    is checked again, after resolution, when a message is sent."""
    if not isinstance(endpoint, str) or not endpoint:
        raise SubscriptionError("endpoint", "is required: the PushSubscription's endpoint URL")
    if len(endpoint) > ENDPOINT_MAX or not endpoint.isascii() or not endpoint.isprintable():
        raise SubscriptionError("endpoint", f"must be an ASCII URL of at most {ENDPOINT_MAX} chars")
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise SubscriptionError("endpoint", "is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host or parts.username or parts.password:
        raise SubscriptionError("endpoint", "must be an https:// URL of a push service")
    literal = _literal_address(host)
    if literal is not None:
        if not address_allowed(literal, allowed):
            raise SubscriptionError(
                "endpoint", "is on a private or loopback address, which is not allowed"
            )
    elif host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise SubscriptionError("endpoint", "is on a local host name, which is not allowed")
    if parts.scheme == "http" and (literal is None or not _in(literal, allowed)):
        raise SubscriptionError("endpoint", "must be an https:// URL of a push service")
    return endpoint


def _literal_address(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


def _in(address: str, allowed: tuple[Network, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in allowed)


def _key(keys: Mapping[str, Any], name: str, size: int, what: str) -> str:
    value = keys.get(name)
    if value is None:
        raise SubscriptionError(f"keys.{name}", "is required")
    try:
        raw = b64decode(value)
    except ValueError:
        raise SubscriptionError(f"keys.{name}", "must be base64url") from None
    if len(raw) != size:
        raise SubscriptionError(f"keys.{name}", f"must be {size} bytes ({what}), not {len(raw)}")
    if name == "p256dh" and raw[0] != 4:
        raise SubscriptionError("keys.p256dh", "must be an uncompressed P-256 point (0x04...)")
    return _b64(raw)


def parse(payload: Any, vocabulary: Vocabulary, allowed: tuple[Network, ...]) -> Subscription:
    """A browser's PushSubscription JSON (`endpoint`, `keys.p256dh`, `keys.auth`) with the
    reader's choices: `edition`, `urgency` (the least urgent item wanted, 1-9, default 2),
    `regions` and `categories` (lists: an item with any of them), or one `region` and one
    `category` as in a ticker's URL. Raises SubscriptionError."""
    if not isinstance(payload, dict):
        raise SubscriptionError("body", "must be a JSON object")
    unknown = sorted(set(payload) - _SUBSCRIPTION_FIELDS)
    if unknown:
        raise SubscriptionError(str(unknown[0])[:40], "is not a known field")
    endpoint = check_endpoint(payload.get("endpoint"), allowed)
    keys = payload.get("keys")
    if not isinstance(keys, dict):
        raise SubscriptionError("keys", "is required: an object with p256dh and auth")
    p256dh = _key(keys, "p256dh", P256DH_BYTES, "an uncompressed P-256 point")
    auth = _key(keys, "auth", AUTH_BYTES, "the auth secret")
    urgency = payload.get("urgency", DEFAULT_URGENCY)
    if not isinstance(urgency, int) or isinstance(urgency, bool) or not 1 <= urgency <= 9:
        raise SubscriptionError("urgency", "must be a whole number from 1 (flashes only) to 9")
    try:
        chosen, _ = parse_subscription(
            {k: payload.get(k) for k in ("edition", "region", "category")}, vocabulary
        )
    except ProtocolError as exc:
        field = exc.reason.split()[0] if exc.reason.split() else "edition"
        raise SubscriptionError(field, exc.reason.partition(" ")[2]) from None
    regions = _tags(payload.get("regions"), "regions", vocabulary.regions, chosen.region)
    categories = _tags(
        payload.get("categories"), "categories", vocabulary.categories, chosen.category
    )
    return Subscription(
        id=subscription_id(endpoint),
        endpoint=endpoint,
        p256dh=p256dh,
        auth=auth,
        edition=chosen.edition,
        urgency=urgency,
        regions=regions,
        categories=categories,
    )


def _tags(value: Any, field: str, known: tuple[str, ...], single: str | None) -> tuple[str, ...]:
    """A list of names from the vocabulary, matched without regard to case, each once, in
    the vocabulary's spelling; with the single `region` or `category`, if that was given."""
    if value is None:
        value = []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SubscriptionError(field, "must be a list of names")
    by_key = {name.casefold(): name for name in known}
    chosen: list[str] = [single] if single else []
    for name in value:
        canonical = by_key.get(name.casefold())
        if canonical is None:
            raise SubscriptionError(field, f"{name[:30]!r} is not known")
        if canonical not in chosen:
            chosen.append(canonical)
    return tuple(chosen)


def canonical_auth(value: str) -> str:
    """The auth secret as given back when unsubscribing (it proves ownership: only the
    browser and its push service know it), in the form it is stored."""
    try:
        raw = b64decode(value)
    except ValueError:
        raise SubscriptionError("keys.auth", "must be base64url") from None
    if len(raw) != AUTH_BYTES:
        raise SubscriptionError("keys.auth", f"must be {AUTH_BYTES} bytes")
    return _b64(raw)


# --- who gets what ---------------------------------------------------------------------------


def wants(subscription: Subscription, item: Mapping[str, Any]) -> bool:
    """Whether a newly posted item goes to this subscription."""
    return (
        item.get("edition") == subscription.edition
        and item.get("urgency", 9) <= subscription.urgency
        and (not subscription.regions or _any(subscription.regions, item.get("regions")))
        and (not subscription.categories or _any(subscription.categories, item.get("categories")))
    )


def _any(chosen: tuple[str, ...], tags: Any) -> bool:
    return any(tag in chosen for tag in tags or ())


def topic(item_id: str) -> str:
    """The `Topic` header (RFC 8030 5.4: at most 32 characters of the URL-safe base64
    alphabet), so a push service replaces an undelivered older version of the same item.
    An id that fits is used as it is; any other becomes the first 32 characters of the
    base64url SHA-256 of the id."""
    if _TOPIC.fullmatch(item_id):
        return item_id
    return _b64(hashlib.sha256(item_id.encode()).digest())[:TOPIC_MAX]


def urgency_header(urgency: int) -> str:
    """RFC 8030 5.3: flashes and bulletins may wake a sleeping phone; the rest may wait."""
    return "high" if urgency <= HIGH_URGENCY else "normal"


# A push service takes at most 4096 bytes of encrypted message (RFC 8030 section 7.2); one
# aes128gcm record adds 103 (header 86, padding delimiter 1, tag 16).
MESSAGE_MAX = 4096 - 103


def message(kind: str, item: Mapping[str, Any], live_url: str) -> bytes:
    """The JSON the service worker receives: enough to show (or close) the notification
    without fetching anything. `url` is what a click opens: the item's link, or the live
    page of its edition.

    Never more than MESSAGE_MAX bytes, which a push service would refuse: a link too long
    to fit (2,000 characters of Arabic are 4,000 bytes) gives way to the live page, and then
    the headline is shortened, with an ellipsis."""
    body: dict[str, Any] = {"kind": kind, "id": item["id"], "version": item.get("version", 1)}
    if kind != "withdrawn":
        body.update(
            edition=item.get("edition"),
            headline=item.get("headline", ""),
            source=item.get("source"),
            urgency=item.get("urgency"),
            url=item.get("link") or live_url,
        )
    encoded = _json(body)
    if len(encoded) > MESSAGE_MAX and kind != "withdrawn":
        body["url"] = live_url
        encoded = _json(body)
        headline = str(body["headline"])
        while len(encoded) > MESSAGE_MAX and headline:
            over = len(encoded) - MESSAGE_MAX
            headline = headline[: max(0, len(headline) - max(1, over // 4)) - 1]
            body["headline"] = headline + "…"
            encoded = _json(body)
    return encoded


def _json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


# --- retries ---------------------------------------------------------------------------------


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential: 0.5 s, 1 s, 2 s ... at most `cap`."""
    return min(cap, base * (2 ** max(0, attempt)))
