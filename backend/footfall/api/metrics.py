"""Prometheus metrics: ``GET /metrics``, and the counters the collector updates.

The metric objects are created once, at import, on prometheus_client's default
registry (so several apps in one test process share them; tests compare
deltas). With several worker processes ``footfall serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start: every process then
writes its values to files there, and ``/metrics``, whichever worker answers,
adds up all of them (gauges: the sum over live processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import APIRouter
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.responses import Response

from footfall.observability import STAGE_TIMER
from footfall.pipeline.types import BatchPlan, Failure

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("footfall.metrics")

MESSAGES = Counter(
    "footfall_messages",
    "Messages received, by outcome (accepted, duplicate, failed, refused, unavailable)"
    " and reason (the failure or refusal code)",
    ["outcome", "reason"],
)
UNDECLARED = Counter(
    "footfall_undeclared_events",
    "Track events stored without a schema (the site is not strict), also counted in accepted",
)
RATE_LIMITED = Counter(
    "footfall_rate_limited_requests", "Requests answered 429, by bucket (site, ip)", ["scope"]
)
REFUSED_REQUESTS = Counter(
    "footfall_refused_requests",
    "Requests refused whole: too_large (413, body over the limit, its messages unread),"
    " rate_limited (429), unavailable (503)",
    ["reason"],
)
_REFUSED_STATUS = {413: "too_large", 429: "rate_limited", 503: "unavailable"}
REQUESTS = Counter(
    "footfall_http_requests",
    "HTTP requests by route, method and status",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "footfall_http_request_duration_seconds",
    "Time from request to the end of the response, by route",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "footfall_batch_messages",
    "Messages per ingest request",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2500),
)
COMMIT_SECONDS = Histogram(
    "footfall_writer_commit_duration_seconds",
    "Duration of one group commit (insert, transaction steps, commit)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
COMMIT_MESSAGES = Histogram(
    "footfall_writer_commit_messages",
    "Messages (rows and failures) in one group commit",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
SWEEP_LAG = Histogram(
    "footfall_segment_sweep_lag_seconds",
    "Segment sweeper: time from a person's due time to their evaluation",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
QUEUE_DEPTH = Gauge(
    "footfall_writer_queue_depth",
    "Messages waiting for the writer (sum over processes)",
    multiprocess_mode="livesum",
)
POOL = Gauge(
    "footfall_db_pool_connections",
    "Database pool: size (open), available (idle), waiting (requests queued for one)",
    ["state"],
    multiprocess_mode="livesum",
)
POOL_MAX = Gauge(
    "footfall_db_pool_max_connections",
    "Configured maximum of the pool (sum over processes)",
    multiprocess_mode="livesum",
)

# Latency: where an ingest request's time goes (observability.StageTimer), how
# late the event loop runs a timer, how long the garbage collector stops it.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1,
    2.5, 5,
)  # fmt: skip
INGEST_STAGES = (
    "read",  # routing, body read (and gunzip), JSON parse
    "auth",  # client IP, rate limits, the site's write key and origin
    "privacy_inputs",  # the visitor salt and the consent ledger's entries (database)
    "pipeline",  # validation, consent, privacy, device, geo (CPU, on the event loop)
    "writer_queue",  # waiting for the group commit: linger, the commit before ours
    "commit",  # the group commit our rows were in (insert, transaction steps, COMMIT)
    "response",  # the answer: metrics, browser segments, JSON
    "framework",  # the rest: routing, middleware, sending
)
STAGE_SECONDS = Histogram(
    "footfall_ingest_stage_seconds",
    "Time an ingest request spent in each stage (docs/operations.md)",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
_STAGE_CHILDREN = {stage: STAGE_SECONDS.labels(stage) for stage in INGEST_STAGES}
LOOP_LAG = Histogram(
    "footfall_event_loop_lag_seconds",
    "How late the event loop ran a 25 ms timer: time something held the loop",
    buckets=_LATENCY_BUCKETS,
)
GC_PAUSE = Histogram(
    "footfall_gc_pause_seconds",
    "Python garbage collections (they stop the event loop), by generation",
    ["generation"],
    buckets=_LATENCY_BUCKETS,
)
POOL_REQUESTS = Gauge(
    "footfall_db_pool_requests",
    "Database pool checkouts since start: all (num) and those that had to wait (queued)",
    ["kind"],
    multiprocess_mode="livesum",
)
POOL_WAIT = Gauge(
    "footfall_db_pool_wait_seconds",
    "Time checkouts waited for a pooled connection since start (sum over processes)",
    multiprocess_mode="livesum",
)
LOOP_PROBE_S = 0.025

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus text format; all worker processes' values in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def count_batch(
    plan: BatchPlan,
    accepted: int,
    duplicates: int,
    messages: int,
    rejected: Sequence[Failure] = (),
    undeclared: int = 0,
) -> None:
    """Every message of a request that reached the writer, by outcome."""
    BATCH_SIZE.observe(messages)
    if accepted:
        MESSAGES.labels("accepted", "").inc(accepted)
    if undeclared:
        UNDECLARED.inc(undeclared)
    if duplicates:
        MESSAGES.labels("duplicate", "").inc(duplicates)
    for failure in [*plan.failures, *rejected]:
        MESSAGES.labels("failed", failure.reason).inc()
    for reason, count in plan.refused.items():
        MESSAGES.labels("refused", reason).inc(count)


def count_unavailable(messages: int) -> None:
    """Messages answered 503: nothing stored, the client retries."""
    MESSAGES.labels("unavailable", "storage_unavailable").inc(messages)


def count_rate_limited(scope: str, messages: int) -> None:
    RATE_LIMITED.labels(scope).inc()
    MESSAGES.labels("refused", "rate_limited").inc(messages)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    REQUEST_SECONDS.labels(route, method).observe(seconds)
    if status in _REFUSED_STATUS:
        REFUSED_REQUESTS.labels(_REFUSED_STATUS[status]).inc()
    timer = STAGE_TIMER.get()
    if timer is not None and timer.durations and 200 <= status < 300:
        timer.finish(seconds)
        for stage, spent in timer.durations.items():
            child = _STAGE_CHILDREN.get(stage)
            if child is not None:
                child.observe(spent)


def observe_commit(seconds: float, messages: int) -> None:
    COMMIT_SECONDS.observe(seconds)
    COMMIT_MESSAGES.observe(messages)


def observe_sweep(lags: Sequence[float]) -> None:
    for lag in lags:
        SWEEP_LAG.observe(lag)


async def sample_forever(state: Any, interval_s: float = 1.0) -> None:
    """Copy the writer's queue depth and the pool's stats into gauges, every second;
    meanwhile time the event loop's lag and the garbage collector's pauses (and keep
    the heap built at start-up out of the collector's full passes: :func:`serving_gc`).

    A failed sample is logged (once per distinct error in a row) and the loop goes
    on: a dead sampler would leave the gauges frozen at their last values.
    """
    last_error = ""
    probe = asyncio.create_task(probe_loop_lag(), name="footfall-loop-lag")
    try:
        with serving_gc():
            while True:
                try:
                    sample(state)
                    last_error = ""
                except Exception as exc:
                    if repr(exc) != last_error:
                        log.exception("metrics sample failed; gauges keep their last values")
                    last_error = repr(exc)
                await asyncio.sleep(interval_s)
    finally:
        probe.cancel()


async def probe_loop_lag(interval_s: float = LOOP_PROBE_S) -> None:
    """How late a timer fires: the longest stretch something held the event loop."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval_s)
        LOOP_LAG.observe(max(0.0, loop.time() - started - interval_s))


@contextlib.contextmanager
def serving_gc() -> Iterator[None]:
    """While serving: the start-up heap frozen, every collection's pause observed.

    Everything built at start-up (the app, the pipeline, schemas, pools: ~150,000
    objects) lives as long as the process, yet every full (generation 2) collection
    walked it, stopping the event loop for 40 ms on an idle machine and 400 ms on a
    busy one (docs/benchmark.md). ``gc.freeze()`` moves it out of the collector's
    reach (in constant time: no collection first, so what start-up left as cyclic
    garbage stays until exit, bounded by what start-up made); new objects are collected as
    before. Unfrozen on exit, so a process that builds and drops many apps (the
    tests) does not keep their cycles forever.
    """
    gc.freeze()
    started = [0.0]
    generations = [GC_PAUSE.labels(str(g)) for g in range(3)]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif started[0]:
            generations[min(2, max(0, int(info.get("generation", 2))))].observe(
                time.perf_counter() - started[0]
            )

    gc.callbacks.append(callback)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(callback)
        gc.unfreeze()


def sample(state: Any) -> None:
    QUEUE_DEPTH.set(state.writer.queue_depth)
    stats = state.pool.get_stats()
    POOL.labels("size").set(stats.get("pool_size", 0))
    POOL.labels("available").set(stats.get("pool_available", 0))
    POOL.labels("waiting").set(stats.get("requests_waiting", 0))
    POOL_MAX.set(state.pool.max_size)
    POOL_REQUESTS.labels("num").set(stats.get("requests_num", 0))
    POOL_REQUESTS.labels("queued").set(stats.get("requests_queued", 0))
    POOL_WAIT.set(stats.get("requests_wait_ms", 0) / 1000)


def process_exited() -> None:
    """Drop this process's live gauges from the multiprocess directory."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())
