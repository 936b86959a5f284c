"""Migrations: empty -> head -> base -> head, and the models match (alembic check)."""

from __future__ import annotations

import psycopg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool

from footfall.storage import migrate
from footfall.storage.engine import sqlalchemy_url
from footfall.storage.partitions import include_object
from footfall.storage.tables import metadata
from tests.support import scratch_database


def test_upgrade_downgrade_upgrade_and_no_drift(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as dsn:  # already upgraded to head by the real migrations
        assert migrate.current_revision(dsn) == migrate.head_revision()
        engine = create_engine(sqlalchemy_url(dsn), poolclass=pool.NullPool)
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(
                    conn, opts={"compare_type": True, "include_object": include_object}
                ),
                metadata,
            )
            assert diff == []
            assert {"sites", "events", "failed_events"} <= set(inspect(conn).get_table_names())

        command.downgrade(migrate.alembic_config(dsn), "base")
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(dsn)
        assert migrate.current_revision(dsn) == migrate.head_revision()
        engine.dispose()


def test_concurrent_upgrades_serialize(admin_dsn: str) -> None:
    import threading

    with scratch_database(admin_dsn) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            # An empty database: every table, view and schema the migrations made, gone.
            conn.execute("DROP SCHEMA IF EXISTS analytics CASCADE")
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
        errors: list[BaseException] = []

        def run() -> None:
            try:
                migrate.upgrade(dsn)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert migrate.current_revision(dsn) == migrate.head_revision()
