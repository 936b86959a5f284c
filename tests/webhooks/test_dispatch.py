"""The dispatcher against a real receiver on a loopback port: signed, at least once,
retries, Retry-After, dead letter, redirects, timeouts (real PostgreSQL, real HTTP)."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from footfall.webhooks.message import generate_secret
from tests.webhooks.conftest import add_endpoint, dispatching, enqueue, outbox, wait_until
from tests.webhooks.receiver import Receiver, Reply


def _delivered(dsn: str, site: int, n: int) -> bool:
    rows = outbox(dsn, site).values()
    return sum(r["status"] == "delivered" for r in rows) >= n


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_each_message_delivered_once_signed(hooks_db: str, site: int) -> None:
    secret = generate_secret()
    before = _metric("footfall_webhook_deliveries_total", outcome="delivered")
    ids = [f"seg_{site}_{n}" for n in range(30)]
    with Receiver(secret) as receiver, dispatching(hooks_db):
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        enqueue(hooks_db, site, ids)
        receiver.wait_for(lambda got: len({r.id for r in got}) == len(ids))
        wait_until(lambda: _delivered(hooks_db, site, len(ids)), what="outbox rows delivered")
    assert receiver.counts() == {i: 1 for i in ids}
    assert all(r.verified for r in receiver.received)
    first = receiver.of(ids[0])[0]
    assert first.payload["type"] == "segment.entered"
    assert first.payload["data"] == {"segment": "engaged-reader", "anonymous_id": "a-" + ids[0]}
    assert first.payload["timestamp"].endswith("Z")
    assert first.headers["content-type"] == "application/json"
    assert first.headers["user-agent"].startswith("Footfall-Webhooks/")
    rows = outbox(hooks_db, site)
    assert {(r["status"], r["attempts"], r["last_status"]) for r in rows.values()} == {
        ("delivered", 1, 200)
    }
    assert _metric("footfall_webhook_deliveries_total", outcome="delivered") - before == len(ids)


def test_500_then_200_is_sent_once_more_not_lost(hooks_db: str, site: int) -> None:
    secret = generate_secret()
    plan = lambda _id, seen, _p: Reply(500, body=b"oops") if seen == 0 else Reply(200)  # noqa: E731
    with Receiver(secret, plan) as receiver, dispatching(hooks_db, base_s=0.2):
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        enqueue(hooks_db, site, ["m1"])
        receiver.wait_for(lambda got: len(got) >= 2)
        wait_until(lambda: _delivered(hooks_db, site, 1), what="delivered")
    arrivals = receiver.of("m1")
    assert len(arrivals) == 2 and all(r.verified for r in arrivals)
    assert arrivals[0].body == arrivals[1].body  # the same message, the same id
    assert arrivals[0].headers["webhook-id"] == arrivals[1].headers["webhook-id"] == "m1"
    row = outbox(hooks_db, site)["crm/m1"]
    assert (row["status"], row["attempts"], row["last_status"]) == ("delivered", 2, 200)


def test_429_retry_after_is_honored(hooks_db: str, site: int) -> None:
    secret = generate_secret()

    def plan(_id: str, seen: int, _path: str) -> Reply:
        return Reply(429, {"Retry-After": "2"}) if seen == 0 else Reply(200)

    # Backoff alone would retry within 0.05 s: only Retry-After explains a 2 s gap.
    with Receiver(secret, plan) as receiver, dispatching(hooks_db, base_s=0.05):
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        enqueue(hooks_db, site, ["m1"])
        receiver.wait_for(lambda got: len(got) >= 2, timeout=15)
    first, second = receiver.of("m1")[:2]
    assert 1.9 <= second.at - first.at < 4.0, second.at - first.at


def test_503_retry_after_as_http_date(hooks_db: str, site: int) -> None:
    from email.utils import formatdate

    secret = generate_secret()

    def plan(_id: str, seen: int, _path: str) -> Reply:
        if seen == 0:
            import time

            return Reply(503, {"Retry-After": formatdate(time.time() + 3, usegmt=True)})
        return Reply(200)

    with Receiver(secret, plan) as receiver, dispatching(hooks_db, base_s=0.05):
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        enqueue(hooks_db, site, ["m1"])
        receiver.wait_for(lambda got: len(got) >= 2, timeout=15)
    first, second = receiver.of("m1")[:2]
    assert second.at - first.at >= 1.9  # HTTP dates have whole seconds


def test_dead_letter_after_n_attempts_with_a_short_redacted_error(hooks_db: str, site: int) -> None:
    secret = generate_secret()
    body = b"failed for jane.doe@example.com " + b"x" * 5000
    with (
        Receiver(secret, lambda *_: Reply(500, body=body)) as receiver,
        dispatching(hooks_db, max_attempts=3, base_s=0.05),
    ):
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        enqueue(hooks_db, site, ["m1"])
        wait_until(lambda: outbox(hooks_db, site)["crm/m1"]["status"] == "dead", what="dead letter")
    row = outbox(hooks_db, site)["crm/m1"]
    assert row["attempts"] == 3 and row["last_status"] == 500
    assert len(receiver.of("m1")) == 3
    assert row["last_error"].startswith("HTTP 500: failed for ")
    assert "jane.doe" not in row["last_error"] and len(row["last_error"]) <= 300


def test_timeout_counts_as_a_failed_attempt(hooks_db: str, site: int) -> None:
    secret = generate_secret()
    plan = lambda _id, seen, _p: Reply(200, delay_s=3) if seen == 0 else Reply(200)  # noqa: E731
    with Receiver(secret, plan) as receiver, dispatching(hooks_db, timeout_s=1.0, base_s=0.05):
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        enqueue(hooks_db, site, ["m1"])
        wait_until(lambda: _delivered(hooks_db, site, 1), what="delivered after a timeout")
    row = outbox(hooks_db, site)["crm/m1"]
    assert row["attempts"] == 2
    assert len(receiver.of("m1")) == 2


@pytest.mark.parametrize(
    ("location", "followed"),
    [("/moved", True), ("http://localhost:{port}/moved", False), ("https://evil.example/", False)],
)
def test_redirects_only_307_308_to_the_same_origin(
    hooks_db: str, site: int, location: str, followed: bool
) -> None:
    secret = generate_secret()
    port: list[int] = []

    def plan(_id: str, _seen: int, path: str) -> Reply:
        if path == "/hooks":
            return Reply(307, {"Location": location.format(port=port[0])})
        return Reply(200)

    with Receiver(secret, plan) as receiver, dispatching(hooks_db, max_attempts=1):
        port.append(receiver.server.server_address[1])
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        enqueue(hooks_db, site, ["m1"])
        wait_until(
            lambda: outbox(hooks_db, site)["crm/m1"]["status"] in ("delivered", "dead"),
            what="an outcome",
        )
    row = outbox(hooks_db, site)["crm/m1"]
    paths = [r.path for r in receiver.of("m1")]
    if followed:
        assert row["status"] == "delivered" and paths == ["/hooks", "/moved"]
        assert all(r.verified for r in receiver.received)
    else:
        assert row["status"] == "dead" and paths == ["/hooks"]
        assert "redirect not followed" in row["last_error"]


def test_unreachable_receiver_is_retried_then_delivered(hooks_db: str, site: int) -> None:
    """A receiver that is down (connection refused) loses nothing: sent once it is up."""
    secret = generate_secret()
    receiver = Receiver(secret)
    add_endpoint(hooks_db, site, "crm", receiver.url, secret)  # bound, not yet serving
    receiver.server.server_close()
    with dispatching(hooks_db, base_s=0.3, max_delay_s=1.0):
        enqueue(hooks_db, site, ["m1"])
        wait_until(lambda: outbox(hooks_db, site)["crm/m1"]["attempts"] >= 2, what="2 attempts")
        row = outbox(hooks_db, site)["crm/m1"]
        assert row["status"] == "pending" and row["last_error"].startswith("request failed")
        # Up again, on the same port.
        again = Receiver(secret, port=receiver.server.server_address[1])
        with again:
            wait_until(lambda: _delivered(hooks_db, site, 1), what="delivered")
    assert again.counts() == {"m1": 1}


def test_a_dispatcher_without_the_key_hands_messages_to_one_with_it(
    hooks_db: str, site: int
) -> None:
    """Collectors configured with different PII keys: the one that cannot open the
    secret neither sends nor uses up attempts; the one that can delivers."""
    from footfall.pipeline.privacy import keyring_of

    wrong = keyring_of("k1", "some-other-key-" + "q" * 32)  # same id, another secret
    secret = generate_secret()
    with Receiver(secret) as receiver:
        add_endpoint(hooks_db, site, "crm", receiver.url, secret)
        with dispatching(hooks_db, keyring=wrong):
            enqueue(hooks_db, site, ["m1"])
            wait_until(
                lambda: (outbox(hooks_db, site)["crm/m1"]["last_error"] or "").startswith(
                    "cannot sign"
                ),
                what="a failed signing",
            )
            time.sleep(1.5)  # it keeps away from the endpoint: no attempt used up, not dead
            row = outbox(hooks_db, site)["crm/m1"]
            assert (row["status"], row["attempts"]) == ("pending", 0)
            with dispatching(hooks_db):
                wait_until(lambda: _delivered(hooks_db, site, 1), what="delivered")
    assert receiver.counts() == {"m1": 1}
    assert outbox(hooks_db, site)["crm/m1"]["attempts"] == 1
