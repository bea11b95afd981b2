"""The publisher: the HTTP API and pages for the newsroom, as one Starlette app.

Every route is listed in `create_app`, so the whole HTTP surface fits on one screen.
Handlers are thin: the rules live in `items`, the storage in the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import items as rules
from .auth import editor_for
from .brokers.base import (
    Broker,
    BrokerUnavailable,
    Change,
    IdempotencyMismatch,
    VersionConflict,
)
from .config import RTL_EDITIONS, Settings
from .expiry import expiry_sweeper
from .items import Item, ItemError
from .protocol import ProtocolError, parse_subscription

log = logging.getLogger("ticker.publisher")
T = TypeVar("T")

RETRY_AFTER_SECONDS = 2
CORRECTION_RETRIES = 3


class ApiError(Exception):
    """An error with an HTTP status and a JSON body a console can show next to a field."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields
        self.headers = headers

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def create_app(settings: Settings, broker: Broker, *, own_broker: bool = True) -> Starlette:
    api = _Api(settings, broker)
    web = settings.web_dir
    routes = [
        Route("/healthz", api.healthz),
        Route("/readyz", api.readyz),
        Route("/api/config", api.config),
        Route("/api/whoami", api.whoami),
        Route("/api/items", api.list_items, methods=["GET"]),
        Route("/api/items", api.post_item, methods=["POST"]),
        Route("/api/items/{item_id}", api.get_item, methods=["GET"]),
        Route("/api/items/{item_id}", api.correct_item, methods=["PATCH"]),
        Route("/api/items/{item_id}", api.withdraw_item, methods=["DELETE"]),
        *_pages({"/": web / "console.html", "/demo": web / "demo.html"}),
        Mount("/static", StaticFiles(directory=web, check_dir=False), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if own_broker:
            try:
                await broker.start()
            except BrokerUnavailable as exc:
                # Serve anyway: the API answers 503 until the store is back, and /readyz says so.
                log.warning("store unreachable at start-up: %s", exc)
        sweeper = asyncio.create_task(expiry_sweeper(broker), name="expiry-sweeper")
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if own_broker:
                await broker.close()

    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders, hub_url=settings.hub_url())],
        exception_handlers={
            ApiError: _api_error,
            Exception: _unexpected,
            404: _not_found,
            405: _not_allowed,
        },
        lifespan=lifespan,
    )


def _pages(pages: dict[str, Path]) -> list[Route]:
    """Routes for the HTML pages that are installed."""

    def page(path: Path) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return FileResponse(path, media_type="text/html; charset=utf-8")

        return endpoint

    return [Route(url, page(path)) for url, path in pages.items() if path.is_file()]


class _Api:
    def __init__(self, settings: Settings, broker: Broker) -> None:
        self.settings = settings
        self.broker = broker
        self.vocabulary = settings.vocabulary
        self.limits = settings.limits

    # --- public ---------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        await _call(self.broker.ping())
        return JSONResponse({"status": "ready"})

    async def config(self, request: Request) -> Response:
        vocab = self.vocabulary
        return _public(
            JSONResponse(
                {
                    "editions": [
                        {"code": e, "dir": "rtl" if e in RTL_EDITIONS else "ltr"}
                        for e in vocab.editions
                    ],
                    "regions": list(vocab.regions),
                    "categories": list(vocab.categories),
                    "limits": {
                        "headline": self.limits.headline_max,
                        "source": self.limits.source_max,
                        "link": self.limits.link_max,
                        "tags": self.limits.max_tags,
                        "expiry_seconds": self.limits.max_expiry_seconds,
                    },
                    "hub_url": self.settings.hub_url(),
                }
            )
        )

    async def list_items(self, request: Request) -> Response:
        params = request.query_params
        try:
            wanted = {name: params.get(name) for name in ("edition", "region", "category")}
            subscription, _ = parse_subscription(wanted, self.vocabulary)
        except ProtocolError as exc:
            raise ApiError(400, "invalid_parameter", exc.reason) from None
        edition, region, category = (
            subscription.edition,
            subscription.region,
            subscription.category,
        )
        cursor, live = await _call(self.broker.live(edition))
        live = [i for i in live if rules.matches(i, region, category)]
        live.sort(key=lambda i: i["created"], reverse=True)
        if params.get("format") == "ninjs":
            live = [rules.to_ninjs(Item.from_dict(i)) for i in live]
        return _public(JSONResponse({"edition": edition, "cursor": str(cursor), "items": live}))

    async def get_item(self, request: Request) -> Response:
        item = await self._live_item(request.path_params["item_id"])
        body = (
            rules.to_ninjs(item)
            if request.query_params.get("format") == "ninjs"
            else item.to_dict()
        )
        return _public(JSONResponse(body))

    # --- editors --------------------------------------------------------------------------

    async def whoami(self, request: Request) -> Response:
        return JSONResponse({"editor": await self._editor(request)})

    async def post_item(self, request: Request) -> Response:
        editor = await self._editor(request)
        key = _idempotency_key(request)
        payload = await _read_json(request, self.limits.body_max_bytes)
        item = _validated(
            lambda: rules.create(
                payload, editor=editor, vocabulary=self.vocabulary, limits=self.limits
            )
        )
        change = Change(
            "posted",
            item,
            idempotency_key=f"{editor}:{key}" if key else None,
            fingerprint=rules.fingerprint(payload),
        )
        try:
            published = await _call(self.broker.publish(change))
        except IdempotencyMismatch:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different item; "
                "use a new key for a new item",
            ) from None
        headers = {"Location": f"/api/items/{published.item.id}"}
        if published.replayed:
            headers["Idempotent-Replayed"] = "true"
        log.info("posted %s v%d by %s", item.id, published.item.version, editor)
        return JSONResponse(published.item.to_dict(), status_code=201, headers=headers)

    async def correct_item(self, request: Request) -> Response:
        editor = await self._editor(request)
        payload = await _read_json(request, self.limits.body_max_bytes)
        item_id = request.path_params["item_id"]

        def make(current: Item) -> Change:
            corrected = _validated(
                lambda: rules.correct(
                    current, payload, editor=editor, vocabulary=self.vocabulary, limits=self.limits
                )
            )
            return Change("corrected", corrected, expected_version=current.version)

        pinned = isinstance(payload, dict) and "version" in payload
        item = await self._change(item_id, make, retry=not pinned)
        log.info("corrected %s v%d by %s", item.id, item.version, editor)
        return JSONResponse(item.to_dict())

    async def withdraw_item(self, request: Request) -> Response:
        editor = await self._editor(request)
        item_id = request.path_params["item_id"]

        def make(current: Item) -> Change:
            return Change(
                "withdrawn",
                rules.withdraw(current, editor=editor),
                expected_version=current.version,
            )

        item = await self._change(item_id, make, retry=True)
        log.info("withdrew %s by %s", item.id, editor)
        return JSONResponse(item.to_dict())

    async def _change(self, item_id: str, make: Callable[[Item], Change], *, retry: bool) -> Item:
        """Apply a change to the newest version; if another editor got there first, apply it
        again on top of theirs (unless the client pinned a version)."""
        for _ in range(CORRECTION_RETRIES if retry else 1):
            change = make(await self._live_item(item_id))
            try:
                return (await _call(self.broker.publish(change))).item
            except VersionConflict as exc:
                conflict = exc
        raise ApiError(
            409,
            "conflict",
            f"{item_id} changed while this change was being made "
            f"(now at version {conflict.current}); reload it and try again",
            fields={"version": f"is {conflict.current} now"},
        )

    async def _live_item(self, item_id: str) -> Item:
        item = await _call(self.broker.get(item_id)) if len(item_id) <= 64 else None
        if item is None:
            raise ApiError(
                404,
                "not_found",
                f"no live item {item_id[:64]!r}: it was withdrawn, expired, or never existed",
            )
        return item

    async def _editor(self, request: Request) -> str:
        editor = await _call(editor_for(self.broker.tokens, request.headers.get("authorization")))
        if editor is None:
            raise ApiError(
                401,
                "unauthorized",
                "an editor token is required: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="ticker"'},
            )
        return editor


# --- request helpers ------------------------------------------------------------------------


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except BrokerUnavailable as exc:
        raise ApiError(
            503,
            "unavailable",
            f"the ticker store is unreachable; retry shortly ({exc})",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None


def _validated(build: Callable[[], T]) -> T:
    try:
        return build()
    except ItemError as exc:
        message = "; ".join(f"{k} {v}" for k, v in exc.fields.items())
        raise ApiError(422, "invalid", message, fields=exc.fields) from None


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 128 or not key.isascii() or not key.isprintable():
        raise ApiError(
            400,
            "invalid_header",
            "Idempotency-Key must be 1-128 printable ASCII characters",
            fields={"Idempotency-Key": "invalid"},
        )
    return key


async def _read_json(request: Request, max_bytes: int) -> Any:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the item as application/json")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "too_large", f"the body must be at most {max_bytes} bytes")


def _public(response: Response) -> Response:
    """Readers' pages on other origins may read the public ticker."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return ApiError(
        500,
        "internal",
        "the publisher failed unexpectedly; nothing was changed unless the item shows otherwise",
    ).response()


async def _not_found(request: Request, exc: Exception) -> Response:
    return ApiError(404, "not_found", f"no route {request.url.path[:100]}").response()


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return ApiError(
        405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path[:100]}"
    ).response()


class SecurityHeaders:
    """A strict Content-Security-Policy and friends on every response: pages need no inline
    script or style, and may connect only to the publisher and the hub."""

    def __init__(self, app: ASGIApp, hub_url: str) -> None:
        self.app = app
        hub_origin = hub_url.split("/ws")[0]
        csp = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {hub_origin}; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'; object-src 'none'"
        )
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # The API answers with what is live now; static files may be cached briefly.
        static = scope["path"].startswith("/static/")
        cache = b"public, max-age=300" if static else b"no-store"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *self.headers,
                    (b"cache-control", cache),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
