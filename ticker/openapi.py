"""The publisher's OpenAPI 3.1 description, built from the routes themselves.

Each handler carries its own description (`@operation(...)`, next to its code), and
`document` walks the app's routes: a route without a description, or a description without
a route, cannot go unnoticed (tests/test_openapi.py). No I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .config import Settings
from .roles import ROLES

F = TypeVar("F", bound=Callable[..., Any])

ERROR_CODES = {
    400: "A bad parameter, header or JSON body; `message` says which.",
    401: "No token, or an unknown, revoked (`token_revoked`) or expired (`token_expired`) one.",
    403: "The token's roles or editions do not allow this; `message` names what is needed.",
    404: "No such live item (withdrawn, expired or never posted).",
    409: "The item kept changing under three attempts in a row.",
    413: "The body is over the size limit.",
    415: "The body is not `application/json`.",
    422: "A field is wrong (see `fields`), or an Idempotency-Key was reused for another body.",
    429: "Too many requests; `Retry-After` says when to retry.",
    503: "The store cannot be reached; `Retry-After` says when to retry.",
}


def operation(
    summary: str,
    *,
    responses: dict[int, tuple[str, dict[str, Any] | None] | tuple[str, dict[str, Any], str]],
    errors: Iterable[int] = (),
    params: Iterable[dict[str, Any]] = (),
    body: dict[str, Any] | None = None,
    editor: bool = False,
    idempotent_post: bool = False,
    description: str = "",
    tags: Iterable[str] = (),
) -> Callable[[F], F]:
    """Describe a handler where it is written; `document` collects the descriptions."""

    def attach(handler: F) -> F:
        spec: dict[str, Any] = {"summary": summary}
        if description:
            spec["description"] = description
        if tags:
            spec["tags"] = list(tags)
        parameters = list(params)
        if idempotent_post:
            parameters.append(IDEMPOTENCY_KEY)
        if parameters:
            spec["parameters"] = parameters
        if body is not None:
            spec["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        answers: dict[str, Any] = {}
        for status, (text, schema, *media) in responses.items():
            answer: dict[str, Any] = {"description": text}
            if schema is not None:
                answer["content"] = {(media or ["application/json"])[0]: {"schema": schema}}
            answers[str(status)] = answer
        # Every route that takes a token may answer 401, and 429 to an address or a token
        # over its limit.
        for status in (*errors, *((401, 429) if editor else ())):
            answers[str(status)] = {"$ref": f"#/components/responses/E{status}"}
        spec["responses"] = answers
        if editor:
            spec["security"] = [{"editorToken": []}]
        handler.__openapi__ = spec  # type: ignore[attr-defined]
        return handler

    return attach


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def query(name: str, schema: dict[str, Any], text: str, *, required: bool = False) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": text,
    }


def path(name: str, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": text,
    }


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[\\x21-\\x7e]+$"},
    "description": "Send the same key when retrying: the item is posted once. Scoped per "
    "editor and edition; a different body under the same key is a 422.",
}


def document(routes: Iterable[tuple[str, str, Callable[..., Any]]], settings: Settings) -> dict:
    """The OpenAPI document for (path, method, handler) triples; handlers without a
    description (pages, static files) are left out on purpose by the caller."""
    vocab = settings.vocabulary
    enums = {"edition": vocab.editions, "region": vocab.regions, "category": vocab.categories}
    paths: dict[str, dict[str, Any]] = {}
    for url, method, handler in routes:
        spec = getattr(handler, "__openapi__", None)
        if spec is None:
            raise ValueError(f"{method} {url} has no description")
        spec = {**spec, "parameters": [_with_enum(p, enums) for p in spec.get("parameters", [])]}
        if not spec["parameters"]:
            del spec["parameters"]
        paths.setdefault(url, {})[method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ticker publisher",
            "version": "1",
            "description": "Post, correct and withdraw breaking-news alerts; read the live "
            "ticker. docs/api.md explains every route; docs/protocol.md the live feed.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "editorToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An editor token from `ticker token create NAME`.",
                }
            },
            "schemas": _schemas(vocab.editions, vocab.regions, vocab.categories, settings),
            "responses": {
                f"E{status}": {
                    "description": text,
                    "content": {"application/json": {"schema": ref("Error")}},
                }
                for status, text in ERROR_CODES.items()
            },
        },
    }


def _with_enum(param: dict[str, Any], enums: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    values = enums.get(param["name"]) if param["in"] == "query" else None
    if values is None:
        return param
    if not param["required"]:
        values = ("", *values)  # an empty filter is no filter
    return {**param, "schema": {**param["schema"], "enum": list(values)}}


def _schemas(
    editions: tuple[str, ...],
    regions: tuple[str, ...],
    categories: tuple[str, ...],
    settings: Settings,
) -> dict[str, Any]:
    limits = settings.limits
    tag_list = lambda values: {  # noqa: E731
        "type": "array",
        "items": {"type": "string", "enum": list(values)},
        "maxItems": limits.max_tags,
    }
    input_fields: dict[str, Any] = {
        "headline": {"type": "string", "minLength": 1, "maxLength": limits.headline_max},
        "source": {"type": ["string", "null"], "maxLength": limits.source_max},
        "link": {
            "type": ["string", "null"],
            "maxLength": limits.link_max,
            "pattern": "^https?://",
        },
        "urgency": {"type": "integer", "minimum": 1, "maximum": 9},
        "regions": tag_list(regions),
        "categories": tag_list(categories),
        "expires": {"type": ["string", "null"], "format": "date-time"},
        "expires_in": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "maximum": limits.max_expiry_seconds,
        },
        "publish_at": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "schedule the item: it goes live then (at most "
            f"{limits.max_schedule_seconds} seconds ahead)",
        },
        "pinned": {
            "type": "boolean",
            "description": f"keep it first in the ticker (at most {limits.max_pinned} per edition)",
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "Item": {
            "type": "object",
            "required": [
                "id",
                "edition",
                "headline",
                "urgency",
                "regions",
                "categories",
                "created",
                "updated",
                "version",
                "status",
                "editor",
            ],
            "properties": {
                "id": {"type": "string"},
                "edition": {"type": "string", "enum": list(editions)},
                "headline": {"type": "string"},
                "source": {"type": ["string", "null"]},
                "link": {"type": ["string", "null"]},
                "urgency": {"type": "integer", "minimum": 1, "maximum": 9},
                "regions": {"type": "array", "items": {"type": "string"}},
                "categories": {"type": "array", "items": {"type": "string"}},
                "created": {"type": "string", "format": "date-time"},
                "updated": {"type": "string", "format": "date-time"},
                "version": {"type": "integer", "minimum": 1},
                "status": {
                    "type": "string",
                    "enum": ["scheduled", "live", "withdrawn", "expired"],
                },
                "expires": {"type": ["string", "null"], "format": "date-time"},
                "editor": {"type": "string"},
                "pinned": {"type": "boolean"},
                "publish_at": {"type": ["string", "null"], "format": "date-time"},
            },
        },
        "NewItem": {
            "type": "object",
            "required": ["edition", "headline"],
            "additionalProperties": False,
            "properties": {
                "edition": {"type": "string", "enum": list(editions)},
                **input_fields,
            },
        },
        "Correction": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                **{k: v for k, v in input_fields.items() if k != "headline"},
                "headline": input_fields["headline"],
                "version": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "pin the version the correction was made from",
                },
            },
        },
        "ItemList": {
            "type": "object",
            "required": ["edition", "cursor", "items"],
            "properties": {
                "edition": {"type": "string"},
                "cursor": {"type": "string"},
                "items": {"type": "array", "items": {"type": "object"}},
            },
        },
        "ScheduledList": {
            "type": "object",
            "required": ["edition", "items"],
            "properties": {
                "edition": {"type": "string"},
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
            },
        },
        "ArchivePage": {
            "type": "object",
            "required": ["edition", "status", "items", "next"],
            "properties": {
                "edition": {"type": "string"},
                "status": {"type": "string", "enum": ["all", "live", "withdrawn", "expired"]},
                "items": {"type": "array", "items": {"type": "object"}},
                "next": {
                    "type": ["string", "null"],
                    "description": "the cursor of the next page; null after the last",
                },
            },
        },
        "Events": {
            "type": "object",
            "required": ["edition", "cursor", "more", "messages"],
            "properties": {
                "edition": {"type": "string"},
                "cursor": {"type": "string"},
                "more": {"type": "boolean"},
                "messages": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"type": "string"}},
                    },
                    "description": "the live feed's messages (docs/protocol.md)",
                },
            },
        },
        "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string"}},
        },
        **_admin_schemas(editions),
    }


def _admin_schemas(editions: tuple[str, ...]) -> dict[str, Any]:
    roles = {"type": "array", "items": {"type": "string", "enum": list(ROLES)}}
    scope = {
        "type": ["array", "null"],
        "items": {"type": "string", "enum": list(editions)},
        "description": "the editions of an editor's scope; null: every edition",
    }
    time = {"type": ["string", "null"], "format": "date-time"}
    token = {
        "type": "object",
        "required": ["name", "roles", "editions", "expires"],
        "properties": {
            "name": {"type": "string"},
            "roles": roles,
            "editions": scope,
            "expires": time,
            "created": {"type": "string", "format": "date-time"},
            "last_used": time,
            "legacy": {"type": "boolean", "description": "made before roles existed"},
        },
    }
    return {
        "Whoami": {
            "type": "object",
            "required": ["editor", "name", "roles", "editions", "expires"],
            "properties": {
                "editor": {"type": "string"},
                "name": {"type": "string"},
                "roles": roles,
                "editions": scope,
                "expires": time,
            },
        },
        "Token": token,
        "TokenList": {
            "type": "object",
            "required": ["tokens"],
            "properties": {
                "tokens": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}}
            },
        },
        "NewToken": {
            "type": "object",
            "required": ["name", "roles"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"},
                "roles": {"oneOf": [roles, {"type": "string", "description": "comma-separated"}]},
                "editions": {**scope, "description": "only with the editor role; null: all"},
                "expires": {
                    "type": ["string", "null"],
                    "description": "a duration like 90d or 12h, or an ISO 8601 date or time",
                },
            },
        },
        "CreatedToken": {
            "type": "object",
            "required": ["name", "token"],
            "properties": {
                "name": {"type": "string"},
                "token": {"type": "string", "description": "the secret: shown this once"},
                "roles": roles,
                "editions": scope,
                "expires": time,
            },
        },
        "AuditEntry": {
            "type": "object",
            "required": ["id", "at", "actor", "action"],
            "properties": {
                "id": {"type": "string"},
                "at": {"type": "string", "format": "date-time"},
                "actor": {"type": "string", "description": "a token name, or system"},
                "role": {"type": ["string", "null"]},
                "action": {
                    "type": "string",
                    "description": "posted, corrected, withdrawn, expired, token.created, "
                    "token.revoked, token.rotated, token.migrated",
                },
                "edition": {"type": ["string", "null"]},
                "item": {"type": ["string", "null"]},
                "subject": {"type": ["string", "null"], "description": "e.g. a token's name"},
                "address": {"type": ["string", "null"]},
                "user_agent": {"type": ["string", "null"]},
                "changes": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "minItems": 2, "maxItems": 2},
                    "description": "field: [before, after]",
                },
            },
        },
        "AuditPage": {
            "type": "object",
            "required": ["entries", "cursor"],
            "properties": {
                "entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}},
                "cursor": {
                    "type": ["string", "null"],
                    "description": "pass as `cursor` for the next, older page; null at the end",
                },
            },
        },
    }
