"""Several dispatcher processes on one outbox, and a collector killed -9 mid-request."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from footfall.webhooks.message import generate_secret
from tests.ops.serving import serve
from tests.webhooks.conftest import DispatchProcess, add_endpoint, enqueue, outbox, wait_until
from tests.webhooks.receiver import Receiver, Reply

pytestmark = pytest.mark.slow


def test_three_dispatchers_deliver_each_message_once(
    hooks_db: str, site: int, tmp_path: Path
) -> None:
    secret = generate_secret()
    rng = random.Random(10)
    flaky = {f"m{n}" for n in range(0, 300, 7)}  # these fail once with a 500 first
    lock = threading.Lock()
    ok_answers: Counter[str] = Counter()

    def plan(msg_id: str, seen: int, _path: str) -> Reply:
        if msg_id in flaky and seen == 0:
            return Reply(500)
        with lock:
            ok_answers[msg_id] += 1
            delay = rng.uniform(0, 0.02)
        return Reply(200, delay_s=delay)

    with Receiver(secret, plan) as receiver:
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        # A generous timeout: on a loaded machine a 2 s one could expire and send a
        # message twice, which at-least-once allows but this test counts.
        slow_ok = {"FOOTFALL_WEBHOOK_TIMEOUT_S": "10", "FOOTFALL_WEBHOOK_LEASE_S": "20"}
        procs = [DispatchProcess(hooks_db, tmp_path / f"d{i}.log", **slow_ok) for i in range(3)]
        try:
            ids = [f"m{n}" for n in range(300)]
            for start in range(0, len(ids), 10):  # 30 transactions while all three run
                enqueue(hooks_db, site, ids[start : start + 10])
            wait_until(
                lambda: all(r["status"] == "delivered" for r in outbox(hooks_db, site).values()),
                timeout=60,
                what="all delivered",
            )
        finally:
            for proc in procs:
                assert proc.terminate() == 0, proc.log()
    counts = receiver.counts()
    assert set(counts) == set(ids)
    assert all(r.verified for r in receiver.received)
    # Exactly one 2xx per message: no two dispatchers ever sent the same one.
    assert ok_answers == {i: 1 for i in ids}
    assert {i: counts[i] for i in flaky} == {i: 2 for i in flaky}
    rows = outbox(hooks_db, site).values()
    unexpected = [
        (r["message_id"], r["attempts"])
        for r in rows
        if r["attempts"] != (2 if r["message_id"] in flaky else 1)
    ]
    assert unexpected == [], "\n".join(p.log()[-3000:] for p in procs)


def test_outbox_survives_a_collector_killed_mid_request(
    hooks_db: str, site: int, tmp_path: Path
) -> None:
    secret = generate_secret()
    # The first attempt of each message is held past the kill; later ones answer at once.
    plan = lambda _id, seen, _p: Reply(200, delay_s=2.5) if seen == 0 else Reply(200)  # noqa: E731
    env = {
        "FOOTFALL_WEBHOOK_TIMEOUT_S": "3",
        "FOOTFALL_WEBHOOK_LEASE_S": "8",
        "FOOTFALL_WEBHOOK_BACKOFF_BASE_S": "0.1",
        "FOOTFALL_WEBHOOK_POLL_S": "1",
    }
    ids = [f"k{n}" for n in range(5)]
    with Receiver(secret, plan) as receiver:
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        first = serve(hooks_db, tmp_path, **env)
        try:
            enqueue(hooks_db, site, ids)
            receiver.wait_for(lambda got: len({r.id for r in got}) == len(ids))
            killed_at = time.monotonic()
            first.kill()  # SIGKILL to the whole process group, requests in flight
        finally:
            first.kill()
        rows = outbox(hooks_db, site)
        # Claimed, attempted, nothing recorded: pending with the lease still running.
        assert {(r["status"], r["attempts"]) for r in rows.values()} == {("pending", 1)}
        assert all(r["claim"] for r in rows.values())
        time.sleep(3)  # the held answers (2.5 s) went nowhere
        second = serve(hooks_db, tmp_path, **env)
        try:
            wait_until(
                lambda: all(r["status"] == "delivered" for r in outbox(hooks_db, site).values()),
                timeout=30,
                what="delivered after restart",
            )
            delivered_after = time.monotonic() - killed_at
        finally:
            assert second.terminate() == 0
    # Sent again only once the dead collector's lease ran out.
    assert delivered_after >= 8 - 1, delivered_after
    assert receiver.counts() == {i: 2 for i in ids}  # at least once: the lost attempt, then one
    assert all(r.verified for r in receiver.received)
    assert {r["attempts"] for r in outbox(hooks_db, site).values()} == {2}


def test_three_collectors_with_retries_send_one_webhook_per_entry(
    hooks_db: str, tmp_path: Path
) -> None:
    """Segments end to end on three collectors: every batch sent to two or three of
    them (a client retrying through a load balancer); one membership and one signed
    segment.entered per visitor."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tests.segments.support import define, page
    from tests.support import make_site, query

    site_id, key = make_site(hooks_db, allowed_origins=["*"])
    secret = generate_secret()
    rng = random.Random(3)
    with Receiver(secret) as receiver:
        add_endpoint(hooks_db, site_id, "crm", receiver.url, secret)
        define(
            hooks_db,
            site_id,
            {
                "key": "two-pages",
                "webhooks": ["crm"],
                "when": {"count": {"type": "page"}, "within": "1h", "gte": 2},
            },
        )
        collectors = [serve(hooks_db, tmp_path) for _ in range(3)]
        try:
            visitors = [f"v-{n}-{uuid.uuid4().hex[:6]}" for n in range(20)]
            batches = [[page(v, "/a")] for v in visitors] + [[page(v, "/b")] for v in visitors]

            def send(base_url: str, batch: list[dict]) -> None:
                for _ in range(5):
                    try:
                        response = httpx.post(
                            base_url + "/v1/batch",
                            json={"batch": batch},
                            auth=(key, ""),
                            timeout=30,
                        )
                        if response.status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    time.sleep(0.2)
                raise AssertionError("never answered 200")

            with ThreadPoolExecutor(max_workers=8) as pool:
                futures = [
                    pool.submit(send, served.base_url, batch)
                    for batch in batches
                    for served in rng.sample(collectors, rng.choice([2, 3]))
                ]
                for future in futures:
                    future.result()
            receiver.wait_for(lambda got: len({r.id for r in got}) >= len(visitors), 60)
            wait_until(
                lambda: all(r["status"] == "delivered" for r in outbox(hooks_db, site_id).values()),
                timeout=30,
                what="all delivered",
            )
            time.sleep(1)  # a duplicate, if any, would come now
        finally:
            for served in collectors:
                served.terminate()
    memberships = query(
        hooks_db, "SELECT count(*) AS n FROM segment_memberships WHERE site_id = %s", (site_id,)
    )[0]["n"]
    assert memberships == len(visitors)
    assert len(receiver.received) == len(visitors)  # one webhook per entry
    assert all(r.verified and r.payload["type"] == "segment.entered" for r in receiver.received)
    assert {r.payload["data"]["anonymous_ids"][0] for r in receiver.received} == set(visitors)
