"""Segments in PostgreSQL: definitions, per-person window state, memberships, the sweeper.

The rules and their evaluation are pure (pipeline/segments/); this module is
their SQL. Three paths evaluate a person:

- the writer (:class:`SegmentsStep`, a TxStep after profiles): the persons the
  group commit's new rows belong to, with those rows, in the same transaction
  (so a membership is never ahead of or behind the stored events);
- the sweeper (:class:`Sweeper`): persons whose ``segment_state.due_at`` passed,
  i.e. whose answer changes with time alone (a window slid, an absence elapsed);
- a definition change: every person with state is made due now, so the sweeper
  re-evaluates them under the new version.

Concurrency: the ``segment_state`` row is the person's lock. The writer takes
it with an upsert in (site_id, person_id) order (so two collectors' commits
cannot deadlock on each other); the sweeper takes due rows with ``FOR UPDATE
SKIP LOCKED`` and never waits on a writer. Memberships of a person are only
changed by whoever holds that lock, so there is never more than one open
membership row per person and segment, whatever the number of collectors.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from footfall.pipeline.consent import LedgerEntry
from footfall.pipeline.identity import ANONYMOUS, USER
from footfall.pipeline.segments import consent as segment_consent
from footfall.pipeline.segments.evaluate import (
    EVENT_KEYS,
    PROFILE_PRINT,
    LeafIndex,
    State,
    Verdict,
    apply_event,
    compile_segment,
    epoch_ms,
    evaluate,
    event_of,
    leaves_of,
    merge_states,
    prune,
)
from footfall.pipeline.segments.rules import (
    PROFILE_ATTRIBUTES,
    RuleError,
    Segment,
    max_horizon_ms,
    parse_rule,
)
from footfall.pipeline.types import EventRow
from footfall.storage import webhooks as outbox
from footfall.storage.identity import RESOLVE, ids_of_persons
from footfall.storage.profiles import persons_of

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# --- definitions -------------------------------------------------------------------------


class SegmentExists(ValueError):
    """create: the key already has an active version."""


class UnknownSegment(LookupError):
    """update / show / delete: no active segment with that key."""


ACTIVE = (
    "SELECT site_id, key, version, rule FROM segment_definitions"
    " WHERE site_id = ANY(%s::int[]) AND retired_at IS NULL ORDER BY site_id, key"
)
ACTIVE_VERSIONS = (
    "SELECT site_id, key, version FROM segment_definitions"
    " WHERE site_id = ANY(%s::int[]) AND retired_at IS NULL ORDER BY site_id, key"
)
RULES = (
    "SELECT d.site_id, d.key, d.version, d.rule FROM segment_definitions d"
    " JOIN unnest(%s::int[], %s::text[], %s::int[]) AS q(s, k, v)"
    " ON d.site_id = q.s AND d.key = q.k AND d.version = q.v"
)


def _definition_row(row: Sequence[Any]) -> dict[str, Any]:
    key, version, rule, expose, webhooks, created_at, retired_at = row
    return {
        "key": key,
        "version": version,
        "expose": expose,
        "webhooks": list(webhooks),
        "created_at": created_at.isoformat(),
        "retired_at": retired_at.isoformat() if retired_at else None,
        "rule": rule,
    }


_DEFINITION_COLUMNS = "key, version, rule, expose, webhooks, created_at, retired_at"


def _insert_version(conn: psycopg.Connection[Any], site_id: int, segment: Segment) -> int:
    row = conn.execute(
        "SELECT coalesce(max(version), 0) + 1 FROM segment_definitions"
        " WHERE site_id = %s AND key = %s",
        (site_id, segment.key),
    ).fetchone()
    assert row is not None
    version = int(row[0])
    conn.execute(
        "INSERT INTO segment_definitions (site_id, key, version, rule, expose, webhooks)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (site_id, segment.key, version, Jsonb(segment.document), segment.expose,
         list(segment.webhooks)),
    )  # fmt: skip
    return version


def _lock_key(conn: psycopg.Connection[Any], site_id: int, key: str) -> None:
    # Two admins creating or updating one key at once take turns.
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))", (key, site_id))


def _reevaluate_site(conn: psycopg.Connection[Any], site_id: int) -> None:
    """Every person with state is due now: the sweeper evaluates them under the change."""
    conn.execute(
        "UPDATE segment_state SET due_at = now() WHERE site_id = %s"
        " AND (due_at IS NULL OR due_at > now())",
        (site_id,),
    )


def create_segment(conn: psycopg.Connection[Any], site_id: int, document: Any) -> dict[str, Any]:
    """A new segment (version 1, or the next number if the key was deleted before)."""
    segment = parse_rule(document, 1)
    _lock_key(conn, site_id, segment.key)
    if _active_version(conn, site_id, segment.key) is not None:
        raise SegmentExists(f"segment {segment.key!r} exists: use update")
    version = _insert_version(conn, site_id, segment)
    _reevaluate_site(conn, site_id)
    return show_segment(conn, site_id, segment.key) | {"version": version}


def update_segment(conn: psycopg.Connection[Any], site_id: int, document: Any) -> dict[str, Any]:
    """A new version of an active segment; open memberships are re-evaluated under it."""
    segment = parse_rule(document, 1)
    _lock_key(conn, site_id, segment.key)
    if _active_version(conn, site_id, segment.key) is None:
        raise UnknownSegment(f"no segment {segment.key!r}: use create")
    conn.execute(
        "UPDATE segment_definitions SET retired_at = now()"
        " WHERE site_id = %s AND key = %s AND retired_at IS NULL",
        (site_id, segment.key),
    )
    version = _insert_version(conn, site_id, segment)
    _reevaluate_site(conn, site_id)
    return show_segment(conn, site_id, segment.key) | {"version": version}


def _active_version(conn: psycopg.Connection[Any], site_id: int, key: str) -> int | None:
    row = conn.execute(
        "SELECT version FROM segment_definitions"
        " WHERE site_id = %s AND key = %s AND retired_at IS NULL",
        (site_id, key),
    ).fetchone()
    return None if row is None else int(row[0])


def delete_segment(conn: psycopg.Connection[Any], site_id: int, key: str) -> dict[str, Any]:
    """Retire the segment; its open memberships are closed (reason ``deleted``)."""
    _lock_key(conn, site_id, key)
    if _active_version(conn, site_id, key) is None:
        raise UnknownSegment(f"no segment {key!r}")
    conn.execute(
        "UPDATE segment_definitions SET retired_at = now()"
        " WHERE site_id = %s AND key = %s AND retired_at IS NULL",
        (site_id, key),
    )
    closed = conn.execute(
        "UPDATE segment_memberships SET exited_at = now(), exit_reason = 'deleted'"
        " WHERE site_id = %s AND segment_key = %s AND exited_at IS NULL",
        (site_id, key),
    ).rowcount
    return {"key": key, "deleted": True, "memberships_closed": closed}


def list_segments(conn: psycopg.Connection[Any], site_id: int) -> list[dict[str, Any]]:
    """Active segments with their current member counts."""
    rows = conn.execute(
        "SELECT d.key, d.version, d.expose, d.webhooks, d.created_at,"
        " (SELECT count(*) FROM segment_memberships m WHERE m.site_id = d.site_id"
        "  AND m.segment_key = d.key AND m.exited_at IS NULL)"
        " FROM segment_definitions d WHERE d.site_id = %s AND d.retired_at IS NULL"
        " ORDER BY d.key",
        (site_id,),
    ).fetchall()
    return [
        {
            "key": key,
            "version": version,
            "expose": expose,
            "webhooks": list(webhooks),
            "created_at": created_at.isoformat(),
            "members": members,
        }
        for key, version, expose, webhooks, created_at, members in rows
    ]


def show_segment(conn: psycopg.Connection[Any], site_id: int, key: str) -> dict[str, Any]:
    """The active version, every version's history, and the member count."""
    rows = conn.execute(
        f"SELECT {_DEFINITION_COLUMNS} FROM segment_definitions"
        " WHERE site_id = %s AND key = %s ORDER BY version",
        (site_id, key),
    ).fetchall()
    active = [r for r in rows if r[6] is None]
    if not active:
        raise UnknownSegment(f"no segment {key!r}")
    members = conn.execute(
        "SELECT count(*) FROM segment_memberships"
        " WHERE site_id = %s AND segment_key = %s AND exited_at IS NULL",
        (site_id, key),
    ).fetchone()
    return _definition_row(active[0]) | {
        "members": members[0] if members else 0,
        "versions": [{"version": r[1], "created_at": r[5].isoformat(),
                      "retired_at": r[6].isoformat() if r[6] else None} for r in rows],
    }  # fmt: skip


# --- the compiled definitions a collector evaluates with --------------------------------


@dataclass(frozen=True, slots=True)
class SiteSegments:
    """A site's active segments, compiled, with their leaves indexed for dispatch."""

    segments: tuple[Segment, ...]
    index: LeafIndex = field(init=False)
    browser_keys: frozenset[str] = field(init=False)
    uses_profile: bool = field(init=False)
    # Leaf signature -> the positions of the segments that use the leaf.
    by_sig: Mapping[str, tuple[int, ...]] = field(init=False)
    # Positions of the segments that test profile attributes (any event may change them).
    profiled: tuple[int, ...] = field(init=False)
    # The profile attributes in profile_print (all of them if any segment tests one).
    profile_fields: tuple[str, ...] = field(init=False)
    # evaluate() of each segment, compiled (compile_segment), in the segments' order.
    evaluators: tuple[Callable[[State, Mapping[str, Any] | None, int], Verdict], ...] = field(
        init=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", LeafIndex(leaves_of(self.segments)))
        object.__setattr__(
            self, "browser_keys", frozenset(s.key for s in self.segments if s.browser)
        )
        object.__setattr__(self, "uses_profile", any(s.uses_profile for s in self.segments))
        by_sig: dict[str, list[int]] = defaultdict(list)
        for i, segment in enumerate(self.segments):
            for leaf in segment.leaves:
                by_sig[leaf.sig].append(i)
        object.__setattr__(self, "by_sig", {k: tuple(v) for k, v in by_sig.items()})
        object.__setattr__(
            self, "profiled", tuple(i for i, s in enumerate(self.segments) if s.uses_profile)
        )
        fields = sorted({f for s in self.segments if s.uses_profile for f in PROFILE_ATTRIBUTES})
        object.__setattr__(self, "profile_fields", tuple(fields))
        object.__setattr__(self, "evaluators", tuple(compile_segment(s) for s in self.segments))

    def profile_print(self, profile: Mapping[str, Any] | None) -> str | None:
        """A digest of the profile attributes rules may test (None: no segment tests any),
        kept in the window state: a profile test is evaluated again when it changes."""
        if not self.profile_fields:
            return None
        values = [None if profile is None else profile.get(f) for f in self.profile_fields]
        return hashlib.blake2b(orjson.dumps(values), digest_size=8).hexdigest()

    def affected(self, changed: Iterable[str], profile_changed: bool = True) -> list[int]:
        """The positions of the segments whose answer may differ after the leaves
        ``changed`` took events: those using one of them, and (if ``profile_changed``)
        those testing the profile. The others' answers change only with time, when the
        person is due (the sweeper's work)."""
        positions = set(self.profiled) if profile_changed else set()
        for sig in changed:
            positions.update(self.by_sig.get(sig, ()))
        return sorted(positions)


class Definitions:
    """Active definitions read in the caller's transaction, compiled once per version.

    Versions are immutable, so the compiled form is kept by (site, key, version);
    which versions are active is read on every call (one indexed query).
    """

    MAX_COMPILED = 10_000

    def __init__(self) -> None:
        self._compiled: dict[tuple[int, str, int], Segment] = {}
        # site -> (its active (key, version)s, their SiteSegments): the leaf index is
        # built once per set of versions, not per commit.
        self._sites: dict[int, tuple[tuple[tuple[str, int], ...], SiteSegments]] = {}
        # site -> (has browser-exposed segments, monotonic time learnt)
        self.browser_sites: dict[int, tuple[bool, float]] = {}

    async def active(
        self, conn: psycopg.AsyncConnection[Any], site_ids: Iterable[int]
    ) -> dict[int, SiteSegments]:
        sites = sorted(set(site_ids))
        async with conn.cursor() as cur:
            await cur.execute(ACTIVE_VERSIONS, (sites,))
            versions = await cur.fetchall()
        return await self.of_versions(conn, sites, versions)

    async def of_versions(
        self,
        conn: psycopg.AsyncConnection[Any],
        sites: Sequence[int],
        versions: Sequence[Sequence[Any]],
    ) -> dict[int, SiteSegments]:
        """The compiled segments of ``sites`` given their active (site, key, version)s
        (ACTIVE_VERSIONS' rows); rules not compiled yet are read (one query)."""
        missing = [(s, k, v) for s, k, v in versions if (s, k, v) not in self._compiled]
        if missing:
            async with conn.cursor() as cur:
                await cur.execute(
                    RULES,
                    ([m[0] for m in missing], [m[1] for m in missing], [m[2] for m in missing]),
                )
                if len(self._compiled) + len(missing) > self.MAX_COMPILED:
                    self._compiled.clear()
                    self._sites.clear()
                for site_id, key, version, rule in await cur.fetchall():
                    try:
                        self._compiled[(site_id, key, version)] = parse_rule(rule, version)
                    except RuleError:
                        log.exception(
                            "stored segment %s v%d of site %d is invalid", key, version, site_id
                        )
        by_site: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for site_id, key, version in versions:
            if (site_id, key, version) in self._compiled:
                by_site[site_id].append((key, version))
        out: dict[int, SiteSegments] = {}
        for site_id, keys in by_site.items():
            known = self._sites.get(site_id)
            if known is None or known[0] != tuple(keys):
                segments = tuple(self._compiled[(site_id, k, v)] for k, v in keys)
                known = (tuple(keys), SiteSegments(segments))
                self._sites[site_id] = known
            out[site_id] = known[1]
        now = time.monotonic()
        for site in sites:
            self.browser_sites[site] = (bool(site in out and out[site].browser_keys), now)
        return out


# --- persons, profiles, consent ----------------------------------------------------------


# The profile attributes rules may test (rules.PROFILE_ATTRIBUTES), straight from
# person_profiles: load_profiles also counts the person's sessions by device and part
# of day (a scan of person_sessions per person), which no rule reads, on every commit.
_RULE_ATTRIBUTE_NAMES = (
    "identified", "sessions", "engaged_ms", "events", "pages", "device_type", "country",
    "utm_source", "utm_medium", "utm_campaign", "last_page_path",
)  # fmt: skip
assert set(_RULE_ATTRIBUTE_NAMES) == set(PROFILE_ATTRIBUTES)
# pe: the person, p: its profile.
_RULE_ATTRIBUTE_SQL = ", ".join(
    ["pe.is_identified", *(f"p.{n}" for n in _RULE_ATTRIBUTE_NAMES[1:])]
)
RULE_ATTRIBUTES = (
    f"SELECT q.person_id, {_RULE_ATTRIBUTE_SQL}"
    " FROM unnest(%s::bigint[]) AS q(person_id)"
    " JOIN persons pe ON pe.site_id = %s AND pe.id = q.person_id"
    " JOIN person_profiles p ON p.site_id = pe.site_id AND p.person_id = pe.id"
)


def _attributes(values: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(_RULE_ATTRIBUTE_NAMES, values, strict=True))


async def profile_attributes(
    conn: psycopg.AsyncConnection[Any], site_id: int, persons: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """What rules may test of each (canonical) person's live profile."""
    if not persons:
        return {}
    async with conn.cursor() as cur:
        await cur.execute(RULE_ATTRIBUTES, (list(persons), site_id))
        return {int(row[0]): _attributes(row[1:]) for row in await cur.fetchall()}


# The sites (of %(sites)s) that have active segments: the others' rows need no work.
_LIVE_SITES = (
    "SELECT DISTINCT site_id FROM segment_definitions"
    " WHERE site_id = ANY(%(sites)s::int[]) AND retired_at IS NULL"
)


def _latest_decision(kind: str, column: str, sites: str, ids: str) -> str:
    """The latest ledger decision naming personalization per (site, id) of the ``sites``
    and ``ids`` arrays, for sites with segments: rows (kind, site, id, granted)."""
    return (
        f"SELECT '{kind}', q.s, q.v, l.granted FROM (SELECT DISTINCT s, v FROM unnest("
        f"%({sites})s::int[], %({ids})s::text[]) AS x(s, v)) AS q"
        " CROSS JOIN LATERAL (SELECT %(purpose)s = ANY(c.granted) FROM consent_log c"
        f" WHERE c.site_id = q.s AND c.{column} = q.v"
        " AND (%(purpose)s = ANY(c.granted) OR %(purpose)s = ANY(c.denied))"
        " ORDER BY c.decided_at DESC, c.id DESC LIMIT 1) AS l(granted)"
        f" WHERE q.s IN ({_LIVE_SITES})"
    )


PERSONALIZATION = (
    _latest_decision("a", "anonymous_id", "a_site", "a_id")
    + " UNION ALL "
    + _latest_decision("u", "user_id", "u_site", "u_id")
)


def _ledger_params(rows: Iterable[EventRow]) -> dict[str, Any]:
    """PERSONALIZATION's ids: each row's anonymous id and user id, with its site."""
    anonymous = sorted({(r.site_id, r.anonymous_id) for r in rows if r.anonymous_id})
    users = sorted({(r.site_id, r.user_id) for r in rows if r.user_id})
    return {
        "a_site": [s for s, _ in anonymous],
        "a_id": [v for _, v in anonymous],
        "u_site": [s for s, _ in users],
        "u_id": [v for _, v in users],
        "purpose": segment_consent.PURPOSE,
    }


def _resolve_params(
    site_id: int, anonymous_ids: Iterable[str], user_ids: Iterable[str]
) -> tuple[list[int], list[str], list[str]]:
    """identity.RESOLVE's arrays for a subject's ids (as stored)."""
    keys = [(ANONYMOUS, v) for v in anonymous_ids] + [(USER, v) for v in user_ids]
    return [site_id] * len(keys), [k for k, _ in keys], [v for _, v in keys]


# --- memberships --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """A person entered or left a segment (what webhooks announce)."""

    site_id: int
    person_id: int
    segment_key: str
    version: int
    kind: str  # "entered" | "exited"
    at: datetime
    membership_id: int
    webhooks: tuple[str, ...]
    # The profile attributes the segment's rule tests, as they were when it decided.
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def event_type(self) -> str:
        return f"segment.{self.kind}"

    @property
    def message_id(self) -> str:
        """Stable per change, so a retried transaction never announces it twice."""
        return f"seg_{self.site_id}_{self.membership_id}_{self.kind}"


# The link to webhooks (issue 10, part 5), called in the same transaction as the change:
# ``on_membership_changes`` gets every entry and exit; ``on_persons_removed`` the persons
# whose memberships a consent withdrawal removed. Tests may pass their own.
ChangesHook = Callable[[psycopg.AsyncConnection[Any], Sequence[MembershipChange]], Awaitable[None]]
RemovedHook = Callable[[psycopg.AsyncConnection[Any], int, Sequence[int]], Awaitable[None]]


# At most this many ids of one person go into a webhook (a payload stays small).
WEBHOOK_MAX_IDS = 20


async def on_membership_changes(
    conn: psycopg.AsyncConnection[Any], changes: Sequence[MembershipChange]
) -> None:
    """Enqueue each change's ``segment.entered`` / ``segment.exited`` webhook for the
    segment's endpoints, in the same transaction (storage/webhooks.py, docs/webhooks.md).

    Pseudonymous data only: the person id, the ids as stored (user ids are keyed
    hashes), the segment key and version, when, and the profile attributes the
    segment's rule tests (device type, country, UTM, counts: never an identifier).
    """
    told = [c for c in changes if c.webhooks]
    if not told:
        return
    ids: dict[tuple[int, int], tuple[list[str], list[str]]] = {}
    for site_id in sorted({c.site_id for c in told}):
        persons = sorted({c.person_id for c in told if c.site_id == site_id})
        for person, found in (await ids_of_persons(conn, site_id, persons)).items():
            ids[(site_id, person)] = found
    messages = []
    for change in told:
        user_ids, anonymous_ids = ids.get((change.site_id, change.person_id), ([], []))
        data = {
            "segment": change.segment_key,
            "version": change.version,
            "person_id": change.person_id,
            f"{change.kind}_at": change.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "user_ids": user_ids[:WEBHOOK_MAX_IDS],
            "anonymous_ids": anonymous_ids[:WEBHOOK_MAX_IDS],
        }
        if change.attributes:
            data["attributes"] = dict(change.attributes)
        messages.append(
            outbox.Message(
                change.site_id, change.webhooks, change.event_type, data, change.message_id
            )
        )
    await outbox.enqueue_many(conn, messages)


async def on_persons_removed(
    conn: psycopg.AsyncConnection[Any], site_id: int, persons: Sequence[int]
) -> None:
    """The persons' pending webhooks are cancelled (consent withdrawn), same transaction."""
    for person in persons:
        await outbox.cancel_for_person(conn, site_id, person)


# A person's open memberships as [[key, version, id], ...], read with their state row.
_OPEN = (
    "(SELECT coalesce(json_agg(json_build_array(m.segment_key, m.version, m.id)), '[]')"
    " FROM segment_memberships m WHERE m.site_id = {t}.site_id"
    " AND m.person_id = {t}.person_id AND m.exited_at IS NULL)"
)
# Creates missing rows and locks all in (site, person) order: two commits touching the
# same persons take their locks in one order.
LOCK_STATES = (
    "INSERT INTO segment_state (site_id, person_id)"
    " SELECT * FROM unnest(%s::int[], %s::bigint[]) AS q(s, p) ORDER BY s, p"
    " ON CONFLICT (site_id, person_id) DO UPDATE SET updated_at = now()"
    " RETURNING site_id, person_id, state, due_at, " + _OPEN.format(t="segment_state")
)

# The writer reads everything an evaluation needs in one pipeline: TOUCHED_LOCK,
# TOUCHED_LOAD, ACTIVE_VERSIONS, PERSONALIZATION, in that order (each its own snapshot).
#
# The commit's persons (%(q_site)s, %(q_person)s), and the persons merged into them
# whose state is still apart (folded into the survivor's, then deleted).
_TOUCHED = (
    "SELECT q.s, q.p FROM unnest(%(q_site)s::int[], %(q_person)s::bigint[]) AS q(s, p)"
    " UNION SELECT st.site_id, st.person_id"
    " FROM unnest(%(q_site)s::int[], %(q_person)s::bigint[]) AS q(s, p)"
    " JOIN persons pe ON pe.site_id = q.s AND pe.merged_into = q.p"
    " JOIN segment_state st ON st.site_id = pe.site_id AND st.person_id = pe.id"
    " WHERE %(merges)s"
)
# Their state rows, created if missing (sites with segments only) and locked in
# (site, person) order: two commits touching the same persons take their locks in one
# order. ``created``: the row is new (the person was never evaluated).
TOUCHED_LOCK = (
    "INSERT INTO segment_state (site_id, person_id)"
    f" SELECT t.s, t.p FROM ({_TOUCHED}) AS t(s, p) WHERE t.s IN ({_LIVE_SITES})"
    " ORDER BY t.s, t.p"
    " ON CONFLICT (site_id, person_id) DO UPDATE SET updated_at = now()"
    " RETURNING site_id, person_id, state::text, due_at, (xmax = 0) AS created"
)
# Then, in a statement of its own (so its snapshot is taken once the locks are held and
# sees what the previous holder committed): each locked person's open memberships,
# whom it was merged into, and its profile attributes (NULLs: no profile).
TOUCHED_LOAD = (
    "SELECT st.site_id, st.person_id, pe.merged_into, "
    + _OPEN.format(t="st")
    + "::text, p.person_id IS NOT NULL, "
    + _RULE_ATTRIBUTE_SQL
    + f" FROM ({_TOUCHED}) AS t(s, p)"
    " JOIN segment_state st ON st.site_id = t.s AND st.person_id = t.p"
    " LEFT JOIN persons pe ON pe.site_id = st.site_id AND pe.id = st.person_id"
    " LEFT JOIN person_profiles p ON p.site_id = st.site_id AND p.person_id = st.person_id"
)

# Everything an evaluation changes, in one statement: state and due times, exits, entries.
# States travel as one JSON array (one orjson call), matched to the other arrays by position.
WRITE = (
    "WITH u AS (SELECT u.site, u.person, j.state,"
    " 'epoch'::timestamptz + u.due_ms * interval '1 millisecond' AS due"
    " FROM unnest(%(s_site)b::int[], %(s_person)b::bigint[], %(s_due)b::bigint[])"
    " WITH ORDINALITY AS u(site, person, due_ms, n)"
    " JOIN jsonb_array_elements(%(s_state)s::jsonb) WITH ORDINALITY AS j(state, n) USING (n)),"
    " saved AS (UPDATE segment_state s SET state = u.state, due_at = u.due, updated_at = now()"
    " FROM u WHERE s.site_id = u.site AND s.person_id = u.person RETURNING 1),"
    " exited AS (UPDATE segment_memberships m SET exited_at = %(now)s, exit_reason = 'rule'"
    " FROM unnest(%(x_site)b::int[], %(x_id)b::bigint[]) AS x(site, id)"
    " WHERE m.site_id = x.site AND m.id = x.id AND m.exited_at IS NULL RETURNING 1)"
    " INSERT INTO segment_memberships (site_id, person_id, segment_key, version, entered_at)"
    " SELECT site, person, key, version, %(now)s FROM unnest(%(e_site)b::int[],"
    " %(e_person)b::bigint[], %(e_key)b::text[], %(e_version)b::int[])"
    " AS e(site, person, key, version)"
    " ON CONFLICT DO NOTHING RETURNING site_id, person_id, segment_key, version, id"
)


@dataclass(slots=True)
class _Person:
    site_id: int
    person_id: int
    state: State
    due_at: datetime | None
    # Open memberships: segment key -> (version, membership id).
    open: dict[str, tuple[int, int]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    # Evaluate every segment (the sweeper, a new or merged person, a due one); else only
    # the segments the new events can change (SiteSegments.affected).
    full: bool = True

    @classmethod
    def of(cls, row: Sequence[Any]) -> _Person:
        site_id, person_id, state, due_at, memberships = row
        return cls(site_id, person_id, state or {}, due_at, {k: (v, m) for k, v, m in memberships})


def _due(next_ms: int | None) -> datetime | None:
    return None if next_ms is None else datetime.fromtimestamp(next_ms / 1000, UTC)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


@dataclass(frozen=True, slots=True)
class PersonDecision:
    """One person's evaluation (:func:`decide`)."""

    state: State  # to save
    due_ms: int | None  # when to evaluate again without new events (epoch ms)
    verdicts: list[tuple[Segment, bool]]  # the segments evaluated: member or not
    current: list[str]  # the person's segments now (evaluated or kept)


def decide(
    site: SiteSegments,
    state: State,
    events: Iterable[Mapping[str, Any]],
    open_: Mapping[str, Any],
    due_ms: int | None,
    full: bool,
    profile: Mapping[str, Any] | None,
    now_ms: int,
) -> PersonDecision:
    """Add a person's new events to its state and evaluate (pure).

    ``full``: evaluate every segment (a new, merged or due person; the sweeper). Else
    only the segments whose leaves the events changed, and those testing the profile;
    the others keep their answers (``open_``: the person's open memberships by key),
    which change with time alone, not before ``due_ms`` (the kept due time, which the
    result's cannot be later than: an early due time only costs the sweeper a visit).
    Segments testing the profile are evaluated when the profile's digest kept in the
    state (``PROFILE_PRINT``) differs from ``profile``'s.
    ``state`` is the caller's to give away: the result may share and change its parts.
    """
    changed: set[str] = set()
    printed = state.get(PROFILE_PRINT)
    state = prune(state, site.index, now_ms) if full else dict(state)
    for event in sorted(events, key=lambda e: e["t"]):
        apply_event(state, site.index, event, now_ms, changed)
    if not full:
        # Only the leaves the events changed: the others' expired parts go at the next
        # full evaluation, at the latest when the person is due (or their caps hold them).
        state = prune(state, site.index, now_ms, changed)
    profile_print = site.profile_print(profile)
    if profile_print is None:
        state.pop(PROFILE_PRINT, None)
    else:
        state[PROFILE_PRINT] = profile_print
    positions: Sequence[int] = (
        range(len(site.segments)) if full else site.affected(changed, profile_print != printed)
    )
    next_ms = None if full else due_ms
    evaluated = {site.segments[i].key for i in positions}
    current = [s.key for s in site.segments if s.key in open_ and s.key not in evaluated]
    verdicts = []
    for i in positions:
        segment = site.segments[i]
        verdict = site.evaluators[i](state, profile, now_ms)
        next_ms = _min(next_ms, verdict.next_ms)
        verdicts.append((segment, verdict.member))
        if verdict.member:
            current.append(segment.key)
    return PersonDecision(state, next_ms, verdicts, current)


async def _evaluate_people(
    conn: psycopg.AsyncConnection[Any],
    sites: Mapping[int, SiteSegments],
    people: Sequence[_Person],
    now: datetime,
    on_changes: ChangesHook,
    profiles: Mapping[tuple[int, int], dict[str, Any]] | None = None,
) -> dict[tuple[int, int], list[str]]:
    """Apply events, evaluate, save state and memberships; the caller holds the locks.

    ``profiles``: the persons' rule attributes if the caller read them (else read here).
    Returns every evaluated person's current memberships (segment keys).
    """
    now_ms = epoch_ms(now)
    by_site: dict[int, list[_Person]] = defaultdict(list)
    for person in people:
        by_site[person.site_id].append(person)
    current: dict[tuple[int, int], list[str]] = {}
    exits: list[MembershipChange] = []
    states: list[State] = []
    saves: tuple[list[int], list[int], list[int | None]] = ([], [], [])
    entering: list[tuple[int, int, str, int]] = []
    webhooks: dict[tuple[int, str], tuple[str, ...]] = {}
    attributes: dict[tuple[int, int, str], dict[str, Any]] = {}
    for site_id, persons in sorted(by_site.items()):
        site = sites.get(site_id, SiteSegments(()))
        webhooks.update({(site_id, s.key): s.webhooks for s in site.segments})
        if profiles is None and site.uses_profile:
            found = await profile_attributes(conn, site_id, [p.person_id for p in persons])
            site_profiles: Mapping[tuple[int, int], dict[str, Any]] = {
                (site_id, p): a for p, a in found.items()
            }
        else:
            site_profiles = profiles or {}
        for person in persons:
            profile = site_profiles.get((site_id, person.person_id))
            decision = decide(
                site,
                person.state,
                person.events,
                person.open,
                None if person.full or person.due_at is None else epoch_ms(person.due_at),
                person.full,
                profile,
                now_ms,
            )
            state, due_ms, keys = decision.state, decision.due_ms, decision.current
            for segment, member in decision.verdicts:
                if segment.profile_fields and segment.webhooks:
                    attributes[(site_id, person.person_id, segment.key)] = {
                        name: (profile or {}).get(name) for name in segment.profile_fields
                    }
                if member:
                    if segment.key not in person.open:
                        entering.append((site_id, person.person_id, segment.key, segment.version))
                elif segment.key in person.open:
                    version, membership = person.open[segment.key]
                    reported = attributes.get((site_id, person.person_id, segment.key), {})
                    exits.append(
                        MembershipChange(site_id, person.person_id, segment.key, version,
                                         "exited", now, membership, segment.webhooks, reported)
                    )  # fmt: skip
            current[(site_id, person.person_id)] = keys
            states.append(state)
            saves[0].append(site_id)
            saves[1].append(person.person_id)
            saves[2].append(due_ms)
    if not states:
        return current
    async with conn.cursor() as cur:
        await cur.execute(
            WRITE,
            {
                "now": now,
                "s_site": saves[0],
                "s_person": saves[1],
                "s_due": saves[2],
                "s_state": Jsonb(states, dumps=orjson.dumps),
                "x_site": [c.site_id for c in exits],
                "x_id": [c.membership_id for c in exits],
                "e_site": [e[0] for e in entering],
                "e_person": [e[1] for e in entering],
                "e_key": [e[2] for e in entering],
                "e_version": [e[3] for e in entering],
            },
        )
        entries = [
            MembershipChange(
                s,
                p,
                k,
                v,
                "entered",
                now,
                m,
                webhooks.get((s, k), ()),
                attributes.get((s, p, k), {}),
            )
            for s, p, k, v, m in await cur.fetchall()
        ]
    if exits or entries:
        await on_changes(conn, [*exits, *entries])
    return current


async def _lock(
    conn: psycopg.AsyncConnection[Any], keys: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], _Person]:
    ordered = sorted(set(keys))
    async with conn.cursor() as cur:
        await cur.execute(LOCK_STATES, ([k[0] for k in ordered], [k[1] for k in ordered]))
        return {(r[0], r[1]): _Person.of(r) for r in await cur.fetchall()}


async def forget_persons(
    conn: psycopg.AsyncConnection[Any],
    site_id: int,
    persons: Sequence[int],
    on_removed: RemovedHook = on_persons_removed,
) -> int:
    """Consent withdrawal: delete the persons' memberships (history included) and state."""
    if not persons:
        return 0
    async with conn.cursor() as cur:
        await cur.execute(FORGET_MEMBERSHIPS, (site_id, list(persons)))
        removed = cur.rowcount
        await cur.execute(FORGET_STATE, (site_id, list(persons)))
    await on_removed(conn, site_id, persons)
    return removed


FORGET_MEMBERSHIPS = (
    "DELETE FROM segment_memberships WHERE site_id = %s AND person_id = ANY(%s::bigint[])"
)
FORGET_STATE = "DELETE FROM segment_state WHERE site_id = %s AND person_id = ANY(%s::bigint[])"


def forget_subject(
    conn: psycopg.Connection[Any],
    site_id: int,
    anonymous_ids: Sequence[str],
    user_ids: Sequence[str],
) -> list[int]:
    """A withdrawal recorded outside ingest (admin API, CLI): the persons of these ids
    (as stored) lose their memberships and window state, in the caller's transaction.

    Returns the persons. Their pending webhooks are cancelled too, as at ingest.
    """
    found = conn.execute(RESOLVE, _resolve_params(site_id, anonymous_ids, user_ids)).fetchall()
    persons = sorted({int(row[3]) for row in found})
    if persons:
        # The person's state row first: the writer and the sweeper hold it while evaluating.
        conn.execute(
            "SELECT 1 FROM segment_state WHERE site_id = %s AND person_id = ANY(%s::bigint[])"
            " ORDER BY person_id FOR UPDATE",
            (site_id, persons),
        )
        conn.execute(FORGET_MEMBERSHIPS, (site_id, persons))
        conn.execute(FORGET_STATE, (site_id, persons))
        outbox.cancel_for_persons_sync(conn, site_id, persons)
    return persons


async def _fold_merged(
    conn: psycopg.AsyncConnection[Any],
    locked: dict[tuple[int, int], _Person],
    sources: Sequence[tuple[int, int, int]],
) -> None:
    """Persons merged into others: their state joins the survivor's, their open
    memberships move to it (unless it has one already), their rows go."""
    for site_id, source, target in sources:
        merged_away = locked.pop((site_id, source), None)
        survivor = locked.get((site_id, target))
        if merged_away is None or survivor is None:
            continue
        survivor.state = merge_states(survivor.state, merged_away.state)
        survivor.full = True
        for key, membership in merged_away.open.items():
            survivor.open.setdefault(key, membership)  # moved below, unless it has one
        async with conn.cursor() as cur:
            await cur.execute(
                "UPDATE segment_memberships m SET person_id = %s"
                " WHERE m.site_id = %s AND m.person_id = %s AND m.exited_at IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM segment_memberships o WHERE o.site_id = m.site_id"
                "  AND o.person_id = %s AND o.segment_key = m.segment_key AND o.exited_at IS NULL)",
                (target, site_id, source, target),
            )
            await cur.execute(
                "UPDATE segment_memberships SET exited_at = now(), exit_reason = 'merged'"
                " WHERE site_id = %s AND person_id = %s AND exited_at IS NULL",
                (site_id, source),
            )
            await cur.execute(
                "DELETE FROM segment_state WHERE site_id = %s AND person_id = %s",
                (site_id, source),
            )


SEGMENTS_EXTRA = "segments"  # EventRow.extras: the row's person's browser-exposed segments


@dataclass(slots=True)
class _Loaded:
    """What the writer's one round trip read (SegmentsStep._load)."""

    sites: dict[int, SiteSegments]
    locked: dict[tuple[int, int], _Person]
    merged_into: dict[tuple[int, int], int]
    profiles: dict[tuple[int, int], dict[str, Any]]
    ledger: dict[tuple[str, int, str], bool]


class SegmentsStep:
    """Writer TxStep (after profiles): evaluate the persons the new rows belong to.

    Round trips in the usual commit: a pipeline to lock and read (its results, then its
    closing sync), one to write;
    a person is evaluated for the segments its new events can change (all of them if
    it is new, due or merged).
    """

    def __init__(
        self,
        definitions: Definitions | None = None,
        *,
        clock: Clock = utc_now,
        on_changes: ChangesHook = on_membership_changes,
        on_removed: RemovedHook = on_persons_removed,
    ) -> None:
        self.definitions = definitions or Definitions()
        self.clock = clock
        self.on_changes = on_changes
        self.on_removed = on_removed

    async def _load(
        self,
        conn: psycopg.AsyncConnection[Any],
        rows: Sequence[EventRow],
        keys: Sequence[tuple[int, int]],
    ) -> _Loaded:
        site_ids = sorted({r.site_id for r in rows})
        params: dict[str, Any] = {
            "sites": site_ids,
            "q_site": [k[0] for k in keys],
            "q_person": [k[1] for k in keys],
            "merges": any(r.user_id for r in rows),
        }
        # One pipeline (prepared statements; the results, then its closing sync).
        async with (
            conn.pipeline(),
            conn.cursor() as lock,
            conn.cursor() as load,
            conn.cursor() as versions,
            conn.cursor() as ledger,
        ):
            await lock.execute(TOUCHED_LOCK, params)
            await load.execute(TOUCHED_LOAD, params)
            await versions.execute(ACTIVE_VERSIONS, (site_ids,))
            await ledger.execute(PERSONALIZATION, params | _ledger_params(rows))
            locked_rows = await lock.fetchall()
            loaded_rows = await load.fetchall()
            version_rows = await versions.fetchall()
            ledger_rows = await ledger.fetchall()
        sites = await self.definitions.of_versions(conn, site_ids, version_rows)
        locked = {
            (s, p): _Person(s, p, orjson.loads(state), due_at, full=created)
            for s, p, state, due_at, created in locked_rows
        }
        merged_into: dict[tuple[int, int], int] = {}
        profiles: dict[tuple[int, int], dict[str, Any]] = {}
        for s, p, into, memberships, has_profile, *values in loaded_rows:
            person = locked.get((s, p))
            if person is not None:
                person.open = {k: (v, m) for k, v, m in orjson.loads(memberships)}
            if into is not None:
                merged_into[(s, p)] = into
            if has_profile:
                profiles[(s, p)] = _attributes(values)
        return _Loaded(
            sites,
            locked,
            merged_into,
            profiles,
            {(kind, s, v): bool(granted) for kind, s, v, granted in ledger_rows},
        )

    async def __call__(self, conn: psycopg.AsyncConnection[Any], rows: Sequence[EventRow]) -> None:
        # A site without segments costs this one query (the read below, a pipeline of four
        # prepared statements, costs about three times as much); the versions are read
        # again there, once the persons are locked.
        live = await self.definitions.active(conn, {r.site_id for r in rows})
        rows = [r for r in rows if r.site_id in live]
        if not rows:
            return
        persons = await persons_of(conn, rows)
        keys = sorted({(s, p) for (s, _), p in persons.items()})
        loaded = await self._load(conn, rows, keys)
        sites = loaded.sites
        rows = [r for r in rows if r.site_id in sites]
        if not rows:
            return
        now = self.clock()
        stop: dict[int, set[int]] = defaultdict(set)  # site -> persons not to evaluate
        for site_id in sorted({r.site_id for r in rows}):
            site_rows = [r for r in rows if r.site_id == site_id]
            stop[site_id] |= await self._withdrawn(conn, site_id, site_rows, persons, loaded.ledger)
        wanted: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            person = persons.get((row.site_id, row.message_id))
            if person is not None and person not in stop[row.site_id]:
                wanted[(row.site_id, person)].append(event_of(row, sites[row.site_id].index.fields))
        merged = [
            (s, p, into)
            for (s, p), into in loaded.merged_into.items()
            if (s, into) in wanted and (s, p) in loaded.locked
        ]
        gone = [(s, p) for s, persons_ in stop.items() for p in persons_]
        locked = loaded.locked
        profiles: Mapping[tuple[int, int], dict[str, Any]] = loaded.profiles
        unlocked = [k for k in (*wanted, *gone) if k not in locked]
        if unlocked:
            # The site's first segment was committed between the lock and the definitions.
            locked.update(await _lock(conn, unlocked))
            profiles = dict(profiles)
            for site_id in sorted({s for s, _ in unlocked}):
                ids = [p for s, p in unlocked if s == site_id]
                found = await profile_attributes(conn, site_id, ids)
                profiles.update({(site_id, p): a for p, a in found.items()})
        for site_id, persons_ in stop.items():
            if persons_:
                await forget_persons(conn, site_id, sorted(persons_), self.on_removed)
        await _fold_merged(conn, locked, merged)
        for key, events in wanted.items():
            evaluated = locked[key]
            evaluated.events = events
            site = sites[key[0]]
            if evaluated.due_at is not None and evaluated.due_at <= now:
                evaluated.full = True
            elif any(
                s.key in evaluated.open and evaluated.open[s.key][0] != s.version
                for s in site.segments
            ):
                evaluated.full = True  # a new version not yet evaluated for this person
        current = await _evaluate_people(
            conn, sites, [locked[k] for k in wanted], now, self.on_changes, profiles
        )
        for row in rows:
            browser = sites[row.site_id].browser_keys
            if browser:
                person = persons.get((row.site_id, row.message_id))
                keys_ = current.get((row.site_id, person), []) if person is not None else []
                row.extras[SEGMENTS_EXTRA] = sorted(k for k in keys_ if k in browser)

    async def _withdrawn(
        self,
        conn: psycopg.AsyncConnection[Any],
        site_id: int,
        rows: Sequence[EventRow],
        persons: Mapping[tuple[int, str], int],
        ledger: Mapping[tuple[str, int, str], bool],
    ) -> set[int]:
        """Persons of this commit who may not be evaluated (pipeline/segments/consent.py)."""
        out: set[int] = set()
        anonymous: set[str] = set()
        users: set[str] = set()
        for row in rows:
            entry = row.extras.get("consent")
            if isinstance(entry, LedgerEntry) and segment_consent.withdraws(entry):
                if entry.anonymous_id:
                    anonymous.add(entry.anonymous_id)
                if entry.user_id:
                    users.add(entry.user_id)
        if anonymous or users:
            async with conn.cursor() as cur:
                await cur.execute(
                    RESOLVE, _resolve_params(site_id, sorted(anonymous), sorted(users))
                )
                out |= {int(row[3]) for row in await cur.fetchall()}
        for row in rows:
            person = persons.get((row.site_id, row.message_id))
            if person is None:
                continue
            decisions = [
                ledger.get(("a", site_id, row.anonymous_id)) if row.anonymous_id else None,
                ledger.get(("u", site_id, row.user_id)) if row.user_id else None,
            ]
            said = False if False in decisions else True if True in decisions else None
            if not segment_consent.may_evaluate(segment_consent.claimed(row.context), said):
                out.add(person)
        return out


# --- the sweeper ----------------------------------------------------------------------------

DUE = (
    "SELECT site_id, person_id, state, due_at, "
    + _OPEN.format(t="segment_state")
    + " FROM segment_state WHERE due_at <= %s ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED"
)


async def sweep_once(
    conn: psycopg.AsyncConnection[Any],
    definitions: Definitions,
    now: datetime,
    *,
    limit: int = 500,
    on_changes: ChangesHook = on_membership_changes,
) -> dict[tuple[int, int], float]:
    """Evaluate persons whose due time passed (caller's transaction).

    Returns each swept (site_id, person_id) with its lag: seconds from due to now.
    """
    async with conn.cursor() as cur:
        await cur.execute(DUE, (now, limit))
        found = await cur.fetchall()
    if not found:
        return {}
    people = [_Person.of(row) for row in found]
    sites = await definitions.active(conn, {p.site_id for p in people})
    await _evaluate_people(conn, sites, people, now, on_changes)
    return {
        (p.site_id, p.person_id): max(0.0, (now - p.due_at).total_seconds())
        for p in people
        if p.due_at is not None
    }


class Sweeper:
    """One per collector process; any number run at once (SKIP LOCKED)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        definitions: Definitions,
        *,
        interval_s: float = 0.5,
        batch: int = 500,
        clock: Clock = utc_now,
        on_changes: ChangesHook = on_membership_changes,
        on_sweep: Callable[[Sequence[float]], None] | None = None,
    ) -> None:
        self._pool = pool
        self._definitions = definitions
        self._interval = interval_s
        self._batch = batch
        self._clock = clock
        self._on_changes = on_changes
        self._on_sweep = on_sweep
        self.swept = 0
        self.last_lag_s = 0.0

    async def run_once(self) -> int:
        async with self._pool.connection() as conn, conn.transaction():
            swept = await sweep_once(
                conn,
                self._definitions,
                self._clock(),
                limit=self._batch,
                on_changes=self._on_changes,
            )
        if swept:
            lags = list(swept.values())
            self.swept += len(lags)
            self.last_lag_s = max(lags)
            if self._on_sweep is not None:
                self._on_sweep(lags)
        return len(swept)

    async def run_forever(self) -> None:
        while True:
            try:
                done = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database may be away; the due rows stay and are swept later.
                log.warning("segment sweep failed", exc_info=True)
                done = 0
            if done < self._batch:
                await asyncio.sleep(self._interval)


# --- reads: the browser, the profile endpoint, dry runs -----------------------------------

EXPOSED_FOR_ANONYMOUS = (
    "SELECT DISTINCT m.segment_key FROM identities i"
    " JOIN persons p ON p.site_id = i.site_id AND p.id = i.person_id"
    " JOIN segment_memberships m ON m.site_id = i.site_id"
    "  AND m.person_id = COALESCE(p.merged_into, p.id) AND m.exited_at IS NULL"
    " JOIN segment_definitions d ON d.site_id = m.site_id AND d.key = m.segment_key"
    "  AND d.retired_at IS NULL AND d.expose = 'browser'"
    " WHERE i.site_id = %s AND i.kind = 'anonymous' AND i.value = ANY(%s::text[])"
    " ORDER BY 1"
)
HAS_BROWSER = (
    "SELECT EXISTS (SELECT 1 FROM segment_definitions WHERE site_id = %s"
    " AND retired_at IS NULL AND expose = 'browser')"
)

BROWSER_SITES_TTL_S = 5.0


async def exposed_segments(
    pool: AsyncConnectionPool,
    definitions: Definitions,
    site_id: int,
    stored_anonymous_ids: Sequence[str],
) -> list[str] | None:
    """The browser-exposed segments of an anonymous id's person; None if the site has none."""
    known = definitions.browser_sites.get(site_id)
    async with pool.connection() as conn, conn.cursor() as cur:
        if known is None or time.monotonic() - known[1] > BROWSER_SITES_TTL_S:
            await cur.execute(HAS_BROWSER, (site_id,))
            row = await cur.fetchone()
            known = (bool(row and row[0]), time.monotonic())
            definitions.browser_sites[site_id] = known
        if not known[0]:
            return None
        await cur.execute(EXPOSED_FOR_ANONYMOUS, (site_id, list(stored_anonymous_ids)))
        return [key for (key,) in await cur.fetchall()]


async def current_segments(
    conn: psycopg.AsyncConnection[Any], site_id: int, person_id: int
) -> list[str]:
    """A person's current segments, whatever their exposure (the secret-key profile)."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT m.segment_key FROM segment_memberships m"
            " JOIN segment_definitions d ON d.site_id = m.site_id AND d.key = m.segment_key"
            "  AND d.retired_at IS NULL"
            " WHERE m.site_id = %s AND m.person_id = %s AND m.exited_at IS NULL ORDER BY 1",
            (site_id, person_id),
        )
        return [key for (key,) in await cur.fetchall()]


_EVENT_NAMES = (*EVENT_KEYS, "timestamp")
_EVENT_SELECT = (
    "SELECT person_id, "
    + ", ".join(f'"{name}"' for name in _EVENT_NAMES)
    + ' FROM analytics.events WHERE site_id = %s AND "timestamp" >= %s AND person_id IS NOT NULL'
)


async def recompute(
    conn: psycopg.AsyncConnection[Any],
    site_id: int,
    segments: Sequence[Segment],
    now: datetime,
    *,
    since: datetime | None = None,
    person: int | None = None,
) -> dict[int, set[str]]:
    """Memberships at ``now`` computed from stored events alone (dry runs and tests).

    Reads every event of the site since ``since`` (default: as far back as the
    segments can see) through ``analytics.events``' person, builds window
    state with the same pure functions as ingest, and evaluates.
    """
    horizon = max((max_horizon_ms(s) for s in segments), default=0)
    start = since or now - timedelta(milliseconds=horizon)
    leaves = leaves_of(segments)
    now_ms = epoch_ms(now)
    states: dict[int, State] = defaultdict(dict)
    sql = _EVENT_SELECT + (" AND person_id = %s" if person is not None else "")
    params: tuple[Any, ...] = (site_id, start) + ((person,) if person is not None else ())
    async with conn.cursor(name="segments_recompute") as cur:
        cur.itersize = 5000
        await cur.execute(sql, params)
        async for record in cur:
            event = event_of(dict(zip(_EVENT_NAMES, record[1:], strict=True)))
            apply_event(states[int(record[0])], leaves, event, now_ms)
    profiles: dict[int, dict[str, Any]] = {}
    if any(s.uses_profile for s in segments) and states:
        profiles = await profile_attributes(conn, site_id, sorted(states))
    return {
        person_id: {
            s.key for s in segments if evaluate(s, state, profiles.get(person_id), now_ms).member
        }
        for person_id, state in states.items()
    }


def segments_for(
    conn: psycopg.Connection[Any], site_id: int, keys: Sequence[str] | None = None
) -> list[Segment]:
    """The site's active segments, compiled (all, or those named)."""
    rows = conn.execute(ACTIVE, ([site_id],)).fetchall()
    return [parse_rule(rule, version) for _, key, version, rule in rows if not keys or key in keys]


async def dry_run(
    conn: psycopg.AsyncConnection[Any],
    site_id: int,
    segment: Segment,
    days: int,
    person: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Who would match now, from the last ``days`` of events; nothing is saved."""
    now = now or utc_now()
    found = await recompute(
        conn, site_id, [segment], now, since=now - timedelta(days=days), person=person
    )
    members = sorted(p for p, keys in found.items() if segment.key in keys)
    return {
        "key": segment.key,
        "evaluated_at": now.isoformat(),
        "days": days,
        "persons_seen": len(found),
        "members": members,
    }
