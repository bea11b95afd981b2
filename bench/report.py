"""Turns a run's raw results into verdicts and a table a person can read."""

from __future__ import annotations

from typing import Any

from . import archive

TARGETS = {
    "cpu_ratio": 1.0,  # the hub's own cost is the floor's: one write of the same bytes
    "kb_per_connection": 6.0,
    "burst_seconds": 0.3,
    "handshakes_per_second": 5000,
    "posts_per_second": 2000,
    "post_p99_ms": 10.0,
    "stream_cpu_ratio": 1.15,
    "conditional_per_second": 2000,
    "kb_per_stream": 8.0,
    "archive_p99_ms": 50.0,
}


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    """Correctness checks and target verdicts, kept apart: a slow run is still a valid
    run, but a run that lost an event is not a result at all."""
    checks = _checks(r)
    return {
        "correct": all(ok for _, ok in checks),
        "checks": [{"check": name, "ok": ok} for name, ok in checks],
        "keepalive_adjusted": _keepalive_adjusted(r),
        "targets": _targets(r),
    }


def _checks(r: dict[str, Any]) -> list[tuple[str, bool]]:
    n = r["options"]["clients"]
    fanout, storm, keep = r["fanout"], r["storm"], r["keepalive"]
    expected = fanout["rounds"] * fanout["messages"] * n
    checks = [
        (
            "every reader connected",
            all(m["connect"]["failed"] == 0 for m in r["memory"].values()),
        ),
        ("floor: every reader got every message", fanout["floor"]["received"] == expected),
        ("hub: every reader got every item", fanout["hub"]["received"] == expected),
    ]
    for burst in r["bursts"]:
        checks.append(
            (
                f"burst ({burst['mode']}): all 20, in order, for everyone",
                burst["complete"] and burst["order_errors"] == 0,
            )
        )
    checks += [
        ("storm: every reader reconnected", storm["connected"] == n and storm["failed"] == 0),
        ("storm: every reader resumed (no reset)", storm["resumed"] == n and storm["resets"] == 0),
        (
            "storm: the item posted while away reached everyone once",
            storm["item_posted_while_away_received_by"] == n and storm["order_errors"] == 0,
        ),
        ("no reader saw a gap, duplicate or reorder", keep["errors"] == 0),
        (
            "streams: every reader got every item, in order",
            all(r["streams"][t]["received"] == r["streams"][t]["expected"] for t in ("ws", "sse"))
            and r["streams"]["burst"]["complete"]
            and r["streams"]["health"]["errors"] == 0,
        ),
        ("the hub closed no reader (keepalive answered)", keep["closed_by_server"] == 0),
        ("publisher: every post accepted", all(p["failed"] == 0 for p in r["publisher"]["sweep"])),
        (
            "conditional GETs: every one answered 304",
            all(c["not_modified"] == c["requests"] for c in r["conditional"].values()),
        ),
        (
            "archive: every query answered, on both stores",
            r["archive"]["failed"] == 0,
        ),
    ]
    return checks


def _keepalive_adjusted(r: dict[str, Any]) -> dict[str, Any]:
    """The hub's CPU per delivery without its idle cost (keepalive pings), measured in
    the idle phase: the floor sends no pings, so this isolates the delivery path."""
    idle, hub, floor = r["idle"], r["fanout"]["hub"], r["fanout"]["floor"]
    heartbeat_cpu = idle["heartbeat_frames"] * hub["us_per_delivery"] / 1e6
    rate = max(idle["hub_cpu_seconds"] - heartbeat_cpu, 0.0) / idle["seconds"]
    cpu = hub["cpu_seconds"] - rate * hub["window_seconds"]
    us = cpu / max(hub["deliveries"], 1) * 1e6
    n = r["options"]["clients"]
    return {
        "idle_cpu_per_second": round(rate, 5),
        "idle_us_per_connection_per_second": round(rate / n * 1e6, 3),
        "hub_us_per_delivery": round(us, 3),
        "ratio": round(us / floor["us_per_delivery"], 3),
    }


def _targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    t = TARGETS
    concurrent, sequential = r["bursts"]
    rows = [
        ("CPU per delivery, x floor", r["fanout"]["ratio"], f"<= {t['cpu_ratio']}", "le"),
        (
            "RSS per idle connection, KB",
            r["memory"]["hub"]["kb_per_connection"],
            f"<= {t['kb_per_connection']}",
            "le",
        ),
        (
            "burst of 20 (concurrent posts), s",
            concurrent["seconds_until_all"],
            f"<= {t['burst_seconds']}",
            "le",
        ),
        (
            "burst of 20 (sequential posts), s",
            sequential["seconds_until_all"],
            f"<= {t['burst_seconds']}",
            "le",
        ),
        (
            "reconnect storm, handshakes/s",
            r["storm"]["per_second"],
            f">= {t['handshakes_per_second']}",
            "ge",
        ),
        (
            "publisher, posts/s",
            r["publisher"]["posts_per_second"],
            f">= {t['posts_per_second']}",
            "ge",
        ),
        ("publisher, p99 ms", r["publisher"]["p99_ms"], f"<= {t['post_p99_ms']}", "le"),
        (
            "catch-up answered 304, requests/s",
            r["conditional"]["catch_up"]["per_second"],
            f">= {t['conditional_per_second']}",
            "ge",
        ),
        (
            "feed answered 304, requests/s",
            r["conditional"]["feed"]["per_second"],
            f">= {t['conditional_per_second']}",
            "ge",
        ),
        (
            "SSE CPU per delivery, x WebSocket",
            r["streams"]["ratio"],
            f"<= {t['stream_cpu_ratio']}",
            "le",
        ),
        (
            "RSS per idle SSE stream, KB",
            r["streams"]["kb_per_stream"],
            f"<= {t['kb_per_stream']}",
            "le",
        ),
        (
            "SSE burst of 20 (concurrent posts), s",
            r["streams"]["burst"]["seconds_until_all"],
            f"<= {t['burst_seconds']}",
            "le",
        ),
        (
            "archive query p99 (worst kind, both stores), ms",
            r["archive"]["worst_p99_ms"],
            f"<= {t['archive_p99_ms']}",
            "le",
        ),
    ]
    out = []
    for name, value, target, how in rows:
        bound = float(target.split()[1])
        met = value <= bound if how == "le" else value >= bound
        out.append({"target": name, "measured": value, "goal": target, "met": met})
    return out


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(r: dict[str, Any]) -> str:
    m, opts = r["machine"], r["options"]
    fan, mem, storm, pub = r["fanout"], r["memory"], r["storm"], r["publisher"]
    hub, floor = fan["hub"], fan["floor"]
    adj = r["summary"]["keepalive_adjusted"]
    parts = [
        f"ticker fan-out benchmark: {opts['clients']} readers per server, "
        f"{opts['client_processes']} client processes",
        f"machine: {m['nproc']} x {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"Python {m['python']}, websockets {m['websockets']}, Redis {m['redis']}",
        f"message: hub event {r['message']['hub_event_bytes']} B, "
        f"floor event {r['message']['floor_event_bytes']} B",
        "",
        _table(
            [
                ("server", "us/delivery", "x floor", "RSS/conn KB", "p50 ms", "p99 ms", "last ms"),
                (
                    "floor",
                    f"{floor['us_per_delivery']:.2f}",
                    "1.00",
                    f"{mem['floor']['kb_per_connection']:.2f}",
                    f"{floor['latency_p50_ms']:.1f}",
                    f"{floor['latency_p99_ms']:.1f}",
                    f"{floor['until_last_client_median_ms']:.1f}",
                ),
                (
                    "hub",
                    f"{hub['us_per_delivery']:.2f}",
                    f"{fan['ratio']:.3f}",
                    f"{mem['hub']['kb_per_connection']:.2f}",
                    f"{hub['latency_p50_ms']:.1f}",
                    f"{hub['latency_p99_ms']:.1f}",
                    f"{hub['until_last_client_median_ms']:.1f}",
                ),
                (
                    "hub w/o idle",
                    f"{adj['hub_us_per_delivery']:.2f}",
                    f"{adj['ratio']:.3f}",
                    "",
                    "",
                    "",
                    "",
                ),
            ]
        ),
        "",
        f"per-round ratio: {fan['ratio_per_round']}; hub idle CPU (keepalive): "
        f"{adj['idle_us_per_connection_per_second']} us per connection per second",
        f"client processes' CPU per delivery: floor {floor['client_us_per_delivery']} us, "
        f"hub {hub['client_us_per_delivery']} us (they share the cores with the server)",
        "latency: publish (POST start) to receive, every reader x every lone item; "
        "last = median over items of the time until the last reader had it",
        "",
        _table(
            [
                (
                    "burst of 20",
                    "until all (s)",
                    "posting (s)",
                    "frames/client",
                    "complete+ordered",
                ),
                *[
                    (
                        b["mode"],
                        f"{b['seconds_until_all']:.3f}",
                        f"{b['posting_seconds']:.3f}",
                        f"{b['frames_per_client']:.2f}",
                        "yes" if b["complete"] and not b["order_errors"] else "NO",
                    )
                    for b in r["bursts"]
                ],
            ]
        ),
        "",
        f"reconnect storm: {storm['connected']}/{opts['clients']} in {storm['seconds']} s = "
        f"{storm['per_second']} handshakes/s (hub CPU {storm['hub_cpu_us_per_handshake']} us "
        f"each; completion p50 {storm['handshake_ms_p50']} ms, p99 {storm['handshake_ms_p99']} "
        f"ms; {storm['retried']} retried after the hub reset them); resumed {storm['resumed']}, "
        f"resets {storm['resets']}, item posted while away "
        f"received by {storm['item_posted_while_away_received_by']}",
        *[
            f"publisher: {p['posts']} posts on {p['concurrency']} connections: "
            f"{p['posts_per_second']} posts/s, p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms; "
            f"CPU per post: publisher {p['publisher_cpu_us_per_post']} us, "
            f"Redis {p['redis_cpu_us_per_post']} us, hub {p['hub_cpu_us_per_post']} us"
            for p in pub["sweep"]
        ],
        *[
            f"conditional GET {name}: {c['per_second']} requests/s answered 304 "
            f"({c['not_modified']}/{c['requests']}), publisher CPU "
            f"{c['publisher_cpu_us_per_request']} us each"
            for name, c in r["conditional"].items()
        ],
        f"server-sent events: {r['streams']['readers']} streams beside "
        f"{r['streams']['websocket_readers']} WebSocket readers: "
        f"{r['streams']['sse']['us_per_delivery']} us per delivery against "
        f"{r['streams']['ws']['us_per_delivery']} over WebSocket "
        f"(x{r['streams']['ratio']}), {r['streams']['kb_per_stream']} KB per stream, "
        f"burst of 20 in {r['streams']['burst']['seconds_until_all']} s",
        archive.render(r["archive"]),
        *_push_lines(r.get("push")),
        f"keepalive: ping every {r['keepalive']['ping_interval_s']} s, "
        f"{r['keepalive']['pings_answered']} pings answered, "
        f"{r['keepalive']['closed_by_server']} readers closed by the hub",
        "",
        _table(
            [
                ("target", "measured", "goal", "met"),
                *[
                    (t["target"], str(t["measured"]), t["goal"], "yes" if t["met"] else "NO")
                    for t in r["summary"]["targets"]
                ],
            ]
        ),
        "",
        "correctness: "
        + ("all checks passed" if r["summary"]["correct"] else "FAILED")
        + "".join(f"\n  FAILED: {c['check']}" for c in r["summary"]["checks"] if not c["ok"]),
    ]
    return "\n".join(parts)


def _push_lines(p: dict[str, Any] | None) -> list[str]:
    if not p:
        return []
    without, during = p["post_latency_without_push"], p["post_latency_while_pushing"]
    return [
        f"web push: a flash to {p['delivered']}/{p['subscriptions']} subscriptions, the first "
        f"after {p['first_after_seconds']} s, all after {p['all_after_seconds']} s "
        f"({p['pushes_per_second']} pushes/s); routine posts p50/p99 "
        f"{without['p50_ms']}/{without['p99_ms']} ms without pushing, "
        f"{during['p50_ms']}/{during['p99_ms']} ms while pushing"
    ]
