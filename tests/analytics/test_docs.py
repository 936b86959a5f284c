"""The data-model page names every column, and every segmentation recipe runs as the reader."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from tests.analytics.messages import identify, page, post, track
from tests.support import Collector, query, reader_role

DOCS = Path(__file__).resolve().parents[2] / "docs"
ENRICHMENT = [
    "device_type",
    "browser_name",
    "browser_version",
    "os_name",
    "os_version",
    "device_brand",
    "device_model",
    "geo_country",
    "geo_region",
    "geo_city",
    "geo_latitude",
    "geo_longitude",
    "geo_timezone",
    "geo_asn",
    "geo_asn_org",
]


def test_data_model_names_every_column(database: str) -> None:
    text = (DOCS / "data-model.md").read_text()
    columns = query(
        database,
        "SELECT table_schema, table_name, column_name FROM information_schema.columns"
        " WHERE (table_schema = 'public'"
        "        AND table_name IN ('persons', 'identities', 'person_merges', 'sessions',"
        "                           'person_profiles', 'person_sessions'))"
        "    OR table_schema = 'analytics'",
    )
    tables = {c["table_name"] for c in columns}
    assert tables >= {
        "persons",
        "identities",
        "person_merges",
        "sessions",
        "person_features",
        "person_profiles",
        "person_sessions",
    }
    missing = {
        f"{c['table_schema']}.{c['table_name']}.{c['column_name']}"
        for c in columns
        if f"`{c['column_name']}`" not in text
    }
    missing |= {name for name in ENRICHMENT if f"`{name}`" not in text}
    assert not missing, f"not in docs/data-model.md: {sorted(missing)}"


def _blocks(language: str) -> list[str]:
    text = (DOCS / "segmentation.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize("sql", _blocks("sql"), ids=lambda s: s.split("\n")[0][:40])
def test_segmentation_recipes_run_as_the_reader(collector: Collector, sql: str) -> None:
    # Some data under site 1's neighbours; the recipes must at least parse, plan and run.
    post(
        collector.base_url,
        collector.write_key,
        [
            page("seg-a", "/article/1"),
            page("seg-a", "/article/2"),
            page("seg-a", "/article/3"),
            track("seg-a", "Element Hovered", {"selector": "#subscribe", "dwell_ms": 1500}),
            track("seg-a", "Element Hovered", {"selector": "#subscribe", "dwell_ms": 900}),
            identify("seg-a", "seg-user"),
        ],
    )
    with psycopg.connect(collector.dsn, autocommit=True) as conn:
        conn.execute(f'SET ROLE "{reader_role(collector.dsn)}"')
        conn.execute(sql.replace("site_id = 1", f"site_id = {collector.site_id}")).fetchall()


def test_segmentation_python_example_compiles() -> None:
    (python,) = _blocks("python")
    compile(python, "segmentation.md", "exec")
