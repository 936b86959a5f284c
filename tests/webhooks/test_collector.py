"""The collector's own dispatcher (started by the app lifespan) delivers the outbox."""

from __future__ import annotations

import httpx

from footfall.webhooks.message import generate_secret
from tests.support import Collector
from tests.webhooks.conftest import add_endpoint, enqueue, outbox, wait_until
from tests.webhooks.receiver import Receiver


def test_running_collector_delivers_what_a_transaction_enqueued(collector: Collector) -> None:
    assert collector.server.app.state.footfall.webhooks is not None
    secret = generate_secret()
    with Receiver(secret) as receiver:
        add_endpoint(collector.dsn, collector.site_id, "crm", receiver.url, secret)
        enqueue(collector.dsn, collector.site_id, ["c1", "c2"])
        try:
            receiver.wait_for(lambda got: len(got) >= 2, timeout=40)
        except AssertionError:
            dispatcher = collector.server.app.state.footfall.webhooks
            task = dispatcher._task
            print("DIAG task", task, task and task.done(), dispatcher.sent, dispatcher._inflight)
            if task is not None and task.done() and not task.cancelled():
                print("DIAG exc", repr(task.exception()))
            print("DIAG listener", dispatcher._listener)
            print("DIAG rows", outbox(collector.dsn, collector.site_id))
            print("DIAG pool", collector.server.app.state.footfall.pool.get_stats())
            raise
        wait_until(
            lambda: (
                {r["status"] for r in outbox(collector.dsn, collector.site_id).values()}
                == {"delivered"}
            ),
            what="both delivered",
        )
    assert receiver.counts() == {"c1": 1, "c2": 1}
    assert all(r.verified for r in receiver.received)
    text = httpx.get(collector.base_url + "/metrics").text
    assert 'footfall_webhook_deliveries_total{outcome="delivered"}' in text
    assert "footfall_webhook_delivery_latency_seconds_bucket" in text
