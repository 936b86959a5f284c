"""A short run of the consent-ledger benchmark (``pytest -m perf tests/perf``); prints figures."""

from __future__ import annotations

import pytest

from tests.perf import consent_bench

pytestmark = [pytest.mark.perf, pytest.mark.slow]


@pytest.mark.timeout(600)
def test_consent_benchmark() -> None:
    results = consent_bench.main(["--seconds", "1", "--ledger-rows", "20000"])
    for size in (1, 20):
        for conc in (1, 32):
            for mode in ("query", "view", "view-miss"):
                assert results[f"{size}msg c={conc} {mode}"]["req_s"] > 0
            # Requests waiting together share one round trip on the listening connection.
            assert results[f"{size}msg c={conc} view"]["round_trips_per_req"] <= 1.0
