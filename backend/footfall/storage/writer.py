"""The group-commit writer: many requests' messages, one transaction, then every answer.

Requests hand their rows to :meth:`Writer.write` and wait. A single loop per
process takes everything that is waiting (up to ``max_batch`` messages), inserts
it in one transaction with ``ON CONFLICT DO NOTHING`` on (site_id, message_id),
commits, and only then resolves each request's future. So a 2xx always means
"committed", and a retried message is stored once: the conflict tells a
duplicate from a new row.

Up to ``concurrency`` groups commit at once, each on a connection of its own:
while one group's transaction waits for its round trips, the next group starts.
Two groups in flight in one process are like two collectors' groups, which the
transaction already allows for (keys inserted in sorted order, advisory locks
taken in sorted order, a rolled-back transaction run again: see
``storage/sessions.py`` and ``storage/identity.py``). A request is answered when
its own group has committed, whatever the other group does.

The transaction runs in phases (see ``copy_events``): keys, then the steps that
decide what the new rows are written with, then the COPY of the rows, then the
steps that may read them. It runs on the writer's own connection, in as few
round trips as its statements' dependencies allow (psycopg pipeline mode:
``tests/integration/test_writer_round_trips.py`` counts them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.dialects.postgresql import JSONB

from footfall import __version__
from footfall.pipeline import reasons
from footfall.pipeline.reasons import REPLAYABLE
from footfall.pipeline.sessions import session_of
from footfall.pipeline.types import EVENT_COLUMNS, EventRow, Failure
from footfall.storage import tables
from footfall.storage.engine import writer_connection
from footfall.storage.outage import StorageUnavailable, is_bad_value, is_outage

__all__ = [
    "StorageUnavailable",
    "TxStep",
    "WriteOutcome",
    "Writer",
    "WriterClosed",
    "copy_events",
]

log = logging.getLogger(__name__)

_JSON_COLUMNS = frozenset(c.name for c in tables.events.columns if isinstance(c.type, JSONB))


# Deduplication: events is partitioned (by event time), so (site_id, message_id)
# cannot be unique on it. The group's keys go into event_ids first (one statement,
# unnest of three arrays), and only the rows whose key was new are copied into
# events. A retry carries another timestamp (it is computed from the arrival
# time) and may fall in another month: the key, not the row, decides. Keys are
# inserted in sorted order so that concurrent collectors inserting the same keys
# take their locks in one order and cannot deadlock.
_QUOTED_COLUMNS = ", ".join('"' + c + '"' for c in EVENT_COLUMNS)
INSERT_EVENT_IDS = (
    'INSERT INTO event_ids (site_id, message_id, "timestamp")'
    " SELECT * FROM unnest(%b::int[], %b::text[], %b::timestamptz[]) AS t(s, m, r)"
    " ORDER BY s, m ON CONFLICT (site_id, message_id) DO NOTHING RETURNING site_id, message_id"
)
# Only rows whose key was new reach this COPY, so it never conflicts; COPY's row
# formatting runs in psycopg's C extension (the array dumper it replaces is Python).
COPY_EVENTS = f"COPY events ({_QUOTED_COLUMNS}) FROM STDIN"
INSERT_FAILED = (
    "INSERT INTO failed_events (site_id, message_id, received_at, reason, errors, schema,"
    " collector_version, raw, status) "
    "SELECT * FROM unnest(%b::int[], %b::text[], %b::timestamptz[], %b::text[], %b::jsonb[],"
    " %b::text[], %b::text[], %b::jsonb[], %b::text[]) "
    "ON CONFLICT (site_id, message_id) DO NOTHING"
)


_ROLLBACK_RETRIES = 3
# SQLSTATE class 40: the server rolled the transaction back (a deadlock, a
# serialization failure). psycopg maps 40P01 and 40001 to their own classes,
# which are not subclasses of TransactionRollback (40000), so all three are named.
_ROLLED_BACK = (
    psycopg.errors.TransactionRollback,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)


class WriterClosed(StorageUnavailable):
    """The writer is shutting down and takes no new work."""


@dataclass(slots=True)
class WriteOutcome:
    """Per request: which of its rows were new, which were duplicates, which the
    database refused (each stored as a ``storage_rejected`` failure instead)."""

    inserted: list[EventRow] = field(default_factory=list)
    duplicates: list[EventRow] = field(default_factory=list)
    rejected: list[Failure] = field(default_factory=list)
    # Seconds from the start of this request's group commit to its answer (the
    # rest of its wait was the queue): its own group's, whatever else commits.
    commit_s: float = 0.0


@dataclass(slots=True)
class _Job:
    rows: Sequence[EventRow]
    failures: Sequence[Failure]
    future: asyncio.Future[WriteOutcome]

    @property
    def size(self) -> int:
        return len(self.rows) + len(self.failures)


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


_JSON_INDEXES = tuple(i for i, c in enumerate(EVENT_COLUMNS) if c in _JSON_COLUMNS)


_SESSION_INDEX = EVENT_COLUMNS.index("session_id")


def _event_values(row: EventRow) -> list[Any]:
    """One row's values in EVENT_COLUMNS order, JSON columns serialized.

    ``session_id`` is the session the sessions step put the row in (session_of:
    the idle rule's id, or a shared device's part), so no row is updated later.
    """
    values = [getattr(row, column) for column in EVENT_COLUMNS]
    values[_SESSION_INDEX] = session_of(row)
    for i in _JSON_INDEXES:
        values[i] = _json(values[i])
    return values


def _failed_arrays(failures: Sequence[Failure]) -> list[list[Any]]:
    return [
        [f.site_id for f in failures],
        [f.message_id for f in failures],
        [f.received_at for f in failures],
        [f.reason for f in failures],
        [_json(f.errors) for f in failures],
        [f.schema for f in failures],
        [__version__] * len(failures),
        [_json(f.raw) for f in failures],
        ["pending" if f.reason in REPLAYABLE else "unreplayable" for f in failures],
    ]


# Work done in the writer's transaction for the rows that were new (never for a
# duplicate, so rollups stay exact under retries): sessions, identities, the
# consent ledger ... Steps run in order and must not commit.
TxStep = Callable[[psycopg.AsyncConnection[Any], Sequence[EventRow]], Awaitable[None]]


# The transaction's phases (one transaction, in this order):
#
# 1. event_ids: the group's keys, one INSERT ... RETURNING; the keys it returns
#    are the new rows (failed_events in the same phase).
# 2. The steps before ``copy_events``, on the new rows, which are not in
#    ``events`` yet: they may set what the COPY writes (the sessions step puts
#    each row in its session, the visitors step may give it yesterday's visitor
#    hash), so no row is UPDATEd in the transaction that writes it. They must
#    not read the new rows from ``events``.
# 3. ``copy_events``: the new rows, COPYed with their final values.
# 4. The steps after it, which may read the new rows from ``events``.
#
# ``copy_events`` is a step in the list (build_tx_steps in app.py puts it after
# sessions); a list without it is run after the COPY, as before phases existed.
async def copy_events(conn: psycopg.AsyncConnection[Any], rows: Sequence[EventRow]) -> None:
    """TxStep: COPY the new rows into ``events`` (the boundary between the phases)."""
    async with conn.cursor() as cur, cur.copy(COPY_EVENTS) as copy:
        for row in rows:
            await copy.write_row(_event_values(row))


async def store_messages(
    conn: psycopg.AsyncConnection[Any],
    rows: Sequence[EventRow],
    failures: Sequence[Failure],
    steps: Sequence[TxStep] = (),
    *,
    begin: bool = False,
) -> set[tuple[int, str]]:
    """Insert rows and failures, run ``steps`` on the new rows; the caller's transaction.

    ``begin``: open it here, in the first round trip (on an autocommit
    connection, whose caller then commits or rolls back: the writer's).
    """
    new_rows = await _insert_keys(conn, rows, failures, begin)
    if new_rows:
        for step in steps if copy_events in steps else (copy_events, *steps):
            await step(conn, new_rows)
    return {(row.site_id, row.message_id) for row in new_rows}


async def _insert_keys(
    conn: psycopg.AsyncConnection[Any],
    rows: Sequence[EventRow],
    failures: Sequence[Failure],
    begin: bool = False,
) -> list[EventRow]:
    """Insert the keys and the failures; return the rows whose key was new, one per key.

    One round trip (a pipeline; the keys are read once it is over), BEGIN
    included when ``begin``. A key twice in ``rows`` (a retry in the same
    group): the first copy is stored.
    """
    first_copies: dict[tuple[int, str], EventRow] = {}
    for row in rows:
        first_copies.setdefault((row.site_id, row.message_id), row)
    unique = list(first_copies.values())
    async with conn.cursor() as cur, conn.cursor() as failed:
        async with conn.pipeline():
            if begin:
                await cur.execute("BEGIN")
            if unique:
                await cur.execute(
                    INSERT_EVENT_IDS,
                    (
                        [row.site_id for row in unique],
                        [row.message_id for row in unique],
                        [row.timestamp for row in unique],
                    ),
                )
            if failures:
                await failed.execute(INSERT_FAILED, _failed_arrays(failures))
        if not unique:
            return []
        inserted = {(site_id, message_id) for site_id, message_id in await cur.fetchall()}
    return [row for row in unique if (row.site_id, row.message_id) in inserted]


Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]


class Writer:
    """One per process; see the module docstring.

    The writer commits on connections of its own (opened with the pool's DSN
    and options, or by ``connect``; at most ``concurrency``, one per group in
    flight, reused most recently used first), never a pool checkout per commit,
    and never checked before use: an error that leaves one broken (a database
    restart) or in an unknown state closes it, and the commit is run once more
    on a new one. Meanwhile requests are answered 503 (StorageUnavailable).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        max_batch: int = 2000,
        linger_ms: float = 2.0,
        queue_max: int = 50_000,
        steps: Sequence[TxStep] = (),
        on_commit: Callable[[float, int], None] | None = None,
        connect: Connect | None = None,
        concurrency: int = 2,
    ) -> None:
        if concurrency < 1:
            raise ValueError("the writer needs a concurrency of at least 1")
        self._connect: Connect = connect or (lambda: writer_connection(pool))
        self._idle: list[psycopg.AsyncConnection[Any]] = []  # the last one is reused first
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._steps = steps
        self._on_commit = on_commit  # (seconds, messages) after each group commit
        self._max_batch = max_batch
        self._linger = linger_ms / 1000
        self._queue_max = queue_max
        self._jobs: deque[_Job] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.commits = 0

    @property
    def queue_depth(self) -> int:
        return self._queued

    @property
    def accepting(self) -> bool:
        return self._task is not None and not self._closing

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="footfall-writer")

    async def close(self) -> None:
        """Stop taking work, commit (and answer) everything already handed in, stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        while self._idle:
            await self._idle.pop().close()

    async def write(self, rows: Sequence[EventRow], failures: Sequence[Failure]) -> WriteOutcome:
        """Wait until ``rows`` and ``failures`` are committed; raise StorageUnavailable if not."""
        if not rows and not failures:
            return WriteOutcome()
        if self._closing or self._task is None:
            raise WriterClosed("collector is shutting down")
        if self._queued >= self._queue_max:
            raise StorageUnavailable("writer queue full")
        job = _Job(rows, failures, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._queued += job.size
        self._wakeup.set()
        return await job.future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if self._linger and self._queued < self._max_batch and not self._closing:
                await asyncio.sleep(self._linger)  # let concurrent requests join the group
            self._wakeup.clear()
            while self._jobs:
                # A free slot first (a group in flight ends), then the group: what
                # arrived meanwhile joins it.
                await self._slots.acquire()
                task = asyncio.create_task(self._commit_group(self._take_group()))
                self._in_flight.add(task)
                task.add_done_callback(self._group_done)
            if self._closing and not self._jobs:
                # Every group handed in commits and is answered before close() returns.
                while self._in_flight:
                    await asyncio.wait(set(self._in_flight))
                if not self._jobs:
                    return

    def _group_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:  # never: it answers all
            log.error("group commit task failed", exc_info=task.exception())

    def _take_group(self) -> list[_Job]:
        group: list[_Job] = []
        size = 0
        while self._jobs and (not group or size + self._jobs[0].size <= self._max_batch):
            job = self._jobs.popleft()
            group.append(job)
            size += job.size
        self._queued -= size
        return group

    async def _commit_group(self, group: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            outcomes = await self._commit([(job.rows, job.failures) for job in group])
        except Exception as exc:
            if is_outage(exc):
                log.warning(
                    "database unavailable, %d requests refused: %s", len(group), type(exc).__name__
                )
                for job in group:
                    _fail(job, StorageUnavailable(type(exc).__name__))
                return
            # Something in the group broke the transaction that an outage did not:
            # a value the database refuses, or a bug. Commit each request alone so
            # the others still succeed; the loop itself must never die, or every
            # request would hang.
            log.warning(
                "group commit failed (%s); committing %d requests one by one",
                type(exc).__name__,
                len(group),
                exc_info=not is_bad_value(exc),
            )
            for job in group:
                try:
                    outcome = await self._commit_alone(job)
                except Exception as alone:  # an outage (mapped) or the writer's own bug
                    if not is_outage(alone):
                        log.exception("writer failed on a request; answering 503")
                    _fail(job, alone if is_outage(alone) else StorageUnavailable(repr(alone)))
                else:
                    outcome.commit_s = time.perf_counter() - started
                    _resolve(job, outcome)
            return
        commit_s = time.perf_counter() - started
        self.commits += 1
        for job, outcome in zip(group, outcomes, strict=True):
            outcome.commit_s = commit_s
            _resolve(job, outcome)
        if self._on_commit is not None:
            try:
                self._on_commit(commit_s, sum(job.size for job in group))
            except Exception:  # metrics must never stop the writer
                log.exception("on_commit callback failed")

    async def _commit_alone(self, job: _Job) -> WriteOutcome:
        """One request in its own transaction; if the database still refuses it,
        each of its messages alone, so only the culprit fails (``storage_rejected``).

        Raises StorageUnavailable when the database is down meanwhile: the client
        retries, and what was committed before is deduplicated then.
        """
        try:
            return (await self._commit_mapped([(job.rows, job.failures)]))[0]
        except StorageUnavailable:
            raise
        except Exception as exc:
            log.warning(
                "a request was refused by the database (%s); splitting it", type(exc).__name__
            )
        outcome = WriteOutcome()
        for row in job.rows:
            try:
                part = (await self._commit_mapped([([row], ())]))[0]
            except StorageUnavailable:
                raise
            except Exception as exc:
                log.warning(
                    "message refused by the database: %s",
                    type(exc).__name__,
                    exc_info=not is_bad_value(exc),
                )
                outcome.rejected.append(_rejected(row, exc))
            else:
                outcome.inserted += part.inserted
                outcome.duplicates += part.duplicates
        for failure in [*job.failures, *outcome.rejected]:
            try:
                await self._commit_mapped([((), [failure])])
            except StorageUnavailable:
                raise
            except Exception as exc:  # reported in the response all the same
                log.warning("failed event not stored: %s", type(exc).__name__)
        return outcome

    async def _commit_mapped(self, parts: list[_Part]) -> list[WriteOutcome]:
        try:
            return await self._commit(parts)
        except Exception as exc:
            if is_outage(exc):
                raise StorageUnavailable(type(exc).__name__) from exc
            raise

    async def _commit(self, parts: list[_Part]) -> list[WriteOutcome]:
        # Concurrent writers (this one's other group in flight, other workers,
        # other collectors) may deadlock or conflict on shared rows; the
        # transaction was rolled back whole, so running it again is safe.
        # A connection may have broken while idle (the server restarted): the
        # commit on it fails, and is run once more on a new connection (not
        # another idle one, which may be broken as well). Even if the broken one
        # had committed (lost COMMIT reply), the retry stores nothing twice: its
        # keys are then duplicates, and steps run for new rows only.
        reconnected = fresh = False
        attempt = 0
        while True:
            had_connection = bool(self._idle) and not fresh
            conn = self._idle.pop() if had_connection else await self._open()
            fresh = False
            try:
                inserted = await store_messages(conn, *_merged(parts), self._steps, begin=True)
                await conn.commit()
            except _ROLLED_BACK:
                await self._abort(conn)
                attempt += 1
                if attempt == _ROLLBACK_RETRIES:
                    raise
                log.info("transaction rolled back by a concurrent writer; retrying")
                continue
            except BaseException as exc:
                kept = await self._abort(conn)
                if kept or reconnected or not had_connection or not isinstance(exc, Exception):
                    raise
                if not is_outage(exc):
                    raise
                reconnected = fresh = True
                log.info("a writer connection broke (%s); reconnecting", type(exc).__name__)
                continue
            self._idle.append(conn)
            return _outcomes(parts, inserted)

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        conn = await self._connect()
        try:
            await conn.set_autocommit(True)  # the transaction is the writer's own
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _abort(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Roll back after an error; keep the connection (idle, for the next commit)
        only if it is sound and idle then. Return whether it was kept."""
        idle = psycopg.pq.TransactionStatus.IDLE
        if not conn.broken and conn.info.transaction_status != psycopg.pq.TransactionStatus.ACTIVE:
            try:
                await conn.rollback()
            except Exception:  # broken meanwhile: closed below
                log.debug("rollback failed on the writer's connection", exc_info=True)
        if not conn.broken and not conn.closed and conn.info.transaction_status == idle:
            self._idle.append(conn)
            return True
        try:
            await conn.close()
        except Exception:  # closing a broken connection: nothing more to do
            log.debug("closing the writer's connection failed", exc_info=True)
        return False


_Part = tuple[Sequence[EventRow], Sequence[Failure]]


def _merged(parts: list[_Part]) -> tuple[list[EventRow], list[Failure]]:
    rows = [row for part_rows, _ in parts for row in part_rows]
    failures = [failure for _, part_failures in parts for failure in part_failures]
    return rows, failures


def _outcomes(parts: list[_Part], inserted: set[tuple[int, str]]) -> list[WriteOutcome]:
    """Each part's outcome; a key twice in the group: the first copy is the new row."""
    outcomes = []
    for part_rows, _ in parts:
        outcome = WriteOutcome()
        for row in part_rows:
            key = (row.site_id, row.message_id)
            if key in inserted:
                inserted.discard(key)  # a second copy in the group is a duplicate
                outcome.inserted.append(row)
            else:
                outcome.duplicates.append(row)
        outcomes.append(outcome)
    return outcomes


def _resolve(job: _Job, outcome: WriteOutcome) -> None:
    if not job.future.done():  # the request may have gone away
        job.future.set_result(outcome)


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)


def _rejected(row: EventRow, exc: BaseException) -> Failure:
    """The failure recorded for a message the database refused (no value quoted)."""
    return Failure(
        index=row.index,
        site_id=row.site_id,
        message_id=row.message_id,
        received_at=row.received_at,
        reason=reasons.STORAGE_REJECTED,
        errors=[
            {"path": "", "message": f"the database refused this message ({type(exc).__name__})"}
        ],
        schema=row.schema,
        raw={"messageId": row.message_id, "type": row.type, "event": row.event},
    )
