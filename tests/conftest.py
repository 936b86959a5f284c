"""Shared fixtures: a real PostgreSQL (local server, else embedded) and a real collector.

Every test gets its own site (and write key), so tests are isolated by site_id
on one migrated database per session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    LOCAL_PG,
    Collector,
    ServerThread,
    collector_settings,
    embedded_postgres,
    local_postgres_available,
    make_site,
    scratch_database,
)


@pytest.fixture(scope="session")
def admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A server we may create databases on: the local one if up, else an embedded one."""
    if local_postgres_available():
        return LOCAL_PG
    return embedded_postgres(Path(tmp_path_factory.mktemp("pg")) / "pgdata")


@pytest.fixture(scope="session")
def database(admin_dsn: str) -> Iterator[str]:
    """One database for the session, built by the real migrations."""
    with scratch_database(admin_dsn) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def server(database: str) -> Iterator[ServerThread]:
    """The collector, running for the whole session on a real port."""
    thread = ServerThread(collector_settings(database)).start()
    yield thread
    thread.stop()


@pytest.fixture
def collector(server: ServerThread, database: str) -> Collector:
    """The running collector plus a fresh site (any origin allowed, tracker events only)."""
    site_id, key = make_site(database, allowed_origins=["*"])
    return Collector(
        base_url=server.base_url, dsn=database, write_key=key, site_id=site_id, server=server
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running on the main
    thread for the rest of the session, which would break every later asyncio.run()."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
