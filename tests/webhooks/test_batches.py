"""How one dispatcher keeps up: claims in batches with a bound per endpoint, results
recorded in one statement per batch (still retrying the failed ones), woken by the
enqueuing transaction's NOTIFY, connections kept alive (real PostgreSQL, real HTTP)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from footfall.storage import webhooks
from footfall.webhooks.message import generate_secret
from tests.support import query
from tests.webhooks.conftest import (
    DispatcherThread,
    add_endpoint,
    dispatching,
    enqueue,
    fast_config,
    outbox,
    run_tx,
    wait_until,
)
from tests.webhooks.receiver import Receiver, Reply

NOWHERE = "http://127.0.0.1:9/hooks"  # never sent to: these tests claim by hand


def _claim(dsn: str, **kw: Any) -> webhooks.Claims:
    args: dict[str, Any] = {"lease_s": 60.0, "claim": uuid.uuid4().hex, "max_attempts": 5}
    return run_tx(dsn, lambda c: webhooks.claim_due(c, **{**args, **kw}))  # type: ignore[no-any-return]


def test_a_claim_takes_at_most_each_endpoints_room(hooks_db: str, site: int) -> None:
    add_endpoint(hooks_db, site, "a", NOWHERE)
    add_endpoint(hooks_db, site, "b", NOWHERE)
    enqueue(hooks_db, site, [f"m{n}" for n in range(5)], ["a", "b"])

    first = _claim(hooks_db, limit=10, per_endpoint=2)
    assert sorted(r.endpoint for r in first.rows) == ["a", "a", "b", "b"]
    assert first.more  # stopped at a bound: more is due

    # One slot left for a; b skipped (its room is full).
    second = _claim(hooks_db, limit=10, per_endpoint=2, room={(site, "a"): 1}, skip={(site, "b")})
    assert [r.endpoint for r in second.rows] == ["a"]
    assert second.more

    # Both skipped: nothing claimed, and the rows of skipped endpoints do not count as due.
    third = _claim(hooks_db, limit=10, per_endpoint=2, skip={(site, "a"), (site, "b")})
    assert (third.rows, third.more, third.next_due_s) == ([], False, None)

    rest = _claim(hooks_db, limit=10, per_endpoint=10, skip={(site, "b")})
    assert [r.endpoint for r in rest.rows] == ["a", "a"]
    assert not rest.more
    # Nothing of a is due now; the next is one of its claims, when its lease ends.
    assert rest.next_due_s is not None and 50 < rest.next_due_s <= 60

    rows = outbox(hooks_db, site).values()
    assert sum(r["claim"] is not None for r in rows) == 4 + 1 + 2
    assert {r["attempts"] for r in rows if r["endpoint"] == "a"} == {1}


def test_one_batch_records_every_kind_of_outcome(hooks_db: str, site: int) -> None:
    add_endpoint(hooks_db, site, "crm", NOWHERE)
    ids = ["ok", "retry", "dead", "handed-back", "stolen", "cancelled"]
    enqueue(hooks_db, site, ids)
    claims = _claim(hooks_db, limit=10, per_endpoint=10)
    held = {r.message_id: r for r in claims.rows}
    assert sorted(held) == sorted(ids)
    # Meanwhile: another claim took "stolen" (its lease ran out), "cancelled" was cancelled.
    query(
        hooks_db,
        "UPDATE webhook_outbox SET claim = 'someone-else' WHERE site_id = %s"
        " AND message_id = 'stolen'",
        (site,),
    )
    query(
        hooks_db,
        "UPDATE webhook_outbox SET status = 'cancelled', claim = NULL WHERE site_id = %s"
        " AND message_id = 'cancelled'",
        (site,),
    )

    def of(name: str, status: str, last: int | None, **kw: Any) -> webhooks.Outcome:
        row = held[name]
        return webhooks.Outcome(row.site_id, row.id, row.claim, status, last, **kw)

    outcomes = [
        of("ok", "delivered", 200),
        of("retry", "pending", 500, error="HTTP 500", retry_in_s=0.0),
        of("dead", "dead", 410, error="HTTP 410"),
        of("handed-back", "pending", None, error="cannot sign: no key", counted=False),
        of("stolen", "delivered", 200),
        of("cancelled", "pending", 503, error="HTTP 503", retry_in_s=30.0),
    ]
    recorded = run_tx(hooks_db, lambda c: webhooks.record_outcomes(c, outcomes))

    key = {name: (site, row.id) for name, row in held.items()}
    assert set(recorded.done) == {key[n] for n in ("ok", "retry", "dead", "handed-back")}
    assert recorded.done[key["ok"]] >= 0  # seconds since it was enqueued
    assert recorded.lost == {key["stolen"], key["cancelled"]}
    assert recorded.busy == []
    rows = {r["message_id"]: r for r in outbox(hooks_db, site).values()}
    state = {
        n: (r["status"], r["attempts"], r["last_status"], r["claim"] is None)
        for n, r in rows.items()
    }
    assert state == {
        "ok": ("delivered", 1, 200, True),
        "retry": ("pending", 1, 500, True),
        "dead": ("dead", 1, 410, True),
        "handed-back": ("pending", 0, None, True),  # not counted against the receiver
        "stolen": ("pending", 1, None, False),  # the other claim's, untouched
        "cancelled": ("cancelled", 1, None, True),
    }
    assert rows["ok"]["delivered_at"] is not None and rows["ok"]["last_error"] is None
    assert rows["retry"]["last_error"] == "HTTP 500"
    # The retry is due again at once (retry_in_s=0): the next claim takes it, and only it.
    again = _claim(hooks_db, limit=10, per_endpoint=10)
    assert sorted(r.message_id for r in again.rows) == ["handed-back", "retry"]
    assert {r.message_id: r.attempts for r in again.rows} == {"retry": 2, "handed-back": 1}


def test_recording_leaves_rows_another_transaction_holds_for_later(
    hooks_db: str, site: int
) -> None:
    """A row locked elsewhere (a cancellation in a writer's transaction) is skipped, not
    waited for (no deadlock with that transaction), and recorded once it is released."""
    import psycopg

    add_endpoint(hooks_db, site, "crm", NOWHERE)
    enqueue(hooks_db, site, ["free", "held"])
    held = {r.message_id: r for r in _claim(hooks_db, limit=10, per_endpoint=10).rows}
    outcomes = [webhooks.Outcome(r.site_id, r.id, r.claim, "delivered", 200) for r in held.values()]
    with psycopg.connect(hooks_db) as other:
        other.execute(
            "SELECT 1 FROM webhook_outbox WHERE site_id = %s AND message_id = 'held' FOR UPDATE",
            (site,),
        )
        first = run_tx(hooks_db, lambda c: webhooks.record_outcomes(c, outcomes))
        assert set(first.done) == {(site, held["free"].id)}
        assert [o.id for o in first.busy] == [held["held"].id]
        assert first.lost == set()
        other.rollback()
    second = run_tx(hooks_db, lambda c: webhooks.record_outcomes(c, first.busy))
    assert set(second.done) == {(site, held["held"].id)}
    assert {r["status"] for r in outbox(hooks_db, site).values()} == {"delivered"}


def test_failed_attempts_recorded_in_a_batch_are_retried(hooks_db: str, site: int) -> None:
    secret = generate_secret()
    ids = [f"b{n}" for n in range(24)]
    failing = set(ids[1::2])  # every other one fails once

    def plan(msg_id: str, seen: int, _path: str) -> Reply:
        return Reply(500) if msg_id in failing and seen == 0 else Reply(200)

    with Receiver(secret, plan) as receiver, dispatching(hooks_db, base_s=0.05) as thread:
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        enqueue(hooks_db, site, ids)
        wait_until(
            lambda: all(r["status"] == "delivered" for r in outbox(hooks_db, site).values()),
            what="all delivered",
        )
        assert thread.dispatcher is not None
        recordings = thread.dispatcher.recordings
    assert receiver.counts() == {i: 2 if i in failing else 1 for i in ids}
    attempts = {r["message_id"]: r["attempts"] for r in outbox(hooks_db, site).values()}
    assert attempts == {i: 2 if i in failing else 1 for i in ids}
    # 36 attempts, recorded in batches: fewer transactions than attempts.
    assert recordings < len(ids) + len(failing)


def test_notify_wakes_an_idle_dispatcher_without_its_poll(hooks_db: str, site: int) -> None:
    """Poll interval and lease of an hour: only the enqueuing transaction's NOTIFY can
    make the dispatcher claim, and it does, each time."""
    secret = generate_secret()
    with (
        Receiver(secret) as receiver,
        dispatching(hooks_db, poll_s=3600.0, lease_s=3600.0, timeout_s=30.0) as thread,
    ):
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        for n in range(3):
            enqueue(hooks_db, site, [f"n{n}"])
            receiver.wait_for(lambda got, n=n: any(r.id == f"n{n}" for r in got))
            wait_until(
                lambda n=n: outbox(hooks_db, site)[f"crm/n{n}"]["status"] == "delivered",
                what="recorded",
            )
        assert thread.dispatcher is not None and thread.dispatcher.sent == 3
    assert receiver.counts() == {"n0": 1, "n1": 1, "n2": 1}


def test_a_slow_endpoint_gets_its_bound_and_the_others_keep_flowing(
    hooks_db: str, site: int
) -> None:
    secret = generate_secret()
    release = threading.Event()
    lock = threading.Lock()
    in_flight = [0, 0]  # now, most at once

    def slow(_id: str, _seen: int, _path: str) -> Reply:
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
        release.wait(60)
        with lock:
            in_flight[0] -= 1
        return Reply(200)

    config = fast_config(concurrency=4, per_endpoint=2, timeout_s=60.0, lease_s=120.0)
    with Receiver(secret, slow) as stuck, Receiver(secret) as fine:
        add_endpoint(hooks_db, site, "stuck", stuck.url, secret)
        add_endpoint(hooks_db, site, "fine", fine.url, secret)
        enqueue(hooks_db, site, [f"s{n}" for n in range(6)], ["stuck"])  # first in line
        enqueue(hooks_db, site, [f"f{n}" for n in range(6)], ["fine"])
        try:
            with DispatcherThread(hooks_db, config):
                # Every message to "fine" arrives while "stuck" holds its requests.
                fine.wait_for(lambda got: len({r.id for r in got}) == 6)
                assert in_flight[0] == 2
                release.set()
                wait_until(
                    lambda: all(
                        r["status"] == "delivered" for r in outbox(hooks_db, site).values()
                    ),
                    what="all delivered",
                )
        finally:
            release.set()
    assert in_flight[1] == 2
    assert stuck.counts() == {f"s{n}": 1 for n in range(6)}


def test_connections_are_kept_alive(hooks_db: str, site: int) -> None:
    secret = generate_secret()
    ids = [f"k{n}" for n in range(40)]
    with Receiver(secret) as receiver, dispatching(hooks_db, concurrency=4):
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        for start in range(0, len(ids), 5):
            enqueue(hooks_db, site, ids[start : start + 5])
            time.sleep(0.05)
        receiver.wait_for(lambda got: len({r.id for r in got}) == len(ids))
    connections = {r.peer for r in receiver.received}
    # At most one connection per request in flight, reused: not one per message.
    assert len(connections) <= 4, len(connections)
