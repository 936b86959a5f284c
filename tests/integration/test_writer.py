"""The group-commit writer on its own: grouping, exactly-once, isolation of a bad request."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from footfall.pipeline.types import EventRow, Failure
from footfall.settings import Settings
from footfall.storage.engine import create_pool
from footfall.storage.writer import Writer, WriterClosed
from tests.support import make_site, query


def _row(site_id: int, message_id: str | None = None) -> EventRow:
    now = datetime.now(UTC)
    values = dict.fromkeys(EventRow.__slots__)  # every column None
    values.update(
        site_id=site_id,
        message_id=message_id or str(uuid.uuid4()),
        type="track",
        event="Element Clicked",
        timestamp=now,
        received_at=now,
        context={},
        properties={"n": 1},
        undeclared=False,
    )
    values.pop("index")
    values.pop("extras")
    return EventRow(**values)


async def _with_writer(dsn: str, body, **writer_kwargs):
    pool = create_pool(dsn, Settings(database_url=dsn, pool_timeout_s=5))
    await pool.open(wait=True)
    writer = Writer(pool, **writer_kwargs)
    writer.start()
    try:
        return await body(writer)
    finally:
        await writer.close()
        await pool.close()


def test_concurrent_requests_share_commits_and_dedup(database: str) -> None:
    site_id, _ = make_site(database)
    shared = [_row(site_id) for _ in range(10)]

    async def body(writer: Writer):
        requests = [[*shared, _row(site_id)] for _ in range(50)]
        outcomes = await asyncio.gather(*(writer.write(rows, []) for rows in requests))
        return outcomes, writer.commits

    outcomes, commits = asyncio.run(_with_writer(database, body, linger_ms=5))
    assert sum(len(o.inserted) for o in outcomes) == 10 + 50
    assert sum(len(o.duplicates) for o in outcomes) == 49 * 10
    assert commits < 50  # grouped: fewer transactions than requests
    count = query(database, "SELECT count(*) AS n FROM events WHERE site_id = %s", (site_id,))
    assert count[0]["n"] == 60


def test_bad_request_does_not_fail_the_others(database: str) -> None:
    site_id, _ = make_site(database)
    broken = _row(site_id)
    broken.type = None  # violates NOT NULL: the whole group's INSERT fails

    async def body(writer: Writer):
        return await asyncio.gather(
            writer.write([_row(site_id)], []),
            writer.write([broken], []),
            writer.write([_row(site_id)], []),
            return_exceptions=True,
        )

    good1, bad, good2 = asyncio.run(_with_writer(database, body, linger_ms=20))
    assert len(good1.inserted) == 1 and len(good2.inserted) == 1
    # The culprit fails alone, as a documented failure, not an exception (never a 503).
    assert not bad.inserted and [f.reason for f in bad.rejected] == ["storage_rejected"]
    count = query(database, "SELECT count(*) AS n FROM events WHERE site_id = %s", (site_id,))
    assert count[0]["n"] == 2
    failed = query(
        database, "SELECT message_id, reason FROM failed_events WHERE site_id = %s", (site_id,)
    )
    assert failed == [{"message_id": broken.message_id, "reason": "storage_rejected"}]


def test_close_commits_in_flight_work_then_refuses(database: str) -> None:
    site_id, _ = make_site(database)

    async def body(writer: Writer):
        pending = [asyncio.create_task(writer.write([_row(site_id)], [])) for _ in range(20)]
        await asyncio.sleep(0)  # let them queue
        await writer.close()
        results = await asyncio.gather(*pending)
        with pytest.raises(WriterClosed):
            await writer.write([_row(site_id)], [])
        return results

    pool_results = asyncio.run(_with_writer(database, body, linger_ms=50))
    assert sum(len(r.inserted) for r in pool_results) == 20
    count = query(database, "SELECT count(*) AS n FROM events WHERE site_id = %s", (site_id,))
    assert count[0]["n"] == 20


def test_failures_are_stored_once(database: str) -> None:
    site_id, _ = make_site(database)
    failure = Failure(
        index=0,
        site_id=site_id,
        message_id="f-1",
        received_at=datetime.now(UTC),
        reason="unknown_event",
        errors=[{"path": "/event", "message": "no schema"}],
        schema=None,
        raw={"type": "track", "event": "Nope"},
    )

    async def body(writer: Writer):
        await writer.write([], [failure])
        await writer.write([], [failure])

    asyncio.run(_with_writer(database, body))
    rows = query(
        database, "SELECT status, reason FROM failed_events WHERE site_id = %s", (site_id,)
    )
    assert rows == [{"status": "pending", "reason": "unknown_event"}]


def test_one_connection_replaced_when_it_breaks(database: str) -> None:
    """The writer keeps one connection (no checkout, no check per commit); killed while
    idle (a server restart), it is replaced by the next commit, which still succeeds."""
    site_id, _ = make_site(database)
    opened: list[psycopg.AsyncConnection] = []

    async def body(writer: Writer):
        first = await writer.write([_row(site_id)], [])
        second = await writer.write([_row(site_id)], [])
        assert len(opened) == 1  # both commits on the same connection
        with psycopg.connect(database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (opened[0].info.backend_pid,))
        third = await writer.write([_row(site_id)], [])
        return [first, second, third]

    async def connect() -> psycopg.AsyncConnection:
        opened.append(await psycopg.AsyncConnection.connect(database))
        return opened[-1]

    outcomes = asyncio.run(_with_writer(database, body, connect=connect))
    assert [len(o.inserted) for o in outcomes] == [1, 1, 1]
    assert len(opened) == 2 and opened[0].closed
    count = query(database, "SELECT count(*) AS n FROM events WHERE site_id = %s", (site_id,))
    assert count[0]["n"] == 3


def test_pool_checks_its_idle_connections_after_an_error(database: str) -> None:
    """No check per checkout: after a restart the first use of a dead connection fails
    (a 503), and that error has the pool test and replace its other idle connections."""

    async def run() -> list[int]:
        settings = Settings(database_url=database, pool_min_size=3, pool_max_size=3)
        pool = create_pool(database, settings)
        await pool.open(wait=True)
        try:
            held = [await pool.getconn() for _ in range(3)]
            pids = [conn.info.backend_pid for conn in held]
            for conn in held:
                await pool.putconn(conn)
            with psycopg.connect(database, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,)
                )
            with pytest.raises(psycopg.OperationalError):
                async with pool.connection() as conn:
                    await conn.execute("SELECT 1")
            await asyncio.sleep(0)  # the check starts: the idle connections leave the pool
            answers = []
            for _ in range(3):
                async with pool.connection() as conn:
                    cursor = await conn.execute("SELECT 1")
                    answers.append((await cursor.fetchone())[0])
            return answers
        finally:
            await pool.close()

    assert asyncio.run(run()) == [1, 1, 1]


def test_next_group_commits_while_one_is_in_flight(database: str) -> None:
    """Two groups in flight: the first is held (another transaction holds its key),
    and the second commits and is answered meanwhile, on a connection of its own.
    Once the first is released it commits too, and each key is stored once."""
    site_id, _ = make_site(database)
    held = _row(site_id)
    other = _row(site_id)

    async def body(writer: Writer):
        holder = await psycopg.AsyncConnection.connect(database)
        try:
            await holder.execute(
                'INSERT INTO event_ids (site_id, message_id, "timestamp") VALUES (%s, %s, now())',
                (site_id, held.message_id),
            )
            first = asyncio.create_task(writer.write([held], []))
            # Wait until the first group's INSERT waits for the holder's row lock.
            async with await psycopg.AsyncConnection.connect(database, autocommit=True) as watch:
                while True:
                    cur = await watch.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE %s = ANY(pg_blocking_pids(pid))",
                        (holder.info.backend_pid,),
                    )
                    if (await cur.fetchone())[0]:
                        break
                    await asyncio.sleep(0.01)
            second = asyncio.create_task(writer.write([other], []))
            done, _ = await asyncio.wait({first, second}, timeout=60, return_when="FIRST_COMPLETED")
            assert done == {second}, "the second group waited for the first"
            assert not first.done()
            await holder.rollback()  # the held key was never committed: the first's row is new
            return await first, await second, writer.commits
        finally:
            await holder.close()

    first, second, commits = asyncio.run(_with_writer(database, body, concurrency=2))
    assert [len(first.inserted), len(second.inserted)] == [1, 1]
    assert commits == 2
    rows = query(database, "SELECT message_id FROM events WHERE site_id = %s", (site_id,))
    assert sorted(r["message_id"] for r in rows) == sorted([held.message_id, other.message_id])


@pytest.mark.parametrize("concurrency", [1, 4])
def test_exactly_once_at_any_concurrency(database: str, concurrency: int) -> None:
    """Many requests sharing keys, groups in flight at once: each key stored once,
    answered once as new and otherwise as a duplicate."""
    site_id, _ = make_site(database)
    shared = [_row(site_id) for _ in range(10)]

    async def body(writer: Writer):
        async def one(i: int):
            await asyncio.sleep(0.001 * (i % 7))  # spread over several groups
            return await writer.write([*shared, _row(site_id)], [])

        return await asyncio.gather(*(one(i) for i in range(60)))

    outcomes = asyncio.run(_with_writer(database, body, linger_ms=0, concurrency=concurrency))
    assert sum(len(o.inserted) for o in outcomes) == 10 + 60
    assert sum(len(o.duplicates) for o in outcomes) == 59 * 10
    count = query(database, "SELECT count(*) AS n FROM events WHERE site_id = %s", (site_id,))
    assert count[0]["n"] == 70
