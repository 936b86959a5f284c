"""Identity links and merges in the writer's transaction (the SQL of pipeline/identity.py).

Tables: ``persons`` (``merged_into`` points straight at the surviving person,
kept flat so one join resolves any person), ``identities`` ((site, kind,
value) -> the person it was first attached to; never re-pointed) and
``person_merges`` (one row per merged person: the history).

Fast path, one round trip (a pipeline): the site's identity lock taken
shared, one INSERT giving each id seen alone a person unless it has one (a
conflict means it has, or another collector created it first, which is
fine), one query resolving every id of the batch. A batch with links first
resolves its ids to tell the links that change something; those whose ids
already share a person cost nothing more. The persons read last are each
row's (``extras[PERSON]``): under the shared lock no merge can move them
before the transaction ends, so the steps after this one use them as they are.

Slow path, for links that change something: a transaction-level advisory
lock per site serializes the collectors' identity changes of one site (logins
are rare next to page views), then per link, inside a savepoint:
1. resolve both ids to their canonical persons;
2. lock those persons (``SELECT … FOR UPDATE``, in id order) and resolve
   again: if anything changed meanwhile (a concurrent merge or a new id), roll
   back to the savepoint and start over;
3. decide with the pure rules, then insert ids (``ON CONFLICT DO NOTHING``:
   zero rows means another collector attached it first -> start over) or
   merge (flatten ``merged_into``, record the merge; ``person_merges`` has one
   row per merged person, so a merge is recorded once whoever gets there) and
   combine the two persons' live profiles (storage/profiles.py).

Every change to a person (an id attached, a merge into or out of it) happens
with that person locked, so two collectors applying the same identify at once
serialize, and the second finds the ids already linked: one person, one merge
record. Ids seen alone are created under the site's lock taken shared, after
the links (which hold it exclusively), in key order: never at the same time as
a link of that site. Should PostgreSQL still abort a transaction with a
deadlock, the writer retries it whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import psycopg

from footfall.pipeline.identity import (
    ANONYMOUS,
    PERSON,
    USER,
    Act,
    IdKey,
    Known,
    Link,
    decide_alias,
    decide_link,
    plan_identities,
)
from footfall.pipeline.sessions import DEVICE_PERSON
from footfall.pipeline.types import EventRow
from footfall.storage import profiles

MAX_ATTEMPTS = 20

RESOLVE = (
    "SELECT q.site_id, q.kind, q.value, c.id, c.is_identified"
    " FROM unnest(%s::int[], %s::text[], %s::text[]) AS q(site_id, kind, value)"
    " JOIN identities i ON i.site_id = q.site_id AND i.kind = q.kind AND i.value = q.value"
    " JOIN persons p ON p.site_id = i.site_id AND p.id = i.person_id"
    " JOIN persons c ON c.site_id = p.site_id AND c.id = COALESCE(p.merged_into, p.id)"
)

# Ids seen alone: a person each, created only for the ids actually inserted.
CREATE_SINGLES = (
    "WITH q AS (SELECT * FROM unnest(%s::int[], %s::text[], %s::text[], %s::text[])"
    " AS q(site_id, kind, value, message_id) ORDER BY site_id, kind, value),"
    " ins AS (INSERT INTO identities (site_id, kind, value, person_id, message_id)"
    " SELECT site_id, kind, value, nextval(pg_get_serial_sequence('persons', 'id')), message_id"
    " FROM q ON CONFLICT DO NOTHING RETURNING site_id, kind, person_id)"
    " INSERT INTO persons (id, site_id, is_identified)"
    " SELECT person_id, site_id, kind = 'user' FROM ins"
)

LOCK_SHARED = (
    "SELECT count(pg_advisory_xact_lock_shared(k))"
    " FROM (SELECT k FROM unnest(%s::bigint[]) AS k ORDER BY k) AS ordered"
)

INSERT_IDENTITY = (
    "INSERT INTO identities (site_id, kind, value, person_id, message_id)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


def site_lock(site_id: int) -> int:
    """The advisory lock key that serializes a site's identity changes.

    storage/profiles.py takes it shared, so no profile step runs during a merge.
    """
    digest = hashlib.blake2b(f"footfall.identity\0{site_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), signed=True)


class _StartOver(Exception):
    """The state changed under us: roll back to the savepoint and try again."""


def _columns(keys: Sequence[IdKey]) -> tuple[list[int], list[str], list[str]]:
    return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]


async def resolve(cur: psycopg.AsyncCursor[Any], keys: Sequence[IdKey]) -> dict[IdKey, Known]:
    """The canonical person of each id that has one."""
    if not keys:
        return {}
    await cur.execute(RESOLVE, _columns(keys))
    return await _resolved(cur)


async def _resolved(cur: psycopg.AsyncCursor[Any]) -> dict[IdKey, Known]:
    return {
        (site_id, kind, value): Known(person, identified)
        for site_id, kind, value, person, identified in await cur.fetchall()
    }


async def _new_person(cur: psycopg.AsyncCursor[Any], site_id: int, identified: bool) -> int:
    await cur.execute(
        "INSERT INTO persons (site_id, is_identified) VALUES (%s, %s) RETURNING id",
        (site_id, identified),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _attach(cur: psycopg.AsyncCursor[Any], key: IdKey, person: int, message_id: str) -> None:
    await cur.execute(INSERT_IDENTITY, (*key, person, message_id))
    if cur.rowcount != 1:
        raise _StartOver  # another collector attached this id first
    if key[1] == USER:
        await cur.execute(
            "UPDATE persons SET is_identified = true WHERE site_id = %s AND id = %s",
            (key[0], person),
        )


async def _merge(
    cur: psycopg.AsyncCursor[Any],
    site_id: int,
    message_id: str,
    source: Known,
    target: Known,
    reason: str,
) -> None:
    # Flat pointers: the merged person and everything already merged into it
    # now point at the target, so any person resolves in one join.
    await cur.execute(
        "UPDATE persons SET merged_into = %s, merged_at = now()"
        " WHERE site_id = %s AND (id = %s OR merged_into = %s)",
        (target.person, site_id, source.person, source.person),
    )
    if source.identified and not target.identified:
        await cur.execute(
            "UPDATE persons SET is_identified = true WHERE site_id = %s AND id = %s",
            (site_id, target.person),
        )
    await cur.execute(
        "INSERT INTO person_merges (site_id, from_person, into_person, reason, message_id)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (site_id, from_person) DO NOTHING",
        (site_id, source.person, target.person, reason, message_id),
    )
    await profiles.merge_profiles(cur, site_id, source.person, target.person)


def _keys(link: Link) -> list[IdKey]:
    keys = [link.first, link.second]
    if link.anonymous_first is not None:
        keys.append(link.anonymous_first)
    return keys


def _effective_first(link: Link, state: dict[IdKey, Known]) -> tuple[IdKey, bool]:
    """(the first id, whether alias rules apply): an alias whose previousId is a known
    anonymous id links that anonymous id, under identify rules."""
    if link.anonymous_first is not None and link.anonymous_first in state:
        return link.anonymous_first, False
    return link.first, link.alias


def already_linked(link: Link, state: dict[IdKey, Known]) -> bool:
    first = state.get(_effective_first(link, state)[0])
    second = state.get(link.second)
    return first is not None and second is not None and first.person == second.person


async def _try_link(cur: psycopg.AsyncCursor[Any], link: Link) -> None:
    keys = _keys(link)
    site_id = link.second[0]  # a link's ids are all of one site
    state = await resolve(cur, keys)
    persons = sorted({known.person for known in state.values()})
    if persons:
        await cur.execute(
            "SELECT id FROM persons WHERE site_id = %s AND id = ANY(%s) ORDER BY id FOR UPDATE",
            (site_id, persons),
        )
        if await resolve(cur, keys) != state:
            raise _StartOver  # merged or linked meanwhile
    first_key, alias = _effective_first(link, state)
    first, second = state.get(first_key), state.get(link.second)
    decision = (decide_alias if alias else decide_link)(first, second)
    match decision.act:
        case Act.NOTHING:
            return
        case Act.CREATE:
            person = await _new_person(cur, site_id, identified=True)
            await _attach(cur, first_key, person, link.message_id)
            await _attach(cur, link.second, person, link.message_id)
        case Act.ATTACH_FIRST:
            assert second is not None
            await _attach(cur, first_key, second.person, link.message_id)
        case Act.ATTACH_SECOND:
            assert first is not None
            await _attach(cur, link.second, first.person, link.message_id)
        case Act.CREATE_SECOND:
            person = await _new_person(cur, site_id, identified=True)
            await _attach(cur, link.second, person, link.message_id)
        case Act.MERGE:
            assert first is not None and second is not None
            reason = "alias" if link.alias else decision.reason
            await _merge(cur, site_id, link.message_id, first, second, reason)


async def apply_link(conn: psycopg.AsyncConnection[Any], link: Link) -> None:
    """Apply one link in a savepoint, starting over while concurrent writers change its ids."""
    for _ in range(MAX_ATTEMPTS):
        try:
            async with conn.transaction(), conn.cursor() as cur:
                await _try_link(cur, link)
        except _StartOver:
            continue
        return
    raise RuntimeError(f"identity link kept changing under concurrent writers: {link}")


async def identity_step(conn: psycopg.AsyncConnection[Any], rows: Sequence[EventRow]) -> None:
    """Writer TxStep: give every id of the new rows a person, apply links and merges,
    and leave each row's canonical person in ``extras[PERSON]`` (and, for a row
    with both ids, its anonymous id's in ``extras[DEVICE_PERSON]``).

    The persons are read under the site's identity lock taken shared, held to the
    end of the transaction, so no merge can move them before it ends: the steps
    after this one (sessions, profiles, segments) use them without asking again.
    """
    for row in rows:  # what a rolled-back attempt left
        row.extras.pop(PERSON, None)
        row.extras.pop(DEVICE_PERSON, None)
    plan = plan_identities(rows)
    if not plan.links and not plan.singles:
        return
    keys = sorted({k for link in plan.links for k in _keys(link)} | set(plan.singles))
    known: dict[IdKey, Known] = {}
    if plan.links:  # which of them change something
        async with conn.cursor() as cur:
            known = await resolve(cur, keys)
    changing = [link for link in plan.links if not already_linked(link, known)]
    sites = sorted({key[0] for key in keys})
    if changing:
        # Links that change something are serialized per site (they are rare:
        # logins), so two collectors' link work can never deadlock on each other.
        async with conn.cursor() as cur:
            for site_id in sorted({link.second[0] for link in changing}):
                await cur.execute("SELECT pg_advisory_xact_lock(%s)", (site_lock(site_id),))
    for link in changing:
        await apply_link(conn, link)
    # Without links nothing was read yet: every id seen alone is offered to
    # CREATE_SINGLES, whose conflict skips those that have a person.
    missing = sorted(k for k in plan.singles if k not in known)
    # One round trip (pipeline; the result is read once it is over): the shared
    # lock (already held exclusively if links were applied), the ids seen alone,
    # the persons as they now are.
    async with conn.cursor() as cur:
        async with conn.pipeline():
            await cur.execute(LOCK_SHARED, ([site_lock(site_id) for site_id in sites],))
            if missing:
                await cur.execute(
                    CREATE_SINGLES, (*_columns(missing), [plan.singles[k] for k in missing])
                )
            await cur.execute(RESOLVE, _columns(keys))
        known = await _resolved(cur)
    for row in rows:
        user = known.get((row.site_id, USER, row.user_id)) if row.user_id is not None else None
        device = (
            known.get((row.site_id, ANONYMOUS, row.anonymous_id))
            if row.anonymous_id is not None
            else None
        )
        person = user or device
        if person is not None:
            row.extras[PERSON] = person.person
        if user is not None and device is not None:
            row.extras[DEVICE_PERSON] = device.person


# Every id of the given (canonical) persons, those of persons merged into them included.
IDS_OF_PERSONS = (
    "SELECT COALESCE(p.merged_into, p.id), i.kind, i.value FROM identities i"
    " JOIN persons p ON p.site_id = i.site_id AND p.id = i.person_id"
    " WHERE i.site_id = %(site)s AND COALESCE(p.merged_into, p.id) = ANY(%(persons)s::bigint[])"
    " ORDER BY 1, 2, 3"
)


async def ids_of_persons(
    conn: psycopg.AsyncConnection[Any], site_id: int, persons: Sequence[int]
) -> dict[int, tuple[list[str], list[str]]]:
    """(user ids, anonymous ids) of each person as stored (user ids hashed), including
    the ids of persons merged into it; sorted, so a payload built from them is stable."""
    cursor = await conn.execute(IDS_OF_PERSONS, {"site": site_id, "persons": list(persons)})
    out: dict[int, tuple[list[str], list[str]]] = {p: ([], []) for p in persons}
    for person, kind, value in await cursor.fetchall():
        out[person][0 if kind == "user" else 1].append(value)
    return out
