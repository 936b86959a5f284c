"""How long a 2,500-message batch holds the event loop (issue 9 item 10); prints figures.

While batches of 2,500 messages are ingested, another client asks ``/healthz``
(which does no work) in a loop: its latency is how long the event loop was
busy with something else. Measured with the pipeline run in chunks (as served)
and in one go (``PIPELINE_CHUNK`` set past the batch size), each time on a
collector in a process of its own.
Not a timed assertion: the figures are printed (``pytest -m perf -s``).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
import uvicorn

from footfall.api import ingest
from footfall.api.server import server_config
from footfall.app import create_app
from tests.support import collector_settings, free_port, make_site

pytestmark = [pytest.mark.perf, pytest.mark.slow]

BATCHES = 4
MESSAGES = 2500


def _stalls(base_url: str, key: str) -> tuple[float, float]:
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=base_url) as client:
            while not done.is_set():
                started = time.perf_counter()
                client.get("/healthz")
                latencies.append(time.perf_counter() - started)
                time.sleep(0.002)

    prober = threading.Thread(target=probe)
    prober.start()
    with httpx.Client(base_url=base_url, auth=(key, ""), timeout=60) as client:
        for _ in range(BATCHES):
            batch = [
                {"type": "page", "anonymousId": "a", "messageId": str(uuid.uuid4())}
                for _ in range(MESSAGES)
            ]
            response = client.post("/v1/batch", json={"batch": batch})
            assert response.json()["accepted"] == MESSAGES
    done.set()
    prober.join()
    latencies.sort()
    return latencies[-1] * 1000, latencies[int(len(latencies) * 0.99)] * 1000


def _serve(dsn: str, chunk: int) -> tuple[subprocess.Popen[bytes], str]:
    """The collector in a process of its own (so this test's client threads don't
    compete with it for the GIL), with the pipeline chunk size given."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.perf.test_loop_stall", dsn, str(chunk), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base_url + "/readyz").status_code == 200:
                return proc, base_url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("collector did not start")
        time.sleep(0.2)


def test_batch_loop_stall(database: str) -> None:
    _, key = make_site(database)
    figures = {}
    for chunk in (ingest.PIPELINE_CHUNK, 10**9):
        proc, base_url = _serve(database, chunk)
        try:
            _stalls(base_url, key)  # warm up
            figures[chunk] = _stalls(base_url, key)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    chunked, whole = figures[ingest.PIPELINE_CHUNK], figures[10**9]
    print(
        f"\n/healthz latency during {BATCHES} x {MESSAGES}-message batches:"
        f"\n  pipeline in chunks of {ingest.PIPELINE_CHUNK}:"
        f" max {chunked[0]:.0f} ms, p99 {chunked[1]:.0f} ms"
        f"\n  pipeline in one go: max {whole[0]:.0f} ms, p99 {whole[1]:.0f} ms"
    )


if __name__ == "__main__":  # the collector process of _serve
    dsn, chunk, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ingest.PIPELINE_CHUNK = chunk
    settings = collector_settings(dsn, access_log=False)
    uvicorn.Server(
        server_config(create_app(settings, migrate_on_start=False), settings, port=port)
    ).run()
