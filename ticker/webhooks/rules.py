"""The rules of webhooks, as plain functions with no I/O: what a registration may say,
which events a webhook wants, what is sent, when to retry, and which addresses may be
called. The store, the worker and the API are thin shells around these.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..config import Vocabulary
from ..events import Cursor, Event, parse_cursor
from ..items import Item
from ..ninjs import to_ninjs, to_ninjs3

FORMATS = ("event", "ninjs", "ninjs3")
URL_MAX = 2000
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # Standard Webhooks: between 24 and 64 bytes
DELIVERY_LOG_SIZE = 100
_ID = re.compile(r"wh_[A-Za-z0-9]{16}")
_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?", re.ASCII)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RegistrationError(ValueError):
    """A registration that cannot be accepted; `fields` names each bad field."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k} {v}" for k, v in fields.items()))
        self.fields = dict(fields)


@dataclass(frozen=True, slots=True)
class Filters:
    """What a webhook wants: an edition, the least urgent level it takes (3 takes 1, 2 and
    3), and regions and categories of which an item must carry one (none: any)."""

    edition: str
    urgency: int = 9
    regions: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "edition": self.edition,
            "urgency": self.urgency,
            "regions": list(self.regions),
            "categories": list(self.categories),
        }


@dataclass(frozen=True, slots=True)
class Message:
    """A message to queue for one webhook: its `webhook-id` and the bytes of the event or
    notice (rendered in the webhook's format when it is sent)."""

    webhook_id: str
    msg_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Registration:
    url: str
    filters: Filters
    format: str = "event"
    description: str = ""


@dataclass(slots=True)
class Webhook:
    """A webhook as stored. `secret` never leaves the store but to sign, and once to the
    admin who created it."""

    id: str
    url: str
    filters: Filters
    format: str
    secret: str
    created: str
    created_by: str
    description: str = ""
    disabled: str | None = None  # when it was disabled, or None while enabled
    disabled_reason: str | None = None
    failures: int = 0  # consecutive failed attempts
    extra: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """The webhook as the API and the command line show it: without its secret."""
        return {
            "id": self.id,
            "url": self.url,
            "description": self.description,
            "format": self.format,
            "filters": self.filters.to_dict(),
            "created": self.created,
            "created_by": self.created_by,
            "enabled": self.disabled is None,
            "disabled": self.disabled,
            "disabled_reason": self.disabled_reason,
            "consecutive_failures": self.failures,
        }

    def to_json(self) -> str:
        record = self.public()
        record["secret"] = self.secret
        return json.dumps(record, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Webhook:
        record = json.loads(text)
        f = record["filters"]
        return cls(
            id=record["id"],
            url=record["url"],
            filters=Filters(
                f["edition"], f["urgency"], tuple(f["regions"]), tuple(f["categories"])
            ),
            format=record["format"],
            secret=record["secret"],
            created=record["created"],
            created_by=record["created_by"],
            description=record.get("description", ""),
            disabled=record.get("disabled"),
            disabled_reason=record.get("disabled_reason"),
            failures=record.get("consecutive_failures", 0),
        )


def new_id() -> str:
    return "wh_" + "".join(secrets.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(16))


def is_id(text: str) -> bool:
    return bool(_ID.fullmatch(text))


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


# --- registration ---------------------------------------------------------------------------


def parse_registration(
    payload: Any, vocabulary: Vocabulary, allow: Iterable[Network] = ()
) -> Registration:
    """Check a registration body. Every bad field is named at once, so a console can show
    them all next to the form."""
    if not isinstance(payload, dict):
        raise RegistrationError({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    unknown = sorted(set(payload) - {"url", "filters", "format", "description"})
    for name in unknown[:3]:
        errors[str(name)[:40]] = "is not a known field"
    url = payload.get("url")
    try:
        url = check_url(url, allow)
    except ValueError as exc:
        errors["url"] = str(exc)
    fmt = payload.get("format", "event")
    if fmt not in FORMATS:
        errors["format"] = f"must be one of {', '.join(FORMATS)}"
    description = payload.get("description", "")
    if not isinstance(description, str) or len(description) > 200:
        errors["description"] = "must be text of at most 200 characters"
    filters: Filters | None = None
    try:
        filters = parse_filters(payload.get("filters"), vocabulary)
    except RegistrationError as exc:
        errors.update(exc.fields)
    if errors or filters is None:
        raise RegistrationError(errors)
    return Registration(url, filters, fmt, description)


def parse_filters(value: Any, vocabulary: Vocabulary) -> Filters:
    """The same vocabulary and spelling rules as a reader's subscription
    (protocol.parse_subscription): names match whatever their case, and are stored as the
    vocabulary spells them."""
    if not isinstance(value, dict):
        raise RegistrationError({"filters": "must be an object with at least an edition"})
    errors: dict[str, str] = {}
    unknown = sorted(set(value) - {"edition", "urgency", "regions", "categories"})
    if unknown:
        errors[f"filters.{str(unknown[0])[:40]}"] = "is not a known filter"
    edition = value.get("edition")
    if edition not in vocabulary.editions:
        errors["filters.edition"] = f"must be one of {', '.join(vocabulary.editions)}"
    urgency = value.get("urgency", 9)
    if not isinstance(urgency, int) or isinstance(urgency, bool) or not 1 <= urgency <= 9:
        errors["filters.urgency"] = "must be a whole number from 1 (flash only) to 9 (all)"
    tags: dict[str, tuple[str, ...]] = {}
    for name, allowed in (("regions", vocabulary.regions), ("categories", vocabulary.categories)):
        try:
            tags[name] = _tags(value.get(name, []), allowed)
        except ValueError as exc:
            errors[f"filters.{name}"] = str(exc)
    if errors:
        raise RegistrationError(errors)
    return Filters(edition, urgency, tags["regions"], tags["categories"])


def _tags(value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > len(allowed):
        raise ValueError(f"must be a list of at most {len(allowed)} names")
    by_key = {a.casefold(): a for a in allowed}
    found: list[str] = []
    for name in value:
        known = by_key.get(name.casefold()) if isinstance(name, str) else None
        if known is None:
            raise ValueError(f"{str(name)[:30]!r} is not known")
        if known not in found:
            found.append(known)
    return tuple(found)


def check_url(value: Any, allow: Iterable[Network] = ()) -> str:
    """An http(s) URL with a host, no credentials and no fragment. A host written as an IP
    address must be one the worker may call (`address_allowed`); a name is checked after
    each resolution, at delivery."""
    if not isinstance(value, str) or not value:
        raise ValueError("is required: an http:// or https:// URL")
    if len(value) > URL_MAX or not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError(f"must be an ASCII URL of at most {URL_MAX} characters, no spaces")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL (check the host and port)") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("must not carry credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise ValueError("must name a host")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    if port == 0:
        raise ValueError("must not use port 0")
    address = literal_address(host)
    if address is not None:
        refusal = address_refusal(address, allow)
        if refusal:
            raise ValueError(f"points at {refusal}")
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError("must name a host by a DNS name or an IP address")
    return value


def literal_address(host: str) -> Address | None:
    """The IP address a URL's host is written as, or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def address_refusal(address: Address, allow: Iterable[Network] = ()) -> str | None:
    """Why the worker may not call `address`, or None when it may. Only global unicast
    addresses may be called, unless the address is in an allowed network. An IPv4-mapped or
    6to4/Teredo-embedded IPv6 address is judged by the IPv4 address it carries, so
    `[::ffff:127.0.0.1]` is loopback."""
    for network in allow:
        if address.version == network.version and address in network:
            return None
    judged: Address = address
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo:
            embedded = address.teredo[1]
        if embedded is not None:
            judged = embedded
            for network in allow:
                if network.version == 4 and embedded in network:
                    return None
    for name, test in (
        ("a loopback address", judged.is_loopback),
        ("an unspecified address", judged.is_unspecified),
        ("a link-local address", judged.is_link_local),
        ("a multicast address", judged.is_multicast),
        ("a private address", judged.is_private),
        ("a reserved address", judged.is_reserved),
        ("a site-local address", getattr(judged, "is_site_local", False)),
    ):
        if test:
            return f"{name} ({address})"
    if not judged.is_global:
        return f"an address that is not public ({address})"
    return None


def parse_networks(text: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in text)


# --- matching and payloads ------------------------------------------------------------------


def matches(filters: Filters, event: Event) -> bool:
    """Whether a webhook wants an event. Like a filtered reader, it hears of an item that
    leaves (withdrawn, expired) if the item matched."""
    if event.edition != filters.edition:
        return False
    item = event.item
    if item.get("urgency", 9) > filters.urgency:
        return False
    if filters.regions and not set(filters.regions) & set(item.get("regions", ())):
        return False
    categories = set(item.get("categories", ()))
    return not (filters.categories and not set(filters.categories) & categories)


def event_message_id(event: Event) -> str:
    """The `webhook-id` of an event: the same for every webhook and every retry, unique per
    event of the log."""
    return f"msg_{event.edition}_{event.cursor.epoch}_{event.cursor.offset}"


def plan(
    edition: str,
    head: Cursor,
    events: list[Event],
    stored: str | None,
    hooks: Iterable[Webhook],
    now: str,
) -> list[Message] | None:
    """What to queue to bring an edition's queued cursor (`stored`) up to `head`, given the
    log's retained `events` (oldest first): None when `stored` is there already.

    - No cursor yet (a first start): begin at `head`, queue nothing; webhooks get what
      happens from now on.
    - The events after `stored` are all retained: queue each one for the webhooks it
      matches, in order.
    - Otherwise (history trimmed past `stored`, or a new epoch): a gap. Every enabled
      webhook of the edition is sent a `reset` notice, then the retained events newer than
      `stored` (all of them, in a new epoch)."""
    if not stored:
        return []
    since = parse_cursor(stored)
    same_epoch = since.epoch == head.epoch
    if same_epoch and since.offset >= head.offset:
        return None
    wanted = [h for h in hooks if h.filters.edition == edition and h.disabled is None]
    messages: list[Message] = []
    contiguous = same_epoch and bool(events) and events[0].cursor.offset <= since.offset + 1
    if contiguous:
        fresh = [e for e in events if e.cursor.offset > since.offset]
    else:
        reason = "history trimmed" if same_epoch else "the log restarted (new epoch)"
        notice = reset_notice(edition, stored, now, reason)
        msg_id = f"msg_reset_{edition}_{head.epoch}_{head.offset}"
        messages += [Message(h.id, msg_id, notice) for h in wanted]
        fresh = [e for e in events if not same_epoch or e.cursor.offset > since.offset]
    for event in fresh:
        msg_id = event_message_id(event)
        wanting = [h for h in wanted if matches(h.filters, event)]
        messages += [Message(h.id, msg_id, event.payload) for h in wanting]
    return messages


def render(fmt: str, payload: bytes) -> bytes:
    """What is POSTed for a queued message. An event (`type: event`) is sent as the
    WebSocket message itself, or as the item's ninjs; other notices (`reset`, `test`) are
    the same in every format."""
    if fmt == "event":
        return payload
    message = json.loads(payload)
    if message.get("type") != "event":
        return payload
    item = Item.from_dict(message["item"])
    document = to_ninjs(item) if fmt == "ninjs" else to_ninjs3(item)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def reset_notice(edition: str, since: str | None, now: str, reason: str) -> bytes:
    """Sent when the log could not be followed from where the worker stood (history
    trimmed past it, or the log restarted with a new epoch): events in between may be
    missing, and the receiver should reload the edition (GET /api/items)."""
    return json.dumps(
        {"type": "reset", "edition": edition, "since": since, "at": now, "reason": reason},
        separators=(",", ":"),
    ).encode()


def test_notice(webhook_id: str, now: str) -> bytes:
    return json.dumps(
        {"type": "test", "webhook": webhook_id, "at": now}, separators=(",", ":")
    ).encode()


# --- retries ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: after the n-th failed attempt, wait a random
    time between 0 and min(max_delay, base * 2**(n-1)). Full jitter spreads the retries of
    many webhooks that failed together (a receiver's outage) instead of retrying them in
    lockstep. An event is given up once it has waited `horizon` seconds; a webhook is
    disabled after `disable_after` failed attempts in a row."""

    base: float = 5.0
    max_delay: float = 3600.0
    horizon: float = 86400.0
    disable_after: int = 20

    def ceiling(self, failures: int) -> float:
        return min(self.max_delay, self.base * 2 ** min(max(failures - 1, 0), 60))

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        return (rng or random).uniform(0, self.ceiling(failures))

    def given_up(self, enqueued: float, now: float) -> bool:
        return now - enqueued > self.horizon

    def disables(self, failures: int) -> bool:
        return failures >= self.disable_after


def delivered(status: int) -> bool:
    """Only a 2xx answer is a delivery; a redirect is not followed, and is a failure."""
    return 200 <= status < 300
