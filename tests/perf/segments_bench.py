"""Segments benchmark: ingest with 20 active segments against the same run without any.

``python -m tests.perf.segments_bench [--seconds 10] [--rounds 2]`` starts a real
collector (``footfall serve``, 2 workers) on a scratch database and measures, for a
site without segments and for a site with 20 segments of the documented kinds
(windowed counts, sums, distinct counts, sequences, absences, profile attributes),
in alternating rounds (the best round of each counts):

- batch ingest: events/s, closed loop, 16 connections, 50 events per request;
- single requests: req/s, closed loop, 16 connections, one event per browser request
  (``Origin`` set, so the answer carries the visitor's segments);
- sweeper lag: from each person's due time (a 2-second window passing) to the exit
  the sweeper writes, p50/p99/max, while batch ingest runs on another site.

``--cpu``: only the writer's pure evaluation work for the 20 segments, in this process
(CPU µs per event, batch and single; no server, no database): less sensitive to a busy
machine than the throughput figures.

Prints the figures and a JSON line ``SEGMENTSBENCH {...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg

from footfall.pipeline.segments.evaluate import epoch_ms, event_of
from footfall.pipeline.segments.rules import parse_rule
from footfall.storage import segments as store
from footfall.storage.segments import SiteSegments, decide
from tests.perf.bench import HOST, CpuMeter, _Conn, _percentile, start_collector
from tests.support import (
    LOCAL_PG,
    embedded_postgres,
    local_postgres_available,
    make_site,
    scratch_database,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "segments-examples"
CONNECTIONS = 16
BATCH = 50


def twenty_segments() -> list[dict[str, Any]]:
    """The five documented examples plus fifteen variants of every kind."""
    rules = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    for i in range(3):
        rules.append(
            {
                "key": f"readers-{i}",
                "expose": "browser",
                "when": {
                    "count": {"type": "page", "where": {"page_path": {"glob": "/articles/**"}}},
                    "within": f"{5 + i}m",
                    "gte": 2 + i,
                },
            }
        )
        rules.append(
            {
                "key": f"hover-sum-{i}",
                "when": {
                    "sum": {"field": "properties.dwell_ms", "event": "Element Hovered"},
                    "within": f"{1 + i}h",
                    "gte": 2000 * (i + 1),
                },
            }
        )
        rules.append(
            {
                "key": f"paths-{i}",
                "when": {
                    "distinct": {"field": "page_path", "type": "page"},
                    "within": f"{1 + i}d",
                    "gte": 3 + i,
                },
            }
        )
        rules.append(
            {
                "key": f"browse-then-add-{i}",
                "expose": "browser",
                "when": {
                    "sequence": [
                        {"type": "page", "where": {"page_path": {"prefix": "/product/"}}},
                        {"event": "Product Added"},
                    ],
                    "within": f"{10 + i}m",
                },
            }
        )
        rules.append(
            {
                "key": f"no-order-{i}",
                "when": {
                    "all": [
                        {
                            "after": {"event": "Product Added"},
                            "absent": {"event": "Order Completed"},
                            "for": f"{20 + i}m",
                            "lookback": "1d",
                        },
                        {"profile": {"device_type": {"in": ["desktop", "mobile"]}}},
                    ]
                },
            }
        )
    assert len(rules) == 20
    return rules  # fmt: skip


def _messages(visitor: str, n: int, count: int) -> list[dict[str, Any]]:
    """A browsing mix touching every segment kind."""
    out = []
    for i in range(count):
        k = (n + i) % 10
        message: dict[str, Any] = {"messageId": uuid.uuid4().hex, "anonymousId": visitor}
        if k < 4:
            path = f"/articles/tech/{k}" if k % 2 else f"/product/{k}"
            message |= {"type": "page", "properties": {"path": path},
                        "context": {"page": {"path": path}}}  # fmt: skip
        elif k < 6:
            message |= {"type": "track", "event": "Element Hovered",
                        "properties": {"selector": "#subscribe", "dwell_ms": 700}}  # fmt: skip
        elif k < 8:
            message |= {"type": "track", "event": "Page Engaged",
                        "properties": {"engaged_ms": 15000, "max_scroll_percent": 60},
                        "context": {"page": {"path": "/articles/tech/1"}}}  # fmt: skip
        elif k == 8:
            message |= {"type": "track", "event": "Product Added", "properties": {"sku": "1"}}
        else:
            message |= {"type": "track", "event": "Order Completed", "properties": {"id": "o"}}
        out.append(message)
    return out


async def _closed_loop(
    port: int,
    key: str,
    seconds: float,
    *,
    per_request: int,
    path: str,
    origin: bool,
    pid: int | None = None,
) -> dict[str, Any]:
    auth = base64.b64encode(f"{key}:".encode()).decode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Basic {auth}\r\n"
        + ("Origin: https://shop.example\r\n" if origin else "")
        + "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0 Safari/537.36\r\n"
        + "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    run = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    accepted = 0
    failures = 0
    stop_at = time.monotonic() + seconds

    async def client(c: int) -> None:
        nonlocal accepted, failures
        conn = _Conn(*await asyncio.open_connection(HOST, port))
        n = 0
        while time.monotonic() < stop_at:
            visitor = f"{run}-{c}-{n // 20}"  # 20 requests per visitor, then a new one
            messages = _messages(visitor, n, per_request)
            body = orjson.dumps({"batch": messages} if per_request > 1 else messages[0])
            sent = time.monotonic()
            status, payload = await conn.post(head, body)
            latencies.append(time.monotonic() - sent)
            if status == 200:
                accepted += int(orjson.loads(payload)["accepted"])
            else:
                failures += 1
            n += 1
        conn.writer.close()

    meter = CpuMeter(pid)
    meter.start()
    started = time.monotonic()
    await asyncio.gather(*(client(c) for c in range(CONNECTIONS)))
    elapsed = time.monotonic() - started
    cpu = meter.stop()
    latencies.sort()
    return {
        # Collector CPU per event: less sensitive than throughput to a busy machine.
        "collector_cpu_us_per_event": round(
            cpu["server_cores"] * elapsed / max(1, accepted) * 1e6, 1
        ),
        "other_cores": cpu["other_cores"],
        "requests_s": round(len(latencies) / elapsed, 1),
        "events_s": round(accepted / elapsed, 1),
        "failures": failures,
        "p50_ms": round(_percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 99) * 1000, 1),
    }


def _define(dsn: str, site_id: int, rules: list[dict[str, Any]]) -> None:
    with psycopg.connect(dsn) as conn, conn.transaction():
        for rule in rules:
            store.create_segment(conn, site_id, rule)


def _sweeper_lag(dsn: str, port: int, persons: int, load_key: str) -> dict[str, Any]:
    """Persons in a 2-second window; the lag of each exit past its due time, under load."""
    site_id, key = make_site(dsn, allowed_origins=["*"])
    _define(dsn, site_id, [{"key": "just-seen",
                            "when": {"count": {"type": "page"}, "within": 2, "gte": 1}}])  # fmt: skip
    run = uuid.uuid4().hex[:8]

    async def seed() -> None:
        auth = base64.b64encode(f"{key}:".encode()).decode()
        head = (
            f"POST /v1/batch HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Basic {auth}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        conn = _Conn(*await asyncio.open_connection(HOST, port))
        for start in range(0, persons, 100):
            batch = [
                {"type": "page", "messageId": uuid.uuid4().hex, "anonymousId": f"{run}-{i}",
                 "properties": {"path": "/"}}
                for i in range(start, min(persons, start + 100))
            ]  # fmt: skip
            status, _ = await conn.post(head, orjson.dumps({"batch": batch}))
            assert status == 200
        conn.writer.close()

    async def with_load() -> None:
        load = asyncio.create_task(
            _closed_loop(port, load_key, 12, per_request=BATCH, path="/v1/batch", origin=False)
        )
        await seed()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with psycopg.connect(dsn) as conn:
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE exited_at IS NULL) FROM segment_memberships"
                    " WHERE site_id = %s",
                    (site_id,),
                ).fetchone()
            if row is not None and row[0] == 0:
                break
            await asyncio.sleep(0.2)
        await load

    asyncio.run(with_load())
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT m.exited_at, e.timestamp FROM segment_memberships m"
            " JOIN identities i ON i.site_id = m.site_id AND i.person_id = m.person_id"
            " JOIN events e ON e.site_id = m.site_id AND e.anonymous_id = i.value"
            " WHERE m.site_id = %s",
            (site_id,),
        ).fetchall()
    lags = []
    for exited_at, at in rows:
        # Due: the end of the event's 1-second bucket plus the 2-second window.
        due = datetime.fromtimestamp(int(at.timestamp()) + 3, UTC)
        lags.append((exited_at - due).total_seconds())
    lags.sort()
    return {
        "persons": len(lags),
        "p50_s": round(_percentile(lags, 50), 3),
        "p99_s": round(_percentile(lags, 99), 3),
        "max_s": round(lags[-1], 3) if lags else None,
    }


def _event(message: dict[str, Any], at: datetime, keys: tuple[str, ...]) -> dict[str, Any]:
    path = message.get("context", {}).get("page", {}).get("path")
    columns = {"type": message["type"], "event": message.get("event"), "page_path": path,
               "properties": message.get("properties"), "timestamp": at}  # fmt: skip
    return event_of(columns, keys)


def evaluation_cpu(persons: int = 200, repeats: int = 7) -> dict[str, float]:
    """CPU µs per event of the writer's pure work for the 20 segments (``decide``: window
    updates and evaluation, the state's JSON both ways), in this process, best of
    ``repeats``: batch (a person's 50 events in one commit, new persons) and single (one
    event per commit, persons with 19 earlier commits)."""
    site = SiteSegments(tuple(parse_rule(r, 1) for r in twenty_segments()))
    keys = site.index.fields
    profile = {"device_type": "desktop", "sessions": 1, "identified": False}
    base = datetime.now(UTC)
    now_ms = epoch_ms(base)

    def commit(blob: bytes, events: list[dict[str, Any]], open_: dict[str, Any],
               due: int | None, full: bool, at_ms: int) -> Any:  # fmt: skip
        found = decide(site, orjson.loads(blob), events, open_, due, full, profile, at_ms)
        return orjson.dumps(found.state), found

    batch = [_event(m, base, keys) for m in _messages("v", 0, BATCH)]
    histories = []
    for _ in range(persons):
        blob, open_, due = b"{}", {}, None
        for n in range(19):
            at = base - timedelta(seconds=2 * (19 - n))
            full = n == 0 or (due is not None and due <= epoch_ms(at))
            blob, found = commit(blob, [_event(_messages("v", n, 1)[0], at, keys)], open_, due,
                                 full, epoch_ms(at))  # fmt: skip
            open_, due = dict.fromkeys(found.current, 1), found.due_ms
        histories.append((blob, open_, due))
    single = _event(_messages("v", 19, 1)[0], base, keys)

    def run_batch() -> float:
        started = time.process_time()
        for _ in range(persons // 10):
            commit(b"{}", batch, {}, None, True, now_ms)
        return (time.process_time() - started) / (persons // 10 * BATCH) * 1e6

    def run_single() -> float:
        started = time.process_time()
        for blob, open_, due in histories:
            commit(blob, [single], open_, due, due is not None and due <= now_ms, now_ms)
        return (time.process_time() - started) / persons * 1e6

    return {
        "batch_us_per_event": round(min(run_batch() for _ in range(repeats)), 1),
        "single_us_per_event": round(min(run_single() for _ in range(repeats)), 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sweep-persons", type=int, default=2000)
    parser.add_argument(
        "--cpu", action="store_true", help="only the in-process evaluation CPU per event"
    )
    args = parser.parse_args(argv)
    if args.cpu:
        figures = evaluation_cpu()
        print("SEGMENTSCPU " + json.dumps(figures), flush=True)
        return figures
    admin = LOCAL_PG if local_postgres_available() else embedded_postgres(Path(".footfall/bench"))
    results: dict[str, Any] = {"rounds": []}
    with scratch_database(admin) as dsn, tempfile.TemporaryDirectory() as tmp:
        server = start_collector(dsn, 2, Path(tmp), "warning")
        try:
            plain = make_site(dsn, allowed_origins=["*"],
                              settings={"allow_undeclared_events": True})  # fmt: skip
            segmented = make_site(dsn, allowed_origins=["*"],
                                  settings={"allow_undeclared_events": True})  # fmt: skip
            _define(dsn, segmented[0], twenty_segments())
            for _ in range(args.rounds):
                for label, (_, key) in (("without", plain), ("with_20", segmented)):
                    batch = asyncio.run(_closed_loop(server.port, key, args.seconds,
                                                     per_request=BATCH, path="/v1/batch",
                                                     origin=True, pid=server.proc.pid))  # fmt: skip
                    single = asyncio.run(_closed_loop(server.port, key, args.seconds,
                                                      per_request=1, path="/v1/track",
                                                      origin=True, pid=server.proc.pid))  # fmt: skip
                    entry = {"label": label, "batch": batch, "single": single}
                    results["rounds"].append(entry)
                    print(json.dumps(entry), flush=True)
            best = {
                label: {
                    kind: max(
                        (r[kind] for r in results["rounds"] if r["label"] == label),
                        key=lambda x: x["events_s"] if kind == "batch" else x["requests_s"],
                    )
                    for kind in ("batch", "single")
                }
                for label in ("without", "with_20")
            }
            results["best"] = best
            results["ratio_batch_events"] = round(
                best["with_20"]["batch"]["events_s"] / best["without"]["batch"]["events_s"], 3
            )
            results["ratio_single_requests"] = round(
                best["with_20"]["single"]["requests_s"] / best["without"]["single"]["requests_s"],
                3,
            )
            results["cpu_ratio_batch"] = round(
                best["without"]["batch"]["collector_cpu_us_per_event"]
                / best["with_20"]["batch"]["collector_cpu_us_per_event"],
                3,
            )
            results["cpu_ratio_single"] = round(
                best["without"]["single"]["collector_cpu_us_per_event"]
                / best["with_20"]["single"]["collector_cpu_us_per_event"],
                3,
            )
            results["sweeper_lag"] = _sweeper_lag(dsn, server.port, args.sweep_persons, plain[1])
            with psycopg.connect(dsn) as conn:
                row = conn.execute(
                    "SELECT count(*), avg(pg_column_size(state)) FROM segment_state"
                    " WHERE site_id = %s",
                    (segmented[0],),
                ).fetchone()
            results["state_rows"], results["state_bytes_avg"] = row[0], round(float(row[1] or 0))
        finally:
            with contextlib.suppress(Exception):
                server.stop()
    print("SEGMENTSBENCH " + json.dumps(results), flush=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
