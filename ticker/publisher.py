"""The publisher: the HTTP API and pages for the newsroom, as one Starlette app.

Every route is listed in `create_app`, so the whole HTTP surface fits on one screen.
Handlers are thin: the rules live in `items`, the storage in the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import archive, audit, auth, catchup, feeds, live_page, ninjs, openapi
from . import items as rules
from . import publisher_metrics as metrics
from .bodylimit import BodyLimit
from .bounds import in_ticker_order
from .brokers.base import (
    Broker,
    BrokerError,
    BrokerUnavailable,
    Change,
    IdempotencyMismatch,
    PinLimitReached,
    Published,
    VersionConflict,
)
from .config import RTL_EDITIONS, Settings
from .cursor_cache import CursorCache
from .events import Cursor
from .expiry import Retirer, expiry_sweeper
from .items import Item, ItemError
from .openapi import operation, path, query, ref
from .protocol import ProtocolError, parse_subscription
from .push.routes import PushApi
from .push.store import push_store_for
from .push.wiring import start_push_worker
from .ratelimit import Limit, Limits, Verdict
from .roles import ADMIN, CHIEF, Principal, RoleError
from .schedule import release_worker
from .static_assets import WidgetAssets
from .webhooks.api import WebhookApiError, WebhookRoutes

log = logging.getLogger("ticker.publisher")
T = TypeVar("T")

RETRY_AFTER_SECONDS = 2
CORRECTION_RETRIES = 3
LAST_USED_EVERY = 60.0  # seconds: how often a token's last use is written, per process
# What `_Api.principal(request, need=...)` asks of a token, and the 403 when it falls short.
NEEDS = {
    None: (lambda p: True, ""),
    "post": (lambda p: p.can_post_anywhere, "this needs the editor or chief role"),
    "admin": (lambda p: p.is_admin, "this needs the admin role"),
    "audit": (lambda p: p.is_admin or p.is_chief, "this needs the chief or admin role"),
}


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
        body: dict[str, Any] = {"error": self.code, "message": _encodable(self.message)}
        if self.fields:
            body["fields"] = {_encodable(k): _encodable(v) for k, v in self.fields.items()}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _encodable(text: str) -> str:
    """Error texts echo what the editor sent, which may hold lone surrogates (valid in JSON
    escapes, not in UTF-8): those are written out as the text `\\ud800`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def create_app(settings: Settings, broker: Broker, *, own_broker: bool = True) -> Starlette:
    guard = Limits(settings)  # posts per token, failed authentications per address
    # Every change an editor saves is counted on its way to the store.
    api = _Api(settings, metrics.CountingBroker(broker), guard)  # type: ignore[arg-type]
    web = settings.web_dir
    assets = WidgetAssets(web)
    hooks = WebhookRoutes(settings, broker, api.principal, api.by)  # docs/webhooks.md
    push_store = push_store_for(broker)
    push = PushApi(settings, push_store, Limit("push", settings.push_subscribe_rate, guard.storage))
    routes = [
        Route("/healthz", api.healthz),
        Route("/readyz", api.readyz),
        Route(
            "/metrics",
            operation(
                "The publisher's metrics, in the Prometheus text format",
                responses={200: ("the metrics", {"type": "string"}, "text/plain")},
                tags=("operations",),
            )(metrics.endpoint),
        ),
        Route("/api/config", api.config),
        Route("/api/whoami", api.whoami),
        Route("/api/items", api.list_items, methods=["GET"]),
        Route("/api/items", api.post_item, methods=["POST"]),
        Route("/api/items/{item_id}", api.get_item, methods=["GET"]),
        Route("/api/items/{item_id}", api.correct_item, methods=["PATCH"]),
        Route("/api/items/{item_id}", api.withdraw_item, methods=["DELETE"]),
        Route("/api/scheduled", api.list_scheduled, methods=["GET"]),
        Route("/api/events", api.events, methods=["GET"]),
        Route("/api/tokens", api.list_tokens, methods=["GET"]),
        Route("/api/tokens", api.create_token, methods=["POST"]),
        Route("/api/tokens/{name}", api.revoke_token, methods=["DELETE"]),
        Route("/api/tokens/{name}/rotate", api.rotate_token, methods=["POST"]),
        Route("/api/audit", api.read_audit, methods=["GET"]),
        Route("/api/webhooks", hooks.list, methods=["GET"]),
        Route("/api/webhooks", hooks.create, methods=["POST"]),
        Route("/api/webhooks/{webhook_id}", hooks.get, methods=["GET"]),
        Route("/api/webhooks/{webhook_id}", hooks.delete, methods=["DELETE"]),
        Route("/api/webhooks/{webhook_id}/test", hooks.test, methods=["POST"]),
        Route("/api/webhooks/{webhook_id}/enable", hooks.enable, methods=["POST"]),
        Route("/api/webhooks/{webhook_id}/deliveries", hooks.deliveries, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/feeds/{edition}.rss", api.feed_rss, methods=["GET"]),
        Route("/feeds/{edition}.atom", api.feed_atom, methods=["GET"]),
        Route("/feeds/{edition}.json", api.feed_json, methods=["GET"]),
        Route("/live/{edition}", api.live, methods=["GET"]),
        Route("/api/push/key", push.key, methods=["GET"]),
        Route("/api/push/subscriptions", push.subscribe, methods=["POST"]),
        Route("/api/push/subscriptions", push.preflight, methods=["OPTIONS"]),
        Route("/api/push/subscriptions/{subscription_id}", push.unsubscribe, methods=["DELETE"]),
        Route("/api/push/subscriptions/{subscription_id}", push.preflight_one, methods=["OPTIONS"]),
        Route("/sw.js", push.service_worker, methods=["GET"]),
        *_pages({"/": web / "console.html", "/demo": web / "demo.html"}, assets),
        Mount("/static", assets.wrap(StaticFiles(directory=web, check_dir=False)), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if own_broker:
            try:
                await broker.start()
            except BrokerUnavailable as exc:
                # Serve anyway: the API answers 503 until the store is back, and /readyz says so.
                log.warning("store unreachable at start-up: %s", exc)
        limits = settings.limits
        caps = (settings.vocabulary.editions, limits.max_live)
        workers = [
            asyncio.create_task(expiry_sweeper(broker, caps=caps), name="expiry-sweeper"),
            asyncio.create_task(
                release_worker(
                    broker,
                    max_live=limits.max_live,
                    max_pinned=limits.max_pinned,
                    wake=api.scheduled_wake,
                ),
                name="release-worker",
            ),
            start_push_worker(settings, broker),
        ]
        hooks.start()
        try:
            yield
        finally:
            await hooks.stop()
            for worker in workers:
                worker.cancel()
            for worker in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await guard.close()
            if own_broker:
                await broker.close()

    app = _Publisher(
        hub_url=settings.hub_url(),
        routes=routes,
        middleware=[
            Middleware(CatchUnexpected),
            # Sees every answer but the last-resort 500s, which it counts itself.
            Middleware(metrics.RequestMetrics, routes=routes),
            Middleware(
                BodyLimit,
                max_bytes=settings.limits.body_max_bytes,
                routes=routes,
                on_refusal=metrics.TOO_LARGE.inc,
            ),
        ],
        exception_handlers={
            ApiError: _api_error,
            WebhookApiError: _api_error,
            404: _not_found,
            405: _not_allowed,
        },
        lifespan=lifespan,
    )
    return app


class _Publisher(Starlette):
    """The app with `SecurityHeaders` outside everything, Starlette's own last-resort error
    answer included, so no answer ever goes out without them."""

    def __init__(self, *, hub_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hub_url = hub_url

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), hub_url=self.hub_url)


def _pages(pages: dict[str, Path], assets: WidgetAssets) -> list[Route]:
    """Routes for the HTML pages that are installed, pointing at the versioned widget."""

    def page(file: Path) -> Callable[[Request], Awaitable[Response]]:
        html = assets.page(file.read_text("utf-8"))  # once: the pages are part of the release

        @operation(
            f"The {file.stem} page (HTML)",
            responses={200: ("the page", {"type": "string"}, "text/html")},
            tags=("pages",),
        )
        async def endpoint(request: Request) -> Response:
            return Response(html, media_type="text/html; charset=utf-8")

        return endpoint

    return [Route(url, page(path)) for url, path in pages.items() if path.is_file()]


# The vocabulary is configuration: openapi.document fills in the enums of these three.
EDITION = query("edition", {"type": "string"}, "the edition, e.g. en", required=True)
REGION = query("region", {"type": "string"}, "only items tagged with this region")
CATEGORY = query("category", {"type": "string"}, "only items tagged with this category")
FORMAT = query(
    "format",
    {"type": "string", "enum": ["ninjs", "ninjs3"]},
    "ninjs: IPTC ninjs 2.2; ninjs3: IPTC ninjs 3.1",
)

ARCHIVE_PARAMS = (
    query(
        "status",
        {"type": "string", "enum": list(archive.STATUSES)},
        "live (the default) lists the live ticker; all, withdrawn or expired search the archive",
    ),
    query(
        "q",
        {"type": "string", "minLength": 1, "maxLength": archive.Q_MAX},
        "archive: words that must all be in the headline (any case, with or without accents)",
    ),
    query(
        "editor",
        {"type": "string", "minLength": 1, "maxLength": archive.EDITOR_MAX},
        "archive: items this editor posted, corrected or withdrew",
    ),
    query("from", {"type": "string"}, "archive: posted at or after (ISO 8601; UTC if no offset)"),
    query("to", {"type": "string"}, "archive: posted before (ISO 8601; UTC if no offset)"),
    query("cursor", {"type": "string"}, "archive: the `next` of the previous page"),
    query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": archive.MAX_LIMIT},
        f"archive: items per page (default {archive.DEFAULT_LIMIT})",
    ),
)


class _Api:
    def __init__(self, settings: Settings, broker: Broker, guard: Limits) -> None:
        self.settings = settings
        self.broker = broker
        self.guard = guard
        self.vocabulary = settings.vocabulary
        self.limits = settings.limits
        self._openapi: dict[str, Any] | None = None
        self.freshness = feeds.Freshness()
        self.cursors = CursorCache(broker)  # what conditional GETs compare against
        self.retirer = Retirer(broker, settings.limits.max_live)  # the cap, after each post
        self._used: dict[str, float] = {}  # token name -> when its last use was written
        self._background: set[asyncio.Task[None]] = set()
        # Set when an item is scheduled, so the release worker plans for it at once.
        self.scheduled_wake = asyncio.Event()

    # --- public ---------------------------------------------------------------------------

    @operation("Liveness: 200 while the process runs", responses={200: ("alive", ref("Status"))})
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @operation(
        "Readiness: 200 when the store answers",
        responses={200: ("ready", ref("Status"))},
        errors=(503,),
    )
    async def readyz(self, request: Request) -> Response:
        await _call(self.broker.ping())
        return JSONResponse({"status": "ready"})

    @operation(
        "Editions, regions, categories, limits and the hub's URL",
        responses={200: ("the configuration pages need", {"type": "object"})},
    )
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
                        "schedule_seconds": self.limits.max_schedule_seconds,
                        "live_items": self.limits.max_live,
                        "pinned_items": self.limits.max_pinned,
                    },
                    "hub_url": self.settings.hub_url(),
                }
            )
        )

    @operation(
        "The current ticker of an edition (pinned items first), or its archive",
        description="Without archive parameters (a status other than live, q, editor, from, "
        "to, cursor, limit): the live items, pinned items first, then newest first, with the "
        "edition's cursor, for anyone. With any of them: a page of the archive, every item "
        "ever posted at its latest version, newest first, which needs a token (docs/api.md).",
        params=(EDITION, REGION, CATEGORY, FORMAT, *ARCHIVE_PARAMS),
        responses={
            200: (
                "the live items, or a page of the archive",
                {"anyOf": [ref("ItemList"), ref("ArchivePage")]},
            )
        },
        errors=(400, 401, 429, 503),
    )
    async def list_items(self, request: Request) -> Response:
        params = request.query_params
        if archive.is_archive_query(params):
            return await self._archive(request)
        render = _renderer(params.get("format"))
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
        live = in_ticker_order(i for i in live if rules.matches(i, region, category))
        if render:
            live = [render(Item.from_dict(i)) for i in live]
        return _public(JSONResponse({"edition": edition, "cursor": str(cursor), "items": live}))

    async def _archive(self, request: Request) -> Response:
        """A page of the archive. Withdrawn items were taken down for a reason, so the
        archive is for the newsroom (any valid token), and never cached by anyone between."""
        await self.principal(request)  # any valid token: the archive is the newsroom's own
        params = request.query_params
        try:
            query = archive.parse_query(
                {name: params.getlist(name) for name in params}, self.vocabulary
            )
        except archive.QueryError as exc:
            raise ApiError(
                400, "invalid_parameter", str(exc), fields={exc.field: str(exc)}
            ) from None
        page = await _call(self.broker.archive(query))
        after = None if page.next is None else archive.encode_cursor(page.next)
        body = {"edition": query.edition, "status": query.status, "items": page.items}
        return JSONResponse({**body, "next": after}, headers={"Cache-Control": "private, no-store"})

    @operation(
        "What changed since a cursor (catch-up)",
        params=(
            EDITION,
            query("since", {"type": "string"}, "the cursor of the last answer"),
            REGION,
            CATEGORY,
            query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most"),
        ),
        responses={
            200: ("the events after the cursor, or a snapshot", ref("Events")),
            304: ("nothing changed since the ETag sent in If-None-Match", None),
        },
        errors=(400, 503),
    )
    async def events(self, request: Request) -> Response:
        """What changed since a cursor: for readers that pull (docs/api.md)."""
        params = request.query_params
        unknown = sorted(set(params.keys()) - {"edition", "region", "category", "since", "limit"})
        if unknown:
            raise ApiError(400, "invalid_parameter", f"unknown parameter {unknown[0][:40]!r}")
        if any(len(params.getlist(name)) > 1 for name in params):
            raise ApiError(400, "invalid_parameter", "each parameter may be given once")
        try:
            wanted = {n: params.get(n) for n in ("edition", "region", "category", "since")}
            subscription, since = parse_subscription(wanted, self.vocabulary)
        except ProtocolError as exc:
            raise ApiError(400, "invalid_parameter", exc.reason) from None
        limit = _limit(params.get("limit"))
        edition = subscription.edition
        tag = catchup.etag(await _call(self.cursors.get(edition)))
        headers = {"ETag": tag, "Cache-Control": "public, no-cache"}
        if feeds.not_modified(request.headers, tag, None):  # the feeds' own If-None-Match rules
            return _public(Response(status_code=304, headers=headers))
        state = await _call(self.broker.state(edition))
        answer = catchup.catch_up(
            state,
            subscription,
            since,
            limit=limit,
            history=self.limits.history,
            heartbeat=self.settings.heartbeat_interval,
        )
        headers["ETag"] = catchup.etag(state.cursor)
        return _public(
            Response(answer.body(edition), media_type="application/json", headers=headers)
        )

    @operation(
        "One live item",
        params=(path("item_id", "the item's id"), FORMAT),
        responses={200: ("the item (or its ninjs form)", {"type": "object"})},
        errors=(400, 404, 503),
    )
    async def get_item(self, request: Request) -> Response:
        render = _renderer(request.query_params.get("format"))
        item = await self._live_item(request.path_params["item_id"])
        body = render(item) if render else item.to_dict()
        return _public(JSONResponse(body))

    @operation(
        "This description (OpenAPI 3.1)",
        responses={200: ("the OpenAPI document", {"type": "object"})},
    )
    async def openapi(self, request: Request) -> Response:
        if self._openapi is None:
            described = [
                (route.path, method, route.endpoint)
                for route in request.app.routes
                if isinstance(route, Route)  # every route but the static files' mount
                for method in sorted((route.methods or set()) - {"HEAD"})
            ]
            self._openapi = openapi.document(described, self.settings)
        return _public(JSONResponse(self._openapi))

    @operation(
        "The newest live items of an edition as RSS 2.0",
        params=(path("edition", "the edition, e.g. en"), REGION, CATEGORY),
        responses={
            200: ("the feed", {"type": "string"}, "application/rss+xml"),
            304: ("not modified since the ETag or date sent", None),
        },
        errors=(400, 404, 503),
        tags=("feeds",),
    )
    async def feed_rss(self, request: Request) -> Response:
        return await self._feed(request, "rss")

    @operation(
        "The newest live items of an edition as Atom 1.0",
        params=(path("edition", "the edition, e.g. en"), REGION, CATEGORY),
        responses={
            200: ("the feed", {"type": "string"}, "application/atom+xml"),
            304: ("not modified since the ETag or date sent", None),
        },
        errors=(400, 404, 503),
        tags=("feeds",),
    )
    async def feed_atom(self, request: Request) -> Response:
        return await self._feed(request, "atom")

    @operation(
        "The newest live items of an edition as JSON Feed 1.1",
        params=(path("edition", "the edition, e.g. en"), REGION, CATEGORY),
        responses={
            200: ("the feed", {"type": "object"}, "application/feed+json"),
            304: ("not modified since the ETag or date sent", None),
        },
        errors=(400, 404, 503),
        tags=("feeds",),
    )
    async def feed_json(self, request: Request) -> Response:
        return await self._feed(request, "json")

    @operation(
        "The live ticker as an HTML page with schema.org LiveBlogPosting data",
        params=(path("edition", "the edition, e.g. en"), REGION, CATEGORY),
        responses={200: ("the page", {"type": "string"}, "text/html")},
        errors=(400, 404, 503),
        tags=("pages",),
    )
    async def live(self, request: Request) -> Response:
        query = self._feed_query(request)
        _, live = await _call(self.broker.live(query.edition))
        now = datetime.now(UTC)
        html = live_page.render(
            query, feeds.select(live, query, now), base_url=str(request.base_url), now=now
        )
        return HTMLResponse(html, headers={"Cache-Control": feeds.CACHE_CONTROL})

    async def _feed(self, request: Request, kind: str) -> Response:
        query = self._feed_query(request)

        def ask(cursor: Cursor, live: list[dict[str, Any]] | None) -> feeds.FeedAnswer | None:
            return feeds.answer(
                kind,
                query,
                cursor,
                live,
                request_headers=request.headers,
                base_url=str(request.base_url),
                self_url=str(request.url),
                now=datetime.now(UTC),
                freshness=self.freshness,
            )

        # A reader that has the current feed needs only the cursor: one cheap read.
        answer = ask(await _call(self.cursors.get(query.edition)), None)
        if answer is None:
            answer = ask(*await _call(self.broker.live(query.edition)))
        assert answer is not None
        return Response(
            answer.body, answer.status, headers=answer.headers, media_type=answer.media_type
        )

    def _feed_query(self, request: Request) -> feeds.FeedQuery:
        try:
            return feeds.parse_query(
                request.path_params["edition"], request.query_params.multi_items(), self.vocabulary
            )
        except feeds.FeedRequestError as exc:
            code = "not_found" if exc.status == 404 else "invalid_parameter"
            raise ApiError(exc.status, code, exc.reason) from None

    # --- editors --------------------------------------------------------------------------

    @operation(
        "Who a token belongs to: its name, roles, editions (null: all) and expiry",
        responses={200: ("the token's holder", ref("Whoami"))},
        errors=(503,),
        editor=True,
    )
    async def whoami(self, request: Request) -> Response:
        principal = await self.principal(request)
        return JSONResponse({"editor": principal.name, **principal.to_dict()})

    @operation(
        "Post an item",
        body=ref("NewItem"),
        responses={201: ("the item as posted (or as first posted, on a retry)", ref("Item"))},
        errors=(400, 403, 413, 415, 422, 503),
        editor=True,
        idempotent_post=True,
    )
    async def post_item(self, request: Request) -> Response:
        principal = await self.principal(request, need="post")
        editor = principal.name
        key = _idempotency_key(request)
        payload = await _read_json(request, self.limits.body_max_bytes)
        item = _validated(
            lambda: rules.create(
                payload, editor=editor, vocabulary=self.vocabulary, limits=self.limits
            )
        )
        _in_scope(principal, item)
        change = Change(
            "posted",
            item,
            idempotency_key=f"{editor}:{key}" if key else None,
            fingerprint=rules.fingerprint(payload),
            audit=audit.for_item("posted", None, item, self.by(request, principal)),
            max_pinned=self.limits.max_pinned,
        )
        try:
            published = await self._post(change)
            self.cursors.forget(item.edition)
        except IdempotencyMismatch:
            raise ApiError(
                422,
                "idempotency_key_reused",
                f"this Idempotency-Key was already used in edition {item.edition} for a "
                "different item; use a new key for a new item",
            ) from None
        headers = {"Location": f"/api/items/{published.item.id}"}
        if published.replayed:
            headers["Idempotent-Replayed"] = "true"
        log.info("%s %s v%d by %s", item.status, item.id, published.item.version, editor)
        return JSONResponse(published.item.to_dict(), status_code=201, headers=headers)

    async def _post(self, change: Change) -> Published:
        """A new item: kept apart until its time if it is scheduled, else live at once,
        and then the oldest item past the edition's cap retires."""
        item = change.item
        if item.scheduled:
            published = await _call(
                self.broker.schedule(
                    item,
                    idempotency_key=change.idempotency_key,
                    fingerprint=change.fingerprint,
                    audit=None
                    if change.audit is None
                    else replace(change.audit, action="scheduled"),
                )
            )
            self.scheduled_wake.set()
            return published
        published = await _pinned_within(self.limits.max_pinned, self.broker.publish(change))
        if not published.replayed:
            try:
                await self.retirer.after_post(item.edition)
            except BrokerError as exc:
                # The item is posted: its answer stands, and the sweeper retires the rest.
                log.warning(
                    "retiring past the cap of %s after a post failed: %s", item.edition, exc
                )
        return published

    @operation(
        "The scheduled items of an edition, soonest first: not yet live, seen only by editors",
        params=(EDITION,),
        responses={200: ("the scheduled items", ref("ScheduledList"))},
        errors=(400, 403, 503),
        editor=True,
    )
    async def list_scheduled(self, request: Request) -> Response:
        await self.principal(request, need="post")
        edition = request.query_params.get("edition")
        if edition not in self.vocabulary.editions:
            raise ApiError(
                400,
                "invalid_parameter",
                f"edition must be one of {', '.join(self.vocabulary.editions)}",
                fields={"edition": "unknown" if edition else "is required"},
            )
        waiting = await _call(self.broker.scheduled(edition))
        return JSONResponse({"edition": edition, "items": [i.to_dict() for i in waiting]})

    @operation(
        "Correct a live or scheduled item: only the fields given change",
        params=(path("item_id", "the item's id"),),
        body=ref("Correction"),
        responses={200: ("the corrected item", ref("Item"))},
        errors=(400, 403, 404, 409, 413, 415, 422, 503),
        editor=True,
    )
    async def correct_item(self, request: Request) -> Response:
        principal = await self.principal(request, need="post")
        editor = principal.name
        payload = await _read_json(request, self.limits.body_max_bytes)
        item_id = request.path_params["item_id"]
        by = self.by(request, principal)

        def make(current: Item) -> Change:
            _in_scope(principal, current)
            corrected = _validated(
                lambda: rules.correct(
                    current, payload, editor=editor, vocabulary=self.vocabulary, limits=self.limits
                )
            )
            return Change(
                "corrected",
                corrected,
                expected_version=current.version,
                audit=audit.for_item("corrected", current, corrected, by),
                max_pinned=self.limits.max_pinned,
            )

        pinned = isinstance(payload, dict) and "version" in payload
        item = await self._change(item_id, make, retry=not pinned)
        log.info("corrected %s v%d by %s", item.id, item.version, editor)
        return JSONResponse(item.to_dict())

    @operation(
        "Withdraw a live item, or cancel a scheduled one before it goes live",
        params=(path("item_id", "the item's id"),),
        responses={200: ("the withdrawn item", ref("Item"))},
        errors=(403, 404, 409, 503),
        editor=True,
    )
    async def withdraw_item(self, request: Request) -> Response:
        principal = await self.principal(request, need="post")
        editor = principal.name
        item_id = request.path_params["item_id"]
        by = self.by(request, principal)

        def make(current: Item) -> Change:
            _in_scope(principal, current)
            withdrawn = rules.withdraw(current, editor=editor)
            return Change(
                "withdrawn",
                withdrawn,
                expected_version=current.version,
                audit=audit.for_item("withdrawn", current, withdrawn, by),
            )

        item = await self._change(item_id, make, retry=True)
        log.info("withdrew %s by %s", item.id, editor)
        return JSONResponse(item.to_dict())

    async def _change(self, item_id: str, make: Callable[[Item], Change], *, retry: bool) -> Item:
        """Apply a change to the newest version; if another editor got there first, apply it
        again on top of theirs (unless the client pinned a version). A scheduled item is
        changed where it waits, or dropped when withdrawn; if it went live meanwhile, the
        change applies to the live item (or conflicts, with a pinned version)."""
        for _ in range(CORRECTION_RETRIES if retry else 1):
            current = await self._editable_item(item_id)
            try:
                item = await self._apply(make(current), scheduled=current.scheduled)
            except VersionConflict as exc:
                conflict = exc
                continue
            self.cursors.forget(item.edition)
            return item
        raise ApiError(
            409,
            "conflict",
            f"{item_id} changed while this change was being made "
            f"(now at version {conflict.current}); reload it and try again",
            fields={"version": f"is {conflict.current} now"},
        )

    async def _apply(self, change: Change, *, scheduled: bool) -> Item:
        if not scheduled:
            published = self.broker.publish(change)
            return (await _pinned_within(self.limits.max_pinned, published)).item
        assert change.expected_version is not None
        if change.kind == "withdrawn":
            await _call(
                self.broker.unschedule(change.item.id, change.expected_version, audit=change.audit)
            )
            return change.item
        await _call(self.broker.schedule(change.item, change.expected_version, audit=change.audit))
        self.scheduled_wake.set()
        return change.item

    async def _editable_item(self, item_id: str) -> Item:
        """The live item, or the scheduled one: editors may change either."""
        if len(item_id) <= 64:
            waiting = await _call(self.broker.get_scheduled(item_id))
            if waiting is not None:
                return waiting
        return await self._live_item(item_id)

    async def _live_item(self, item_id: str) -> Item:
        item = await _call(self.broker.get(item_id)) if len(item_id) <= 64 else None
        if item is None:
            raise ApiError(
                404,
                "not_found",
                f"no live item {item_id[:64]!r}: it was withdrawn, expired, or never existed",
            )
        return item

    async def principal(self, request: Request, need: str | None = None) -> Principal:
        """The holder of the request's token, allowed what `need` asks: None (any valid
        token), "post" (editor or chief), "admin", or "audit" (chief or admin). Every
        handler that takes a token calls this, once, first: one read of the store.

        401 says whether the token is missing or unknown, revoked or expired; 403 names
        the role needed. Failed authentications count against the address: past its
        limit, a failure is a 429, so guessing tokens costs a whole window per handful of
        guesses. A good token always passes, so a stranger failing from a newsroom's
        shared address cannot lock its editors out. Changes count against the token."""
        try:
            principal, record = await _call(
                auth.authenticate(
                    self.broker.tokens,
                    request.headers.get("authorization"),
                    legacy_roles=self.settings.legacy_token_role,
                    now=datetime.now(UTC),
                )
            )
        except auth.Unauthenticated as exc:
            metrics.AUTH_FAILURES.inc()
            address = request.client.host if request.client else "unknown"
            _within(await self.guard.auth_failures.hit(address), "auth_failures")
            code = {"revoked": "token_revoked", "expired": "token_expired"}
            raise ApiError(
                401,
                code.get(exc.reason, "unauthorized"),
                exc.message,
                headers={"WWW-Authenticate": 'Bearer realm="ticker"'},
            ) from None
        allowed, refusal = NEEDS[need]
        if not allowed(principal):
            raise ApiError(
                403,
                "forbidden",
                f"{refusal}; token {principal.name!r} has {', '.join(sorted(principal.roles))}",
            )
        if request.method in ("POST", "PATCH", "DELETE"):
            _within(await self.guard.posts.hit(principal.name), "posts")
        self._note_use(record.name)
        return principal

    def by(self, request: Request, principal: Principal, role: str | None = None) -> audit.Request:
        """Who made a change and from where, for its audit entry. The address is the
        client's as uvicorn reads it, X-Forwarded-For believed only from
        TICKER_TRUSTED_PROXIES."""
        return audit.Request(
            actor=principal.name,
            role=role or principal.acting_role(),
            address=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
        )

    def _note_use(self, name: str) -> None:
        """Write when a token was last used, at most once a minute per token and process,
        in the background: a post never waits for it, and a failure only costs the note."""
        now = time.monotonic()
        if now - self._used.get(name, float("-inf")) < LAST_USED_EVERY:
            return
        if len(self._used) > 10_000:
            self._used.clear()
        self._used[name] = now
        task = asyncio.create_task(self._touch(name))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _touch(self, name: str) -> None:
        try:
            await self.broker.tokens.touch(name, rules.now_iso())
        except BrokerError as exc:
            log.debug("could not note the use of token %s: %s", name, exc)

    # --- admins ---------------------------------------------------------------------------

    @operation(
        "The tokens that are not revoked (never their secrets); admins only",
        responses={200: ("the tokens", ref("TokenList"))},
        errors=(403, 503),
        editor=True,
        tags=("admin",),
    )
    async def list_tokens(self, request: Request) -> Response:
        await self.principal(request, need="admin")
        records = await _call(self.broker.tokens.records())
        legacy = self.settings.legacy_token_role
        return JSONResponse({"tokens": [auth.describe(r, legacy) for r in records]})

    @operation(
        "Create a token; its secret is in this answer only; admins only",
        body=ref("NewToken"),
        responses={201: ("the token and its secret", ref("CreatedToken"))},
        errors=(400, 403, 409, 413, 415, 422, 503),
        editor=True,
        tags=("admin",),
    )
    async def create_token(self, request: Request) -> Response:
        principal = await self.principal(request, need="admin")
        payload = await _read_json(request, self.limits.body_max_bytes)
        if not isinstance(payload, dict):
            raise ApiError(422, "invalid", "the body is a JSON object", fields={"body": "object"})
        unknown = sorted(set(payload) - {"name", "roles", "editions", "expires"})
        if unknown:
            field = str(unknown[0])[:40]
            raise ApiError(422, "invalid", f"{field}: unknown field", fields={field: "unknown"})
        name = payload.get("name")
        try:
            if not isinstance(name, str):
                raise auth.TokenError("a token name is a string")
            auth.check_name(name)
        except auth.TokenError as exc:
            raise ApiError(422, "invalid", f"name: {exc}", fields={"name": str(exc)}) from None
        try:
            spec = auth.token_spec(
                payload.get("roles"),
                payload.get("editions"),
                payload.get("expires"),
                known=self.vocabulary.editions,
                now=datetime.now(UTC),
            )
        except RoleError as exc:
            field = "roles" if exc.field == "role" else exc.field
            raise ApiError(
                422, "invalid", f"{field}: {exc.message}", fields={field: exc.message}
            ) from None
        try:
            secret = await _call(
                auth.issue(self.broker.tokens, name, spec, self.by(request, principal, ADMIN))
            )
        except BrokerError as exc:
            if isinstance(exc, BrokerUnavailable):
                raise
            raise ApiError(409, "conflict", str(exc), fields={"name": "taken"}) from None
        log.info("token %s created by %s", name, principal.name)
        body = {
            "name": name,
            "roles": list(spec.roles),
            "editions": None if spec.editions is None else list(spec.editions),
            "expires": spec.expires,
            "token": secret,
        }
        return JSONResponse(body, status_code=201)

    @operation(
        "Revoke a token: it stops working on the next request; admins only",
        params=(path("name", "the token's name"),),
        responses={200: ("revoked", {"type": "object"})},
        errors=(403, 404, 503),
        editor=True,
        tags=("admin",),
    )
    async def revoke_token(self, request: Request) -> Response:
        principal = await self.principal(request, need="admin")
        name = request.path_params["name"]
        by = self.by(request, principal, ADMIN)
        if not await _call(auth.revoke(self.broker.tokens, name, by)):
            raise _no_token(name)
        log.info("token %s revoked by %s", name, principal.name)
        return JSONResponse({"revoked": name})

    @operation(
        "A new secret for a token, same name, roles and scope; the old one stops working",
        params=(path("name", "the token's name"),),
        responses={200: ("the new secret", ref("CreatedToken"))},
        errors=(403, 404, 503),
        editor=True,
        tags=("admin",),
    )
    async def rotate_token(self, request: Request) -> Response:
        principal = await self.principal(request, need="admin")
        name = request.path_params["name"]
        by = self.by(request, principal, ADMIN)
        secret = await _call(auth.rotate(self.broker.tokens, name, by))
        if secret is None:
            raise _no_token(name)
        log.info("token %s rotated by %s", name, principal.name)
        return JSONResponse({"name": name, "token": secret})

    @operation(
        "The audit trail, newest first; chiefs and admins only",
        params=(
            query("item", {"type": "string"}, "only this item's changes"),
            query("editor", {"type": "string"}, "only changes by this token name"),
            query("edition", {"type": "string"}, "only this edition's changes"),
            query("from", {"type": "string", "format": "date-time"}, "not before (ISO 8601)"),
            query("to", {"type": "string", "format": "date-time"}, "not after (ISO 8601)"),
            query("cursor", {"type": "string"}, "the `cursor` of the previous page"),
            query(
                "limit", {"type": "integer", "minimum": 1, "maximum": audit.MAX_LIMIT}, "at most"
            ),
        ),
        responses={200: ("a page of entries", ref("AuditPage"))},
        errors=(400, 403, 503),
        editor=True,
        tags=("admin",),
    )
    async def read_audit(self, request: Request) -> Response:
        await self.principal(request, need="audit")
        params = request.query_params
        if any(len(params.getlist(name)) > 1 for name in params):
            raise ApiError(400, "invalid_parameter", "each parameter may be given once")
        try:
            wanted = audit.parse_query(dict(params), self.vocabulary.editions)
            page = await _call(self.broker.audit.query(wanted, datetime.now(UTC)))
        except audit.AuditQueryError as exc:
            raise ApiError(
                400, "invalid_parameter", str(exc), fields={exc.field: exc.message}
            ) from None
        return JSONResponse({"entries": [e.to_dict() for e in page.entries], "cursor": page.cursor})


def _no_token(name: str) -> ApiError:
    return ApiError(404, "not_found", f"no token named {name[:64]!r} (or it is revoked)")


def _in_scope(principal: Principal, item: Item) -> None:
    """An editor works in the editions of its scope; a chief everywhere."""
    if not principal.can_post(item.edition):
        raise ApiError(
            403,
            "forbidden",
            f"token {principal.name!r} may not change items in edition {item.edition!r}: "
            f"it is not in its editions ({', '.join(principal.editions or ())}); this needs "
            f"an editor of {item.edition!r} or the {CHIEF} role",
            fields={"edition": "out of scope"},
        )


_LIMITED = {
    "posts": "too many changes from this editor token",
    "auth_failures": "too many failed authentications from this address",
}


def _within(verdict: Verdict, limit: str) -> None:
    """Raise a 429 if `verdict` refuses."""
    if not verdict.allowed:
        metrics.RATE_LIMITED.labels(limit).inc()
        raise ApiError(
            429,
            "rate_limited",
            f"{_LIMITED[limit]}; retry in {verdict.retry_after} s",
            headers={"Retry-After": str(verdict.retry_after)},
        )


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


def _renderer(fmt: str | None) -> Callable[[Item], dict[str, Any]] | None:
    try:
        return ninjs.renderer(fmt)
    except ninjs.UnknownFormat as exc:
        raise ApiError(400, "invalid_parameter", str(exc), fields={"format": "unknown"}) from None


async def _pinned_within(limit: int, publishing: Awaitable[Published]) -> Published:
    try:
        return await _call(publishing)
    except PinLimitReached:
        raise ApiError(
            409,
            "pin_limit",
            f"at most {limit} items of an edition can be pinned: unpin one first",
            fields={"pinned": f"at most {limit} pinned items per edition"},
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
    if declared and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
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


def _limit(raw: str | None) -> int:
    if raw is None:
        return catchup.DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= catchup.MAX_LIMIT:
        raise ApiError(
            400, "invalid_parameter", f"limit must be a whole number from 1 to {catchup.MAX_LIMIT}"
        )
    return int(raw)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "too_large", f"the body must be at most {max_bytes} bytes")


def _public(response: Response) -> Response:
    """Readers' pages on other origins may read the public ticker."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError | WebhookApiError)
    return exc.response()


def _unexpected(method: str) -> Response:
    if method in ("GET", "HEAD", "OPTIONS"):
        message = "the publisher failed unexpectedly; nothing was changed"
    else:
        # The failure may have come after the store saved the change.
        message = (
            "the publisher failed unexpectedly; the change may or may not have been saved: "
            "reload the item before trying again (a post retried with the same "
            "Idempotency-Key lands only once)"
        )
    return ApiError(500, "internal", message).response()


async def _not_found(request: Request, exc: Exception) -> Response:
    return ApiError(404, "not_found", f"no route {request.url.path[:100]}").response()


async def _not_allowed(request: Request, exc: Exception) -> Response:
    # RFC 9110 asks for every method the resource serves, which may be several routes.
    methods = {
        method
        for route in request.app.routes
        if isinstance(route, Route) and route.path_regex.match(request.url.path)
        for method in route.methods or ()
    }
    return ApiError(
        405,
        "method_not_allowed",
        f"{request.method} is not allowed on {request.url.path[:100]}",
        headers={"Allow": ", ".join(sorted(methods))} if methods else None,
    ).response()


class CatchUnexpected:
    """A bug in a handler becomes one log line with its traceback and a JSON 500, and the
    connection stays open. (Starlette's own error middleware answers too, but then raises
    again, and uvicorn drops the keep-alive connection when an app raises.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if started:
                raise  # half an answer is out: only closing the connection can say so
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            await _unexpected(scope["method"])(scope, receive, send)


class SecurityHeaders:
    """A strict Content-Security-Policy and friends on every response: pages need no inline
    script or style, and may connect only to the publisher and the hub."""

    def __init__(self, app: ASGIApp, hub_url: str) -> None:
        self.app = app
        hub_origin = "" if hub_url.startswith("/") else hub_url.split("/ws")[0]  # '/ws': 'self'
        # The widget reads the same hub as Server-Sent Events where WebSockets fail.
        stream_origin = hub_origin.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
        if stream_origin != hub_origin:
            hub_origin = f"{hub_origin} {stream_origin}"
        connect = " ".join(["'self'", *hub_origin.split()])
        csp = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src {connect}; "
            "frame-ancestors 'none'; base-uri 'none'; "
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
                headers = list(message.get("headers", []))
                # A route that chose its own caching (feeds, catch-up) keeps it.
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", cache))
                message["headers"] = [*headers, *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
