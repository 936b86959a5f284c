"""What answering the consent ledger costs per request: the query vs. the per-process view.

``python -m tests.perf.consent_bench [--seconds 5] [--ledger-rows 200000]`` fills a
scratch database's ledger, then for each request shape (one message; a batch of 20
messages of one visitor with a user id) and each concurrency (1 and 32 requests in
flight, closed loop) measures, in one run:

- ``query``: ``load_ledger`` (one pooled query per request: what ``_privacy_inputs``
  did before the view);
- ``view``: ``ConsentView.ledger`` for visitors it holds (the round trip on the
  listening connection, shared by the requests waiting for it, and dictionary reads);
- ``view-miss``: ``ConsentView.ledger`` for a new visitor every request (the round
  trip, then the query for the missing ids, then holding the answer).

For each: requests/s, this process's CPU µs per request and PostgreSQL's (the
backends of the scratch database only). Prints a table and ``CONSENTBENCH {json}``.
On a shared machine, compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from footfall.pipeline.consent import LedgerView, new_entry
from footfall.pipeline.privacy import keyring_of
from footfall.settings import Settings
from footfall.storage import consent
from footfall.storage.consent import load_ledger
from footfall.storage.consent_view import ConsentView
from footfall.storage.engine import create_pool
from tests.support import (
    LOCAL_PG,
    embedded_postgres,
    local_postgres_available,
    make_site,
    scratch_database,
)

KEYRING = keyring_of("k1", "consent-bench-key-0123456789abcdef0123456789")
CLK_TCK = os.sysconf("SC_CLK_TCK")
VISITORS = 1000  # held by the view in the "view" runs


def _fill(dsn: str, site_id: int, rows: int, visitors: list[str]) -> None:
    """``rows`` decisions of other visitors, then one for each benchmark visitor."""
    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY consent_log (site_id, anonymous_id, pii_key_id, analytics, granted, denied,"
            " source, decided_at) FROM STDIN"
        ) as copy:
            for n in range(rows):
                decided_at = now - timedelta(seconds=n)
                copy.write_row((site_id, f"other-{n}", "k1", n % 3 != 0, [], [], "api", decided_at))
        for n, visitor in enumerate(visitors):
            entry = new_entry(
                KEYRING.current,
                anonymous_id=visitor,
                user_id=f"user-{visitor}",
                purposes={"analytics": n % 2 == 0},
                policy_version=None,
                decided_at=now,
            )
            cur.execute(consent.INSERT, consent.ledger_params(site_id, entry, "api", None))
        conn.commit()
        conn.execute("ANALYZE consent_log")


def _batch(visitor: str, size: int) -> list[dict[str, Any]]:
    if size == 1:
        return [{"type": "track", "event": "x", "anonymousId": visitor}]
    return [
        {"type": "track", "event": "x", "anonymousId": visitor, "userId": f"user-{visitor}"}
        for _ in range(size)
    ]


def _pg_ticks(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
        ]
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks


Answer = Callable[[list[dict[str, Any]]], Awaitable[LedgerView]]


async def _measure(
    dsn: str, answer: Answer, batches: Callable[[int], list[dict[str, Any]]], conc: int, secs: float
) -> dict[str, float]:
    done = 0
    stop = time.monotonic() + secs
    counter = iter(range(10**9))

    async def client() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await answer(batches(next(counter)))
            done += 1

    pg0 = await asyncio.to_thread(_pg_ticks, dsn)
    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(client() for _ in range(conc)))
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    pg = (await asyncio.to_thread(_pg_ticks, dsn) - pg0) / CLK_TCK
    return {
        "req_s": round(done / wall, 1),
        "collector_us": round(cpu / done * 1e6, 1),
        "postgres_us": round(pg / done * 1e6, 1),
    }


async def _run(dsn: str, seconds: float, rows: int) -> dict[str, Any]:
    site_id, _ = make_site(dsn)
    visitors = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(VISITORS)]
    await asyncio.to_thread(_fill, dsn, site_id, rows, visitors)
    pool = create_pool(dsn, Settings(database_url=dsn, pool_max_size=10))
    await pool.open(wait=True)
    view = ConsentView(pool, dsn, KEYRING)
    view.start()
    while not view.live:
        await asyncio.sleep(0.05)
    results: dict[str, Any] = {}
    try:
        for size in (1, 20):
            shapes = {v: _batch(v, size) for v in visitors}
            for v in visitors:  # the view holds them all
                await view.ledger(site_id, shapes[v])

            def known(n: int, shapes: dict[str, list[dict[str, Any]]] = shapes) -> list[dict]:
                return shapes[visitors[n % VISITORS]]

            def new(n: int, size: int = size) -> list[dict[str, Any]]:
                return _batch(f"new-{uuid.uuid4().hex}", size)

            modes: dict[str, tuple[Answer, Callable[[int], list[dict[str, Any]]]]] = {
                "query": (lambda b: load_ledger(pool, site_id, b, KEYRING), known),
                "view": (lambda b: view.ledger(site_id, b), known),
                "view-miss": (lambda b: view.ledger(site_id, b), new),
            }
            for conc in (1, 32):
                for mode, (answer, batches) in modes.items():
                    rounds = view.rounds
                    got = await _measure(dsn, answer, batches, conc, seconds)
                    if mode != "query":
                        got["round_trips_per_req"] = round(
                            (view.rounds - rounds) / max(got["req_s"] * seconds, 1), 3
                        )
                    results[f"{size}msg c={conc} {mode}"] = got
    finally:
        await view.close()
        await pool.close()
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement (5)")
    parser.add_argument("--ledger-rows", type=int, default=200_000, help="ledger size (200000)")
    args = parser.parse_args(argv)
    pg_dir = Path(".footfall/bench-pg")
    admin = LOCAL_PG if local_postgres_available() else embedded_postgres(pg_dir)
    with scratch_database(admin) as dsn:
        results = asyncio.run(_run(dsn, args.seconds, args.ledger_rows))
    print(f"{'run':28} {'req/s':>10} {'collector µs':>13} {'postgres µs':>12} {'rt/req':>7}")
    for name, r in results.items():
        print(
            f"{name:28} {r['req_s']:>10} {r['collector_us']:>13} {r['postgres_us']:>12}"
            f" {r.get('round_trips_per_req', ''):>7}"
        )
    print("CONSENTBENCH " + json.dumps(results))
    return results


if __name__ == "__main__":
    main()
