"""PostgreSQL stopped mid-run: 503 without ack; back up: ingest resumes by itself.

Uses its own embedded PostgreSQL (never the shared server) so it can stop it.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pgserver
import pytest

from tests.support import ServerThread, collector_settings, make_site, query, scratch_database

pytestmark = pytest.mark.slow


def _batch(n: int = 5) -> dict:
    return {
        "batch": [
            {"type": "page", "anonymousId": "a", "messageId": str(uuid.uuid4())} for _ in range(n)
        ]
    }


def _preflight(http: httpx.Client) -> httpx.Response:
    return http.options(
        "/v1/batch",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )


def test_database_down_then_back(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pg = pgserver.get_server(pgdata, cleanup_mode="stop")
    admin = pg.get_uri()
    acked: set[str] = set()
    with scratch_database(admin) as dsn:
        site_id, key = make_site(dsn, allowed_origins=["https://shop.example"])
        _, unseen_key = make_site(dsn)
        settings = collector_settings(
            dsn,
            demo=False,
            pool_timeout_s=1.0,
            retry_after_s=2,
            site_cache_ttl_s=1.0,
            site_cache_negative_ttl_s=0.5,
            admin_token="t" * 32,
        )
        server = ServerThread(settings).start()
        try:
            http = httpx.Client(base_url=server.base_url, auth=(key, ""), timeout=30)

            def send() -> httpx.Response:
                body = _batch()
                response = http.post("/v1/batch", json=body)
                if response.status_code == 200:
                    acked.update(m["messageId"] for m in body["batch"])
                return response

            assert send().status_code == 200
            assert _preflight(http).status_code == 204

            pg.cleanup()  # stop PostgreSQL under the running collector
            down = [send() for _ in range(3)]
            assert [r.status_code for r in down] == [503, 503, 503]
            assert down[0].headers["Retry-After"] == "2"
            assert down[0].json()["error"] == "storage_unavailable"
            assert http.get("/readyz").status_code == 503
            assert http.get("/healthz").status_code == 200

            # Past the site cache's lifetime, every path that needs the database
            # answers 503 + Retry-After (never 500); what is known is served from memory.
            time.sleep(1.5)
            assert send().status_code == 503  # a known key: cached site, then the writer
            unseen = http.post("/v1/batch", json=_batch(), auth=(unseen_key, ""))
            admin = http.post(
                "/admin/privacy/export",
                json={"site": "x", "anonymous_id": "a"},
                headers={"Authorization": "Bearer " + "t" * 32},
                auth=None,
            )
            for response in (unseen, admin):
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"] == "2"
                assert response.json()["error"] == "storage_unavailable"
            preflight = _preflight(http)
            assert preflight.status_code == 204  # the origins last read, kept while down
            assert preflight.headers["access-control-allow-origin"] == "https://shop.example"

            restarted = pgserver.get_server(pgdata, cleanup_mode="stop")
            deadline = time.monotonic() + 30
            statuses = []
            while time.monotonic() < deadline:
                statuses.append(send().status_code)
                if statuses[-1] == 200:
                    break
                time.sleep(0.5)
            assert statuses[-1] == 200, statuses
            assert all(s in (200, 503) for s in statuses)
            for _ in range(3):
                assert send().status_code == 200
            assert http.get("/readyz").status_code == 200

            stored = {
                r["message_id"]
                for r in query(dsn, "SELECT message_id FROM events WHERE site_id = %s", (site_id,))
            }
            assert acked <= stored  # nothing acknowledged is missing
            assert len(acked) == 5 * (1 + len([s for s in statuses if s == 200]) + 3)
        finally:
            server.stop()
    restarted.cleanup()
