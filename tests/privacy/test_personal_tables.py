"""Erasure and export know every table holding person data (issue 9, item 17).

The catalog, not a list in this test, says which tables exist: a table added by
any migration that holds person data and is not registered in
``storage/privacy.py`` (``PERSONAL_TABLES``, one line) fails here.
"""

from __future__ import annotations

import re

import psycopg

from footfall.storage.privacy import NOT_PERSONAL, PERSONAL_TABLES, schema_tables

# A column that names or points at a person, a device or a session.
PERSON_COLUMN = re.compile(
    r"^(user_id|anonymous_id|person_id|person|.*_person_id|.*_person|from_person|into_person"
    r"|session_id|visitor_hash|traits|identity|subject)$"
)


def _catalog(dsn: str) -> dict[str, frozenset[str]]:
    with psycopg.connect(dsn) as conn:
        return schema_tables(conn)


def test_every_table_is_declared_personal_or_not(database: str) -> None:
    tables = _catalog(database)
    undeclared = sorted(set(tables) - set(PERSONAL_TABLES) - set(NOT_PERSONAL))
    assert not undeclared, (
        f"tables {undeclared} are in neither PERSONAL_TABLES nor NOT_PERSONAL"
        " (storage/privacy.py): say how erasure finds a person's rows in them, or why not"
    )
    assert not set(PERSONAL_TABLES) & set(NOT_PERSONAL)


def test_tables_with_person_columns_are_personal(database: str) -> None:
    tables = _catalog(database)
    holding = {
        name: sorted(c for c in columns if PERSON_COLUMN.match(c))
        for name, columns in tables.items()
    }
    missing = {
        name: columns
        for name, columns in holding.items()
        if columns and name not in PERSONAL_TABLES
    }
    assert not missing, f"tables holding person data but not in PERSONAL_TABLES: {missing}"


def test_registered_columns_exist(database: str) -> None:
    tables = _catalog(database)
    for name, spec in PERSONAL_TABLES.items():
        assert name in tables, f"{name} is registered but no migration creates it"
        assert spec.columns <= tables[name], (name, sorted(spec.columns - tables[name]))


def test_an_unregistered_person_table_is_caught(database: str) -> None:
    """The check above is not vacuous: a new table with a user_id column is flagged."""
    with psycopg.connect(database) as conn:
        conn.execute("CREATE TABLE ff_probe_scores (site_id int, user_id text, score int)")
        try:
            tables = schema_tables(conn)
        finally:
            conn.rollback()
    assert "ff_probe_scores" in tables
    assert PERSON_COLUMN.match("user_id") and "ff_probe_scores" not in PERSONAL_TABLES
