"""Where a request's time goes, from the collector's ``/metrics`` before and after a run.

The collector observes every ingest request stage by stage
(``footfall_ingest_stage_seconds{stage}``), the event loop's lag, GC pauses, the
group commits and the pool's waits (docs/operations.md). Two scrapes around a
run give that run's histograms; percentiles are interpolated within buckets
(so they are as fine as the buckets: 0.5, 1, 2, 5, 10, 20, 35, 50, 75, 100,
150, 200, 300, 500 ms ...).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from footfall.api.metrics import INGEST_STAGES

Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str) -> Scrape:
    """Every sample of ``/metrics`` (all workers: the collector sums them)."""
    try:
        text = httpx.get(base_url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def histogram(
    before: Scrape, after: Scrape, name: str, **labels: str
) -> tuple[list[tuple[float, float]], float, float]:
    """(cumulative buckets [(le, count)], count, sum) of ``name`` between two scrapes,
    summed over the label values not given."""
    wanted = set(labels.items())
    buckets: dict[float, float] = defaultdict(float)
    count = total = 0.0
    for (sample, sample_labels), value in after.items():
        if not wanted <= sample_labels:
            continue
        delta = value - before.get((sample, sample_labels), 0.0)
        if sample == name + "_bucket":
            buckets[float(dict(sample_labels)["le"])] += delta
        elif sample == name + "_count":
            count += delta
        elif sample == name + "_sum":
            total += delta
    return sorted(buckets.items()), count, total


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile, linear within its bucket (Prometheus' histogram_quantile)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(le):
                return lower  # past the last finite bound: at least that
            inside = cumulative - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = le, cumulative
    return lower


def summary(before: Scrape, after: Scrape, name: str, **labels: str) -> dict[str, Any]:
    buckets, count, total = histogram(before, after, name, **labels)
    out: dict[str, Any] = {"count": int(count), "mean_ms": total / count * 1000 if count else None}
    for q in (0.5, 0.9, 0.99):
        value = quantile(buckets, q)
        out[f"p{round(q * 100)}_ms"] = None if value is None else value * 1000
    out["sum_s"] = total
    return out


def stage_report(before: Scrape, after: Scrape) -> dict[str, Any]:
    """Per stage, event-loop lag, GC pauses, commits and pool waits during a run."""
    if not after:
        return {}
    stages = {
        s: summary(before, after, "footfall_ingest_stage_seconds", stage=s) for s in INGEST_STAGES
    }
    requests = summary(before, after, "footfall_http_request_duration_seconds", route="/v1/{kind}")
    gc = {
        g: summary(before, after, "footfall_gc_pause_seconds", generation=g)
        for g in ("0", "1", "2")
    }

    def gauge_delta(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    pool_num = gauge_delta("footfall_db_pool_requests", kind="num")
    return {
        "requests": requests,
        "stages": stages,
        "loop_lag": summary(before, after, "footfall_event_loop_lag_seconds"),
        "gc": gc,
        "commit": summary(before, after, "footfall_writer_commit_duration_seconds"),
        "commit_messages": histogram(before, after, "footfall_writer_commit_messages")[1:],
        "pool": {
            "checkouts": int(pool_num),
            "queued": int(gauge_delta("footfall_db_pool_requests", kind="queued")),
            "wait_ms_total": gauge_delta("footfall_db_pool_wait_seconds") * 1000,
        },
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_stage_report(report: dict[str, Any], indent: str = "  ") -> None:
    if not report:
        print(f"{indent}(no /metrics: stage timings not available)")
        return
    req = report["requests"]
    print(
        f"{indent}where an ingest request's time went ({req['count']} requests; ms, from"
        " /metrics buckets):"
    )
    print(f"{indent}  {'stage':<15} {'mean':>7} {'p50':>7} {'p90':>7} {'p99':>7}  share of time")
    total = req["sum_s"] or 1.0
    rows = [(s, v) for s, v in report["stages"].items()] + [("= request", req)]
    for stage, v in rows:
        share = f"{v['sum_s'] / total:6.1%}" if stage != "= request" else ""
        print(
            f"{indent}  {stage:<15} {_ms(v['mean_ms']):>7} {_ms(v['p50_ms']):>7}"
            f" {_ms(v['p90_ms']):>7} {_ms(v['p99_ms']):>7}  {share}"
        )
    lag = report["loop_lag"]
    print(
        f"{indent}event-loop lag (25 ms timer, {lag['count']} probes): p50 {_ms(lag['p50_ms'])},"
        f" p90 {_ms(lag['p90_ms'])}, p99 {_ms(lag['p99_ms'])} ms"
    )
    gcs = ", ".join(
        f"gen{g} {v['count']}x mean {_ms(v['mean_ms'])} p99 {_ms(v['p99_ms'])} ms"
        for g, v in report["gc"].items()
    )
    print(f"{indent}GC pauses: {gcs}")
    commit = report["commit"]
    count, messages = report["commit_messages"]
    print(
        f"{indent}group commits: {commit['count']}, {messages / max(1, count):.0f} messages"
        f" each; duration p50 {_ms(commit['p50_ms'])}, p99 {_ms(commit['p99_ms'])} ms"
    )
    pool = report["pool"]
    waited = pool["wait_ms_total"] / max(1, pool["checkouts"])
    print(
        f"{indent}pool: {pool['checkouts']} checkouts, {pool['queued']} waited for a"
        f" connection, {waited:.2f} ms wait per checkout"
    )
