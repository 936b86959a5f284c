"""Cost as the work grows (issue 12, point 5): ``python -m tests.perf.bench --growth``.

In one run, each phase a wrk run with the rows check (stored == acknowledged)
and the CPU of the collector and of PostgreSQL per event:

1. batch sizes 1, 20, 100, 500 to ``/v1/batch`` (2 workers, 100 events per visitor;
   batches over 20 with fewer connections, the same messages in flight);
2. every request a new visitor (batches of 20);
3. half of the batch-20 rate, open loop, with the collector's latency by stage
   (and, with ``--profile``, a profiled batch-20 run: py-spy and pg_stat_activity);
4. one worker instead of two (batches of 20);
5. batches of 20 into a site that already holds 10 million events (a copy of a
   cached template, tests/perf/preload.py), against 2 at 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.perf import bench, latency, preload

SIZES = (1, 20, 100, 500)
TARGET_10M_SLOWER = 0.15


def connections_for(size: int, connections: int) -> int:
    """Fewer connections for big batches: as many messages in flight as ``connections``
    batches of 20 (64 x 500 messages would wait longer than wrk's timeout)."""
    return min(connections, max(4, connections * bench.BATCH_SIZE // size))


def phase_row(name: str, run: bench.Run, workers: int, visitors: str, stored: str) -> dict:
    return {
        "phase": name,
        "workers": workers,
        "batch": run.messages_per_request,
        "visitors": visitors,
        "stored_before": stored,
        "connections": run.connections,
        "events_s": run.events_s,
        "req_s": run.req_s,
        "p50_ms": run.latency_ms.get("p50"),
        "p99_ms": run.latency_ms.get("p99"),
        "collector_us": round(bench.cpu_us(run, "server_cores"), 1),
        "postgres_us": round(bench.cpu_us(run, "postgres_cores"), 1),
        "events_per_commit": run.events_per_commit,
        "rows": run.verdict,
        "non2xx": run.non2xx,
        "other_cores": run.cpu.get("other_cores"),
    }


def run_growth(
    args: Any,
    wrk: str,
    tmp: Path,
    admin_dsn: str,
    dsn: str,
    measured: Callable[[str, Callable[[], bench.Run]], bench.Run],
    quiet: Callable[[str], None],
) -> dict[str, Any]:
    """Every phase; returns the runs, the half-load stage report, the profile and the table."""
    conns = args.growth_connections
    duration = args.duration
    rows: list[dict[str, Any]] = []
    out: dict[str, Any] = {"runs": {}}
    runs: dict[str, bench.Run] = out["runs"]

    print(f"\n== growth: collector, {args.workers} workers, c={conns}", flush=True)
    collector = bench.start_collector(dsn, args.workers, tmp, args.log_level)
    try:
        meter = bench.CpuMeter(collector.proc.pid, bench.db_name(dsn))
        bench.wrk_run(wrk, tmp, collector, "warmup", "batch", 16, 2 if args.quick else 3, dsn)
        for size in args.growth_sizes:
            c = connections_for(size, conns)
            runs[f"batch{size}"] = measured(
                f"batch{size}",
                lambda size=size, c=c: bench.wrk_run(
                    wrk, tmp, collector, f"batch{size}", "batch", c, duration, dsn, meter,
                    size=size,
                ),
            )  # fmt: skip
            per = max(1, bench.VISITOR_EVENTS // size)
            rows.append(
                phase_row(
                    f"batch size {size}",
                    runs[f"batch{size}"],
                    args.workers,
                    f"{per * size} events each",
                    "0",
                )
            )
        base = runs.get(f"batch{bench.BATCH_SIZE}") or max(runs.values(), key=lambda r: r.events_s)
        size = base.messages_per_request
        runs["new-visitors"] = measured(
            "new-visitors",
            lambda: bench.wrk_run(
                wrk, tmp, collector, "new-visitors", "batch", conns, duration, dsn, meter,
                size=size, visitor_events=1,
            ),
        )  # fmt: skip
        rows.append(
            phase_row(
                "every request a new visitor",
                runs["new-visitors"],
                args.workers,
                "1 request each",
                "0",
            )
        )
        rate = base.req_s / 2
        half = measured(
            "half-load",
            lambda: bench.open_loop_run(collector, dsn, rate, duration, max(8, conns)),
        )
        print(f"      ({half.generator}; latency counted from the scheduled start)")
        runs["half-load"] = half
        if args.profile:
            print(f"\n== profile, batches of {size} (py-spy + pg_stat_activity)", flush=True)
            quiet("profile")
            out["profile"] = bench.profile_run(
                wrk, tmp, collector, dsn, "batch", conns, duration, args.profile, reference=base
            )
            bench.print_profile(out["profile"])
    finally:
        collector.stop()

    if args.workers != 1:
        print("\n== growth: 1 worker", flush=True)
        collector = bench.start_collector(dsn, 1, tmp, args.log_level)
        try:
            meter = bench.CpuMeter(collector.proc.pid, bench.db_name(dsn))
            bench.wrk_run(wrk, tmp, collector, "warmup", "batch", 16, 2, dsn)
            runs["one-worker"] = measured(
                "one-worker",
                lambda: bench.wrk_run(
                    wrk, tmp, collector, "one-worker", "batch", conns, duration, dsn, meter,
                    size=size,
                ),
            )  # fmt: skip
            rows.append(phase_row("1 worker", runs["one-worker"], 1, "100 events each", "0"))
        finally:
            collector.stop()

    if args.preload_events:
        n = args.preload_events
        print(f"\n== growth: a site that already holds {n:,} events", flush=True)
        started = time.perf_counter()
        with preload.preloaded_copy(admin_dsn, n) as loaded:
            out["preload"] = {
                "events": loaded.events,
                "template": loaded.template,
                "built_s": round(loaded.built_s, 1),
                "copy_s": round(loaded.copy_s, 1),
            }
            print(
                f"  {loaded.template}: "
                + (f"built in {loaded.built_s:.0f} s, " if loaded.built_s else "cached, ")
                + f"copied in {loaded.copy_s:.0f} s",
                flush=True,
            )
            collector = bench.start_collector(loaded.dsn, args.workers, tmp, args.log_level)
            try:
                meter = bench.CpuMeter(collector.proc.pid, loaded.database)
                bench.wrk_run(wrk, tmp, collector, "warmup", "batch", 16, 3, loaded.dsn)
                since = loaded.loaded_until + timedelta(seconds=1)
                runs["preloaded"] = measured(
                    "preloaded",
                    lambda: bench.wrk_run(
                        wrk, tmp, collector, "preloaded", "batch", conns, duration, loaded.dsn,
                        meter, size=size, site=(loaded.site_id, loaded.write_key), since=since,
                    ),
                )  # fmt: skip
                rows.append(
                    phase_row(
                        f"{n:,} events stored",
                        runs["preloaded"],
                        args.workers,
                        "100 events each",
                        f"{n:,}",
                    )
                )
            finally:
                collector.stop()
        out["preload"]["phase_s"] = round(time.perf_counter() - started, 1)

    out["table"] = rows
    out["ratios"] = ratios(runs, size)
    out["half_load"] = _half_summary(runs.get("half-load"))
    out["runs"] = {key: run.__dict__ for key, run in runs.items()}
    return out


def _half_summary(half: bench.Run | None) -> dict[str, Any]:
    if half is None:
        return {}
    return {
        "generator": half.generator,
        "req_s": half.req_s,
        "events_s": half.events_s,
        "latency_ms": half.latency_ms,
        "rows": half.verdict,
        "stages": half.stages,
    }


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The growth run's verdicts and headline figures (and the ceilings, if measured)."""
    growth = results["growth"]
    runs = [bench.Run(**r) for r in growth["runs"].values()]
    verdicts = [r.verdict for r in runs] + [d["verdict"] for r in runs for d in r.discarded]
    base = growth["runs"].get(f"batch{bench.BATCH_SIZE}")
    copy = results.get("ceilings", {}).get("copy", {}).get("rows_s")
    return {
        "rows_check": "MATCH" if verdicts and all(v == "MATCH" for v in verdicts) else "MISMATCH",
        "non2xx": sum(r.non2xx for r in runs),
        "table": growth["table"],
        "ratios": growth["ratios"],
        "half_load_latency_ms": growth["half_load"].get("latency_ms"),
        "ratio_events_to_copy": round(base["events_s"] / copy, 3) if base and copy else None,
        "disturbed_runs": [
            f"{r.label} ({r.cpu.get('other_cores')} cores)"
            for r in runs
            if r.cpu.get("other_cores", 0.0) > bench.OTHER_LIMIT
        ],
    }


def ratios(runs: dict[str, bench.Run], size: int) -> dict[str, float | None]:
    """Each variation against the batch-of-20, 2-worker, 0-row, 100-events-a-visitor run."""
    base = runs.get(f"batch{size}")

    def ratio(key: str) -> float | None:
        other = runs.get(key)
        if base is None or other is None or not base.events_s:
            return None
        return round(other.events_s / base.events_s, 3)

    return {
        "new_visitors_vs_100_events": ratio("new-visitors"),
        "one_worker_vs_two": ratio("one-worker"),
        "preloaded_vs_empty": ratio("preloaded"),
        "preloaded_collector_cpu_vs_empty": _cpu_ratio(base, runs.get("preloaded"), "server_cores"),
        "preloaded_postgres_cpu_vs_empty": _cpu_ratio(
            base, runs.get("preloaded"), "postgres_cores"
        ),
    }


def _cpu_ratio(base: bench.Run | None, other: bench.Run | None, key: str) -> float | None:
    if base is None or other is None:
        return None
    a, b = bench.cpu_us(base, key), bench.cpu_us(other, key)
    return round(b / a, 3) if a else None


def print_growth(growth: dict[str, Any]) -> None:
    print("\n== growth (every phase: rows stored == acknowledged?)")
    head = (
        "| phase | workers | batch | conns | visitors | ev/s | req/s | p50 / p99 ms |"
        " collector µs/ev | PostgreSQL µs/ev | ev/commit | rows |"
    )
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for r in growth["table"]:
        print(
            f"| {r['phase']} | {r['workers']} | {r['batch']} | {r['connections']} | {r['visitors']} |"
            f" {r['events_s']:,.0f} | {r['req_s']:,.0f} | {r['p50_ms']:.0f} / {r['p99_ms']:.0f} |"
            f" {r['collector_us']} | {r['postgres_us']} | {r['events_per_commit']} |"
            f" {r['rows']}{'' if not r['non2xx'] else ', non-2xx ' + str(r['non2xx'])} |"
        )
    ratios = growth["ratios"]

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    print(
        f"  new visitor per request ÷ 100 events per visitor: {pct(ratios['new_visitors_vs_100_events'])};"
        f" 1 worker ÷ 2: {pct(ratios['one_worker_vs_two'])}"
    )
    pre = ratios["preloaded_vs_empty"]
    if pre is not None:
        verdict = "PASS" if pre >= 1 - TARGET_10M_SLOWER else "FAIL"
        print(
            f"  preloaded ÷ empty: {pct(pre)} of the events/s ({verdict}: target >="
            f" {1 - TARGET_10M_SLOWER:.0%}); CPU per event: collector"
            f" {pct(ratios['preloaded_collector_cpu_vs_empty'])}, PostgreSQL"
            f" {pct(ratios['preloaded_postgres_cpu_vs_empty'])} of the empty database's"
        )
    half = growth["half_load"]
    if half:
        lat = half["latency_ms"]
        print(
            f"\n== half load ({half['generator']}): p50 {lat.get('p50')} ms, p90 {lat.get('p90')}"
            f" ms, p99 {lat.get('p99')} ms, p99.9 {lat.get('p999')} ms; rows {half['rows']}"
        )
        latency.print_stage_report(half["stages"])
