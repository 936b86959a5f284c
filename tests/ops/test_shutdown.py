"""SIGTERM under load: every acknowledged message is stored, then the collector exits."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.ops.serving import serve
from tests.support import make_site, query, scratch_database

pytestmark = pytest.mark.slow

THREADS = 6
BATCH = 10
LOAD_BEFORE_SIGTERM_S = 2.0
MAX_LOAD_S = 45.0


def test_sigterm_under_load_loses_no_acknowledged_message(admin_dsn: str, tmp_path: Path) -> None:
    with scratch_database(admin_dsn) as dsn:
        site_id, key = make_site(dsn, settings={"allow_undeclared_events": True})
        served = serve(dsn, tmp_path, workers=2)
        acked: list[str] = []
        outcomes: Counter[str] = Counter()
        lock = threading.Lock()
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=served.base_url, auth=(key, ""), timeout=40) as http:
                while not stop.is_set():
                    ids = [str(uuid.uuid4()) for _ in range(BATCH)]
                    batch = [
                        {"event": "Load", "type": "track", "anonymousId": "a", "messageId": i}
                        for i in ids
                    ]
                    try:
                        response = http.post("/v1/batch", json={"batch": batch})
                    except httpx.TransportError:
                        outcome = "connection_error"
                        time.sleep(0.01)
                    else:
                        outcome = str(response.status_code)
                        if response.status_code == 200:
                            assert response.json()["accepted"] == BATCH
                    with lock:
                        outcomes[outcome] += 1
                        if outcome == "200":
                            acked.extend(ids)

        threads = [threading.Thread(target=load) for _ in range(THREADS)]
        started = time.monotonic()
        try:
            for thread in threads:
                thread.start()
            time.sleep(LOAD_BEFORE_SIGTERM_S)
            with lock:
                acked_before = len(acked)
            served.proc.send_signal(15)
            sigterm_at = time.monotonic()
            exit_code = served.proc.wait(timeout=40)
            exited_after = time.monotonic() - sigterm_at
        finally:
            # The load runs on until the collector is gone (bounded in any case).
            while served.proc.poll() is None and time.monotonic() - started < MAX_LOAD_S:
                time.sleep(0.1)
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
            served.kill()

        stored = {
            r["message_id"]
            for r in query(dsn, "SELECT message_id FROM events WHERE site_id = %s", (site_id,))
        }
        figures = {
            "requests": sum(outcomes.values()),
            "messages_sent": sum(outcomes.values()) * BATCH,
            "outcomes": dict(outcomes),
            "messages_acked": len(acked),
            "acked_after_sigterm": len(acked) - acked_before,
            "messages_stored": len(stored),
            "acked_but_missing": len(set(acked) - stored),
            "exit_code": exit_code,
            "exit_after_sigterm_s": round(exited_after, 2),
        }
        print("\nSIGTERM test:", json.dumps(figures))
        assert exit_code == 0, served.log()
        assert set(acked) <= stored, figures
        assert len(acked) > 0
        # Nothing answered other than 200 / 503 or a refused connection after the exit.
        assert set(outcomes) <= {"200", "503", "connection_error"}, figures
        assert '"Shutting down"' in served.log() or "Shutting down" in served.log()
