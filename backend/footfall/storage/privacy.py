"""Export, erasure (GDPR Art. 15/17, CCPA) and retention: the SQL behind ``footfall privacy``.

Which rows belong to a person is decided once, by :func:`resolve`, and used by
both export and erasure, so an export holds exactly what an erasure deletes.

Which tables hold personal data is declared, not guessed: every table is in
:data:`PERSONAL_TABLES` (with how its rows are matched to a person) or in
:data:`NOT_PERSONAL` (with why not). ``tests/privacy/test_personal_tables.py``
fails when a table of the schema is in neither, so a new table holding person
data cannot be forgotten by erasure and export: registering it is one line.
Rule for tables holding both ids (events, sessions): a row with a *different*
user id is that user's, not the subject's, even on the subject's device.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from footfall.pipeline.privacy import Keyring
from footfall.storage import identity, profiles
from footfall.storage.consent import suppression_hash

SUBJECT_KINDS = ("user_id", "anonymous_id", "person")


@dataclass(frozen=True, slots=True)
class Personal:
    """How a personal table's rows are matched to a subject (every table has ``site_id``)."""

    # Columns holding an anonymous id / a hashed user id.
    anonymous_id: str | None = None
    user_id: str | None = None
    # Columns holding a person id (persons.id), e.g. ("person_id",).
    person: tuple[str, ...] = ()
    # The subject's sessions, by ``session_id``.
    sessions: bool = False
    # identities: ``kind``/``value`` pairs.
    identities: bool = False
    # failed_events: the ids inside the pseudonymized ``raw`` message.
    raw_message: bool = False

    @property
    def columns(self) -> set[str]:
        named = {c for c in (self.anonymous_id, self.user_id) if c} | set(self.person)
        if self.sessions:
            named.add("session_id")
        if self.identities:
            named |= {"kind", "value"}
        if self.raw_message:
            named.add("raw")
        return named | {"site_id"}


_IDS = Personal(anonymous_id="anonymous_id", user_id="user_id")

# Every table holding data about a person: one line per table.
PERSONAL_TABLES: dict[str, Personal] = {
    "events": _IDS,
    "sessions": Personal(anonymous_id="anonymous_id", user_id="user_id", sessions=True),
    "consent_log": _IDS,
    "failed_events": Personal(raw_message=True),
    "identities": Personal(person=("person_id",), identities=True),
    "persons": Personal(person=("id", "merged_into")),
    "person_merges": Personal(person=("from_person", "into_person")),
    "person_profiles": Personal(person=("person_id",)),
    # By person, not session: a shared device's session also has the other person's row.
    "person_sessions": Personal(person=("person_id",)),
    "segment_state": Personal(person=("person_id",)),
    "segment_memberships": Personal(person=("person_id",)),
    "webhook_outbox": Personal(person=("person_id",)),
}

# Every other table, and why erasure and export leave it alone.
NOT_PERSONAL: dict[str, str] = {
    "alembic_version": "the schema revision",
    "sites": "configuration",
    "visitor_salts": "daily salts, shared by every visitor",
    "erasure_log": "the record of an erasure (a keyed hash of the request): must outlive it",
    "privacy_suppressions": "keyed hashes of erased ids, to refuse their future messages",
    "event_ids": "message keys only; kept so a retried copy of an erased message stays refused",
    "segment_definitions": "segment rules, written by the site's operators",
    "webhook_endpoints": "where a site's webhooks go (URLs, sealed secrets)",
}
MAX_ROUNDS = 8  # resolution rounds (person merges can chain)


@dataclass(slots=True)
class Subject:
    """Everything that identifies one person on one site, as stored."""

    site_id: int
    kind: str
    anonymous_ids: set[str] = field(default_factory=set)
    user_ids: set[str] = field(default_factory=set)  # hashed, under every known key
    person_ids: set[str] = field(default_factory=set)
    session_ids: set[str] = field(default_factory=set)

    def params(self) -> dict[str, Any]:
        return {
            "site": self.site_id,
            "anon": sorted(self.anonymous_ids),
            "users": sorted(self.user_ids),
            "persons": sorted(self.person_ids),
            "sessions": sorted(self.session_ids),
        }


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    spec: Personal


def schema_tables(conn: psycopg.Connection[Any]) -> dict[str, frozenset[str]]:
    """Every table of the schema (partitioned parents, not their partitions) and its columns."""
    rows = conn.execute(
        "SELECT c.relname, array_agg(a.attname::text) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
        " AND NOT c.relispartition GROUP BY c.relname ORDER BY c.relname"
    ).fetchall()
    return {name: frozenset(cols) for name, cols in rows}


def _tables(conn: psycopg.Connection[Any]) -> list[_Table]:
    """The registered personal tables that exist in this database."""
    present = schema_tables(conn)
    return [_Table(name, spec) for name, spec in PERSONAL_TABLES.items() if name in present]


def _where(table: _Table, subject_kind: str) -> sql.Composable:
    """The rows of ``table`` that belong to the subject."""
    spec, ident = table.spec, sql.Identifier
    preds: list[sql.Composable] = []
    anon = ident(spec.anonymous_id) if spec.anonymous_id else None
    user = ident(spec.user_id) if spec.user_id else None
    if anon is not None and user is not None:
        preds.append(
            sql.SQL(
                "{u} = ANY(%(users)s::text[]) OR ({a} = ANY(%(anon)s::text[])"
                " AND ({u} IS NULL OR {u} = ANY(%(users)s::text[])))"
            ).format(u=user, a=anon)
        )
    elif anon is not None:
        preds.append(sql.SQL("{} = ANY(%(anon)s::text[])").format(anon))
    elif user is not None:
        preds.append(sql.SQL("{} = ANY(%(users)s::text[])").format(user))
    if spec.identities:
        # A person's devices are found through the person (person_id below): a device
        # the user was merely seen on may belong to someone else's person.
        preds.append(
            sql.SQL("kind = 'anonymous' AND value = ANY(%(anon)s::text[])")
            if subject_kind == "anonymous_id"
            else sql.SQL("kind = 'user' AND value = ANY(%(users)s::text[])")
        )
    for column in spec.person:
        preds.append(sql.SQL("{}::text = ANY(%(persons)s::text[])").format(ident(column)))
    if spec.sessions:
        preds.append(sql.SQL("session_id::text = ANY(%(sessions)s::text[])"))
    if spec.raw_message:
        preds.append(
            sql.SQL(
                "raw->>'userId' = ANY(%(users)s::text[]) OR (raw->>'anonymousId' ="
                " ANY(%(anon)s::text[]) AND (raw->>'userId' IS NULL"
                " OR raw->>'userId' = ANY(%(users)s::text[])))"
            )
        )
    where = sql.SQL(" OR ").join(sql.SQL("({})").format(p) for p in preds)
    return sql.SQL("site_id = %(site)s AND ({})").format(where)


def _column_values(
    conn: psycopg.Connection[Any], table: _Table, columns: Iterable[str], subject: Subject
) -> set[str]:
    where = _where(table, subject.kind)
    found: set[str] = set()
    query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
        sql.Identifier(table.name),
        where,
    )
    for row in conn.execute(query, subject.params()):
        found.update(v for v in row if v is not None)
    return found


def resolve(
    conn: psycopg.Connection[Any], site_id: int, kind: str, value: str, keyring: Keyring
) -> Subject:
    """Every id of the person named by (``kind``, ``value``), followed through
    identities, person merges and (for a user id) the devices it was seen on."""
    if kind not in SUBJECT_KINDS:
        raise ValueError(f"subject kind must be one of {SUBJECT_KINDS}")
    subject = Subject(site_id, kind)
    if kind == "user_id":
        subject.user_ids.update(keyring.user_hashes(value))
    elif kind == "anonymous_id":
        subject.anonymous_ids.update(keyring.anonymous_ids(value))
    else:
        subject.person_ids.add(str(value))
    tables = {t.name: t for t in _tables(conn)}
    if kind == "anonymous_id":
        # A device id proves possession of a device, not who used it: a person
        # the device was linked to is not expanded to their user id (their
        # own request does that); only persons that are nothing but this device go.
        subject.person_ids |= _device_only_persons(conn, tables, subject)
        for name in ("events", "sessions"):
            holder = tables.get(name)
            if holder is not None:
                subject.session_ids |= _column_values(conn, holder, ["session_id"], subject)
        return subject
    for _ in range(MAX_ROUNDS):
        before = subject.params()
        for table in tables.values():
            if table.spec.person:
                subject.person_ids |= _column_values(conn, table, table.spec.person, subject)
        if "identities" in tables:
            for found_kind, found_value in conn.execute(
                "SELECT kind, value FROM identities WHERE site_id = %(site)s"
                " AND person_id::text = ANY(%(persons)s::text[])",
                subject.params(),
            ):
                target = subject.user_ids if found_kind == "user" else subject.anonymous_ids
                target.add(found_value)
        if "events" in tables:
            # The devices a user id was seen on (their anonymous events are the user's).
            subject.anonymous_ids |= _linked_devices(conn, subject)
        for name in ("events", "sessions"):
            holder = tables.get(name)
            if holder is not None:
                subject.session_ids |= _column_values(conn, holder, ["session_id"], subject)
        if subject.params() == before:
            break
    return subject


def _device_only_persons(
    conn: psycopg.Connection[Any], tables: dict[str, _Table], subject: Subject
) -> set[str]:
    """Persons (not merged away) whose every identity is one of the subject's anonymous ids."""
    if "identities" not in tables:
        return set()
    merged = (
        " AND NOT EXISTS (SELECT 1 FROM persons p WHERE p.site_id = i.site_id"
        " AND p.id = i.person_id"
        " AND p.merged_into IS NOT NULL)"
        if "persons" in tables
        else ""
    )
    rows = conn.execute(
        "SELECT DISTINCT i.person_id::text FROM identities i WHERE i.site_id = %(site)s"
        " AND i.kind = 'anonymous' AND i.value = ANY(%(anon)s::text[])"
        " AND NOT EXISTS (SELECT 1 FROM identities o WHERE o.site_id = i.site_id"
        " AND o.person_id = i.person_id"
        " AND NOT (o.kind = 'anonymous' AND o.value = ANY(%(anon)s::text[])))" + merged,
        subject.params(),
    )
    return {r[0] for r in rows}


def _linked_devices(conn: psycopg.Connection[Any], subject: Subject) -> set[str]:
    if not subject.user_ids:
        return set()
    rows = conn.execute(
        "SELECT DISTINCT anonymous_id FROM events WHERE site_id = %(site)s"
        " AND user_id = ANY(%(users)s::text[]) AND anonymous_id IS NOT NULL",
        subject.params(),
    )
    return {r[0] for r in rows}


def _fk_order(conn: psycopg.Connection[Any], tables: list[_Table]) -> list[_Table]:
    """Referencing tables before the tables they reference (so DELETE never breaks a key)."""
    names = {t.name for t in tables}
    edges = [
        (child, parent)
        for child, parent in conn.execute(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint"
            " WHERE contype = 'f' AND conrelid <> confrelid"
        )
        if child in names and parent in names
    ]
    ordered: list[_Table] = []
    remaining = {t.name: t for t in tables}
    while remaining:
        ready = [
            n for n in sorted(remaining) if not any(p == n and c in remaining for c, p in edges)
        ]
        if not ready:  # a cycle: take the rest as they come
            ready = sorted(remaining)
        for name in ready:
            ordered.append(remaining.pop(name))
    return ordered


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(row, default=str))


def export_subject(
    conn: psycopg.Connection[Any], site_id: int, kind: str, value: str, keyring: Keyring
) -> dict[str, Any]:
    """Everything held about the subject, by table (Art. 15), as JSON-ready data."""
    subject = resolve(conn, site_id, kind, value, keyring)
    tables: dict[str, list[dict[str, Any]]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for table in _tables(conn):
            where = _where(table, subject.kind)
            cur.execute(
                sql.SQL("SELECT * FROM {} WHERE {}").format(sql.Identifier(table.name), where),
                subject.params(),
            )
            rows = [_jsonable(r) for r in cur.fetchall()]
            if rows:
                tables[table.name] = rows
    return {
        "site_id": site_id,
        "subject": {"kind": kind},
        "identifiers": {
            "anonymous_ids": sorted(subject.anonymous_ids),
            "user_id_hashes": sorted(subject.user_ids),
            "person_ids": sorted(subject.person_ids),
            "session_ids": sorted(subject.session_ids),
        },
        "generated_at": datetime.now(UTC).isoformat(),
        "tables": tables,
    }


def _persons_of_ids(conn: psycopg.Connection[Any], subject: Subject) -> list[int]:
    """The canonical persons the subject's anonymous and user ids resolve to."""
    rows = conn.execute(
        "SELECT DISTINCT COALESCE(p.merged_into, p.id) FROM identities i"
        " JOIN persons p ON p.site_id = i.site_id AND p.id = i.person_id"
        " WHERE i.site_id = %(site)s"
        " AND ((i.kind = 'anonymous' AND i.value = ANY(%(anon)s::text[]))"
        " OR (i.kind = 'user' AND i.value = ANY(%(users)s::text[])))",
        subject.params(),
    )
    return sorted(r[0] for r in rows)


def erase_subject(
    conn: psycopg.Connection[Any],
    site_id: int,
    kind: str,
    value: str,
    keyring: Keyring,
    *,
    suppress: bool = False,
    requested_via: str = "cli",
) -> dict[str, Any]:
    """Delete every row of the subject (Art. 17) in the caller's transaction; log it without PII.

    Kept: the erasure_log row (a keyed hash of the request, not equal to any
    stored value, and the counts) and, with ``suppress``, keyed hashes of the
    erased ids so their future messages are refused.
    """
    # The site's identity lock first, exclusively: a writer's commit holds it shared
    # from its identity step to its end, and this transaction deletes rows that
    # commit may be locking. Taken first, erasure waits for the commits in flight
    # (and new ones wait for it) instead of deadlocking with them half-way
    # (profiles.rebuild takes the same lock again at the end).
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (identity.site_lock(site_id),))
    subject = resolve(conn, site_id, kind, value, keyring)
    touched = _persons_of_ids(conn, subject)
    counts: dict[str, int] = {}
    for table in _fk_order(conn, _tables(conn)):
        where = _where(table, subject.kind)
        cursor = conn.execute(
            sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(table.name), where),
            subject.params(),
        )
        if cursor.rowcount:
            counts[table.name] = cursor.rowcount
    # A person who keeps other ids (a logged-in person, erased device) lost some
    # events: their live profile is recomputed from what is left.
    survivors = [
        r[0] for r in conn.execute("SELECT id FROM persons WHERE id = ANY(%s)", (touched,))
    ]
    if survivors and "person_profiles" in {t.name for t in _tables(conn)}:
        profiles.rebuild(conn, site_id, survivors)
    key = keyring.current
    if suppress:
        entries = {
            (suppression_hash(k, "a", a), k.key_id)
            for k in keyring.keys
            for a in subject.anonymous_ids
        } | {
            (suppression_hash(k, "u", u), k.key_id) for k in keyring.keys for u in subject.user_ids
        }
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO privacy_suppressions (site_id, subject_hash, pii_key_id)"
                " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [(site_id, h, key_id) for h, key_id in sorted(entries)],
            )
    row = conn.execute(
        "INSERT INTO erasure_log (site_id, subject_kind, subject_hash, pii_key_id, counts,"
        " suppressed, requested_via) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id, erased_at",
        (
            site_id,
            kind,
            key.hash(f"erasure|{kind}|{value}"),
            key.key_id,
            json.dumps(counts),
            suppress,
            requested_via,
        ),
    ).fetchone()
    assert row is not None
    return {
        "erasure_id": row[0],
        "erased_at": row[1].isoformat(),
        "deleted": counts,
        "suppressed": suppress,
    }


# --- retention --------------------------------------------------------------------------


@dataclass(slots=True)
class RetentionReport:
    site: str
    events: int = 0
    failed_events: int = 0


def _delete_batched(
    conn: psycopg.Connection[Any], statement: str, params: tuple[Any, ...], batch: int
) -> int:
    total = 0
    while True:
        with conn.transaction():
            deleted = conn.execute(statement, (*params, batch)).rowcount
        total += deleted
        if deleted < batch:
            return total


# By event time, as the partitions (so only the old months are read), and the
# keys by the same time, so a key never outlives or predeceases its row.
DELETE_EVENTS = (
    'DELETE FROM events WHERE (site_id, message_id, "timestamp") IN'
    ' (SELECT site_id, message_id, "timestamp" FROM events'
    ' WHERE site_id = %s AND "timestamp" < %s LIMIT %s)'
)
DELETE_EVENT_IDS = (
    "DELETE FROM event_ids WHERE (site_id, message_id) IN (SELECT site_id, message_id"
    ' FROM event_ids WHERE site_id = %s AND "timestamp" < %s LIMIT %s)'
)
DELETE_FAILED = (
    "DELETE FROM failed_events WHERE id IN (SELECT id FROM failed_events"
    " WHERE site_id = %s AND received_at < %s LIMIT %s)"
)


def apply_retention(
    conn: psycopg.Connection[Any],
    *,
    now: datetime | None = None,
    site_name: str | None = None,
    batch_size: int = 5000,
) -> list[RetentionReport]:
    """Delete each site's events and failed events older than its retention, in batches.

    Site settings ``retention_days`` and ``failed_retention_days`` (unset: kept).
    Each batch is its own short transaction, so this is safe to run from cron
    while the collector writes. Expired visitor salts go too.
    """
    now = now or datetime.now(UTC)
    reports = []
    sites = conn.execute(
        "SELECT id, name, settings FROM sites WHERE %s::text IS NULL OR name = %s ORDER BY id",
        (site_name, site_name),
    ).fetchall()
    conn.commit()
    for site_id, name, settings in sites:
        report = RetentionReport(name)
        days = _days(settings.get("retention_days"))
        if days is not None:
            cutoff = now - timedelta(days=days)
            report.events = _delete_events(conn, site_id, cutoff, batch_size)
        failed_days = _days(settings.get("failed_retention_days"))
        if failed_days is not None:
            cutoff = now - timedelta(days=failed_days)
            report.failed_events = _delete_batched(
                conn, DELETE_FAILED, (site_id, cutoff), batch_size
            )
        reports.append(report)
    with conn.transaction():
        conn.execute(
            "DELETE FROM visitor_salts WHERE day < %s", ((now - timedelta(days=1)).date(),)
        )
    return reports


def _delete_events(
    conn: psycopg.Connection[Any], site_id: int, cutoff: datetime, batch: int
) -> int:
    deleted = _delete_batched(conn, DELETE_EVENTS, (site_id, cutoff), batch)
    has_ids = conn.execute("SELECT to_regclass('event_ids') IS NOT NULL").fetchone()
    conn.commit()
    if has_ids and has_ids[0]:
        # Their dedup keys go too, so that table does not grow for ever.
        _delete_batched(conn, DELETE_EVENT_IDS, (site_id, cutoff), batch)
    return deleted


def _days(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return int(value)
