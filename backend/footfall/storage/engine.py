"""Database connections: the DSN (or the embedded PostgreSQL), engines and pools."""

from __future__ import annotations

import logging
from pathlib import Path

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


def create_pool(dsn: str, settings: Settings) -> AsyncConnectionPool:
    """The async pool the collector's writer and site cache use (not yet opened)."""
    return AsyncConnectionPool(
        dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.pool_timeout_s,
        # A connection broken by a database restart is dropped on checkout, so
        # the collector recovers by itself when PostgreSQL comes back.
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=0,  # keep trying to reconnect for ever
        open=False,
        kwargs={"autocommit": False, "connect_timeout": 3},
    )
