"""The webhook routes of the publisher (docs/api.md#webhooks), for admins only.

The publisher hands in how a request is authorized (its token check, with the same
failure limits as every route) and who made it, for the audit trail.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import audit
from ..brokers.base import Broker, BrokerUnavailable
from ..config import Settings
from ..items import now_iso
from ..openapi import operation, path
from ..roles import Principal
from . import rules
from .audit import record_audit
from .rules import RegistrationError, Webhook
from .store import WebhookStore, webhook_store
from .worker import Dispatcher, WorkerSettings, send_test, worker_settings

WEBHOOK_ID = path("webhook_id", "the webhook's id, wh_...")
_OBJECT = {"type": "object"}
_TAGS = ("webhooks",)
_NEW_WEBHOOK = {
    "type": "object",
    "required": ["url", "filters"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "pattern": "^https?://", "maxLength": rules.URL_MAX},
        "format": {"type": "string", "enum": list(rules.FORMATS)},
        "description": {"type": "string", "maxLength": 200},
        "filters": {
            "type": "object",
            "required": ["edition"],
            "additionalProperties": False,
            "properties": {
                "edition": {"type": "string"},
                "urgency": {"type": "integer", "minimum": 1, "maximum": 9},
                "regions": {"type": "array", "items": {"type": "string"}},
                "categories": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
}


class WebhookApiError(Exception):
    """An error answer in the publisher's shape: `error`, `message`, and `fields`."""

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
        self.fields, self.headers = fields, headers

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.code, "message": _encodable(self.message)}
        if self.fields:
            body["fields"] = {_encodable(k): _encodable(v) for k, v in self.fields.items()}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _encodable(text: str) -> str:
    """Errors echo what was sent, which may hold lone surrogates (valid in JSON escapes,
    not in UTF-8): those are written out as the text `\\ud800`."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _unavailable(exc: Exception) -> WebhookApiError:
    return WebhookApiError(
        503,
        "unavailable",
        f"the ticker store is unreachable; retry shortly ({exc})",
        headers={"Retry-After": "2"},
    )


class WebhookRoutes:
    """The handlers, and the delivery worker they wake. `start`/`stop` run in the
    publisher's lifespan."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        authorize: Callable[[Request, str], Awaitable[Principal]],
        by: Callable[[Request, Principal], audit.Request],
    ) -> None:
        self.settings = settings
        self.broker = broker
        self._authorize = authorize
        self._by = by
        self.worker: WorkerSettings = worker_settings(settings)
        self._store: WebhookStore | None = None
        self.dispatcher: Dispatcher | None = None

    @property
    def store(self) -> WebhookStore:
        if self._store is None:
            self._store = webhook_store(self.broker)
        return self._store

    def start(self) -> None:
        if self.settings.webhook_delivery:
            self.dispatcher = Dispatcher(
                self.broker, self.store, self.worker, self.settings.vocabulary.editions
            )
            self.dispatcher.start()

    async def stop(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.stop()
            self.dispatcher = None

    async def _admin(self, request: Request) -> audit.Request:
        """Who is asking, as the audit trail records it; a 401, 403 or 429 for anyone
        but an admin."""
        return self._by(request, await self._authorize(request, "admin"))

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except BrokerUnavailable as exc:
            raise _unavailable(exc) from None

    async def _webhook(self, request: Request) -> Webhook:
        webhook_id = request.path_params["webhook_id"]
        hook = await self._call(self.store.get(webhook_id)) if rules.is_id(webhook_id) else None
        if hook is None:
            raise WebhookApiError(404, "not_found", f"no webhook {webhook_id[:40]!r}")
        return hook

    async def _shown(self, hook: Webhook) -> dict[str, Any]:
        return {**hook.public(), "queued": await self._call(self.store.depth(hook.id))}

    # --- routes ------------------------------------------------------------------------------

    @operation(
        "Register a webhook; its signing secret is in this answer only",
        body=_NEW_WEBHOOK,
        responses={201: ("the webhook, with its secret", _OBJECT)},
        errors=(400, 403, 413, 415, 503),
        editor=True,
        tags=_TAGS,
    )
    async def create(self, request: Request) -> Response:
        admin = await self._admin(request)
        payload = await _read_json(request, self.settings.limits.body_max_bytes)
        try:
            registration = rules.parse_registration(
                payload, self.settings.vocabulary, self.worker.allow
            )
        except RegistrationError as exc:
            raise WebhookApiError(400, "invalid", str(exc), fields=exc.fields) from None
        hook = Webhook(
            id=rules.new_id(),
            url=registration.url,
            filters=registration.filters,
            format=registration.format,
            secret=rules.new_secret(),
            created=now_iso(),
            created_by=admin.actor,
            description=registration.description,
        )
        await self._call(self.store.create(hook))
        await self._call(start_queueing(self.store, self.broker, hook))
        await record_audit(
            self.broker, admin, "webhook.created", hook.id, {"url": [None, hook.url]}
        )
        if self.dispatcher is not None:
            self.dispatcher.wake()
        body = {**hook.public(), "secret": hook.secret}
        return JSONResponse(body, status_code=201, headers={"Location": f"/api/webhooks/{hook.id}"})

    @operation(
        "Every webhook, without secrets",
        responses={200: ("the webhooks", _OBJECT)},
        errors=(403, 503),
        editor=True,
        tags=_TAGS,
    )
    async def list(self, request: Request) -> Response:
        await self._admin(request)
        hooks = await self._call(self.store.all())
        return JSONResponse({"webhooks": [await self._shown(h) for h in hooks]})

    @operation(
        "One webhook, without its secret",
        params=(WEBHOOK_ID,),
        responses={200: ("the webhook", _OBJECT)},
        errors=(403, 404, 503),
        editor=True,
        tags=_TAGS,
    )
    async def get(self, request: Request) -> Response:
        await self._admin(request)
        return JSONResponse(await self._shown(await self._webhook(request)))

    @operation(
        "Delete a webhook with its queue and delivery log",
        params=(WEBHOOK_ID,),
        responses={200: ("the deleted webhook", _OBJECT)},
        errors=(403, 404, 503),
        editor=True,
        tags=_TAGS,
    )
    async def delete(self, request: Request) -> Response:
        admin = await self._admin(request)
        hook = await self._webhook(request)
        await self._call(self.store.delete(hook.id))
        await record_audit(
            self.broker, admin, "webhook.deleted", hook.id, {"url": [hook.url, None]}
        )
        return JSONResponse(hook.public())

    @operation(
        "Send a signed test message now, beside the queue, and say how it went",
        params=(WEBHOOK_ID,),
        responses={200: ("the attempt, as the delivery log shows it", _OBJECT)},
        errors=(403, 404, 503),
        editor=True,
        tags=_TAGS,
    )
    async def test(self, request: Request) -> Response:
        admin = await self._admin(request)
        hook = await self._webhook(request)
        if not self.settings.webhook_delivery:
            raise WebhookApiError(
                503, "unavailable", "webhook delivery is turned off (TICKER_WEBHOOK_DELIVERY)"
            )
        attempt = await self._call(send_test(self.store, hook, self.worker))
        await record_audit(
            self.broker, admin, "webhook.tested", hook.id, {"outcome": [None, attempt.outcome]}
        )
        return JSONResponse(attempt.to_dict())

    @operation(
        "Enable a disabled webhook: delivery resumes at the head of its queue",
        params=(WEBHOOK_ID,),
        responses={200: ("the webhook", _OBJECT)},
        errors=(403, 404, 503),
        editor=True,
        tags=_TAGS,
    )
    async def enable(self, request: Request) -> Response:
        admin = await self._admin(request)
        hook = await self._webhook(request)
        await self._call(self.store.enable(hook.id))
        await record_audit(
            self.broker,
            admin,
            "webhook.enabled",
            hook.id,
            {"disabled": [hook.disabled_reason, None]},
        )
        if self.dispatcher is not None:
            self.dispatcher.wake()
        return JSONResponse(await self._shown(await self._webhook(request)))

    @operation(
        "The webhook's delivery log: its last 100 attempts, newest first",
        params=(WEBHOOK_ID,),
        responses={200: ("the attempts", _OBJECT)},
        errors=(403, 404, 503),
        editor=True,
        tags=_TAGS,
    )
    async def deliveries(self, request: Request) -> Response:
        await self._admin(request)
        hook = await self._webhook(request)
        attempts = await self._call(self.store.deliveries(hook.id))
        return JSONResponse({"webhook": hook.id, "deliveries": [a.to_dict() for a in attempts]})


async def start_queueing(store: WebhookStore, broker: Broker, hook: Webhook) -> None:
    """A new webhook hears every event from its creation on, and nothing older, whenever a
    worker starts to follow: unless another enabled webhook of the edition keeps the
    edition's queued cursor moving, it is set where the log stands now."""
    edition = hook.filters.edition
    current = await store.cursor(edition)
    others = [
        h
        for h in await store.all()
        if h.filters.edition == edition and h.id != hook.id and h.disabled is None
    ]
    if current is None or not others:
        # If another process moves the cursor meanwhile, it is following: nothing to do.
        await store.ingest(edition, current, str(await broker.cursor(edition)), [])


async def _read_json(request: Request, max_bytes: int) -> Any:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise WebhookApiError(415, "unsupported_media_type", "send the body as application/json")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise WebhookApiError(413, "too_large", f"the body must be at most {max_bytes} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WebhookApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
