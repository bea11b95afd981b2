"""The publisher's /metrics: Prometheus text that moves as requests are answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from stack import Stack


async def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await stack.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def moved(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_requests_are_counted_by_route_template(tmp_path: Path):
    async with Stack(tmp_path) as stack:
        before = await scrape(stack)
        item = await stack.post(headline="Counted")
        await stack.correct(item["id"], urgency=1)
        other = await stack.post(edition="ar", headline="عاجل")
        for item_id in (item["id"], other["id"], "en-nothing-here"):
            await stack.http.get(f"/api/items/{item_id}")
        await stack.withdraw(item["id"])
        await stack.http.get("/no/such/page")
        await stack.http.get("/api/whoami", headers={"Authorization": "Bearer nope"})
        after = await scrape(stack)

        requests = "ticker_publisher_requests_total"
        one = {"method": "GET", "route": "/api/items/{item_id}"}
        assert moved(before, after, requests, **one, status="200") == 2
        assert moved(before, after, requests, **one, status="404") == 1
        assert moved(before, after, requests, method="POST", route="/api/items", status="201") == 2
        assert moved(before, after, requests, method="GET", route="unmatched", status="404") == 1
        # Never a raw path as a label.
        assert not any(item["id"] in str(labels) for _, labels in after)
        latency = "ticker_publisher_request_duration_seconds_count"
        assert moved(before, after, latency, **one) == 3
        changes = "ticker_publisher_changes_total"
        assert moved(before, after, changes, edition="en", kind="posted") == 1
        assert moved(before, after, changes, edition="ar", kind="posted") == 1
        assert moved(before, after, changes, edition="en", kind="corrected") == 1
        assert moved(before, after, changes, edition="en", kind="withdrawn") == 1
        assert moved(before, after, "ticker_publisher_auth_failures_total") == 1


async def test_a_replayed_post_is_not_counted_twice(tmp_path: Path):
    async with Stack(tmp_path) as stack:
        before = await scrape(stack)
        headers = {**stack.auth, "Idempotency-Key": "once"}
        for _ in range(3):
            response = await stack.http.post(
                "/api/items", json={"edition": "es", "headline": "Una vez"}, headers=headers
            )
            assert response.status_code == 201
        after = await scrape(stack)
        assert (
            moved(before, after, "ticker_publisher_changes_total", edition="es", kind="posted") == 1
        )


async def test_503s_are_counted_and_the_limits_let_the_store_answer(
    tmp_path: Path, redis_url: str, redis_server
):
    async with Stack(tmp_path, redis_url, post_rate="60/minute") as stack:
        before = await scrape(stack)
        await asyncio.to_thread(redis_server.stop)
        try:
            response = await stack.http.post(
                "/api/items", json={"edition": "en", "headline": "Later"}, headers=stack.auth
            )
            assert response.status_code == 503
            assert response.json()["error"] == "unavailable"
            after = await scrape(stack)
        finally:
            await asyncio.to_thread(redis_server.start)
        assert moved(before, after, "ticker_publisher_unavailable_total") == 1
