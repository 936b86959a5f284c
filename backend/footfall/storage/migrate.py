"""Run the Alembic migrations programmatically (``footfall migrate``, ``serve``, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from footfall.storage.engine import sqlalchemy_url


def migrations_dir() -> Path:
    """Where the migrations are: inside the wheel, or ``migrations/`` of a checkout."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_migrations"
    if packaged.is_dir():
        return packaged
    return here.parent.parent / "migrations"


def alembic_config(dsn: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = dsn
    return config


def upgrade(dsn: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``; concurrent callers serialize on an advisory lock."""
    engine = create_engine(sqlalchemy_url(dsn), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            # Several collector processes may start at once: one migrates, the
            # others wait and then find nothing to do.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7426091)")
            config = alembic_config(dsn)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def current_revision(dsn: str) -> str | None:
    engine = create_engine(sqlalchemy_url(dsn), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
