"""/metrics places an ingest request's time in stages; loop lag and GC pauses are observed."""

from __future__ import annotations

import gc
import uuid

import httpx

from footfall.api import metrics
from footfall.api.metrics import INGEST_STAGES
from tests.ops.metrics_text import sample
from tests.support import Collector, wait_until


def _stage(url: str, stage: str, what: str) -> float:
    return sample(url, f"footfall_ingest_stage_seconds_{what}", stage=stage)


def test_every_stage_once_per_ingest_request_and_they_add_up(collector: Collector) -> None:
    url = collector.base_url
    route = {"route": "/v1/{kind}"}
    before = {s: (_stage(url, s, "count"), _stage(url, s, "sum")) for s in INGEST_STAGES}
    total_before = sample(url, "footfall_http_request_duration_seconds_sum", **route)
    batch = [
        {"type": "track", "event": "Element Clicked", "messageId": str(uuid.uuid4()),
         "anonymousId": "anon-stages", "properties": {"selector": "a", "tag": "a"}}
        for _ in range(3)
    ]  # fmt: skip
    response = httpx.post(url + "/v1/batch", json={"batch": batch}, auth=(collector.write_key, ""))
    assert response.json()["accepted"] == 3
    httpx.get(url + "/healthz")  # not an ingest request: no stages
    after = {s: (_stage(url, s, "count"), _stage(url, s, "sum")) for s in INGEST_STAGES}
    total = sample(url, "footfall_http_request_duration_seconds_sum", **route) - total_before

    assert {s: after[s][0] - before[s][0] for s in INGEST_STAGES} == dict.fromkeys(INGEST_STAGES, 1)
    spent = {s: after[s][1] - before[s][1] for s in INGEST_STAGES}
    assert all(v >= 0 for v in spent.values()), spent
    assert spent["commit"] > 0 and spent["pipeline"] > 0, spent
    # The stages partition the request's duration (framework takes the remainder).
    assert abs(sum(spent.values()) - total) < 1e-6, (spent, total)


def test_refused_request_has_no_stages(collector: Collector) -> None:
    url = collector.base_url
    before = _stage(url, "read", "count")
    response = httpx.post(url + "/v1/batch", json={"batch": []}, auth=("ffw_nope", ""))
    assert response.status_code == 401
    assert _stage(url, "read", "count") == before


def test_loop_lag_and_gc_pauses_observed(collector: Collector) -> None:
    url = collector.base_url
    lag = sample(url, "footfall_event_loop_lag_seconds_count")
    wait_until(lambda: sample(url, "footfall_event_loop_lag_seconds_count") > lag + 2)
    pauses = sample(url, "footfall_gc_pause_seconds_count", generation="2")
    gc.collect()  # the collector serves from a thread of this process
    assert sample(url, "footfall_gc_pause_seconds_count", generation="2") > pauses


def test_serving_gc_freezes_the_start_up_heap_and_times_collections() -> None:
    def pauses() -> float:
        return metrics.GC_PAUSE.labels("2")._sum.get()  # type: ignore[attr-defined]

    built_at_start = [[i] for i in range(1000)]  # tracked containers, alive throughout
    with metrics.serving_gc():
        assert gc.get_freeze_count() >= len(built_at_start)
        before = pauses()
        gc.collect()
        assert pauses() > before
    assert gc.get_freeze_count() == 0
