"""The live page of an edition: the ticker as server-rendered HTML, for people and search
engines, with schema.org LiveBlogPosting data, enhanced by the widget when script runs.

A pure function from live items to a page, with no I/O. Every piece of an item is written
as escaped text; the JSON-LD is escaped so that no headline can end its script element.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from .config import RTL_EDITIONS
from .feeds import TITLES, FeedQuery
from .items import Item, now_iso, parse_time
from .ninjs import item_uri, web_uri

# What the page says, by edition. Editions without an entry read English.
_WORDS = {
    "en": {"empty": "No breaking news right now", "follow": "Follow", "live": "Live"},
    "ar": {"empty": "لا أخبار عاجلة الآن", "follow": "تابع", "live": "مباشر"},
    "es": {"empty": "No hay noticias de última hora", "follow": "Seguir", "live": "En directo"},
}
FEED_LINKS = (
    ("rss", "application/rss+xml", "RSS"),
    ("atom", "application/atom+xml", "Atom"),
    ("json", "application/feed+json", "JSON Feed"),
)


def title_of(query: FeedQuery) -> str:
    return " · ".join([TITLES.get(query.edition, "Breaking news"), *query.filters.values()])


def page_url(base_url: str, query: FeedQuery) -> str:
    url = f"{base_url.rstrip('/')}/live/{query.edition}"
    return url + ("?" + urlencode(query.filters) if query.filters else "")


def render(query: FeedQuery, live: Iterable[Item], *, base_url: str, now: datetime) -> str:
    """The whole page, newest item first, as the ticker holds it now."""
    items = list(live)
    edition = query.edition
    words = _WORDS.get(edition, _WORDS["en"])
    direction = "rtl" if edition in RTL_EDITIONS else "ltr"
    title = title_of(query)
    canonical = page_url(base_url, query)
    filters = "".join(f' data-{k}="{escape(v)}"' for k, v in query.filters.items())
    suffix = "?" + urlencode(query.filters) if query.filters else ""
    feed_links = [
        (f"/feeds/{edition}.{kind}{suffix}", media, name) for kind, media, name in FEED_LINKS
    ]
    head_links = "\n".join(
        f'  <link rel="alternate" type="{media}" href="{escape(href)}" title="{escape(name)}">'
        for href, media, name in feed_links
    )
    follow = " · ".join(f'<a href="{escape(href)}">{name}</a>' for href, _, name in feed_links)
    listing = (
        "\n".join(_entry(item) for item in items)
        if items
        else f'      <li class="live-empty">{escape(words["empty"])}</li>'
    )
    data = json_ld_text(live_blog(query, items, canonical, now))
    return f"""<!doctype html>
<html lang="{escape(edition)}" dir="{direction}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{escape(title)} · {escape(words["live"])}</title>
  <link rel="canonical" href="{escape(canonical)}">
{head_links}
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/static/widget.css">
  <link rel="stylesheet" href="/static/live.css">
  <script src="/static/widget.js" defer></script>
  <script type="application/ld+json">{data}</script>
</head>
<body class="live">
  <main class="live-main">
    <h1>{escape(title)} <span class="live-badge">{escape(words["live"])}</span></h1>
    <div data-ticker data-edition="{escape(edition)}"{filters} class="live-bar"></div>
    <ol class="live-items">
{listing}
    </ol>
    <p class="live-follow">{escape(words["follow"])}: {follow}</p>
  </main>
</body>
</html>
"""


def _entry(item: Item) -> str:
    headline = escape(item.headline)
    link = web_uri(item.link)
    if link:
        headline = f'<a href="{escape(link)}">{headline}</a>'
    source = (
        f'<span class="live-source"><bdi>{escape(item.source)}</bdi>:</span> '
        if item.source
        else ""
    )
    urgency = f" live-item--u{item.urgency}" if item.urgency <= 2 else ""
    stamp = parse_time(item.created)
    return (
        f'      <li class="live-item{urgency}" id="{escape(item.id)}">'
        f'<p class="live-line">{source}<span class="live-headline">{headline}</span></p> '
        # A numeric date reads left to right on a right-to-left page too.
        f'<time datetime="{escape(item.created)}" dir="ltr">{stamp:%Y-%m-%d %H:%M} UTC</time></li>'
    )


def live_blog(query: FeedQuery, items: list[Item], canonical: str, now: datetime) -> dict[str, Any]:
    """schema.org LiveBlogPosting: the page, with each live item as a liveBlogUpdate."""
    times = [i.created for i in items]
    updates = []
    for item in items:
        update: dict[str, Any] = {
            "@type": "BlogPosting",
            "@id": item_uri(item),
            "headline": item.headline,
            "datePublished": item.created,
            "dateModified": item.updated,
            "inLanguage": item.edition,
        }
        link = web_uri(item.link)
        if link:
            update["url"] = link
        if item.source:
            update["sourceOrganization"] = {"@type": "Organization", "name": item.source}
        updates.append(update)
    return {
        "@context": "https://schema.org",
        "@type": "LiveBlogPosting",
        "@id": canonical,
        "url": canonical,
        "headline": title_of(query),
        "inLanguage": query.edition,
        "coverageStartTime": min(times, default=now_iso(now)),
        "datePublished": min(times, default=now_iso(now)),
        "dateModified": max((i.updated for i in items), default=now_iso(now)),
        "liveBlogUpdate": updates,
    }


def json_ld_text(data: Any) -> str:
    """JSON that is safe inside <script>: no `<`, `>` or `&` can end or confuse the element."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
