"""The per-process view of the consent ledger (storage/consent_view.py), against a real PostgreSQL.

Every answer is compared with ``load_ledger`` (the query the view replaces). Decisions
are committed on other connections, as another collector, the admin API or the CLI
would; the view learns of them only through the database's notifications.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from footfall.pipeline.consent import LedgerView
from footfall.pipeline.privacy import keyring_of
from footfall.settings import Settings
from footfall.storage.consent import StoredIds, load_ledger, query_ledger, record_decision
from footfall.storage.consent_view import APPLICATION_NAME, ConsentView
from footfall.storage.engine import create_pool
from footfall.storage.privacy import erase_subject
from tests.support import make_site, scratch_database

KEYRING = keyring_of("k1", "consent-view-tests-key-0123456789abcdef0123")


def _decide(dsn: str, site_id: int, anonymous_id: str | None, analytics: bool, **ids: Any) -> None:
    """A decision committed on a connection of its own (as the admin API does)."""
    with psycopg.connect(dsn) as conn, conn.transaction():
        record_decision(
            conn,
            site_id,
            KEYRING.current,
            anonymous_id=anonymous_id,
            user_id=ids.get("user_id"),
            purposes={"analytics": analytics},
            policy_version=None,
            source="api",
        )


def _erase(dsn: str, site_id: int, anonymous_id: str, *, suppress: bool) -> None:
    with psycopg.connect(dsn) as conn, conn.transaction():
        erase_subject(conn, site_id, "anonymous_id", anonymous_id, KEYRING, suppress=suppress)


def _msg(anonymous_id: str | None = None, user_id: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "track", "event": "x"}
    if anonymous_id:
        message["anonymousId"] = anonymous_id
    if user_id:
        message["userId"] = user_id
    return message


def _same(a: LedgerView, b: LedgerView) -> bool:
    return (
        a.by_anonymous_id == b.by_anonymous_id
        and a.by_user_id == b.by_user_id
        and a.suppressed_anonymous_ids == b.suppressed_anonymous_ids
        and a.suppressed_user_ids == b.suppressed_user_ids
    )


def _analytics(view: LedgerView, anonymous_id: str) -> bool | None:
    decision = view.by_anonymous_id.get(anonymous_id)
    return None if decision is None else decision.analytics


async def _wait(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


Body = Callable[[ConsentView, AsyncConnectionPool], Awaitable[None]]


async def _with_view(dsn: str, body: Body, **kwargs: Any) -> None:
    pool = create_pool(dsn, Settings(database_url=dsn, pool_timeout_s=10))
    await pool.open(wait=True, timeout=30)
    view = ConsentView(pool, dsn, KEYRING, **kwargs)
    view.start()
    try:
        await _wait(lambda: view.live)
        await body(view, pool)
    finally:
        await view.close()
        await pool.close()


def run(dsn: str, body: Body, **kwargs: Any) -> None:
    asyncio.run(_with_view(dsn, body, **kwargs))


def test_answers_from_memory_and_every_change_is_seen(database: str) -> None:
    site, _ = make_site(database)
    visitor, other, user = (f"cv-{uuid.uuid4().hex[:8]}" for _ in range(3))
    batch = [_msg(visitor), _msg(other, user)]

    async def body(view: ConsentView, pool: AsyncConnectionPool) -> None:
        async def check() -> LedgerView:
            got = await view.ledger(site, batch)
            assert _same(got, await load_ledger(pool, site, batch, KEYRING))
            return got

        first = await check()  # nobody decided: negative answers, held too
        assert first.by_anonymous_id == {} and view.misses == 3
        await check()
        assert view.misses == 3 and view.hits == 3
        for analytics in (True, False, True, False):
            await asyncio.to_thread(_decide, database, site, visitor, analytics)
            assert _analytics(await check(), visitor) is analytics
        await asyncio.to_thread(_decide, database, site, None, False, user_id=user)
        assert (await check()).by_user_id[user].analytics is False
        # The decision was dropped and looked up again; the untouched id stayed held.
        misses = view.misses
        await check()
        assert view.misses == misses
        assert view.fallbacks == 0

    run(database, body)


def test_a_withdrawal_committed_elsewhere_binds_the_very_next_lookup(database: str) -> None:
    """No sleep between the commit and the look-up: the round trip on the listening
    connection (sent after the commit) brings the notification first."""
    site, _ = make_site(database)

    async def body(view: ConsentView, pool: AsyncConnectionPool) -> None:
        for n in range(30):
            visitor = f"cv-next-{n}-{uuid.uuid4().hex[:6]}"
            await asyncio.to_thread(_decide, database, site, visitor, True)
            # The grant's notification may come after the first look-up was held (and drop
            # it, harmlessly): the look-ups after that answer from memory.
            for _ in range(3):
                assert _analytics(await view.ledger(site, [_msg(visitor)]), visitor) is True
            await asyncio.to_thread(_decide, database, site, visitor, False)
            assert _analytics(await view.ledger(site, [_msg(visitor)]), visitor) is False
        assert view.hits >= 30 and view.fallbacks == 0

    run(database, body)


def test_erasure_with_suppression_and_erasure_of_the_decisions(database: str) -> None:
    site, _ = make_site(database)
    suppressed, withdrawn = (f"cv-er-{uuid.uuid4().hex[:8]}" for _ in range(2))

    async def body(view: ConsentView, pool: AsyncConnectionPool) -> None:
        got = await view.ledger(site, [_msg(suppressed)])
        assert got.suppressed_anonymous_ids == set()
        await asyncio.to_thread(_erase, database, site, suppressed, suppress=True)
        got = await view.ledger(site, [_msg(suppressed)])
        assert got.suppressed_anonymous_ids == {suppressed}
        # Erasure deletes the ledger rows: the held "denied" must go with them.
        await asyncio.to_thread(_decide, database, site, withdrawn, False)
        assert _analytics(await view.ledger(site, [_msg(withdrawn)]), withdrawn) is False
        await asyncio.to_thread(_erase, database, site, withdrawn, suppress=False)
        got = await view.ledger(site, [_msg(withdrawn)])
        assert withdrawn not in got.by_anonymous_id
        assert _same(got, await load_ledger(pool, site, [_msg(withdrawn)], KEYRING))

    run(database, body)


def test_an_answer_overtaken_by_a_decision_is_used_once_and_not_held(database: str) -> None:
    """The race guard: the query read the ledger before the withdrawal committed, and the
    withdrawal's notification was processed before the answer came back."""
    site, _ = make_site(database)
    visitor = f"cv-race-{uuid.uuid4().hex[:8]}"
    overtaken: list[bool] = []

    async def slow_query(pool: AsyncConnectionPool, site_id: int, ids: StoredIds) -> LedgerView:
        answer = await query_ledger(pool, site_id, ids)
        if overtaken == [True]:
            overtaken.append(True)
            await asyncio.to_thread(_decide, database, site, visitor, False)
            assert await view_of[0].sync()  # its notification is processed now
        return answer

    view_of: list[ConsentView] = []

    async def body(view: ConsentView, pool: AsyncConnectionPool) -> None:
        view_of.append(view)
        await asyncio.to_thread(_decide, database, site, visitor, True)
        overtaken.append(True)
        stale = await view.ledger(site, [_msg(visitor)])
        assert _analytics(stale, visitor) is True  # concurrent with the withdrawal
        assert len(view) == 0 and view.misses == 1
        fresh = await view.ledger(site, [_msg(visitor)])
        assert _analytics(fresh, visitor) is False and view.misses == 2
        # Not overtaken this time: held.
        await view.ledger(site, [_msg(visitor)])
        assert view.misses == 2 and view.hits == 1

    run(database, body, query=slow_query)


def test_an_answer_from_before_a_reconnect_is_not_held(database: str) -> None:
    site, _ = make_site(database)
    visitor = f"cv-epoch-{uuid.uuid4().hex[:8]}"
    reconnect: list[bool] = []

    async def slow_query(pool: AsyncConnectionPool, site_id: int, ids: StoredIds) -> LedgerView:
        answer = await query_ledger(pool, site_id, ids)
        if reconnect == [True]:
            reconnect.append(True)
            view = view_of[0]
            epoch = view.epoch
            await asyncio.to_thread(_terminate, database, view.listener_pid)
            # A withdrawal nobody hears of, then the listener is back.
            await asyncio.to_thread(_decide, database, site, visitor, False)
            await _wait(lambda: view.live and view.epoch >= epoch + 2)
        return answer

    view_of: list[ConsentView] = []

    async def body(view: ConsentView, pool: AsyncConnectionPool) -> None:
        view_of.append(view)
        await asyncio.to_thread(_decide, database, site, visitor, True)
        reconnect.append(True)
        assert _analytics(await view.ledger(site, [_msg(visitor)]), visitor) is True
        assert len(view) == 0
        assert _analytics(await view.ledger(site, [_msg(visitor)]), visitor) is False

    run(database, body, query=slow_query)


def _terminate(dsn: str, pid: int | None) -> None:
    assert pid is not None
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_lost_listener_empties_the_view_and_answers_stay_exact(database: str) -> None:
    site, _ = make_site(database)
    visitors = [f"cv-lost-{n}-{uuid.uuid4().hex[:6]}" for n in range(3)]
    batch = [_msg(v) for v in visitors]

    async def body(view: ConsentView, pool: AsyncConnectionPool) -> None:
        for v in visitors:
            await asyncio.to_thread(_decide, database, site, v, True)
        await view.ledger(site, batch)
        assert len(view) == 3
        epoch = view.epoch
        pid = view.listener_pid
        with psycopg.connect(database, autocommit=True) as conn:
            found = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid = %s",
                (APPLICATION_NAME, pid),
            ).fetchall()
            assert found == [(pid,)]
        await asyncio.to_thread(_terminate, database, pid)
        # Withdrawn while nobody listens: the notification is lost for this process.
        await asyncio.to_thread(_decide, database, site, visitors[0], False)
        got = await view.ledger(site, batch)  # down (queries) or back (view emptied)
        assert _analytics(got, visitors[0]) is False
        await _wait(lambda: view.live and view.epoch >= epoch + 2)
        assert view.listener_pid != pid
        await asyncio.to_thread(_decide, database, site, visitors[1], False)
        got = await view.ledger(site, batch)
        assert [_analytics(got, v) for v in visitors] == [False, False, True]
        assert _same(got, await load_ledger(pool, site, batch, KEYRING))

    run(database, body)


def test_bounded(database: str) -> None:
    site, _ = make_site(database)

    async def body(view: ConsentView, pool: AsyncConnectionPool) -> None:
        for n in range(10):
            await view.ledger(site, [_msg(f"cv-bound-{n}")])
        assert len(view) == 4
        await view.ledger(site, [_msg("cv-bound-9")])
        assert view.hits == 1
        await view.ledger(site, [_msg("cv-bound-0")])
        assert view.hits == 1  # evicted first

    run(database, body, max_entries=4)


@pytest.fixture(scope="module")
def scratch(admin_dsn: str):
    with scratch_database(admin_dsn) as dsn:
        yield dsn


def test_truncate_and_a_schema_without_the_triggers(scratch: str) -> None:
    site, _ = make_site(scratch)
    visitor = f"cv-tr-{uuid.uuid4().hex[:8]}"

    async def truncate(view: ConsentView, pool: AsyncConnectionPool) -> None:
        await asyncio.to_thread(_decide, scratch, site, visitor, False)
        assert _analytics(await view.ledger(site, [_msg(visitor)]), visitor) is False
        with psycopg.connect(scratch, autocommit=True) as conn:
            conn.execute("TRUNCATE consent_log")
        assert visitor not in (await view.ledger(site, [_msg(visitor)])).by_anonymous_id

    run(scratch, truncate)

    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute("DROP TRIGGER consent_log_notify ON consent_log")

    async def unnotified() -> None:
        pool = create_pool(scratch, Settings(database_url=scratch))
        await pool.open(wait=True)
        view = ConsentView(pool, scratch, KEYRING)
        view.start()
        try:
            await asyncio.sleep(1.0)
            assert not view.live  # it would never hear of a change: it stays out of the way
            for analytics in (True, False):
                await asyncio.to_thread(_decide, scratch, site, visitor, analytics)
                got = await view.ledger(site, [_msg(visitor)])
                assert _analytics(got, visitor) is analytics
            assert view.fallbacks == 2 and len(view) == 0
        finally:
            await view.close()
            await pool.close()

    asyncio.run(unnotified())


def test_decided_at_order_is_the_ledgers(database: str) -> None:
    """A replayed old grant recorded after a withdrawal does not win (as in load_ledger)."""
    site, _ = make_site(database)
    visitor = f"cv-old-{uuid.uuid4().hex[:8]}"

    async def body(view: ConsentView, pool: AsyncConnectionPool) -> None:
        await asyncio.to_thread(_decide, database, site, visitor, False)
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO consent_log (site_id, anonymous_id, pii_key_id, analytics, granted,"
                " denied, source, decided_at) VALUES (%s, %s, 'k1', true, '{analytics}', '{}',"
                " 'api', %s)",
                (site, visitor, datetime(2020, 1, 1, tzinfo=UTC)),
            )
        got = await view.ledger(site, [_msg(visitor)])
        assert _analytics(got, visitor) is False
        assert _same(got, await load_ledger(pool, site, [_msg(visitor)], KEYRING))

    run(database, body)
