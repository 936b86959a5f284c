"""Short runs of the benchmark (``pytest -m perf tests/perf``); not in the default run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.perf import bench, preload

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


@pytest.mark.timeout(900)
def test_growth_mode(tmp_path: Path, admin_dsn: str) -> None:
    """Every phase of --growth at a tiny scale: each stores what it acknowledged."""
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    events = 3_000
    argv = ["--growth", "--quick", "--skip-ceilings", "--growth-connections", "4"]
    argv += ["--preload-events", str(events), "--out", str(tmp_path / "growth.json")]
    try:
        results = bench.main(argv)
    finally:
        preload.drop_template(admin_dsn, events)
    summary = results["summary"]
    assert summary["rows_check"] == "MATCH", results["growth"]["table"]
    assert summary["non2xx"] == 0
    table = {row["phase"]: row for row in summary["table"]}
    assert set(table) == {
        "batch size 1",
        "batch size 20",
        "batch size 100",
        "batch size 500",
        "every request a new visitor",
        "1 worker",
        f"{events:,} events stored",
    }
    for phase, row in table.items():
        assert row["rows"] == "MATCH" and row["events_s"] > 0, (phase, row)
        assert row["collector_us"] > 0 and row["postgres_us"] > 0, (phase, row)
    assert table["1 worker"]["workers"] == 1
    runs = results["growth"]["runs"]
    # The preloaded site's own rows (80 % of them) are not counted as this run's:
    # at most 4 cut-off requests of 20 are stored beyond what was acknowledged.
    pre = runs["preloaded"]
    assert pre["verdict"] == "MATCH" and pre["acked_messages"] > 0
    assert 0 <= pre["stored_rows"] - pre["acked_messages"] <= 4 * 20 < 0.7 * events
    stages = results["growth"]["half_load"]["stages"]["stages"]
    assert all(stage["count"] > 0 for stage in stages.values()), stages
