"""Where PostgreSQL's time per event goes: a sampling profiler over ``pg_stat_activity``.

``pg_stat_statements`` needs ``shared_preload_libraries`` (a server restart),
which a shared development server does not allow. Instead a thread asks
``pg_stat_activity`` ~200 times a second which statement each backend of the
benchmark's database is running and whether it waits (``wait_event``): samples
of running statements with no wait are CPU; the others are named by what they
wait for (a lock, WAL being flushed at COMMIT, the client; a backend idle inside
a transaction is waiting for the collector's next statement). Multiplied by the
PostgreSQL CPU per event measured in the same run, the on-CPU shares give µs
per event per statement.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from typing import Any

import psycopg

SAMPLE = """
SELECT query, wait_event_type, wait_event, backend_type, state
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND state IN ('active', 'idle in transaction')
"""

_SPACE = re.compile(r"\s+")
_LITERAL = re.compile(r"'[^']*'|\$\d+|\b\d+\b")


def statement_name(query: str) -> str:
    """A statement's short, parameter-free name (its first ~90 characters)."""
    text = _LITERAL.sub("?", _SPACE.sub(" ", query).strip())
    if text.upper().startswith("COPY "):
        return text.split("(")[0].strip() + " (...) FROM STDIN"
    return text[:90] + ("..." if len(text) > 90 else "")


class ActivitySampler:
    """Samples the benchmark database's active backends in a thread, start() to stop()."""

    def __init__(self, dsn: str, hz: float = 200.0) -> None:
        self.dsn = dsn
        self.interval = 1.0 / hz
        self.on_cpu: Counter[str] = Counter()
        self.waiting: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pg-activity", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ActivitySampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                # Each sample is a new snapshot (not the transaction's cached one).
                next_at = time.perf_counter()
                while not self._stop.is_set():
                    rows = conn.execute(SAMPLE).fetchall()
                    self.samples += 1
                    for query, wait_type, wait_event, backend_type, state in rows:
                        if state != "active":  # between two statements of a transaction
                            self.waiting["(in a transaction, waiting for the collector)"] += 1
                            continue
                        if backend_type != "client backend":
                            name = backend_type
                        else:
                            name = statement_name(query or "")
                        if wait_type is None:
                            self.on_cpu[name] += 1
                        else:
                            self.waiting[f"{name}  [{wait_type}:{wait_event}]"] += 1
                    next_at += self.interval
                    pause = next_at - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    else:
                        next_at = time.perf_counter()
        except psycopg.Error as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def report(self, postgres_us_per_event: float | None, top: int = 15) -> dict[str, Any]:
        """On-CPU shares per statement (and µs per event), and the waits."""
        cpu_total = sum(self.on_cpu.values())
        busy = cpu_total + sum(self.waiting.values())
        rows = []
        for name, count in self.on_cpu.most_common(top):
            share = count / cpu_total if cpu_total else 0.0
            us = share * postgres_us_per_event if postgres_us_per_event is not None else None
            rows.append({"statement": name, "cpu_share": share, "us_per_event": us})
        waits = [
            {"what": name, "share_of_active": count / busy if busy else 0.0}
            for name, count in self.waiting.most_common(top)
        ]
        return {
            "samples": self.samples,
            "active_samples": busy,
            "on_cpu_samples": cpu_total,
            "mean_active_backends": busy / self.samples if self.samples else 0.0,
            "statements": rows,
            "waits": waits,
            "error": self.error,
        }


def print_report(report: dict[str, Any], indent: str = "  ") -> None:
    if report.get("error"):
        print(f"{indent}pg_stat_activity sampler failed: {report['error']}")
    print(
        f"{indent}{report['samples']} snapshots of pg_stat_activity,"
        f" {report['mean_active_backends']:.2f} backends active on average;"
        f" {report['on_cpu_samples']} on CPU, {report['active_samples'] - report['on_cpu_samples']}"
        " waiting"
    )
    print(f"{indent}on CPU, by statement:")
    for row in report["statements"]:
        us = "" if row["us_per_event"] is None else f"{row['us_per_event']:7.1f} us/event"
        print(f"{indent}  {row['cpu_share']:6.1%} {us}  {row['statement']}")
    print(f"{indent}waiting (share of active samples):")
    for row in report["waits"]:
        print(f"{indent}  {row['share_of_active']:6.1%}  {row['what']}")
