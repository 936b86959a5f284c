"""Webhook latency: ``python -m tests.perf.webhook_latency`` (see docs/benchmark.md#webhooks).

From the commit of the transaction that enqueued a webhook to its arrival at a
loopback receiver (which verifies every signature with the ``standardwebhooks``
package), with real ``footfall webhooks dispatch`` processes at their default
settings (so the dispatcher is woken by the enqueuing transaction's NOTIFY, not
by its poll). Scenarios: one message per transaction at a steady rate with one
dispatcher and with three; then a burst of many messages in one transaction.
Besides latency and rate, the CPU time per message of the dispatcher processes and
of the PostgreSQL backends serving them (from /proc), and the dispatchers' database
transactions per message: figures that depend much less on what else the machine
is doing.

``--backend DIR`` runs the dispatchers from another checkout's ``backend/`` (say,
main before a change), with the same receiver and enqueuer: ``--backend`` once
with the old tree and once without, in one sitting, gives a fair before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from footfall.storage import webhooks
from footfall.webhooks.message import generate_secret
from tests.support import (
    LOCAL_PG,
    embedded_postgres,
    local_postgres_available,
    make_site,
    scratch_database,
)
from tests.webhooks.conftest import DispatchProcess, add_endpoint, outbox, wait_until
from tests.webhooks.receiver import Receiver

DEFAULTS = {  # the shipped settings, not the tests' fast ones
    "FOOTFALL_WEBHOOK_TIMEOUT_S": "10",
    "FOOTFALL_WEBHOOK_LEASE_S": "60",
    "FOOTFALL_WEBHOOK_BACKOFF_BASE_S": "10",
    "FOOTFALL_WEBHOOK_POLL_S": "5",
    "FOOTFALL_LOG_LEVEL": "warning",
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _figures(latencies: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in latencies]
    return {
        "n": len(ms),
        "p50_ms": round(_percentile(ms, 0.50), 2),
        "p95_ms": round(_percentile(ms, 0.95), 2),
        "p99_ms": round(_percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def _cpu_s(pids: list[int]) -> float | None:
    """User + system CPU seconds the processes used so far (None where /proc is missing)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _backend_cpu(dsn: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to the benchmark's
    database (the dispatchers' and, while it runs, the enqueuer's; not this query's)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    cpu = {}
    for (pid,) in pids:
        seconds = _cpu_s([pid])
        if seconds is not None:
            cpu[pid] = seconds
    return cpu


def _backend_ms_per_msg(before: dict[int, float], after: dict[int, float], messages: int) -> float:
    """What the backends alive at the end used meanwhile (those started since: all of
    it). The enqueuer's has exited by then, so it is left out."""
    used = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
    return round(used * 1000 / messages, 3)


def _commits(dsn: str) -> int:
    """Transactions committed in the benchmark's database so far (as far as the
    statistics collector knows: a backend reports them at the latest when it exits)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def _cpu_ms_per_msg(before: float | None, after: float | None, messages: int) -> float | None:
    if before is None or after is None:
        return None
    return round((after - before) * 1000 / messages, 3)


async def _enqueue_paced(
    dsn: str, site_id: int, prefix: str, count: int, rate: float
) -> dict[str, float]:
    """One message per transaction, ``rate`` a second; commit time of each id."""
    committed: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        start = time.perf_counter()
        for n in range(count):
            due = start + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            message_id = f"{prefix}-{n}"
            data = {"segment": "bench", "person_id": n, "anonymous_id": f"a{n}"}
            await webhooks.enqueue(conn, site_id, ["bench"], "segment.entered", data, message_id)
            await conn.commit()
            committed[message_id] = time.time()
    return committed


async def _enqueue_burst(
    dsn: str, site_id: int, prefix: str, count: int
) -> tuple[list[str], float]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        messages = [
            webhooks.Message(
                site_id, ["bench"], "segment.entered", {"segment": "bench", "n": n}, f"{prefix}-{n}"
            )
            for n in range(count)
        ]
        await webhooks.enqueue_many(conn, messages)
        await conn.commit()
        return [m.message_id for m in messages], time.time()


def run(
    dsn: str,
    *,
    count: int,
    rate: float,
    burst: int,
    log_dir: Path,
    dispatchers: tuple[int, ...] = (1, 3),
    backend: Path | None = None,
) -> dict[str, Any]:
    site_id, _ = make_site(dsn)
    secret = generate_secret()
    results: dict[str, Any] = {"rate_per_s": rate}
    env = dict(DEFAULTS)
    if backend is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(backend), os.environ.get("PYTHONPATH", "")])
        results["dispatcher_backend"] = str(backend)
    with Receiver(secret) as receiver:
        add_endpoint(dsn, site_id, "bench", receiver.url, secret)
        for n in dispatchers:
            commits = _commits(dsn)
            procs = [DispatchProcess(dsn, log_dir / f"bench-{n}-{i}.log", **env) for i in range(n)]
            pids = [proc.proc.pid for proc in procs]
            try:
                time.sleep(1.0)  # every dispatcher listening
                prefix = f"steady{n}"
                cpu, db = _cpu_s(pids), _backend_cpu(dsn)
                committed = asyncio.run(_enqueue_paced(dsn, site_id, prefix, count, rate))
                receiver.wait_ids(committed, 120)
                latencies = [receiver.first_arrival[i] - committed[i] for i in committed]
                results[f"steady_{n}_dispatchers"] = {
                    **_figures(latencies),
                    "cpu_ms_per_msg": _cpu_ms_per_msg(cpu, _cpu_s(pids), count),
                    "postgres_cpu_ms_per_msg": _backend_ms_per_msg(db, _backend_cpu(dsn), count),
                }

                cpu, db = _cpu_s(pids), _backend_cpu(dsn)
                ids, at = asyncio.run(_enqueue_burst(dsn, site_id, f"burst{n}", burst))
                receiver.wait_ids(ids, 240)
                last = max(receiver.first_arrival[i] for i in ids)
                results[f"burst_{n}_dispatchers"] = {
                    "messages": burst,
                    "last_arrival_s": round(last - at, 3),
                    "messages_per_s": round(burst / (last - at), 1),
                    "cpu_ms_per_msg": _cpu_ms_per_msg(cpu, _cpu_s(pids), burst),
                    "postgres_cpu_ms_per_msg": _backend_ms_per_msg(db, _backend_cpu(dsn), burst),
                }
            finally:
                for proc in procs:
                    proc.terminate()
            time.sleep(1.0)  # the exited backends' statistics reach pg_stat_database
            # Everything but the enqueuing transactions (one per steady message, one
            # burst) and this count's own: the dispatchers' claims, records, housekeeping.
            dispatcher_commits = _commits(dsn) - commits - count - 1 - 1
            results[f"db_commits_per_msg_{n}_dispatchers"] = round(
                dispatcher_commits / (count + burst), 3
            )
        wait_until(
            lambda: all(r["status"] == "delivered" for r in outbox(dsn, site_id).values()),
            timeout=60,
            what="all delivered",
        )
    counts = receiver.counts()
    results["received"] = sum(counts.values())
    results["duplicates"] = sum(n - 1 for n in counts.values())
    results["unverified"] = sum(not r.verified for r in receiver.received)
    results["load_average"] = os.getloadavg()[0]
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000, help="messages per steady run")
    parser.add_argument("--rate", type=float, default=100.0, help="transactions per second")
    parser.add_argument("--burst", type=int, default=2000, help="messages in the burst")
    parser.add_argument("--quick", action="store_true", help="200 messages, burst of 300")
    parser.add_argument(
        "--dispatchers",
        type=int,
        nargs="+",
        default=[1, 3],
        help="dispatcher processes per scenario (default: 1 3)",
    )
    parser.add_argument(
        "--backend",
        type=Path,
        help="run the dispatchers from this backend/ directory (another checkout)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.burst = 200, 300
    admin = (
        LOCAL_PG
        if local_postgres_available()
        else embedded_postgres(Path(tempfile.mkdtemp()) / "pg")
    )
    with scratch_database(admin) as dsn, tempfile.TemporaryDirectory() as logs:
        results = run(
            dsn,
            count=args.count,
            rate=args.rate,
            burst=args.burst,
            log_dir=Path(logs),
            dispatchers=tuple(args.dispatchers),
            backend=args.backend,
        )
    print("webhook latency:", json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
