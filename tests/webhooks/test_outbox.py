"""The outbox contract segments rely on: enqueue in the caller's transaction, idempotent,
unknown endpoints recorded, cancel_for_person (real PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from footfall.storage import webhooks
from tests.support import query
from tests.webhooks.conftest import (
    add_endpoint,
    dispatching,
    enqueue,
    outbox,
    run_tx,
    wait_until,
)
from tests.webhooks.receiver import Receiver


def test_enqueue_is_idempotent_per_endpoint_and_message(hooks_db: str, site: int) -> None:
    add_endpoint(hooks_db, site, "crm", "http://127.0.0.1:9/hooks")
    add_endpoint(hooks_db, site, "cms", "http://127.0.0.1:9/hooks")
    run_tx(hooks_db, lambda c: webhooks.set_enabled(c, site, "crm", False))
    run_tx(hooks_db, lambda c: webhooks.set_enabled(c, site, "cms", False))
    assert enqueue(hooks_db, site, ["m1", "m2"], ["crm", "cms", "crm"]) == 4
    # The same membership change again (a retried group commit): nothing new.
    assert enqueue(hooks_db, site, ["m1", "m2"], ["crm", "cms"]) == 0
    assert enqueue(hooks_db, site, ["m3"], ["crm"]) == 1
    rows = outbox(hooks_db, site)
    assert sorted(rows) == ["cms/m1", "cms/m2", "crm/m1", "crm/m2", "crm/m3"]
    assert {r["status"] for r in rows.values()} == {"pending"}
    assert rows["crm/m1"]["data"] == {"segment": "engaged-reader", "anonymous_id": "a-m1"}
    assert rows["crm/m1"]["event_type"] == "segment.entered"


def test_unknown_endpoint_is_recorded_undeliverable_not_raised(hooks_db: str, site: int) -> None:
    add_endpoint(hooks_db, site, "crm", "http://127.0.0.1:9/hooks")
    run_tx(hooks_db, lambda c: webhooks.set_enabled(c, site, "crm", False))
    assert enqueue(hooks_db, site, ["m1"], ["crm", "nope"]) == 2
    rows = outbox(hooks_db, site)
    assert rows["crm/m1"]["status"] == "pending"
    assert rows["nope/m1"]["status"] == "undeliverable"
    assert "no endpoint" in rows["nope/m1"]["last_error"]


@pytest.mark.parametrize(
    ("event_type", "data", "message_id", "problem"),
    [
        ("segment.entered", {}, "has space", "message_id"),
        ("segment.entered", {}, "x" * 201, "message_id"),
        ("Segment Entered", {}, "m1", "event_type"),
        ("segment.entered", {"big": "x" * 20_000}, "m1", "data is over"),
    ],
)
def test_enqueue_refuses_malformed_messages(
    hooks_db: str, site: int, event_type: str, data: dict[str, Any], message_id: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        run_tx(
            hooks_db,
            lambda c: webhooks.enqueue(c, site, ["crm"], event_type, data, message_id),
            rollback=True,
        )


def test_enqueue_in_a_rolled_back_transaction_delivers_nothing(hooks_db: str, site: int) -> None:
    with Receiver(secret := "whsec_" + "A" * 40) as receiver, dispatching(hooks_db):
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        enqueue(hooks_db, site, ["rolled-back"], rollback=True)
        enqueue(hooks_db, site, ["committed"])
        # The committed one arrives (so the dispatcher was running and awake) ...
        receiver.wait_for(lambda got: any(r.id == "committed" for r in got))
    # ... and the rolled-back one neither arrived nor exists.
    assert receiver.counts() == {"committed": 1}
    assert sorted(outbox(hooks_db, site)) == ["crm/committed"]


def test_cancel_for_person_cancels_only_their_pending(hooks_db: str, site: int) -> None:
    with Receiver(secret := "whsec_" + "B" * 40) as receiver:
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        run_tx(hooks_db, lambda c: webhooks.set_enabled(c, site, "crm", False))  # held
        enqueue(hooks_db, site, ["p1-a", "p1-b"], person_id=1)
        enqueue(hooks_db, site, ["p2-a"], person_id=2)
        cancelled = run_tx(hooks_db, lambda c: webhooks.cancel_for_person(c, site, 1))
        assert cancelled == 2
        rows = outbox(hooks_db, site)
        assert rows["crm/p1-a"]["status"] == "cancelled"
        assert rows["crm/p1-a"]["data"] == {}  # never sent, so nothing of the person kept
        assert rows["crm/p2-a"]["status"] == "pending"
        with dispatching(hooks_db):
            run_tx(hooks_db, lambda c: webhooks.set_enabled(c, site, "crm", True))
            receiver.wait_for(lambda got: len(got) >= 1)
            wait_until(
                lambda: outbox(hooks_db, site)["crm/p2-a"]["status"] == "delivered",
                what="p2-a recorded as delivered",
            )
            rows = outbox(hooks_db, site)
        assert receiver.counts() == {"p2-a": 1}
        assert rows["crm/p2-a"]["status"] == "delivered"
        assert rows["crm/p1-b"]["status"] == "cancelled"
        # Cancelling again finds nothing pending.
        assert run_tx(hooks_db, lambda c: webhooks.cancel_for_person(c, site, 1)) == 0


def test_erasure_deletes_the_persons_outbox_rows(hooks_db: str, site: int) -> None:
    """Erasure (storage/privacy.py) deletes webhook_outbox rows by their person_id column."""
    from footfall.storage.privacy import NOT_PERSONAL, PERSONAL_TABLES

    columns = {
        r["column_name"]
        for r in query(
            hooks_db,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'webhook_outbox'",
        )
    }
    assert "webhook_outbox" not in NOT_PERSONAL
    assert PERSONAL_TABLES["webhook_outbox"].person == ("person_id",)
    assert PERSONAL_TABLES["webhook_outbox"].columns <= columns


def test_prune_deletes_only_finished_rows_past_the_retention(hooks_db: str, site: int) -> None:
    add_endpoint(hooks_db, site, "crm", "http://127.0.0.1:9/hooks")
    run_tx(hooks_db, lambda c: webhooks.set_enabled(c, site, "crm", False))
    enqueue(hooks_db, site, ["old-delivered", "old-dead", "old-pending", "new-delivered"])
    query(
        hooks_db,
        "UPDATE webhook_outbox SET status = CASE message_id"
        " WHEN 'old-dead' THEN 'dead' WHEN 'old-pending' THEN 'pending' ELSE 'delivered' END,"
        " created_at = CASE WHEN message_id LIKE 'old-%%' THEN now() - interval '8 days'"
        " ELSE now() END WHERE site_id = %s",
        (site,),
    )
    deleted = run_tx(hooks_db, lambda c: webhooks.prune(c, 7, limit=1))  # batches of one
    assert deleted == 1
    assert sorted(outbox(hooks_db, site)) == [
        "crm/new-delivered",
        "crm/old-dead",
        "crm/old-pending",
    ]
