"""Errors are logged, never swallowed: /readyz and the metrics sampler (issue 9, item 26).

The schema reload's own logging is tested in tests/unit/test_registry.py.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import httpx
import psycopg
import pytest

from footfall.api import metrics
from tests.support import ServerThread, collector_settings, scratch_database


def test_readyz_logs_why_the_database_check_failed(
    admin_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    with scratch_database(admin_dsn) as dsn:
        server = ServerThread(collector_settings(dsn, demo=False)).start()
        try:
            assert httpx.get(server.base_url + "/readyz").status_code == 200
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("ALTER TABLE alembic_version RENAME TO alembic_version_gone")
            with caplog.at_level(logging.WARNING, logger="footfall.health"):
                response = httpx.get(server.base_url + "/readyz")
            assert response.status_code == 503
            assert response.json()["checks"]["database"] is False
            (record,) = [r for r in caplog.records if r.name == "footfall.health"]
            assert "UndefinedTable" in record.error
        finally:
            server.stop()


def test_metrics_sampler_logs_a_failure_and_keeps_sampling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    samples = []

    class Writer:
        @property
        def queue_depth(self) -> int:
            samples.append(1)
            raise RuntimeError("writer gone")

    state = SimpleNamespace(writer=Writer(), pool=None)

    async def run() -> None:
        task = asyncio.create_task(metrics.sample_forever(state, interval_s=0.01))
        await asyncio.sleep(0.1)
        assert not task.done(), "the sampler must survive a failed sample"
        task.cancel()

    with caplog.at_level(logging.ERROR, logger="footfall.metrics"):
        asyncio.run(run())
    assert len(samples) >= 3
    logged = [r for r in caplog.records if r.name == "footfall.metrics"]
    assert len(logged) == 1  # the same error in a row is logged once
    assert "writer gone" in (logged[0].exc_text or "")
