"""The HTTP surface of Web Push: the public key, and subscribing and unsubscribing.

Both are public (readers subscribe from the browser, on the publisher's pages or a news
site's), so they are limited per client address, take small bodies only, and let any
origin call them (CORS). Errors have the API's shape: `error`, `message`, `fields`.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..brokers.base import BrokerUnavailable
from ..config import Settings
from ..openapi import operation, path
from ..ratelimit import Limit
from . import rules
from .store import PushStore

log = logging.getLogger("ticker.push")

BODY_MAX = 4096  # a PushSubscription and the reader's choices fit in well under 1 KB
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE",
    "Access-Control-Allow-Headers": "Content-Type, Push-Auth",
    "Access-Control-Max-Age": "600",
}

SUBSCRIPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["endpoint", "keys", "edition"],
    "properties": {
        "endpoint": {"type": "string", "format": "uri"},
        "expirationTime": {"type": ["number", "null"]},
        "keys": {
            "type": "object",
            "required": ["p256dh", "auth"],
            "properties": {"p256dh": {"type": "string"}, "auth": {"type": "string"}},
        },
        "edition": {"type": "string"},
        "urgency": {"type": "integer", "minimum": 1, "maximum": 9},
        "regions": {"type": "array", "items": {"type": "string"}},
        "categories": {"type": "array", "items": {"type": "string"}},
        "region": {"type": "string", "description": "one region, as in a ticker's URL"},
        "category": {"type": "string", "description": "one category, as in a ticker's URL"},
    },
}


class PushError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field:
            body["fields"] = {self.field: self.message}
        return JSONResponse(body, self.status, headers={**CORS, **(self.headers or {})})


NOT_CONFIGURED = (
    "push notifications are not configured on this service (no VAPID keys: "
    "`ticker push keys create`)"
)


class PushApi:
    def __init__(self, settings: Settings, store: PushStore, limit: Limit) -> None:
        self.settings = settings
        self.store = store
        self.limit = limit
        self.allowed = rules.parse_networks(settings.push_allow_networks)

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except BrokerUnavailable as exc:
            raise PushError(
                503,
                "unavailable",
                f"the ticker store is unreachable; retry shortly ({exc})",
                headers={"Retry-After": "2"},
            ) from None

    async def _configured(self) -> str:
        keys = await self._call(self.store.keys())
        if keys is None:
            raise PushError(404, "push_not_configured", NOT_CONFIGURED)
        return keys.public_key

    @operation(
        "The VAPID public key browsers subscribe with (applicationServerKey)",
        responses={
            200: (
                "the key, base64url (an uncompressed P-256 point)",
                {"type": "object", "required": ["publicKey"]},
            )
        },
        errors=(404, 503),
        tags=("push",),
    )
    async def key(self, request: Request) -> Response:
        try:
            public = await self._configured()
        except PushError as exc:
            return exc.response()
        return JSONResponse({"publicKey": public}, headers=CORS)

    @operation(
        "Subscribe a browser to push notifications",
        body=SUBSCRIPTION_SCHEMA,
        responses={201: ("the subscription (without its keys)", {"type": "object"})},
        errors=(400, 404, 413, 415, 422, 429, 503),
        tags=("push",),
        description="The body is the browser's PushSubscription JSON plus the reader's "
        "choices. Subscribing the same endpoint again replaces its choices.",
    )
    async def subscribe(self, request: Request) -> Response:
        try:
            await self._limited(request)
            await self._configured()
            payload = await _read_json(request)
            try:
                subscription = rules.parse(payload, self.settings.vocabulary, self.allowed)
            except rules.SubscriptionError as exc:
                raise PushError(422, "invalid", str(exc), exc.field) from None
            await self._call(self.store.add(subscription))
        except PushError as exc:
            return exc.response()
        log.info("push subscription %s for %s", subscription.id, subscription.edition)
        return JSONResponse(subscription.public(), 201, headers=CORS)

    @operation(
        "Unsubscribe a browser: the subscription's auth secret proves ownership",
        params=(
            path("subscription_id", "the id returned when subscribing"),
            {
                "name": "Push-Auth",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "the subscription's keys.auth, as the browser gave it",
            },
        ),
        responses={204: ("removed", None)},
        errors=(400, 404, 429, 503),
        tags=("push",),
    )
    async def unsubscribe(self, request: Request) -> Response:
        try:
            sid = request.path_params["subscription_id"]
            given = request.headers.get("push-auth", "")
            try:
                auth = rules.canonical_auth(given)
            except rules.SubscriptionError as exc:
                raise PushError(400, "invalid_header", str(exc), "Push-Auth") from None
            await self._limited(request)
            found = await self._call(self.store.get(sid)) if len(sid) <= 64 else None
            # A wrong secret looks like no subscription: it tells a stranger nothing.
            if found is None or not hmac.compare_digest(found.auth.encode(), auth.encode()):
                raise PushError(404, "not_found", "no push subscription with this id and secret")
            await self._call(self.store.remove(sid))
        except PushError as exc:
            return exc.response()
        return Response(status_code=204, headers=CORS)

    @operation(
        "CORS preflight for subscribing from a page on another origin",
        responses={204: ("the methods and headers allowed", None)},
        tags=("push",),
    )
    async def preflight(self, request: Request) -> Response:
        return Response(status_code=204, headers=CORS)

    @operation(
        "The service worker that shows push notifications (JavaScript)",
        responses={200: ("the script", {"type": "string"}, "text/javascript")},
        errors=(404,),
        tags=("pages",),
    )
    async def service_worker(self, request: Request) -> Response:
        return service_worker_response(self.settings)

    @operation(
        "CORS preflight for unsubscribing from a page on another origin",
        params=(path("subscription_id", "the id returned when subscribing"),),
        responses={204: ("the methods and headers allowed", None)},
        tags=("push",),
    )
    async def preflight_one(self, request: Request) -> Response:
        return Response(status_code=204, headers=CORS)

    async def _limited(self, request: Request) -> None:
        address = request.client.host if request.client else "unknown"
        verdict = await self.limit.hit(address)
        if not verdict.allowed:
            raise PushError(
                429,
                "rate_limited",
                f"too many push subscription changes from this address; retry in "
                f"{verdict.retry_after} s",
                headers={"Retry-After": str(verdict.retry_after)},
            )


async def _read_json(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise PushError(415, "unsupported_media_type", "send the subscription as application/json")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > BODY_MAX:
            raise PushError(413, "too_large", f"the body must be at most {BODY_MAX} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PushError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def service_worker_response(settings: Settings) -> Response:
    """web/sw.js at the root of the publisher, so its scope covers every page
    (`/`, `/demo`, `/live/...`). Revalidated on each update check (no-cache): a fixed
    worker reaches browsers at once."""
    path = settings.web_dir / "sw.js"
    if not path.is_file():
        return PushError(404, "not_found", "no service worker is installed").response()
    return Response(
        path.read_bytes(),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"},
    )
