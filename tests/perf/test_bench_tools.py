"""The benchmark's own arithmetic and parsing (no load, in the default run)."""

from __future__ import annotations

import orjson
import psycopg

from tests.perf import bench, latency, pgprofile, preload


def test_quantile_interpolates_within_buckets() -> None:
    buckets = [(0.001, 50.0), (0.01, 90.0), (0.1, 100.0), (float("inf"), 100.0)]
    assert latency.quantile(buckets, 0.5) == 0.001
    assert abs(latency.quantile(buckets, 0.7) - 0.0055) < 1e-12  # type: ignore[operator]
    assert abs(latency.quantile(buckets, 0.99) - 0.091) < 1e-12  # type: ignore[operator]
    assert latency.quantile([(0.1, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert latency.quantile([(0.1, 1.0), (float("inf"), 10.0)], 0.99) == 0.1  # past the last


def test_histogram_delta_between_scrapes() -> None:
    def scrape(count: float, slow: float) -> latency.Scrape:
        name = "footfall_ingest_stage_seconds"
        labels = {"stage": "commit"}
        return {
            (name + "_bucket", frozenset({**labels, "le": "0.01"}.items())): count - slow,
            (name + "_bucket", frozenset({**labels, "le": "+Inf"}.items())): count,
            (name + "_count", frozenset(labels.items())): count,
            (name + "_sum", frozenset(labels.items())): count * 0.01,
        }

    summary = latency.summary(scrape(10, 1), scrape(110, 11), "footfall_ingest_stage_seconds")
    assert summary["count"] == 100
    assert abs(summary["mean_ms"] - 10.0) < 1e-9
    assert summary["p50_ms"] is not None and summary["p50_ms"] <= 10.0


def test_profile_categories_by_deepest_footfall_or_framework_frame() -> None:
    root = ["<module> (footfall/__main__.py:1)", "run (asyncio/runners.py:118)"]
    writer = "_insert_new_rows (/x/backend/footfall/storage/writer.py:170)"
    copy = "write_row (/x/site-packages/psycopg/_copy_base.py:231)"
    assert bench.categorize([*root, writer, copy]) == "writer: dedup insert, COPY, commit"
    middleware = "__call__ (/x/backend/footfall/observability.py:190)"
    fastapi = "solve_dependencies (/x/site-packages/fastapi/dependencies/utils.py:697)"
    assert bench.categorize([*root, middleware, fastapi]) == "FastAPI/Starlette"
    scrub = "redact_text (/x/backend/footfall/pipeline/scrub.py:95)"
    assert bench.categorize([*root, middleware, scrub]) == "pipeline: privacy (HMAC, scrub)"
    assert bench.categorize(root) == "event loop in C (uvloop I/O, sockets)"


def test_statement_names_drop_parameters() -> None:
    assert pgprofile.statement_name("SELECT *\n  FROM sites WHERE write_key = $1") == (
        "SELECT * FROM sites WHERE write_key = ?"
    )
    assert pgprofile.statement_name('COPY events ("a", "b") FROM STDIN') == (
        "COPY events (...) FROM STDIN"
    )


def test_batches_of_any_size_and_spread_ids() -> None:
    for size in (1, 20, 500):
        body = bench.batch_body("b", "2026-12-01T00:00:00.000Z", bench.batch_templates(size))
        messages = orjson.loads(body)["batch"]
        assert len(messages) == size
        assert len({m["messageId"] for m in messages}) == size
    assert bench.spread(1) != bench.spread(2) and len(bench.spread(10**6)) == 8
    script = bench.lua_script("batch", "ffw_k", "run1", slots=4, per_visitor=5, size=100)
    assert script.count("p[#p + 1] = ") == 100 + 99 + 1  # messages, commas, "]}"


def test_preloaded_copy_holds_the_template_rows(admin_dsn: str) -> None:
    events = 2_400
    try:
        with preload.preloaded_copy(admin_dsn, events) as loaded:
            with psycopg.connect(loaded.dsn) as conn:

                def count(sql: str) -> int:
                    return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]

                assert count("SELECT count(*) FROM events") == events
                assert count("SELECT count(*) FROM event_ids") == events
                sessions = events // 8
                assert count("SELECT count(*) FROM sessions") == sessions
                assert count("SELECT count(*) FROM person_sessions") == sessions
                persons = count("SELECT count(*) FROM persons")
                assert persons == count("SELECT count(*) FROM person_profiles") == sessions // 3
                # A third in each of the last three months, all before the load's end.
                months = conn.execute(
                    "SELECT tableoid::regclass::text, count(*), max(timestamp) FROM events"
                    " GROUP BY 1 ORDER BY 1"
                ).fetchall()
                assert [n for _, n, _ in months] == [events // 3] * 3, months
                assert all(last < loaded.loaded_until for _, _, last in months)
                # The site the benchmark writes to holds 80 %.
                site_rows = count(f"SELECT count(*) FROM events WHERE site_id = {loaded.site_id}")
                assert 0.7 * events < site_rows < 0.9 * events
            name = loaded.database
        with psycopg.connect(admin_dsn) as conn:  # the copy is dropped, the template kept
            assert conn.execute(
                "SELECT count(*) FROM pg_database WHERE datname = ANY(%s)",
                ([name, preload.template_name(events)],),
            ).fetchone() == (1,)
            roles = preload._build_roles(conn, preload.template_name(events))
            assert roles  # the build's reader role
    finally:
        assert preload.drop_template(admin_dsn, events)
    with psycopg.connect(admin_dsn) as conn:  # ... which goes with the template
        assert not preload._build_roles(conn, preload.template_name(events))
