"""A short run of the segments benchmark (``pytest -m perf tests/perf``); prints figures."""

from __future__ import annotations

import pytest

from tests.perf import segments_bench

pytestmark = [pytest.mark.perf, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_segments_benchmark() -> None:
    results = segments_bench.main(["--seconds", "6", "--rounds", "1", "--sweep-persons", "500"])
    for label in ("without", "with_20"):
        assert results["best"][label]["batch"]["failures"] == 0
        assert results["best"][label]["single"]["failures"] == 0
    assert results["sweeper_lag"]["persons"] == 500
    print(
        "segments: batch ratio", results["ratio_batch_events"],
        "single ratio", results["ratio_single_requests"],
        "sweeper lag", results["sweeper_lag"],
    )  # fmt: skip
