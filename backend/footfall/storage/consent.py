"""The consent ledger (``consent_log``): read before the pipeline, appended in the writer.

Reading: before the pipeline runs, the http layer asks for the latest
analytics decision of each anonymousId and userId of the batch and whether
any of them was erased with suppression; the pipeline's consent step then
decides without I/O. The collector's per-process view of the ledger
(storage/consent_view.py) answers from memory, kept current by the
notifications of migration ``20261202_0100``, and uses :func:`query_ledger`
(one indexed query) for the ids it does not hold and whenever its listener is
down; :func:`load_ledger` is that query for a whole batch. Either way a
withdrawal is in force for every collector process as soon as the request
that carried it was answered.

Appending: a ``Consent Updated`` message carries its ledger entry to the writer
(``EventRow.extras["consent"]``); :func:`record_consent` inserts it in the same
transaction as the event, only for events that were new, so a retried
decision is recorded once. Decisions from the admin API and CLI go through
:func:`record_decision`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from footfall.pipeline.consent import (
    ConsentDecision,
    LedgerEntry,
    LedgerView,
    new_entry,
    subject_ids,
)
from footfall.pipeline.identifiers import MAX_ID_LENGTH, storable_text
from footfall.pipeline.privacy import Keyring, PiiKey, stored_anonymous_id
from footfall.pipeline.types import EventRow

# Ids of one request looked up at most (a batch holds at most max_batch_messages).
MAX_SUBJECTS = 5000

LATEST = """
SELECT 'a', anonymous_id, analytics, decided_at FROM (
  SELECT DISTINCT ON (anonymous_id) anonymous_id, analytics, decided_at FROM consent_log
  WHERE site_id = %(site)s AND anonymous_id = ANY(%(anonymous)s::text[]) AND analytics IS NOT NULL
  ORDER BY anonymous_id, decided_at DESC, id DESC) a
UNION ALL
SELECT 'u', user_id, analytics, decided_at FROM (
  SELECT DISTINCT ON (user_id) user_id, analytics, decided_at FROM consent_log
  WHERE site_id = %(site)s AND user_id = ANY(%(users)s::text[]) AND analytics IS NOT NULL
  ORDER BY user_id, decided_at DESC, id DESC) u
UNION ALL
SELECT 's', subject_hash, NULL, NULL FROM privacy_suppressions
  WHERE site_id = %(site)s AND subject_hash = ANY(%(suppressed)s::text[])
"""


def suppression_hash(key: PiiKey, kind: str, stored: str) -> str:
    """The suppression-list entry of an id as stored (its own domain: equals nothing else)."""
    return key.hash(f"erased|{kind}|{stored}")


def batch_ids(messages: Iterable[Any]) -> tuple[set[str], set[str]]:
    """The raw anonymousIds and userIds a batch names (the ones that can be looked up)."""
    anonymous_ids: set[str] = set()
    user_ids: set[str] = set()
    for message in messages:
        if not isinstance(message, dict):
            continue
        anonymous_id, user_id = subject_ids(message)
        # An id that can't be queried (NUL, too long ...) is not looked up: its
        # message fails in the pipeline's limits and validation.
        if anonymous_id is not None and storable_text(anonymous_id, MAX_ID_LENGTH):
            anonymous_ids.add(anonymous_id)
        if user_id is not None and storable_text(user_id, MAX_ID_LENGTH):
            user_ids.add(user_id)
        if len(anonymous_ids) + len(user_ids) >= MAX_SUBJECTS:
            break
    return anonymous_ids, user_ids


@dataclass(slots=True)
class StoredIds:
    """Raw ids as the ledger stores them, under every configured key, and back."""

    anonymous: dict[str, list[str]] = field(default_factory=dict)  # stored -> raw ids
    users: dict[str, str] = field(default_factory=dict)  # hash -> raw id
    suppressed: dict[str, tuple[str, str]] = field(default_factory=dict)  # hash -> (a|u, raw)


def stored_ids(
    anonymous_ids: Iterable[str], user_ids: Iterable[str], keyring: Keyring
) -> StoredIds:
    """What :data:`LATEST` looks up for these raw ids."""
    ids = StoredIds()
    for raw in anonymous_ids:
        for key in keyring.keys:
            stored = stored_anonymous_id(raw, key)
            ids.anonymous.setdefault(stored, []).append(raw)
            ids.suppressed[suppression_hash(key, "a", stored)] = ("a", raw)
    for raw in user_ids:
        for key in keyring.keys:
            stored = key.hash(raw)
            ids.users[stored] = raw
            ids.suppressed[suppression_hash(key, "u", stored)] = ("u", raw)
    return ids


async def query_ledger(pool: AsyncConnectionPool, site_id: int, ids: StoredIds) -> LedgerView:
    """The ledger's view of these ids, keyed by the raw ids (one query)."""
    view = LedgerView()
    if not ids.anonymous and not ids.users:
        return view
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(
            LATEST,
            {
                "site": site_id,
                "anonymous": list(ids.anonymous),
                "users": list(ids.users),
                "suppressed": list(ids.suppressed),
            },
        )
        found = await cur.fetchall()
    for kind, subject, analytics, decided_at in found:
        if kind == "a":
            for raw in ids.anonymous[subject]:
                view.record(raw, None, ConsentDecision(analytics, decided_at))
        elif kind == "u":
            view.record(None, ids.users[subject], ConsentDecision(analytics, decided_at))
        else:
            which, raw = ids.suppressed[subject]
            target = view.suppressed_anonymous_ids if which == "a" else view.suppressed_user_ids
            target.add(raw)
    return view


async def load_ledger(
    pool: AsyncConnectionPool, site_id: int, messages: Iterable[Any], keyring: Keyring
) -> LedgerView:
    """The ledger's view of a batch's ids (one query; none if the batch names nobody).

    The collector asks its :class:`~footfall.storage.consent_view.ConsentView`,
    which answers from memory and uses this query for what it does not hold.
    """
    anonymous_ids, user_ids = batch_ids(messages)
    return await query_ledger(pool, site_id, stored_ids(anonymous_ids, user_ids, keyring))


INSERT = (
    "INSERT INTO consent_log (site_id, anonymous_id, user_id, pii_key_id, analytics, granted,"
    " denied, source, policy_version, decided_at, message_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (site_id, message_id) DO NOTHING"
)


def ledger_params(site_id: int, entry: LedgerEntry, source: str, message_id: str | None) -> tuple:
    """The INSERT's parameters of one ledger entry."""
    return (
        site_id,
        entry.anonymous_id,
        entry.user_id,
        entry.pii_key_id,
        entry.analytics,
        list(entry.granted),
        list(entry.denied),
        source,
        entry.policy_version,
        entry.decided_at,
        message_id,
    )


async def record_consent(conn: psycopg.AsyncConnection[Any], rows: Sequence[EventRow]) -> None:
    """TxStep: append the ledger entries of newly stored ``Consent Updated`` messages."""
    params = [
        ledger_params(row.site_id, row.extras["consent"], "message", row.message_id)
        for row in rows
        if isinstance(row.extras.get("consent"), LedgerEntry)
        and (row.extras["consent"].anonymous_id or row.extras["consent"].user_id)
    ]
    if params:
        async with conn.cursor() as cur:
            await cur.executemany(INSERT, params)


def record_decision(
    conn: psycopg.Connection[Any],
    site_id: int,
    key: PiiKey,
    *,
    anonymous_id: str | None,
    user_id: str | None,
    purposes: dict[str, bool],
    policy_version: str | None,
    source: str,
) -> dict[str, Any]:
    """Append a decision made outside the tracker (admin API: ``api``, CLI: ``admin``)."""
    if not anonymous_id and not user_id:
        raise ValueError("a decision needs an anonymous id or a user id")
    entry = new_entry(
        key,
        anonymous_id=anonymous_id,
        user_id=user_id,
        purposes=purposes,
        policy_version=policy_version,
        decided_at=datetime.now(UTC),
    )
    with conn.cursor() as cur:
        cur.execute(INSERT + " RETURNING id", ledger_params(site_id, entry, source, None))
        row = cur.fetchone()
    return {
        "id": row[0] if row else None,
        "analytics": entry.analytics,
        "granted": list(entry.granted),
        "denied": list(entry.denied),
        "decided_at": entry.decided_at.isoformat(),
    }
