"""A site that accepts custom events (Product Added, Order Completed ...) for each test."""

from __future__ import annotations

import pytest

from tests.support import Collector, ServerThread, make_site


@pytest.fixture
def shop(server: ServerThread, database: str) -> Collector:
    site_id, key = make_site(
        database, allowed_origins=["*"], settings={"allow_undeclared_events": True}
    )
    return Collector(
        base_url=server.base_url, dsn=database, write_key=key, site_id=site_id, server=server
    )
