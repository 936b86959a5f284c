"""The schema is ready for Citus (distribution column ``site_id``), checked from the catalog.

Every table with a ``site_id`` column is a per-site table, to be distributed by
it; every other table is a reference table (copied to every node). Rules:

1. a per-site table has a primary key, and it and every unique constraint or
   unique index contain ``site_id`` (Citus enforces uniqueness per shard only);
2. ``site_id`` is NOT NULL (a row must name its shard);
3. a foreign key between per-site tables maps ``site_id`` to ``site_id``
   (co-located: both rows are on one node);
4. no foreign key from a reference table to a per-site table (Citus refuses it).

docs/operations.md lists the ``create_distributed_table`` and
``create_reference_table`` calls; the last test keeps that list complete.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"

_TABLES = """
SELECT c.oid, n.nspname || '.' || c.relname,
       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
               AND a.attname = 'site_id' AND NOT a.attisdropped)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%%'
  AND c.relname <> 'alembic_version'
"""


def citus_violations(conn: psycopg.Connection[Any]) -> list[str]:
    """Every breach of the rules above in the connected database's schema."""
    tables = {oid: (name, per_site) for oid, name, per_site in conn.execute(_TABLES)}
    problems: list[str] = []
    for oid, (name, per_site) in sorted(tables.items(), key=lambda t: t[1][0]):
        if not per_site:
            continue
        (site_attnum, not_null) = conn.execute(
            "SELECT attnum, attnotnull FROM pg_attribute WHERE attrelid = %s AND attname = 'site_id'",
            (oid,),
        ).fetchone()
        if not not_null:
            problems.append(f"{name}: site_id is nullable")
        has_pk = False
        for index, columns, primary in conn.execute(
            "SELECT indexrelid::regclass::text, indkey::int2[], indisprimary FROM pg_index"
            " WHERE indrelid = %s AND indisunique",
            (oid,),
        ):
            has_pk = has_pk or primary
            if site_attnum not in columns:
                kind = "primary key" if primary else "unique index"
                problems.append(f"{name}: {kind} {index} does not contain site_id")
        if not has_pk:
            problems.append(f"{name}: no primary key")
    for conname, child, parent, keys, refs in conn.execute(
        "SELECT conname, conrelid, confrelid, conkey, confkey FROM pg_constraint WHERE contype = 'f'"
    ):
        if child not in tables or parent not in tables:
            continue
        child_name, child_per_site = tables[child]
        parent_name, parent_per_site = tables[parent]
        if not child_per_site and parent_per_site:
            problems.append(f"{child_name}: {conname} (reference table) references {parent_name}")
        if child_per_site and parent_per_site:
            (child_site,) = conn.execute(
                "SELECT attnum FROM pg_attribute WHERE attrelid = %s AND attname = 'site_id'",
                (child,),
            ).fetchone()
            (parent_site,) = conn.execute(
                "SELECT attnum FROM pg_attribute WHERE attrelid = %s AND attname = 'site_id'",
                (parent,),
            ).fetchone()
            if (child_site, parent_site) not in zip(keys, refs, strict=True):
                problems.append(
                    f"{child_name}: {conname} to {parent_name} does not map site_id to site_id"
                )
    return problems


def test_migrated_schema_follows_the_citus_rules(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        assert citus_violations(conn) == []


def test_the_check_catches_each_kind_of_breach(database: str) -> None:
    with psycopg.connect(database) as conn:
        conn.execute("CREATE SCHEMA citus_probe")
        conn.execute(
            "CREATE TABLE citus_probe.global_key (id bigint PRIMARY KEY, site_id int NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE citus_probe.no_key (site_id int, x text);"
            "CREATE UNIQUE INDEX no_key_x ON citus_probe.no_key (x)"
        )
        conn.execute(
            "CREATE TABLE citus_probe.parent (site_id int NOT NULL, id bigint,"
            " PRIMARY KEY (site_id, id), UNIQUE (id))"
        )
        conn.execute(
            "CREATE TABLE citus_probe.child (site_id int NOT NULL, parent_id bigint"
            " REFERENCES citus_probe.parent (id), PRIMARY KEY (site_id, parent_id))"
        )
        conn.execute(
            "CREATE TABLE citus_probe.lookup (code text PRIMARY KEY, site_id_of int,"
            " parent_id bigint REFERENCES citus_probe.parent (id))"
        )
        found = "\n".join(citus_violations(conn))
        conn.rollback()
    expected = [
        "citus_probe.global_key: primary key citus_probe.global_key_pkey does not contain site_id",
        "citus_probe.no_key: site_id is nullable",
        "citus_probe.no_key: unique index citus_probe.no_key_x does not contain site_id",
        "citus_probe.no_key: no primary key",
        "citus_probe.parent: unique index citus_probe.parent_id_key does not contain site_id",
        "citus_probe.child: child_parent_id_fkey to citus_probe.parent does not map site_id",
        "citus_probe.lookup: lookup_parent_id_fkey (reference table) references citus_probe.parent",
    ]
    for line in expected:
        assert line in found


def _documented(kind: str) -> set[str]:
    text = OPERATIONS.read_text(encoding="utf-8")
    calls = re.findall(rf"SELECT {kind}\('([a-z_.]+)'", text)
    assert len(calls) == len(set(calls)), f"a table has two {kind} calls"
    return set(calls)


def test_docs_give_a_citus_call_for_every_table(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        rows = conn.execute(_TABLES).fetchall()
    per_site = {name.removeprefix("public.") for _, name, site in rows if site}
    reference = {name.removeprefix("public.") for _, name, site in rows if not site}
    assert _documented("create_distributed_table") == per_site
    assert _documented("create_reference_table") == reference
