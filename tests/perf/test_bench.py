"""A short run of the benchmark (``pytest -m perf tests/perf``); not in the default run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.perf import bench

pytestmark = [pytest.mark.perf, pytest.mark.slow]


@pytest.mark.timeout(600)
def test_quick_benchmark(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    out = tmp_path / "bench.json"
    results = bench.main(["--quick", "--out", str(out)])
    assert out.exists()
    summary = results["summary"]
    # Correctness, not speed: every acknowledged message stored, nothing refused.
    assert summary["rows_check"] == "MATCH", results["collector"]
    assert summary["non2xx"] == 0
    assert summary["batch_events_s"] > 0
    assert summary["single_req_s"] > 0
    assert summary["copy_rows_s"] > 0
    assert summary["fastapi_batch_req_s"] > 0
