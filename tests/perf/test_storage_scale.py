"""A small run of the storage figures script (``pytest -m perf``); the 10M run is by hand."""

from __future__ import annotations

import pytest

from footfall.storage.partitions import DEFAULT
from tests.perf import storage_scale

pytestmark = [pytest.mark.perf, pytest.mark.slow]


def test_storage_scale_small(admin_dsn: str) -> None:
    results = storage_scale.main(["--events", "200000", "--admin-dsn", admin_dsn])
    by_what = {q["what"]: q for q in results["queries"]}
    assert len(by_what) == len(results["queries"])
    person = by_what["one person's events in a month (analytics.person_events)"]
    assert person["rows"] > 0
    day = by_what["one day of a site: events by name (events, (site_id, timestamp))"]
    assert day["rows"] > 0
    # A one-day query reads one monthly partition, not DEFAULT or the other months.
    assert day["relations"] == ["events_2026_10"]
    session = by_what["one session's events, bounded by its sessions row"]
    assert session["rows"] == storage_scale.EVENTS_PER_SESSION
    assert DEFAULT not in " ".join(day["relations"])
    sizes = {table: rows for table, rows, _, _ in results["sizes"]}
    assert sizes["events"] == 200000
