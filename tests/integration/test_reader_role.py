"""The read-only role is per database: a reader of database A reads A's views and nothing of B."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from tests.support import make_site, reader_role, scratch_database


def _as(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    netloc = f"{user}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def _login(admin_dsn: str, *grants: str) -> Iterator[str]:
    """A login role (no password: the test server trusts local connections) given ``grants``."""
    name = f"ff_login_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        for role in grants:
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(name))
            )
    try:
        yield name
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_reader_of_one_database_cannot_read_another(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as dsn_a, scratch_database(admin_dsn) as dsn_b:
        role_a, role_b = reader_role(dsn_a), reader_role(dsn_b)
        assert role_a != role_b
        for dsn in (dsn_a, dsn_b):
            site_id, _ = make_site(dsn)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO events (site_id, message_id, type, timestamp, received_at)"
                    " VALUES (%s, 'm1', 'track', now(), now())",
                    (site_id,),
                )
        with _login(admin_dsn, role_a) as alice:
            with psycopg.connect(_as(dsn_a, alice), autocommit=True) as conn:
                assert conn.execute("SELECT count(*) FROM analytics.events").fetchone() == (1,)
                assert conn.execute("SELECT count(*) FROM analytics.sessions").fetchone() == (0,)
                refused = [
                    "SELECT 1 FROM public.events",
                    "SELECT write_key FROM public.sites",
                    "SELECT 1 FROM public.event_ids",
                    "CREATE TABLE public.mine (a int)",
                    "CREATE TABLE analytics.mine (a int)",
                    "CREATE TEMP TABLE mine (a int)",
                    "CREATE SCHEMA mine",
                ]
                for statement in refused:
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(statement)
            # Database B: not even a connection ...
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                psycopg.connect(_as(dsn_b, alice), connect_timeout=5)
            # ... and if an operator lets every role connect again, still nothing to read.
            name_b = urlsplit(dsn_b).path.lstrip("/")
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(sql.Identifier(name_b))
                )
            with psycopg.connect(_as(dsn_b, alice), autocommit=True) as conn:
                for statement in (
                    "SELECT 1 FROM analytics.events",
                    "SELECT 1 FROM public.events",
                    "SELECT * FROM analytics.person_events(1, now() - interval '1 day', now())",
                    "CREATE TEMP TABLE mine (a int)",
                ):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(statement)
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(
                        sql.Identifier(name_b)
                    )
                )
        # The cluster-wide role of earlier versions reads neither database any more.
        for dsn in (dsn_a, dsn_b):
            with psycopg.connect(dsn, autocommit=True) as conn:
                if conn.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = 'footfall_reader'"
                ).fetchone():
                    allowed = conn.execute(
                        "SELECT has_table_privilege('footfall_reader', 'analytics.events', 'SELECT')"
                    ).fetchone()
                    assert allowed == (False,)
