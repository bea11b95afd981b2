"""A small client for the publisher's HTTP API, standard library only.

Posting is safe to retry: every attempt of one post carries the same Idempotency-Key, so
however often a timeout or a 503 makes us try again, the publisher creates one item.
`ticker post` uses it; so can any script.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """The publisher refused the request (4xx, or 5xx other than 503); retrying would not
    help."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.error = error
        self.message = message


class Unreachable(Exception):
    """Every attempt failed: the publisher, or its store, could not be reached."""


@dataclass
class PublisherClient:
    """The publisher at `base_url` (`http://127.0.0.1:8000`), as the editor whose token
    this is."""

    base_url: str
    token: str | None = None
    timeout: float = 10.0
    attempts: int = 5
    on_retry: Callable[[str], None] | None = None  # told why, before each pause
    sleep: Callable[[float], None] = time.sleep

    def post_item(self, edition: str, headline: str, **fields: Any) -> dict[str, Any]:
        """Post an item (fields as in docs/api.md: source, link, urgency, regions,
        categories, expires_in) and return it as the publisher stored it."""
        body = {"edition": edition, "headline": headline, **fields}
        body = {k: v for k, v in body.items() if v is not None}
        return self._request("POST", "/api/items", body, idempotency_key=str(uuid.uuid4()))

    def correct_item(self, item_id: str, **fields: Any) -> dict[str, Any]:
        """Change some fields of a live item; `version=N` makes it conditional."""
        return self._request("PATCH", f"/api/items/{_quote(item_id)}", fields)

    def withdraw_item(self, item_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/api/items/{_quote(item_id)}")

    def list_items(self, edition: str) -> dict[str, Any]:
        query = urllib.parse.urlencode({"edition": edition})
        return self._request("GET", f"/api/items?{query}")

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """One request, tried again on a 503 or a network error when that is safe: reads,
        and posts with an Idempotency-Key (the same one on every attempt)."""
        retry = method == "GET" or idempotency_key is not None
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        url = f"{self.base_url.rstrip('/')}{path}"
        reason = ""
        for attempt in range(self.attempts if retry else 1):
            if attempt:
                if self.on_retry:
                    self.on_retry(reason)
                self.sleep(min(2 ** (attempt - 1) * 0.5, 5))
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.load(response)
            except urllib.error.HTTPError as exc:
                if exc.code != 503:
                    raise _api_error(exc) from None
                reason = "the publisher's store is unavailable"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                reason = str(getattr(exc, "reason", exc))
        raise Unreachable(reason)


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    try:
        detail = json.loads(exc.read() or b"{}")
    except ValueError:
        detail = {}
    return ApiError(exc.code, detail.get("error", ""), detail.get("message", str(exc.reason)))


def _quote(item_id: str) -> str:
    return urllib.parse.quote(item_id, safe="")
