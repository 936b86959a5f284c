"""A withdrawal recorded by one collector binds every other before its next answer (issue 12).

Two ``footfall serve`` processes, A and B, on one database. Each keeps its own
view of the consent ledger in memory (storage/consent_view.py). B first answers
a visitor from its view (it looked the visitor up, and holds the answer); A then
records a withdrawal — by a ``Consent Updated`` message, by the admin API, by an
erasure with suppression — and answers; the visitor's very next request, sent
to B without any pause, must be decided on the withdrawal.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from footfall.storage.consent_view import APPLICATION_NAME
from tests.ops.serving import Served, serve
from tests.support import make_site, scratch_database, wait_until

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "consent-collectors-admin-token-0123456789"
PII_KEY = "consent-collectors-pii-key-0123456789abcdef0123"
ROUNDS = 10


@pytest.fixture(scope="module")
def pair(
    admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, Served, str]]:
    with scratch_database(admin_dsn) as dsn:
        log_dir = tmp_path_factory.mktemp("consent-collectors")
        env = {"FOOTFALL_ADMIN_TOKEN": ADMIN_TOKEN, "FOOTFALL_PII_KEY": PII_KEY}
        started: list[Served] = []
        try:
            for _ in range(2):
                started.append(serve(dsn, log_dir, workers=1, **env))
            _wait_for_listeners(dsn, 2)
            yield started[0], started[1], dsn
        finally:
            for served in started:
                served.terminate()


def _listeners(dsn: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
            " AND datname = current_database()",
            (APPLICATION_NAME,),
        ).fetchall()
    return [r[0] for r in rows]


def _wait_for_listeners(dsn: str, count: int) -> None:
    wait_until(lambda: len(_listeners(dsn)) >= count, timeout_s=30)


class Site:
    def __init__(self, dsn: str) -> None:
        self.name = f"consent-{uuid.uuid4().hex[:8]}"
        self.id, self.key = make_site(
            dsn,
            name=self.name,
            consent_mode="implied",
            settings={"allow_undeclared_events": True},
        )

    def send(self, served: Served, *messages: dict[str, Any]) -> dict[str, Any]:
        batch = [{"messageId": str(uuid.uuid4()), **m} for m in messages]
        response = httpx.post(
            served.base_url + "/v1/batch", json={"batch": batch}, auth=(self.key, ""), timeout=30
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["failed"] == [], body
        return body

    def admin(self, served: Served, path: str, **body: Any) -> None:
        response = httpx.post(
            served.base_url + "/admin/privacy/" + path,
            json={"site": self.name, **body},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text


def _track(anonymous_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Thing Happened", "anonymousId": anonymous_id, **fields}


def _consent(anonymous_id: str, analytics: bool, **fields: Any) -> dict[str, Any]:
    return _track(
        anonymous_id, event="Consent Updated", properties={"analytics": analytics}, **fields
    )


def _stored(body: dict[str, Any]) -> bool:
    return body["accepted"] == 1 and body["refused"] == {}


def _refused(body: dict[str, Any], reason: str) -> bool:
    return body["accepted"] == 0 and body["refused"] == {reason: 1}


def _known_granted(site: Site, b: Served, visitor: str, **fields: Any) -> None:
    """The visitor granted, and B has answered it twice since (the second from its view)."""
    assert site.send(b, _consent(visitor, True, **fields))["accepted"] == 1
    for _ in range(2):
        assert _stored(site.send(b, _track(visitor, **fields)))


def test_a_withdrawal_message_at_one_collector_binds_the_other(
    pair: tuple[Served, Served, str],
) -> None:
    a, b, dsn = pair
    site = Site(dsn)
    for n in range(ROUNDS):
        visitor = f"msg-{n}-{uuid.uuid4().hex[:6]}"
        _known_granted(site, b, visitor)
        assert site.send(a, _consent(visitor, False))["accepted"] == 1
        assert _refused(site.send(b, _track(visitor)), "consent"), n
        # ... and a new grant at A is in force at B as soon.
        site.send(a, _consent(visitor, True))
        assert _stored(site.send(b, _track(visitor))), n


def test_a_withdrawal_through_the_admin_api_binds_the_other(
    pair: tuple[Served, Served, str],
) -> None:
    a, b, dsn = pair
    site = Site(dsn)
    for n in range(ROUNDS):
        visitor = f"api-{n}-{uuid.uuid4().hex[:6]}"
        _known_granted(site, b, visitor)
        site.admin(a, "consent", anonymous_id=visitor, purposes={"analytics": False})
        assert _refused(site.send(b, _track(visitor)), "consent"), n
    # By user id: the user's messages from a device B never saw are refused too.
    user = f"user-{uuid.uuid4().hex[:6]}@example.com"
    _known_granted(site, b, "device-1", userId=user)
    site.admin(a, "consent", user_id=user, purposes={"analytics": False})
    assert _refused(site.send(b, _track("device-2", userId=user)), "consent")
    assert _refused(site.send(b, _track("device-1", userId=user)), "consent")


def test_erasure_at_one_collector_binds_the_other(pair: tuple[Served, Served, str]) -> None:
    a, b, dsn = pair
    site = Site(dsn)
    for n in range(ROUNDS):
        visitor = f"erase-{n}-{uuid.uuid4().hex[:6]}"
        for _ in range(2):  # B looked the visitor up (no decision) and holds that
            assert _stored(site.send(b, _track(visitor)))
        site.admin(a, "erase", anonymous_id=visitor, suppress=True)
        assert _refused(site.send(b, _track(visitor)), "erased"), n
    # Erasure without suppression deletes the ledger rows: a withdrawal B held goes too.
    visitor = f"forgotten-{uuid.uuid4().hex[:6]}"
    site.admin(a, "consent", anonymous_id=visitor, purposes={"analytics": False})
    for _ in range(2):
        assert _refused(site.send(b, _track(visitor)), "consent")
    site.admin(a, "erase", anonymous_id=visitor)
    assert _stored(site.send(b, _track(visitor)))


def test_a_lost_listener_costs_speed_not_exactness(pair: tuple[Served, Served, str]) -> None:
    a, b, dsn = pair
    site = Site(dsn)
    visitors = [f"lost-{n}-{uuid.uuid4().hex[:6]}" for n in range(3)]
    for visitor in visitors:
        _known_granted(site, b, visitor)
    listeners = _listeners(dsn)
    assert len(listeners) == 2
    with psycopg.connect(dsn, autocommit=True) as conn:
        for pid in listeners:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # Withdrawn while neither collector listens: nobody is notified of it.
    assert site.send(a, _consent(visitors[0], False))["accepted"] == 1
    assert _refused(site.send(b, _track(visitors[0])), "consent")
    wait_until(lambda: len(set(_listeners(dsn)) - set(listeners)) == 2, timeout_s=30)
    site.admin(a, "consent", anonymous_id=visitors[1], purposes={"analytics": False})
    assert _refused(site.send(b, _track(visitors[0])), "consent")
    assert _refused(site.send(b, _track(visitors[1])), "consent")
    assert _stored(site.send(b, _track(visitors[2])))
    assert "listener connection lost" in b.log()
