"""Three collectors, one PostgreSQL: the same traffic sent to several of them at once.

Every batch goes to 2 or 3 collectors concurrently (as a client retrying
through a load balancer would), each send retried until it is answered 200;
some first tries give up before the answer (the batch may be stored or not)
and are sent again.
Storage must be exactly once: one row per message, each message accepted by
exactly one collector, session rollups counting each event once, and one
person per identity.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.ops.serving import Served, serve
from tests.support import make_site, query, scratch_database

pytestmark = pytest.mark.slow

COLLECTORS = 3
VISITORS = 40
BATCH = 3


@pytest.fixture(scope="module")
def cluster(
    admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[Served], str]]:
    with scratch_database(admin_dsn) as dsn:
        log_dir = tmp_path_factory.mktemp("collectors")
        collectors: list[Served] = []
        try:
            for _ in range(COLLECTORS):
                collectors.append(serve(dsn, log_dir, workers=1))
            yield collectors, dsn
        finally:
            for served in collectors:
                served.terminate()


def _traffic(rng: random.Random) -> tuple[list[list[dict]], dict[str, Counter[str]]]:
    """Batches of every visitor's two sessions, and what each session must count."""
    batches: list[list[dict]] = []
    expected: dict[str, Counter[str]] = {}
    for v in range(VISITORS):
        anonymous_id = f"anon-{v}-{uuid.uuid4().hex[:6]}"
        for s in (1, 2):
            session_id = f"sess-{v}-{s}-{uuid.uuid4().hex[:6]}"
            kinds = ["page", "click", "click", "scroll", "page", "click"]
            if s == 2 and v % 2 == 0:
                kinds.insert(1, "identify")
            messages = []
            for n, kind in enumerate(kinds):
                message: dict = {
                    "messageId": str(uuid.uuid4()),
                    "anonymousId": anonymous_id,
                    "timestamp": f"2026-11-20T10:{s * 10 + n:02d}:00Z",
                    "context": {"sessionId": session_id},
                }
                if kind == "page":
                    message |= {"type": "page", "properties": {"url": f"https://shop.example/{n}"}}
                elif kind == "identify":
                    message |= {"type": "identify", "userId": f"user-{v}@example.com"}
                elif kind == "click":
                    message |= {
                        "type": "track",
                        "event": "Element Clicked",
                        "properties": {"selector": "a.buy", "tag": "a"},
                    }
                else:
                    message |= {
                        "type": "track",
                        "event": "Scroll Depth Reached",
                        "properties": {
                            "depth_percent": 50,
                            "page_height": 2000,
                            "viewport_height": 800,
                        },
                    }
                messages.append(message)
            expected[session_id] = Counter(kinds)
            batches += [messages[i : i + BATCH] for i in range(0, len(messages), BATCH)]
    rng.shuffle(batches)
    return batches, expected


def test_exactly_once_across_three_collectors(cluster: tuple[list[Served], str]) -> None:
    collectors, dsn = cluster
    site_id, key = make_site(dsn, settings={"allow_undeclared_events": True})
    rng = random.Random(6)
    batches, expected = _traffic(rng)
    totals: Counter[str] = Counter()
    lock = threading.Lock()

    clients = {s.base_url: httpx.Client(base_url=s.base_url, auth=(key, "")) for s in collectors}

    def send(served: Served, batch: list[dict], impatient: bool) -> None:
        for attempt in range(8):
            # An impatient client gives up on its first try before the answer comes:
            # the batch may or may not have been stored, and it sends it again.
            timeout = 0.002 if impatient and attempt == 0 else 30
            try:
                response = clients[served.base_url].post(
                    "/v1/batch", json={"batch": batch}, timeout=timeout
                )
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                body = response.json()
                with lock:
                    totals["accepted"] += body["accepted"]
                    totals["duplicates"] += body["duplicates"]
                    totals["failed"] += len(body["failed"])
                    totals["sends"] += 1
                    totals["copies"] += len(batch)
                return
            with lock:
                totals["retries"] += 1
            time.sleep(0.05 * 2**attempt)
        raise AssertionError("a send was never answered 200")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = []
        for batch in batches:
            copies = rng.choice([2, 3])
            for served in rng.sample(collectors, copies):
                futures.append(pool.submit(send, served, batch, rng.random() < 0.15))
        for future in futures:
            future.result()
    elapsed = time.monotonic() - started
    for client in clients.values():
        client.close()

    messages = {m["messageId"] for batch in batches for m in batch}
    counts = query(
        dsn,
        "SELECT count(*) AS n, count(DISTINCT message_id) AS d FROM events WHERE site_id = %s",
        (site_id,),
    )[0]
    keys = query(dsn, "SELECT count(*) AS n FROM event_ids WHERE site_id = %s", (site_id,))[0]
    figures = {
        "collectors": COLLECTORS,
        "messages": len(messages),
        "batches": len(batches),
        "sends_answered": totals["sends"],
        "message_copies_sent": totals["copies"],
        "retries": totals["retries"],
        "accepted": totals["accepted"],
        "duplicates_refused": totals["duplicates"],
        "failed": totals["failed"],
        "stored": counts["n"],
        "seconds": round(elapsed, 2),
    }
    print("\nmany collectors:", json.dumps(figures))
    assert totals["failed"] == 0
    assert counts["n"] == counts["d"] == keys["n"] == len(messages)
    # Answers seen: every copy is accepted or a duplicate, and no message is accepted
    # twice (an answer lost to an impatient client may hold a message's acceptance).
    assert totals["accepted"] + totals["duplicates"] == totals["copies"]
    assert totals["accepted"] <= len(messages)

    _check_sessions(dsn, site_id, expected)
    _check_identities(dsn, site_id)


def _columns(dsn: str, table: str) -> set[str]:
    rows = query(
        dsn,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = %s",
        (table,),
    )
    return {r["column_name"] for r in rows}


def _check_sessions(dsn: str, site_id: int, expected: dict[str, Counter[str]]) -> None:
    """Exact rollups: each session counts its events once, whatever was retried where."""
    columns = _columns(dsn, "sessions")
    if not {"session_id", "event_count"} <= columns:
        print("no sessions table yet (issue 5): rollups not checked")
        return
    rows = query(dsn, "SELECT * FROM sessions WHERE site_id = %s", (site_id,))
    got = {r["session_id"]: r for r in rows}
    assert set(got) == set(expected)
    for session_id, kinds in expected.items():
        row = got[session_id]
        assert row["event_count"] == sum(kinds.values()), session_id
        if "page_count" in columns:
            assert row["page_count"] == kinds["page"], session_id
        if "click_count" in columns:
            assert row["click_count"] == kinds["click"], session_id


def _check_identities(dsn: str, site_id: int) -> None:
    """One person per identity, one person per visitor."""
    columns = _columns(dsn, "identities")
    if "person_id" not in columns:
        print("no identities table yet (issue 5): persons not checked")
        return
    keys = [c for c in columns if c not in {"person_id", "created_at", "updated_at", "id"}]
    split = query(
        dsn,
        f"SELECT {', '.join(keys)} FROM identities WHERE site_id = %s"
        f" GROUP BY {', '.join(keys)} HAVING count(DISTINCT person_id) > 1",
        (site_id,),
    )
    assert split == []
    persons = query(
        dsn,
        "SELECT count(DISTINCT person_id) AS n FROM identities WHERE site_id = %s",
        (site_id,),
    )[0]
    assert persons["n"] == VISITORS
