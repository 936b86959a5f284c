"""Alembic environment: migrates the database named by the caller or the settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from footfall.storage.engine import sqlalchemy_url
from footfall.storage.partitions import include_object
from footfall.storage.tables import metadata

config = context.config


def _url() -> str:
    url = config.attributes.get("database_url")
    if url is None:
        from footfall.settings import Settings
        from footfall.storage.engine import resolve_database_url

        url = resolve_database_url(Settings())
    return sqlalchemy_url(url)


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(
            connection=connectable,
            target_metadata=metadata,
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
