"""Database connections: the DSN (or the embedded PostgreSQL), engines and pools."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine, create_engine

from footfall.settings import Settings

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) a PostgreSQL 16 from the ``pgserver`` package in ``data_dir``.

    pgserver itself keeps one handle per process and data directory (no cache
    here) and stops the server when the process that started it exits.
    ``footfall serve`` starts it in its own process and hands the URL to its
    workers, which never start one.
    """
    import pgserver

    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    uri: str = pgserver.get_server(pgdata, cleanup_mode="stop").get_uri()
    log.info("embedded PostgreSQL running in %s", pgdata)
    return uri


def resolve_database_url(settings: Settings) -> str:
    """The DSN to use: ``DATABASE_URL`` if set, else the embedded server's."""
    if settings.database_url:
        return settings.database_url
    return start_embedded(settings.data_dir)


def sqlalchemy_url(dsn: str) -> str:
    """A libpq DSN as SQLAlchemy wants it (psycopg 3 driver)."""
    if dsn.startswith("postgresql://"):
        return "postgresql+psycopg://" + dsn[len("postgresql://") :]
    return dsn


def create_sync_engine(dsn: str) -> Engine:
    """A SQLAlchemy engine for the CLI, migrations and repositories."""
    return create_engine(sqlalchemy_url(dsn), pool_pre_ping=True)


class Pool(AsyncConnectionPool):
    """A pool that checks its idle connections after an error, not at every checkout.

    A checkout costs no round trip. When a connection comes back broken (the
    server restarted or went away), the pool itself drops it; since a restart
    breaks every connection at once, the idle ones are then tested together
    (``check()``, in the background) and the broken ones replaced. So the
    requests that meet a restart answer 503 + Retry-After, and the collector
    recovers by itself when PostgreSQL is back.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checks: set[asyncio.Task[None]] = set()

    async def putconn(self, conn: psycopg.AsyncConnection[Any]) -> None:
        broken = conn.broken
        await super().putconn(conn)
        if broken and not self.closed and not self._checks:
            task = asyncio.create_task(self._check_idle(), name="footfall-pool-check")
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _check_idle(self) -> None:
        try:
            await self.check()
        except Exception:  # the next error starts another check
            log.warning("checking the pool's idle connections failed", exc_info=True)


def create_pool(dsn: str, settings: Settings) -> AsyncConnectionPool:
    """The async pool of the collector's site cache, ledger and admin reads (not yet opened).

    The writer has connections of its own (:func:`writer_connection`).
    """
    return Pool(
        dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.pool_timeout_s,
        reconnect_timeout=0,  # keep trying to reconnect for ever
        open=False,
        kwargs={"autocommit": False, "connect_timeout": 3},
    )


async def writer_connection(pool: AsyncConnectionPool) -> psycopg.AsyncConnection[Any]:
    """A connection for the group-commit writer alone (one per group in flight): the
    pool's DSN and options, in autocommit mode (the writer opens and ends its
    transactions itself)."""
    conninfo, options = pool.conninfo, pool.kwargs or {}
    if not isinstance(conninfo, str) or not isinstance(options, dict):
        raise TypeError("the writer needs a pool with a fixed DSN and options")
    return await psycopg.AsyncConnection.connect(conninfo, **{**options, "autocommit": True})
