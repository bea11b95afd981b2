"""Items as IPTC ninjs: 2.2 (lowercase names) and 3.1 (camelCase names).

Pure functions from an item to a JSON object, with no I/O. Both shapes validate against
the IPTC's published schemas (tests/schemas/); docs/items.md has the field-by-field table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .items import Item

SCHEMAS = {
    "2.2": "http://www.iptc.org/std/ninjs/ninjs-schema_2.2.json#",
    "3.1": "http://www.iptc.org/std/ninjs/ninjs-schema_3.1.json#",
}
# `format=` values of the API, and what each one means. None is the ticker's own JSON.
FORMATS = ("ninjs", "ninjs3")
# IPTC rendition NewsCode for "the rendition for use on the web".
WEB_RENDITION = "web"


class UnknownFormat(ValueError):
    """A `format=` value the API does not offer."""


def item_uri(item: Item, base_uri: str = "urn:ticker") -> str:
    """The item's global id: the same in ninjs, in every feed and in the live page."""
    return f"{base_uri}:{item.edition}:{item.id}"


def to_ninjs(item: Item, *, base_uri: str = "urn:ticker") -> dict[str, Any]:
    """The item as an IPTC ninjs 2.2 object."""
    ninjs: dict[str, Any] = {
        "uri": item_uri(item, base_uri),
        "standard": {"name": "ninjs", "version": "2.2", "schema": SCHEMAS["2.2"]},
        "type": "text",
        "version": str(item.version),
        "firstcreated": item.created,
        "versioncreated": item.updated,
        "pubstatus": _pubstatus(item),
        "urgency": item.urgency,
        "language": item.edition,
        "headlines": [{"role": "main", "value": item.headline, "contenttype": "text/plain"}],
        "subjects": [{"name": c} for c in item.categories],
        "places": [{"name": r} for r in item.regions],
    }
    if item.source:
        ninjs["by"] = item.source
        ninjs["infosources"] = [{"name": item.source, "role": "source"}]
    if item.expires:
        ninjs["expires"] = item.expires
    link = web_uri(item.link)
    if link:
        # ninjs 2.2 has no `links`: the article is the item's web rendition.
        ninjs["renditions"] = [{"name": WEB_RENDITION, "href": link, "contenttype": "text/html"}]
    return ninjs


def to_ninjs3(item: Item, *, base_uri: str = "urn:ticker") -> dict[str, Any]:
    """The item as an IPTC ninjs 3.1 object: the 2.2 mapping with 3.x's camelCase names."""
    ninjs: dict[str, Any] = {
        "uri": item_uri(item, base_uri),
        "standard": {"name": "ninjs", "version": "3.1", "schema": SCHEMAS["3.1"]},
        "type": "text",
        "version": str(item.version),
        "firstCreated": item.created,
        "versionCreated": item.updated,
        "pubStatus": _pubstatus(item),
        "urgency": item.urgency,
        "language": item.edition,
        "headlines": [{"role": "main", "value": item.headline, "contentType": "text/plain"}],
        "subjects": [{"name": c} for c in item.categories],
        "places": [{"name": r} for r in item.regions],
    }
    if item.source:
        ninjs["by"] = item.source
        ninjs["infoSources"] = [{"name": item.source, "role": "source"}]
    if item.expires:
        ninjs["expires"] = item.expires
    link = web_uri(item.link)
    if link:
        ninjs["renditions"] = [{"name": WEB_RENDITION, "href": link, "contentType": "text/html"}]
    return ninjs


def renderer(fmt: str | None) -> Callable[[Item], dict[str, Any]] | None:
    """The function that renders an item in `fmt`, or None for the ticker's own JSON."""
    if fmt is None:
        return None
    if fmt == "ninjs":
        return to_ninjs
    if fmt == "ninjs3":
        return to_ninjs3
    raise UnknownFormat(
        f"format {fmt[:30]!r} is not known: use ninjs (IPTC ninjs 2.2), ninjs3 (ninjs 3.1) "
        "or leave it out for the ticker's own JSON"
    )


def _pubstatus(item: Item) -> str:
    # A withdrawal or an expiry is a kill: same uri, fresh versioncreated, `canceled`.
    return "usable" if item.live else "canceled"


# --- links as URIs --------------------------------------------------------------------------
# An editor's link is checked to be http(s) with a host, but it may still be an IRI
# (non-ASCII letters) or carry characters a URI may not (`"`, `<`, `|`, a bare `%`).
# Schemas and feed readers want a URI, so the link is percent-encoded component by component.

_SUB_DELIMS = "!$&'()*+,;="
_UNRESERVED = "-._~"
_PCHAR = _UNRESERVED + _SUB_DELIMS + ":@"
_HOST = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=]*|\[[0-9A-Fa-f:.]+\]", re.ASCII)
_PCT = re.compile(r"%[0-9A-Fa-f]{2}", re.ASCII)


def web_uri(link: str | None) -> str | None:
    """An http(s) link as a valid RFC 3986 URI, or None when it cannot be one."""
    if not link:
        return None
    try:
        parts = urlsplit(link)
        scheme = parts.scheme.lower()
        userinfo, _, hostport = parts.netloc.rpartition("@")
        host, port = _split_port(hostport)
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return None
    if scheme not in ("http", "https") or not host or not _HOST.fullmatch(host):
        return None
    if port and not port.isdigit():
        return None
    netloc = host + (f":{port}" if port else "")
    if userinfo:
        netloc = _quote(userinfo, _UNRESERVED + _SUB_DELIMS + ":") + "@" + netloc
    uri = f"{scheme}://{netloc}{_quote(parts.path, _PCHAR + '/')}"
    if parts.query:
        uri += "?" + _quote(parts.query, _PCHAR + "/?")
    if parts.fragment:
        uri += "#" + _quote(parts.fragment, _PCHAR + "/?")
    return uri


def _split_port(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError("unclosed IPv6 literal")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("junk after an IPv6 literal")
        return host, rest[1:]
    host, _, port = hostport.partition(":")
    return host, port


def _quote(text: str, safe: str) -> str:
    out: list[str] = []
    for index, ch in enumerate(text):
        if ch.isascii() and (ch.isalnum() or ch in safe):
            out.append(ch)
        elif ch == "%" and _PCT.match(text, index):
            out.append(ch)  # already an escape
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)
