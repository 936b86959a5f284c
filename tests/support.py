"""Test helpers: a PostgreSQL to test against, and a real collector on a real port."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import uvicorn
from psycopg import sql
from psycopg.rows import dict_row

from footfall.api.server import server_config
from footfall.app import create_app
from footfall.settings import Settings
from footfall.storage import migrate
from footfall.storage.engine import create_sync_engine
from footfall.storage.sites import create_site, ensure_demo_site

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def local_postgres_available() -> bool:
    try:
        with psycopg.connect(LOCAL_PG, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def embedded_postgres(directory: Path) -> str:
    """A private PostgreSQL 16 from the pgserver package (used when no local server)."""
    import pgserver

    return str(pgserver.get_server(directory, cleanup_mode="stop").get_uri())


def with_database(dsn: str, name: str) -> str:
    """The same server, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@contextmanager
def scratch_database(admin_dsn: str) -> Iterator[str]:
    """A new database migrated to head by the real migrations; dropped afterwards."""
    name = f"footfall_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(admin_dsn, name)
    try:
        migrate.upgrade(dsn)
        yield dsn
    finally:
        try:
            role: str | None = reader_role(dsn)
        except psycopg.Error:  # the test took the schema apart
            role = None
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if role is not None:
                # Roles are cluster-wide; its grants went with the database.
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def reader_role(dsn: str) -> str:
    """The read-only role of the database at ``dsn`` (named by the migration's function)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT analytics.reader_role()").fetchone()
    assert row is not None
    return str(row[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def query(dsn: str, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


class ServerThread:
    """The real collector app under uvicorn, on a real port, in a background thread."""

    def __init__(self, settings: Settings, *, migrate_on_start: bool = False) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        if settings.demo_enabled and not migrate_on_start and settings.database_url:
            # What `footfall serve` does before its workers start (app.prepare_database).
            with psycopg.connect(settings.database_url) as conn, conn.transaction():
                ensure_demo_site(conn)
        app = create_app(settings, migrate_on_start=migrate_on_start)
        self.app = app
        # As `footfall serve` runs it (api/server.py): header limit and timeouts, and
        # proxy_headers=False: the collector itself decides which X-Forwarded-For to
        # believe (FOOTFALL_TRUSTED_PROXIES, api/client_ip.py).
        config = server_config(
            app, settings, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("collector did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it holds (for what the collector does in the background)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_s} s: {condition}")
        time.sleep(0.05)


def collector_settings(dsn: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": dsn,
        "env": "test",
        "demo": True,
        "schema_reload_s": 0.0,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@dataclass
class Collector:
    """What a test needs: where the collector is, a fresh site, and the database."""

    base_url: str
    dsn: str
    write_key: str
    site_id: int
    server: ServerThread
    sites: list[int] = field(default_factory=list)

    @property
    def tracker_url(self) -> str:
        return self.base_url + self.server.app.state.footfall.settings.tracker_path

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        return query(self.dsn, sql, params)

    def events(self, site_id: int | None = None) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM events WHERE site_id = %s ORDER BY timestamp, message_id",
            (site_id or self.site_id,),
        )

    def failed(self, site_id: int | None = None) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM failed_events WHERE site_id = %s ORDER BY id", (site_id or self.site_id,)
        )

    def make_site(self, **kwargs: Any) -> tuple[int, str]:
        """Another site (name unique per call); returns (id, write key)."""
        return make_site(self.dsn, **kwargs)


def make_site(dsn: str, **kwargs: Any) -> tuple[int, str]:
    engine = create_sync_engine(dsn)
    try:
        with engine.begin() as conn:
            site = create_site(conn, kwargs.pop("name", f"site-{uuid.uuid4().hex[:8]}"), **kwargs)
    finally:
        engine.dispose()
    return site.id, site.write_key
