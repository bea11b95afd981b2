"""The item and its rules: validation, correction, withdrawal, expiry.

Plain functions over plain data, with no I/O, so every rule is testable on its own
and the publisher, the brokers and the hub all agree on what an item is.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from .config import Limits, Vocabulary

Status = Literal["scheduled", "live", "withdrawn", "expired"]
DEFAULT_URGENCY = 3  # "urgent" in the news agencies' ranking; 1 is a flash, 2 a bulletin.
FLASH = 1
# A `publish_at` this far in the past is still taken (and released at once): the editor's
# clock and ours never agree to the millisecond.
SCHEDULE_SKEW_SECONDS = 5

# Bidi embeddings, overrides and isolates let a headline reorder the text around it.
# The widget isolates every headline itself, so these are refused rather than trusted.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# Characters that draw nothing even though their category says letter, mark or symbol
# (Hangul fillers, the braille blank, Khmer inherent vowels, Mongolian selectors, variation
# selectors), plus the rest of Unicode's default-ignorable code points: a headline made only
# of these would show as an empty bar.
_INVISIBLE = frozenset(
    chr(code)
    for first, last in (
        (0x00AD, 0x00AD),  # soft hyphen
        (0x034F, 0x034F),  # combining grapheme joiner
        (0x061C, 0x061C),  # Arabic letter mark
        (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
        (0x17B4, 0x17B5),  # Khmer inherent vowels
        (0x180B, 0x180F),  # Mongolian free variation selectors and vowel separator
        (0x200B, 0x200F),  # zero width space, non-joiner, joiner; direction marks
        (0x202A, 0x202E),  # bidi embeddings and overrides
        (0x2060, 0x206F),  # word joiner, invisible operators, isolates, deprecated formats
        (0x2800, 0x2800),  # braille pattern blank
        (0x3164, 0x3164),  # Hangul filler
        (0xFE00, 0xFE0F),  # variation selectors
        (0xFEFF, 0xFEFF),  # zero width no-break space (byte order mark)
        (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
        (0xFFF0, 0xFFF8),  # unassigned specials
        (0x1BCA0, 0x1BCA3),  # shorthand format controls
        (0x1D173, 0x1D17A),  # musical symbol formats
        (0xE0000, 0xE0FFF),  # tags and variation selectors supplement
    )
    for code in range(first, last + 1)
)

# Names for the characters editors most often paste by accident, for error messages.
_CHARACTER_NAMES = {
    "\x00": "a null character",
    "\t": "a tab",
    "\n": "a line break",
    "\x0b": "a vertical tab",
    "\x0c": "a form feed",
    "\r": "a carriage return",
    "\x1b": "an escape character",
    "\x7f": "a delete character",
    "\x85": "a next-line character",
    "\u2028": "a line separator",
    "\u2029": "a paragraph separator",
}
_UNNAMED = {
    "Cc": "a control character",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
}
_POST_FIELDS = frozenset(
    {
        "edition",
        "headline",
        "source",
        "link",
        "urgency",
        "regions",
        "categories",
        "expires",
        "expires_in",
        "publish_at",
        "pinned",
    }
)
_CORRECTABLE = _POST_FIELDS - {"edition"}


class ItemError(ValueError):
    """Input that cannot become an item; `fields` maps each field to what is wrong with it."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.fields = dict(fields)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.fields.items()))


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    edition: str
    headline: str
    source: str | None
    link: str | None
    urgency: int
    regions: tuple[str, ...]
    categories: tuple[str, ...]
    created: str
    updated: str
    version: int
    status: Status
    expires: str | None
    editor: str
    pinned: bool = False
    # When a scheduled item goes live (kept on the live item, for the record).
    publish_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["regions"] = list(self.regions)
        data["categories"] = list(self.categories)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Item:
        values = {k: data[k] for k in cls.__slots__ if k in data}  # type: ignore[attr-defined]
        values["regions"] = tuple(values.get("regions") or ())
        values["categories"] = tuple(values.get("categories") or ())
        return cls(**values)

    @property
    def live(self) -> bool:
        return self.status == "live"

    @property
    def scheduled(self) -> bool:
        return self.status == "scheduled"


def now_iso(now: datetime | None = None) -> str:
    """Timestamps are UTC ISO 8601 with milliseconds: sortable as text and JSON-friendly."""
    return (
        (now or datetime.now(UTC))
        .astimezone(UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_item_id(edition: str) -> str:
    """The edition is part of the id, so a correction finds its edition without a lookup
    (and Redis Cluster keeps every key of one edition in one slot)."""
    return f"{edition}-{secrets.token_urlsafe(9)}"


def edition_of(item_id: str) -> str | None:
    edition, sep, rest = item_id.partition("-")
    return edition if sep and rest else None


def create(
    payload: Any,
    *,
    editor: str,
    vocabulary: Vocabulary,
    limits: Limits,
    now: datetime | None = None,
) -> Item:
    """Validate a new item as posted; every problem is reported at once, field by field."""
    data = _require_object(payload)
    errors: dict[str, str] = {}
    for name in data.keys() - _POST_FIELDS:
        errors[name] = "unknown field"
    edition = data.get("edition")
    if edition not in vocabulary.editions:
        errors["edition"] = (
            "is required" if edition is None else f"must be one of {', '.join(vocabulary.editions)}"
        )
    if "headline" not in data:
        errors["headline"] = "is required"
    publish_at = _field(data, "publish_at", lambda v: _publish_at(v, limits, now), errors)
    start = parse_time(publish_at) if publish_at else None
    fields = _clean_fields(data, vocabulary, limits, errors, now, start)
    if errors:
        raise ItemError(errors)
    urgency = fields.get("urgency", DEFAULT_URGENCY)
    if "expires" not in data and "expires_in" not in data:
        lasts = default_expiry(urgency, limits)
        if lasts:
            fields["expires"] = now_iso(
                (start or now or datetime.now(UTC)) + timedelta(seconds=lasts)
            )
    stamp = now_iso(now)
    return Item(
        id=new_item_id(edition),
        edition=edition,
        headline=fields["headline"],
        source=fields.get("source"),
        link=fields.get("link"),
        urgency=urgency,
        regions=fields.get("regions", ()),
        categories=fields.get("categories", ()),
        created=stamp,
        updated=stamp,
        version=1,
        status="scheduled" if publish_at else "live",
        expires=fields.get("expires"),
        editor=editor,
        pinned=fields.get("pinned", False),
        publish_at=publish_at,
    )


def correct(
    item: Item,
    payload: Any,
    *,
    editor: str,
    vocabulary: Vocabulary,
    limits: Limits,
    now: datetime | None = None,
) -> Item:
    """A correction keeps the id and raises the version; only the fields given change."""
    data = _require_object(payload)
    errors: dict[str, str] = {}
    expected = data.pop("version", None)
    for name in data.keys() - _CORRECTABLE:
        errors[name] = (
            "cannot be changed: withdraw the item and post it again"
            if name in ("edition", "id")
            else "unknown field"
        )
    if expected is not None and (not _is_int(expected) or expected != item.version):
        errors["version"] = f"is {item.version} now; reload the item and correct it again"
    if not data.keys() & _CORRECTABLE and not errors:
        errors["body"] = "names no field to correct"
    start = None
    if "publish_at" in data and not item.scheduled:
        errors["publish_at"] = "can be changed only before the item goes live"
    elif "publish_at" in data:
        moved = _field(data, "publish_at", lambda v: _publish_at(v, limits, now), errors)
        if moved is None and "publish_at" not in errors:
            errors["publish_at"] = "is required on a scheduled item: cancel it to drop it"
        start = parse_time(moved) if moved else None
    elif item.scheduled and item.publish_at:
        start = parse_time(item.publish_at)
    fields = _clean_fields(data, vocabulary, limits, errors, now, start)
    if errors:
        raise ItemError(errors)
    if "expires" not in fields and ("expires" in data or "expires_in" in data):
        fields["expires"] = None  # an explicit null clears the expiry
    if start is not None and "publish_at" in data:
        fields["publish_at"] = now_iso(start)
        if "expires" not in data and "expires_in" not in data and item.expires and item.publish_at:
            # A schedule moved keeps the item up as long as it would have stayed.
            shift = start - parse_time(item.publish_at)
            fields["expires"] = now_iso(parse_time(item.expires) + shift)
    return replace(item, **fields, version=item.version + 1, updated=now_iso(now), editor=editor)


def release(item: Item, *, now: datetime | None = None) -> Item:
    """A scheduled item as it goes live: it counts as new from this moment, so it shows as
    the newest item; the version rises, so an edit made from the scheduled copy conflicts."""
    stamp = now_iso(now)
    return replace(item, status="live", version=item.version + 1, created=stamp, updated=stamp)


def default_expiry(urgency: int, limits: Limits) -> int:
    """Seconds an item stays up when the editor sets no expiry: a flash is overtaken by the
    story within hours; 0 means it stays until withdrawn or retired."""
    return limits.expiry_flash if urgency == FLASH else limits.expiry_default


def withdraw(item: Item, *, editor: str, now: datetime | None = None) -> Item:
    return replace(
        item, status="withdrawn", version=item.version + 1, updated=now_iso(now), editor=editor
    )


def expire(item: Item, *, now: datetime | None = None) -> Item:
    return replace(item, status="expired", version=item.version + 1, updated=now_iso(now))


def is_due(item: Item, now: datetime) -> bool:
    return item.live and item.expires is not None and parse_time(item.expires) <= now


def matches(item: Mapping[str, Any], region: str | None, category: str | None) -> bool:
    """Whether an item belongs in a ticker filtered by region and category."""
    return (region is None or region in item["regions"]) and (
        category is None or category in item["categories"]
    )


def has_visible(text: str) -> bool:
    """Whether the text draws anything: a letter, digit, punctuation mark or symbol that is
    not one of the invisible fillers. Spaces, controls, format characters, marks on their
    own, private-use and unassigned code points draw nothing (or nothing reliable)."""
    return any(unicodedata.category(ch)[0] in "LNPS" and ch not in _INVISIBLE for ch in text)


def describe(ch: str) -> str:
    """A character in words, for messages: "a line break (U+000A)",
    "a right-to-left override (U+202E)"."""
    code = f"U+{ord(ch):04X}"
    words = _CHARACTER_NAMES.get(ch)
    if words is None:
        name = unicodedata.name(ch, "").lower()
        if name:
            words = f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
        else:
            words = _UNNAMED.get(unicodedata.category(ch), "a character")
    return f"{words} ({code})"


def fingerprint(payload: Any) -> str:
    """Identifies a request body, so a reused Idempotency-Key with other content is refused.

    A key is scoped to one editor and one edition (the store keeps it in the edition's
    keys), so the same key with a body for another edition is a separate request.
    """
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# --- field rules ------------------------------------------------------------------------


def _require_object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ItemError({"body": "must be a JSON object"})
    return dict(payload)


def _field(data: Mapping[str, Any], name: str, check: Any, errors: dict[str, str]) -> Any:
    if name not in data:
        return None
    try:
        return check(data[name])
    except ValueError as exc:
        errors[name] = str(exc)
        return None


def _clean_fields(
    data: Mapping[str, Any],
    vocabulary: Vocabulary,
    limits: Limits,
    errors: dict[str, str],
    now: datetime | None,
    start: datetime | None = None,
) -> dict[str, Any]:
    """The fields every item has. `start` is when the item goes live, if it is scheduled:
    its expiry counts from then."""
    out: dict[str, Any] = {}

    def run(name: str, check: Any) -> None:
        if name in data:
            try:
                value = check(data[name])
            except ValueError as exc:
                errors[name] = str(exc)
            else:
                out[name] = value

    run("headline", lambda v: _text(v, limits.headline_max, required=True))
    run("source", lambda v: _text(v, limits.source_max, required=False))
    run("link", lambda v: _link(v, limits.link_max))
    run("urgency", _urgency)
    run("regions", lambda v: _tags(v, vocabulary.regions, limits.max_tags))
    run("categories", lambda v: _tags(v, vocabulary.categories, limits.max_tags))
    run("pinned", _pinned)
    if "expires" in data and "expires_in" in data:
        errors["expires"] = "give either expires or expires_in, not both"
    else:
        run("expires", lambda v: _expires_at(v, limits, now, start))
        run("expires_in", lambda v: _expires_in(v, limits, now, start))
        if "expires_in" in out:
            out["expires"] = out.pop("expires_in")
    return out


def _text(value: Any, max_len: int, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValueError("must be a string")
    text = unicodedata.normalize("NFC", value.strip())
    if not text:
        if required:
            raise ValueError("must not be empty")
        return None
    for ch in text:
        if ch in _BIDI_CONTROLS:
            raise ValueError(f"must not contain direction controls: found {describe(ch)}")
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs", "Zl", "Zp"):
            raise ValueError(f"must be one line of plain text: found {describe(ch)}")
    if not has_visible(text):
        raise ValueError("has no visible character")
    if len(text) > max_len:
        raise ValueError(f"must be at most {max_len} characters (got {len(text)})")
    return text


def _link(value: Any, max_len: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("must be a string")
    link = value.strip()
    if len(link) > max_len:
        raise ValueError(f"must be at most {max_len} characters")
    for ch in link:
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs", "Cf", "Zl", "Zp"):
            raise ValueError(
                f"must not contain spaces, control or invisible characters: found {describe(ch)}"
            )
    try:
        parts = urlsplit(link)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return link


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _urgency(value: Any) -> int:
    if not _is_int(value) or not 1 <= value <= 9:
        raise ValueError("must be a whole number from 1 (flash) to 9")
    return value


def _tags(value: Any, allowed: tuple[str, ...], max_tags: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of strings")
    by_key = {a.casefold(): a for a in allowed}
    out: list[str] = []
    for raw in value:
        tag = by_key.get(raw.strip().casefold())
        if tag is None:
            raise ValueError(f"{raw[:40]!r} is not one of: {', '.join(allowed)}")
        if tag not in out:
            out.append(tag)
    if len(out) > max_tags:
        raise ValueError(f"must have at most {max_tags} entries")
    return tuple(out)


def _pinned(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _moment(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date and time with a time zone")
    try:
        when = parse_time(value)
    except (ValueError, OverflowError):
        raise ValueError("must be an ISO 8601 date and time with a time zone") from None
    if when.tzinfo is None:
        raise ValueError("must include a time zone, for example 2026-05-01T12:00:00Z")
    return when


def _publish_at(value: Any, limits: Limits, now: datetime | None) -> str | None:
    """When a scheduled item goes live: not in the past (beyond the clock skew we allow),
    not further ahead than the schedule horizon."""
    if value is None:
        return None
    when = _moment(value)
    start = now or datetime.now(UTC)
    if when < start - timedelta(seconds=SCHEDULE_SKEW_SECONDS):
        raise ValueError("must not be in the past")
    if when - start > timedelta(seconds=limits.max_schedule_seconds):
        raise ValueError(f"must be at most {limits.max_schedule_seconds // 86400} days ahead")
    return now_iso(max(when, start))


def _expires_at(
    value: Any, limits: Limits, now: datetime | None, start: datetime | None = None
) -> str | None:
    if value is None:
        return None
    return _check_window(_moment(value), limits, now, start)


def _expires_in(
    value: Any, limits: Limits, now: datetime | None, start: datetime | None = None
) -> str | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError("must be a number of seconds")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number of seconds")
    if value <= 0:
        raise ValueError("must be in the future: a positive number of seconds")
    if value > limits.max_expiry_seconds:
        raise ValueError(f"must be at most {limits.max_expiry_seconds} seconds")
    begin = start or now or datetime.now(UTC)
    return _check_window(begin + timedelta(seconds=value), limits, now, start)


def _check_window(
    when: datetime, limits: Limits, now: datetime | None, live_from: datetime | None = None
) -> str:
    start = live_from or now or datetime.now(UTC)
    if when <= start:
        raise ValueError("must be after publish_at" if live_from else "must be in the future")
    if when - start > timedelta(seconds=limits.max_expiry_seconds):
        raise ValueError(f"must be at most {limits.max_expiry_seconds // 3600} hours ahead")
    return now_iso(when)
