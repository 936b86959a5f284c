"""The consent ledger (``consent_log``): read before the pipeline, appended in the writer.

Reading: the http layer calls :func:`load_ledger` once per request with the
batch's messages; one indexed query returns the latest analytics decision of
each anonymousId and userId in the batch and whether any of them was erased
with suppression. The pipeline's consent step then decides without I/O. The
query reads what is committed, so a withdrawal is in force for every
collector process as soon as the request that carried it was answered.

Appending: a ``Consent Updated`` message carries its ledger entry to the writer
(``EventRow.extras["consent"]``); :func:`record_consent` inserts it in the same
transaction as the event, only for events that were new, so a retried
decision is recorded once. Decisions from the admin API and CLI go through
:func:`record_decision`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def _batch_ids(messages: Iterable[Any]) -> tuple[set[str], set[str]]:
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


async def load_ledger(
    pool: AsyncConnectionPool, site_id: int, messages: Iterable[Any], keyring: Keyring
) -> LedgerView:
    """The ledger's view of a batch's ids (one query; none if the batch names nobody)."""
    anonymous_ids, user_ids = _batch_ids(messages)
    view = LedgerView()
    if not anonymous_ids and not user_ids:
        return view
    stored_anonymous: dict[str, list[str]] = {}
    stored_users: dict[str, str] = {}
    suppressed: dict[str, tuple[str, str]] = {}
    for raw in anonymous_ids:
        for key in keyring.keys:
            stored = stored_anonymous_id(raw, key)
            stored_anonymous.setdefault(stored, []).append(raw)
            suppressed[suppression_hash(key, "a", stored)] = ("a", raw)
    for raw in user_ids:
        for key in keyring.keys:
            stored = key.hash(raw)
            stored_users[stored] = raw
            suppressed[suppression_hash(key, "u", stored)] = ("u", raw)
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(
            LATEST,
            {
                "site": site_id,
                "anonymous": list(stored_anonymous),
                "users": list(stored_users),
                "suppressed": list(suppressed),
            },
        )
        found = await cur.fetchall()
    for kind, subject, analytics, decided_at in found:
        if kind == "a":
            for raw in stored_anonymous[subject]:
                view.record(raw, None, ConsentDecision(analytics, decided_at))
        elif kind == "u":
            view.record(None, stored_users[subject], ConsentDecision(analytics, decided_at))
        else:
            which, raw = suppressed[subject]
            target = view.suppressed_anonymous_ids if which == "a" else view.suppressed_user_ids
            target.add(raw)
    return view


INSERT = (
    "INSERT INTO consent_log (site_id, anonymous_id, user_id, pii_key_id, analytics, granted,"
    " denied, source, policy_version, decided_at, message_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (site_id, message_id) DO NOTHING"
)


def _params(site_id: int, entry: LedgerEntry, source: str, message_id: str | None) -> tuple:
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
        _params(row.site_id, row.extras["consent"], "message", row.message_id)
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
        cur.execute(INSERT + " RETURNING id", _params(site_id, entry, source, None))
        row = cur.fetchone()
    return {
        "id": row[0] if row else None,
        "analytics": entry.analytics,
        "granted": list(entry.granted),
        "denied": list(entry.denied),
        "decided_at": entry.decided_at.isoformat(),
    }
