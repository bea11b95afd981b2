"""The wire protocol between the hub and its clients, as plain functions (docs/protocol.md).

Nothing here touches a socket. Messages are built as bytes once, so the hub can
write the very same bytes to every connection that wants them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from urllib.parse import parse_qs

from .config import Vocabulary
from .events import Cursor, CursorError
from .events import parse_cursor as _parse_cursor


class CloseCode(IntEnum):
    """Close codes the hub uses; 4000-4999 are ours, the rest come from RFC 6455."""

    GOING_AWAY = 1001  # the hub is shutting down: reconnect, to another hub if there is one
    UNSUPPORTED_DATA = 1003  # a binary frame
    INVALID_DATA = 1007  # a text frame that is not UTF-8
    MESSAGE_TOO_BIG = 1009  # a frame over the size limit
    INTERNAL_ERROR = 1011  # also: no answer to the keepalive ping
    TRY_AGAIN_LATER = 1013  # the hub has no copy of the ticker yet
    BAD_REQUEST = 4400  # bad URL parameters or an unknown client message; do not retry as is
    SLOW_CONSUMER = 4408  # the client did not read fast enough; reconnect with its cursor
    TOO_MANY_MESSAGES = 4429  # the client sent frames faster than allowed


class ProtocolError(Exception):
    """A client broke the protocol; the hub closes its connection with `code` and `reason`."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:120]  # a close reason must fit in 123 bytes


def cursor_from(text: str) -> Cursor:
    """A client's cursor, or a 4400 that says why not."""
    try:
        return _parse_cursor(text)
    except CursorError as exc:
        raise ProtocolError(CloseCode.BAD_REQUEST, f"since: {exc}") from None


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a client follows. Equal subscriptions share one group and the same frames."""

    edition: str
    region: str | None = None
    category: str | None = None

    @property
    def filtered(self) -> bool:
        return self.region is not None or self.category is not None


def parse_subscription(
    values: dict[str, Any], vocabulary: Vocabulary
) -> tuple[Subscription, Cursor | None]:
    """Validate the fields of a subscription, from the URL or from a subscribe message."""
    edition = values.get("edition")
    if edition not in vocabulary.editions:
        raise ProtocolError(
            CloseCode.BAD_REQUEST,
            f"edition must be one of {', '.join(vocabulary.editions)}",
        )
    region = _choice(values.get("region"), vocabulary.regions, "region")
    category = _choice(values.get("category"), vocabulary.categories, "category")
    since = values.get("since")
    if since is not None and not isinstance(since, str):
        raise ProtocolError(CloseCode.BAD_REQUEST, "since must be a cursor string")
    cursor = cursor_from(since) if since else None
    return Subscription(edition, region, category), cursor


def parse_query(query: str, vocabulary: Vocabulary) -> tuple[Subscription, Cursor | None]:
    try:
        params = parse_qs(query, keep_blank_values=False, max_num_fields=10, errors="strict")
    except ValueError:  # too many fields, or percent-escapes that are not UTF-8
        raise ProtocolError(CloseCode.BAD_REQUEST, "the query is not valid") from None
    unknown = params.keys() - {"edition", "region", "category", "since"}
    if unknown:
        raise ProtocolError(CloseCode.BAD_REQUEST, f"unknown parameter {sorted(unknown)[0]!r}")
    if any(len(v) > 1 for v in params.values()):
        raise ProtocolError(CloseCode.BAD_REQUEST, "each parameter may be given once")
    return parse_subscription({k: v[0] for k, v in params.items()}, vocabulary)


def _choice(value: Any, allowed: tuple[str, ...], name: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        by_key = {a.casefold(): a for a in allowed}
        if value.casefold() in by_key:
            return by_key[value.casefold()]
    raise ProtocolError(CloseCode.BAD_REQUEST, f"{name} {str(value)[:30]!r} is not known")


# --- client messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Subscribe:
    subscription: Subscription
    since: Cursor | None


def parse_client_message(data: str | bytes, vocabulary: Vocabulary) -> Ping | Subscribe:
    """Clients send little: a ping, or a change of subscription. Anything else is an error."""
    if isinstance(data, bytes):
        raise ProtocolError(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
    try:
        message = json.loads(data)
    except ValueError:
        raise ProtocolError(CloseCode.BAD_REQUEST, "a client message must be JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError(CloseCode.BAD_REQUEST, "a client message must be a JSON object")
    kind = message.get("type")
    if kind == "ping":
        return Ping()
    if kind == "subscribe":
        fields = {k: v for k, v in message.items() if k != "type"}
        unknown = fields.keys() - {"edition", "region", "category", "since"}
        if unknown:
            raise ProtocolError(CloseCode.BAD_REQUEST, f"unknown field {sorted(unknown)[0]!r}")
        return Subscribe(*parse_subscription(fields, vocabulary))
    raise ProtocolError(CloseCode.BAD_REQUEST, f"unknown message type {str(kind)[:30]!r}")


# --- server messages ---------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def snapshot_message(
    subscription: Subscription,
    cursor: Cursor,
    items_json: list[str],
    *,
    reset: bool,
    heartbeat: float,
) -> bytes:
    head = _dumps(
        {
            "type": "snapshot",
            "edition": subscription.edition,
            "region": subscription.region,
            "category": subscription.category,
            "cursor": str(cursor),
            "reset": reset,
            "heartbeat": heartbeat,
        }
    )
    return f'{head[:-1]},"items":[{",".join(items_json)}]}}'.encode()


def resumed_message(
    subscription: Subscription, since: Cursor, missed: int, heartbeat: float
) -> bytes:
    return _dumps(
        {
            "type": "resumed",
            "edition": subscription.edition,
            "region": subscription.region,
            "category": subscription.category,
            "cursor": str(since),
            "missed": missed,
            "heartbeat": heartbeat,
        }
    ).encode()


def batch(payloads: list[bytes]) -> bytes:
    """Several messages in one frame, in order: one write per connection for a burst."""
    if len(payloads) == 1:
        return payloads[0]
    return b"[" + b",".join(payloads) + b"]"


def heartbeat_message(cursor: Cursor) -> bytes:
    """Proof of life, with the edition's cursor: a filtered reader that matched nothing
    for a while still resumes from where its edition stands."""
    return f'{{"type":"heartbeat","cursor":"{cursor}"}}'.encode()


PONG = b'{"type":"pong"}'


def parse_server_frame(data: str | bytes) -> list[dict[str, Any]]:
    """For clients (`ticker tail`, tests): one frame holds a message or an array of them."""
    value = json.loads(data)
    return value if isinstance(value, list) else [value]
