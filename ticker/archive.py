"""The archive's rules: how headlines become search words, what an archive query may ask,
and how items are ordered and paged. Plain functions with no I/O, so both stores index and
answer the same way (tests/test_archive.py, tests/test_broker_conformance.py).

Every item ever posted keeps one archive record: its latest version and status. A record
is found by *terms*, each a set of records kept by the store:

- `w:<word>` for each word of the headline (as it reads now),
- `e:<editor>` for each editor who posted, corrected or withdrew it,
- `s:<status>` for its status now (live, withdrawn or expired).

Records are ordered by their *key*, `<created, 13 digits of ms>:<id>`: newest first is the
keys in descending order, a page ends at a key and the next one starts below it, so items
posted between two pages (newer keys) can never push an item into the next page twice.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from .config import Vocabulary
from .items import parse_time

STATUSES = ("all", "live", "withdrawn", "expired")
# The parameters that make GET /api/items an archive query rather than the live ticker.
ARCHIVE_PARAMS = frozenset({"q", "editor", "from", "to", "cursor", "limit"})
PARAMS = frozenset({"edition", "status"}) | ARCHIVE_PARAMS
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
Q_MAX = 200  # characters
Q_MAX_WORDS = 8
EDITOR_MAX = 64
WORD_MAX = 40  # characters; longer words are cut, the same way in headlines and queries
# At most this many records of the driving set are examined per page: a query whose terms
# rarely meet answers a short page (with `next`) instead of scanning the whole archive.
SCAN_BUDGET = 5000
# A prune removes records in batches of this many, each its own transaction or script, so
# publishes go on between batches.
PRUNE_BATCH = 500
_KEY = re.compile(r"[0-9]{13}:[A-Za-z0-9_-]{1,64}", re.ASCII)
_TATWEEL = "\u0640"  # Arabic letter stretching: typography, not spelling


class QueryError(ValueError):
    """A parameter of an archive query is wrong; `field` names it for the 400."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class ArchiveQuery:
    """What an archive page asks for. `below` (exclusive) and `at_least` (inclusive) bound
    the keys: `below` is the lower of `to` and the cursor, `at_least` comes from `from`."""

    edition: str
    status: str = "all"
    words: tuple[str, ...] = ()
    editor: str | None = None
    below: str | None = None
    at_least: str | None = None
    limit: int = DEFAULT_LIMIT

    @property
    def terms(self) -> tuple[str, ...]:
        """The term sets every answer must be in; none for the whole archive."""
        found = [f"w:{word}" for word in self.words]
        if self.editor is not None:
            found.append(f"e:{self.editor}")
        if self.status != "all":
            found.append(f"s:{self.status}")
        return tuple(found)


@dataclass(frozen=True, slots=True)
class ArchivePage:
    """Items newest first, and the key to continue below (None: nothing older matches)."""

    items: list[dict[str, Any]]
    next: str | None


# --- words -----------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """The search words of a text, each once, in order.

    Case-insensitive (casefold: "Straße" is "strasse") and accent-insensitive: "política"
    and "politica" are one word, as readers type either. Combining marks go after NFKD, which
    also drops Arabic short vowels and hamza/madda on alef ("أمن" is "امن"), and tatweel
    goes. A word is a run of letters, digits and the marks within a word (Devanagari vowel
    signs); everything else separates words.
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(c for c in decomposed if not unicodedata.combining(c) and c != _TATWEEL)
    found: dict[str, None] = {}
    word: list[str] = []
    for char in unicodedata.normalize("NFC", kept) + " ":
        if unicodedata.category(char)[0] in "LNM":
            word.append(char)
        elif word:
            found["".join(word)[:WORD_MAX]] = None
            word = []
    return list(found)


def record_terms(item: Mapping[str, Any]) -> list[str]:
    """The terms of an item as it is now (its editors before it are the store's to keep)."""
    return [
        f"s:{item['status']}",
        f"e:{item['editor']}",
        *(f"w:{word}" for word in words(item.get("headline") or "")),
    ]


def record_key(item: Mapping[str, Any]) -> str:
    """`<created ms, 13 digits>:<id>`: sorts as text the way the archive is ordered."""
    millis = int(parse_time(item["created"]).timestamp() * 1000)
    return f"{millis:013d}:{item['id']}"


# --- queries ---------------------------------------------------------------------------------


def is_archive_query(params: Mapping[str, Any]) -> bool:
    """`GET /api/items` lists the live ticker unless asked for the archive: a status other
    than live, or any archive parameter."""
    status = params.get("status")
    return (status is not None and status != "live") or any(p in params for p in ARCHIVE_PARAMS)


def parse_query(params: Mapping[str, list[str]], vocabulary: Vocabulary) -> ArchiveQuery:
    """Validate an archive query's parameters (each a list of the values given)."""
    for name in sorted(params):
        if name not in PARAMS:
            raise QueryError(name[:40], f"unknown parameter {name[:40]!r} for the archive")
        if len(params[name]) > 1:
            raise QueryError(name, f"{name} may be given once")
    one = {name: values[0] for name, values in params.items()}
    edition = one.get("edition")
    if edition not in vocabulary.editions:
        raise QueryError("edition", f"edition must be one of {', '.join(vocabulary.editions)}")
    status = one.get("status", "all")
    if status not in STATUSES:
        raise QueryError("status", f"status must be one of {', '.join(STATUSES)}")
    found = _words_of(one["q"]) if "q" in one else ()
    editor = one.get("editor")
    if editor is not None and not 1 <= len(editor) <= EDITOR_MAX:
        raise QueryError("editor", f"editor must be 1 to {EDITOR_MAX} characters")
    since = _time_of(one, "from")
    until = _time_of(one, "to")
    if since is not None and until is not None and until <= since:
        raise QueryError("to", "to must be later than from")
    below = None if until is None else f"{until:013d}:"
    if "cursor" in one:
        after = decode_cursor(one["cursor"])
        below = after if below is None else min(below, after)
    return ArchiveQuery(
        edition=edition,
        status=status,
        words=found,
        editor=editor,
        below=below,
        at_least=None if since is None else f"{since:013d}:",
        limit=_limit_of(one.get("limit")),
    )


def time_key(text: str, name: str) -> str:
    """The lowest key of the items posted at or after `text` (ISO 8601): what `from` and
    `ticker archive prune --before` compare keys with."""
    millis = _time_of({name: text}, name)
    assert millis is not None
    return f"{millis:013d}:"


def _words_of(text: str) -> tuple[str, ...]:
    if len(text) > Q_MAX:
        raise QueryError("q", f"q must be at most {Q_MAX} characters")
    found = words(text)
    if not found:
        raise QueryError("q", "q has no word to search for")
    if len(found) > Q_MAX_WORDS:
        raise QueryError("q", f"q may hold at most {Q_MAX_WORDS} words")
    return tuple(found)


def _time_of(params: Mapping[str, str], name: str) -> int | None:
    """ISO 8601 to milliseconds; a time without an offset is UTC, a date is its midnight."""
    text = params.get(name)
    if text is None:
        return None
    try:
        if len(text) > 40 or not text.isascii():
            raise ValueError
        when = parse_time(text)
    except ValueError:
        raise QueryError(
            name, f"{name} must be an ISO 8601 date or time, e.g. 2026-01-31T12:00:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    millis = int(when.timestamp() * 1000)
    if not 0 <= millis < 10**13:
        raise QueryError(name, f"{name} must be between 1970 and 2286")
    return millis


def _limit_of(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= MAX_LIMIT:
        raise QueryError("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


# --- cursors ---------------------------------------------------------------------------------


def encode_cursor(key: str) -> str:
    """Opaque to clients: they hand it back, and never build one."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> str:
    try:
        if len(text) > 120 or not text.isascii():
            raise ValueError
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (ValueError, binascii.Error):
        key = ""
    if not _KEY.fullmatch(key):
        raise QueryError("cursor", "cursor is not one this archive gave out")
    return key


def key_id(key: str) -> str:
    return key.partition(":")[2]


def page_of(
    found: Iterable[str], limit: int, last_scanned: str | None
) -> tuple[list[str], str | None]:
    """The keys of a page and where the next one starts, from up to `limit + 1` matching
    keys (newest first) and, when the scan budget ran out first, the last key examined."""
    keys = list(found)
    if len(keys) > limit:
        return keys[:limit], keys[limit - 1]
    return keys, last_scanned
