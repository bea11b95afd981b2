"""Syndication feeds of an edition: RSS 2.0, Atom 1.0 and JSON Feed 1.1.

Pure functions from the live items the broker holds to a feed document and the headers of
a cacheable answer, so every rule here is testable without a server. The publisher only
reads `broker.live(edition)` and hands the result over (docs/api.md, "Feeds").
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

from feedgen.feed import FeedGenerator

from .config import RTL_EDITIONS, Vocabulary
from .events import Cursor
from .items import Item, is_due, matches, parse_time
from .ninjs import item_uri, web_uri
from .protocol import ProtocolError, parse_subscription

FEED_MAX = 50  # the newest live items a feed holds
CACHE_CONTROL = "public, max-age=15"
KINDS = ("rss", "atom", "json")
MEDIA_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
# The name of the ticker in each edition's language: the BREAKING label of the widget.
TITLES = {"en": "Breaking news", "ar": "عاجل", "es": "Última hora"}
_PARAMETERS = frozenset({"region", "category"})
# XML 1.0 allows neither U+FFFE/U+FFFF nor lone surrogates; the item rules let the first two
# through (they are not control characters), so feeds replace them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class FeedRequestError(Exception):
    """A feed request that cannot be answered: `status` 404 or 400, `reason` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FeedQuery:
    edition: str
    region: str | None = None
    category: str | None = None

    @property
    def filters(self) -> dict[str, str]:
        return {k: v for k, v in (("region", self.region), ("category", self.category)) if v}


@dataclass(frozen=True, slots=True)
class FeedAnswer:
    """What the publisher sends: a status, a body (empty for a 304) and headers."""

    status: int
    body: bytes
    headers: dict[str, str]
    media_type: str


def parse_query(
    edition: str, params: Iterable[tuple[str, str]], vocabulary: Vocabulary
) -> FeedQuery:
    """The edition from the path and the filters from the query, checked like the API's."""
    if edition not in vocabulary.editions:
        raise FeedRequestError(
            404, f"no edition {edition[:20]!r}: editions are {', '.join(vocabulary.editions)}"
        )
    given: dict[str, str] = {}
    for name, value in params:
        if name not in _PARAMETERS:
            raise FeedRequestError(
                400, f"unknown parameter {name[:30]!r}: a feed takes region and category"
            )
        if name in given:
            raise FeedRequestError(400, f"{name} may be given once")
        given[name] = value
    try:
        subscription, _ = parse_subscription({"edition": edition, **given}, vocabulary)
    except ProtocolError as exc:
        raise FeedRequestError(400, exc.reason) from None
    return FeedQuery(edition, subscription.region, subscription.category)


def select(
    live: Iterable[Mapping[str, Any]], query: FeedQuery, now: datetime, limit: int = FEED_MAX
) -> list[Item]:
    """The newest live items that match the filters; none past its expiry."""
    chosen = [
        Item.from_dict(i)
        for i in live
        if i.get("status", "live") == "live" and matches(i, query.region, query.category)
    ]
    chosen = [i for i in chosen if not is_due(i, now)]
    chosen.sort(key=lambda i: i.created, reverse=True)
    return chosen[:limit]


class Freshness:
    """When this process first saw each edition's current cursor: the feeds' Last-Modified.

    The newest item's time cannot serve: a withdrawal changes the feed but leaves only
    older items in it. The first sighting of a cursor is never earlier than the change
    that made it, so an If-Modified-Since never hides a change (a process that restarts
    only answers 200 where a 304 would have done).
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Cursor, float]] = {}

    def since(self, edition: str, cursor: Cursor, now: float) -> float | None:
        """The first sighting of `cursor`, or None for a cursor older than one already seen."""
        seen = self._seen.get(edition)
        if seen is not None and seen[0].epoch == cursor.epoch:
            if cursor.offset < seen[0].offset:
                return None
            if cursor.offset == seen[0].offset:
                return seen[1]
        self._seen[edition] = (cursor, now)
        return now


def etag(kind: str, query: FeedQuery, cursor: Cursor, base_url: str) -> str:
    """Weak: two processes may date the same feed differently (see Freshness)."""
    key = "\n".join(
        [kind, query.edition, str(cursor), query.region or "", query.category or "", base_url]
    )
    return f'W/"{hashlib.sha256(key.encode()).hexdigest()[:24]}"'


def not_modified(headers: Mapping[str, str], tag: str, last_modified: datetime | None) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match wins; If-Modified-Since only without it."""
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        wanted = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in wanted or tag.removeprefix("W/") in wanted
    since = headers.get("if-modified-since")
    if since is None or last_modified is None:
        return False
    try:
        when = parsedate_to_datetime(since)
    except (TypeError, ValueError, IndexError):
        return False
    if when.tzinfo is None:
        return False
    return last_modified <= when


def answer(
    kind: str,
    query: FeedQuery,
    cursor: Cursor,
    live: Iterable[Mapping[str, Any]] | None,
    *,
    request_headers: Mapping[str, str],
    base_url: str,
    self_url: str,
    now: datetime,
    freshness: Freshness,
) -> FeedAnswer | None:
    """The whole answer to a feed request: 200 with the feed, or 304. Without the live
    items (`live` None) only a 304 can be answered; None means: read them and ask again."""
    first_seen = freshness.since(query.edition, cursor, now.timestamp())
    # HTTP dates have whole seconds: a date is sent once its second is over, so that two
    # states of the feed never share one Last-Modified.
    last_modified = None
    if first_seen is not None and math.floor(first_seen) < math.floor(now.timestamp()):
        last_modified = datetime.fromtimestamp(math.floor(first_seen), UTC)
    tag = etag(kind, query, cursor, base_url)
    headers = {"ETag": tag, "Cache-Control": CACHE_CONTROL, "Access-Control-Allow-Origin": "*"}
    if last_modified is not None:
        headers["Last-Modified"] = format_datetime(last_modified, usegmt=True)
    if not_modified(request_headers, tag, last_modified):
        return FeedAnswer(304, b"", headers, MEDIA_TYPES[kind])
    if live is None:
        return None
    changed = now if first_seen is None else datetime.fromtimestamp(first_seen, UTC)
    feed = Feed.of(query, select(live, query, now), base_url, self_url, changed)
    body = {"rss": rss, "atom": atom, "json": json_feed}[kind](feed)
    return FeedAnswer(200, body, headers, MEDIA_TYPES[kind])


# --- the documents -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Feed:
    query: FeedQuery
    title: str
    feed_id: str
    home_url: str  # the live page of the edition
    self_url: str
    updated: datetime
    items: list[Item]

    @classmethod
    def of(
        cls,
        query: FeedQuery,
        items: list[Item],
        base_url: str,
        self_url: str,
        changed: datetime,
    ) -> Feed:
        title = TITLES.get(query.edition, f"Breaking news ({query.edition})")
        title = " · ".join([title, *query.filters.values()])
        feed_id = f"urn:ticker:{query.edition}:feed"
        for name, value in query.filters.items():
            feed_id += f":{name}:{quote(value, safe='')}"
        home = f"{base_url.rstrip('/')}/live/{query.edition}"
        if query.filters:
            home += "?" + urlencode(query.filters)
        newest = max((parse_time(i.updated) for i in items), default=changed)
        return cls(query, title, feed_id, home, self_url, max(newest, changed), items)

    @property
    def language(self) -> str:
        return self.query.edition

    @property
    def rtl(self) -> bool:
        return self.query.edition in RTL_EDITIONS

    def url_of(self, item: Item) -> str:
        """The article, or else the item's place on the live page."""
        return web_uri(item.link) or f"{self.home_url}#{item.id}"


def text_of(item: Item) -> str:
    """The line as the ticker shows it: the source, then the headline."""
    return f"{item.source}: {item.headline}" if item.source else item.headline


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _generator(feed: Feed, *, for_atom: bool) -> FeedGenerator:
    fg = FeedGenerator()
    fg.id(feed.feed_id)
    fg.title(_xml(feed.title))
    fg.description(_xml(feed.title))  # RSS <description>, Atom <subtitle>
    fg.language(feed.language)  # RSS <language>, and xml:lang on Atom's <feed>
    fg.author({"name": "ticker"})
    fg.generator("ticker")
    # feedgen gives RSS's <link> the last link set: the alternate one must come last.
    fg.link(href=feed.self_url, rel="self")
    fg.link(href=feed.home_url, rel="alternate", type="text/html", hreflang=feed.language)
    fg.updated(feed.updated)
    fg.lastBuildDate(feed.updated)
    fg.ttl(1)
    fg.load_extension("dc")
    direction = "rtl" if feed.rtl else "ltr"
    for item in feed.items:
        entry = fg.add_entry(order="append")
        entry.id(item_uri(item))
        entry.guid(item_uri(item), permalink=False)
        entry.title(_xml(item.headline))
        entry.link(href=feed.url_of(item), rel="alternate", type="text/html")
        entry.published(parse_time(item.created))
        entry.updated(parse_time(item.updated))
        entry.description(_xml(text_of(item)))
        if for_atom:
            # xhtml content: the one place Atom lets the text carry its direction.
            entry.content(
                f'<p dir="{direction}" lang="{feed.language}">{escape(_xml(text_of(item)))}</p>',
                type="xhtml",
            )
        if item.source:
            entry.author({"name": _xml(item.source)})
            entry.dc.dc_creator(_xml(item.source))
        for tag in (*item.regions, *item.categories):
            entry.category(term=tag)
    return fg


def rss(feed: Feed) -> bytes:
    return _generator(feed, for_atom=False).rss_str(pretty=False)


def atom(feed: Feed) -> bytes:
    return _generator(feed, for_atom=True).atom_str(pretty=False)


def json_feed(feed: Feed) -> bytes:
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1): plain JSON, no library needed."""
    doc: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": feed.title,
        "home_page_url": feed.home_url,
        "feed_url": feed.self_url,
        "language": feed.language,
        "authors": [{"name": "ticker"}],
        "items": [],
    }
    for item in feed.items:
        entry: dict[str, Any] = {
            "id": item_uri(item),
            "url": feed.url_of(item),
            "title": item.headline,
            "content_text": text_of(item),
            "date_published": item.created,
            "date_modified": item.updated,
            "language": item.edition,
        }
        if item.source:
            entry["authors"] = [{"name": item.source}]
        tags = [*item.regions, *item.categories]
        if tags:
            entry["tags"] = tags
        doc["items"].append(entry)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
