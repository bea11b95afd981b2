"""Delivery of the widget to other sites' pages.

`widget.js` and `widget.css` go out without their comments and gzip-compressed when the
browser accepts it. Each is served twice: under a versioned URL named after a hash of both
files (`/static/widget.<hash>.js`), cached for a year because it never changes, and under
the stable `/static/widget.js` that embedders put on their pages, cached for five minutes.
The publisher's own pages are given the versioned URLs.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=300"
NAMES = {"widget.js": "text/javascript; charset=utf-8", "widget.css": "text/css; charset=utf-8"}

_BLOCK = re.compile(r"/\*.*?\*/\n?", re.S)
_LINE = re.compile(r"^[ \t]*//.*\n", re.M)
_TAIL = re.compile(r"(?<=[;{,)])[ \t]+// .*$", re.M)
_BLANK = re.compile(r"\n[ \t]*\n+")
_INDENT = re.compile(r"^[ \t]+", re.M)


def strip_comments(text: str, *, script: bool) -> str:
    """Comments out: block comments, whole-line `//` comments and `// ` comments after a
    statement; and indentation, unless a template literal spans lines (its text would
    change). The widget's source keeps its comments; the wire does not need them."""
    text = _BLOCK.sub("", text)
    if script:
        text = _TAIL.sub("", _LINE.sub("", text))
    if not any(line.count("`") % 2 for line in text.splitlines()):
        text = _INDENT.sub("", text)
    return _BLANK.sub("\n", text).strip() + "\n"


@dataclass(frozen=True)
class _Asset:
    body: bytes
    compressed: bytes
    media_type: str


class WidgetAssets:
    """The widget's two files as served; read again whenever a source file changes."""

    def __init__(self, web: Path) -> None:
        self.web = web
        self._stamp: tuple[int, ...] | None = None
        self._assets: dict[str, _Asset] = {}
        self._version = ""

    def _load(self) -> None:
        paths = [self.web / name for name in NAMES]
        stamp = tuple(p.stat().st_mtime_ns if p.is_file() else 0 for p in paths)
        if stamp == self._stamp:
            return
        assets: dict[str, _Asset] = {}
        digest = hashlib.sha256()
        for (name, media_type), path in zip(NAMES.items(), paths, strict=True):
            if not path.is_file():
                continue
            text = strip_comments(path.read_text("utf-8"), script=name.endswith(".js"))
            body = text.encode("utf-8")
            digest.update(body)
            assets[name] = _Asset(body, gzip.compress(body, 9, mtime=0), media_type)
        self._assets, self._version, self._stamp = assets, digest.hexdigest()[:12], stamp

    @property
    def version(self) -> str:
        self._load()
        return self._version

    def versioned(self, name: str) -> str:
        """`widget.js` -> `widget.<hash>.js`."""
        stem, ext = name.rsplit(".", 1)
        return f"{stem}.{self.version}.{ext}"

    def page(self, html: str) -> str:
        """A page of the publisher's own, pointing at the versioned files."""
        self._load()
        for name in self._assets:
            html = html.replace(f'"/static/{name}"', f'"/static/{self.versioned(name)}"')
        return html

    def response(self, file: str, accept_encoding: str = "") -> Response | None:
        """The answer for /static/<file> when it is the widget, else None."""
        match = _FILE.fullmatch(file)
        if match is None:
            return None
        self._load()
        version, ext = match.group(1), match.group(2)
        asset = self._assets.get(f"widget.{ext}")
        if asset is None or (version is not None and version != self._version):
            return Response("Not Found", status_code=404, media_type="text/plain")
        cache = SHORT if version is None else IMMUTABLE
        headers = {"Cache-Control": cache, "Vary": "Accept-Encoding"}
        body = asset.body
        if "gzip" in accept_encoding.lower():
            body = asset.compressed
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=asset.media_type, headers=headers)

    def wrap(self, static: ASGIApp) -> ASGIApp:
        """The /static app: the widget's files from here, everything else from `static`."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            answer = None
            if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
                accept = Headers(scope=scope).get("accept-encoding", "")
                answer = self.response(scope["path"].rsplit("/", 1)[-1], accept)
            await (answer or static)(scope, receive, send)

        return app


_FILE = re.compile(r"widget(?:\.([0-9a-f]{12}))?\.(js|css)")
