"""Webhook latency, a short run (``pytest -m perf tests/perf``); figures printed, not timed."""

from __future__ import annotations

import pytest

from tests.perf import webhook_latency

pytestmark = [pytest.mark.perf, pytest.mark.slow]


@pytest.mark.timeout(600)
def test_webhook_latency_quick() -> None:
    results = webhook_latency.main(["--quick"])
    # Correctness, not speed: everything arrived, signed, once.
    assert results["steady_1_dispatchers"]["n"] == 200
    assert results["steady_3_dispatchers"]["n"] == 200
    assert results["duplicates"] == 0
    assert results["unverified"] == 0
