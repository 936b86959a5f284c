"""``footfall serve`` as a real subprocess on a free port, with its log in a file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import free_port

SERVE = [sys.executable, "-m", "footfall", "serve", "--host", "127.0.0.1"]


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM to the serve process (it passes it on to its workers); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def serve(dsn: str, log_dir: Path, *, workers: int = 1, **env: str) -> Served:
    """Start ``footfall serve`` and wait until every worker has started and /readyz is 200."""
    port = free_port()
    log_path = log_dir / f"serve-{port}.log"
    environment = {
        **os.environ,
        "DATABASE_URL": dsn,
        "FOOTFALL_ENV": "test",
        "FOOTFALL_DEMO": "false",
        **env,
    }
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*SERVE, "--port", str(port), "--workers", str(workers)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # SIGTERM goes to the serve process alone, as from an orchestrator
        )
    served = Served(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"footfall serve exited {proc.returncode}:\n{served.log()}")
        if time.monotonic() > deadline:
            served.kill()
            raise RuntimeError(f"footfall serve did not start:\n{served.log()}")
        started = served.log().count("Application startup complete")
        try:
            ready = httpx.get(served.base_url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready and started >= workers:
            return served
        time.sleep(0.1)
