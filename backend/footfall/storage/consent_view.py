"""The consent ledger as each collector process sees it: answers from memory, kept current
by LISTEN/NOTIFY, exact across processes and hosts.

What it answers is what :func:`footfall.storage.consent.load_ledger` answers
(the latest analytics decision of each anonymousId and userId of a batch, and
whether any of them was erased with suppression), without a query when the
batch's ids are held.

**Notifications.** Triggers on ``consent_log`` and ``privacy_suppressions``
(migration ``20261202_0100``) NOTIFY channel :data:`CHANNEL` with
``<site_id>:<a|u|s>:<stored id>`` for every row inserted or deleted, and ``*``
for a TRUNCATE: whoever writes (the ingest writer, the admin API, the CLI,
erasure, someone in psql) notifies, and only if the transaction commits. A
process LISTENs on a connection of its own; a notification drops the entries
of the ids it names (each entry knows the stored forms it was looked up by,
under every configured key, and its suppression hashes).

**The cache.** Entries per (site, raw id), positive and negative (an id with no
decision is cached as such), at most ``max_entries`` (least recently used go
first). A batch's ids that are not held are looked up with one query (the
query of ``load_ledger``, for those ids only) and then held.

**Exactness across processes (the barrier).** NOTIFY is delivered
asynchronously: collector A commits a withdrawal and answers; the visitor's
next request reaches collector B a millisecond later, possibly before B has
read the notification. So before answering from memory, a request waits for
one round trip on the listening connection that was *sent after the request
arrived*. PostgreSQL sends a listening session every notification of a
transaction that committed before that session's query, ahead of the query's
answer (the listening backend processes pending notifications before its
ReadyForQuery; the committing backend signalled it before its own client
learnt of the commit). A withdrawal answered anywhere before the request
arrived has therefore been applied to the view when the round trip returns,
and the request reads the view after that. A batch none of whose ids the view
holds skips the round trip: its query, sent after the request arrived, reads
every earlier commit. Requests arriving while a round trip is in flight share
the next one, so under load one round trip (a ``SELECT pg_backend_pid()`` on
an idle autocommit connection: no pool checkout, no transaction; the pid
proves the session is still the listening one) serves many requests; when
idle, a round trip every :data:`IDLE_S` reads what arrived and notices a lost
connection. The round trip is the price of exactness: without it, B could
answer from memory in the window (sub-millisecond; longer under load)
between A's commit and B reading the notification.

**The race of a look-up with a decision.** A look-up's query may start before a
decision commits and its answer come back after the decision's notification
was processed: holding that answer would keep the old decision. So a look-up
registers the ids it queries before sending the query; a notification naming
one of them, processed while the query is out, marks that id, and a marked id's
answer is used for this request only (the decision was concurrent with it) and
not held. A notification processed before registration is of a commit that
precedes the query's snapshot, so the answer already includes it.

**Reconnects.** Notifications sent while the listener was away are lost, so
every (re)connect drops the whole view once LISTEN is in place and bumps an
epoch: a look-up that started in another epoch is not held. While the listener
is down — or the database has no notifying triggers (an older schema) — every
request queries the ledger as before (``load_ledger``); exact, slower. The
listener reconnects with a backoff of up to :data:`RECONNECT_MAX_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from footfall.pipeline.consent import ConsentDecision, LedgerView
from footfall.pipeline.privacy import Keyring
from footfall.storage.consent import StoredIds, batch_ids, query_ledger, stored_ids

log = logging.getLogger(__name__)

CHANNEL = "footfall_consent"
APPLICATION_NAME = "footfall-consent-view"
MAX_ENTRIES = 20_000  # ids held per process (about 0.5 kB each)
IDLE_S = 1.0  # a round trip this often when no request asks for one
ROUND_TIMEOUT_S = 5.0  # a round trip slower than this: the connection is dropped
RECONNECT_MAX_S = 5.0
NO_TRIGGERS_RETRY_S = 30.0

# The triggers of migration 20261202_0100: without them nothing would be invalidated.
TRIGGERS = """
SELECT count(*), pg_backend_pid() FROM pg_trigger WHERE tgenabled <> 'D' AND (tgrelid, tgname) IN (
  (to_regclass('consent_log'), 'consent_log_notify'),
  (to_regclass('privacy_suppressions'), 'privacy_suppressions_notify'))
"""
# The round trip; the pid proves the session is still the one that LISTENs (behind a
# pooler in transaction mode it would not be, and notifications would go elsewhere).
SYNC = "SELECT pg_backend_pid()"

# (site_id, "a" | "u", raw id): one cached answer.
Key = tuple[int, str, str]
# (site_id, "a" | "u" | "s", stored id or suppression hash): what a notification names.
Tag = tuple[int, str, str]
Query = Callable[[AsyncConnectionPool, int, StoredIds], Awaitable[LedgerView]]


class NotASession(Exception):
    """The listening connection is not one PostgreSQL session (it would miss notifications)."""


@dataclass(slots=True)
class _Entry:
    decision: ConsentDecision | None
    suppressed: bool
    tags: tuple[Tag, ...]


@dataclass(slots=True)
class _Round:
    """One round trip on the listening connection, awaited by the requests that asked for it."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    ok: bool = False


@dataclass(eq=False, slots=True)
class _Lookup:
    """A query in flight: the ids it will hold, and those a notification named meanwhile."""

    site_id: int
    tags: dict[Tag, Key]
    epoch: int
    dirty: set[Key] = field(default_factory=set)
    all_dirty: bool = False


def _tags(site_id: int, ids: StoredIds) -> tuple[dict[Tag, Key], set[Key]]:
    """Each stored form (and suppression hash) of the looked-up ids -> its cache key; and
    the keys sharing a stored form with another key (never held: one tag, one key)."""
    tags: dict[Tag, Key] = {}
    shared: set[Key] = set()

    def add(tag: Tag, key: Key) -> None:
        known = tags.setdefault(tag, key)
        if known != key:
            shared.update((known, key))

    for stored, raws in ids.anonymous.items():
        for raw in raws:
            add((site_id, "a", stored), (site_id, "a", raw))
    for stored, raw in ids.users.items():
        add((site_id, "u", stored), (site_id, "u", raw))
    for hashed, (kind, raw) in ids.suppressed.items():
        add((site_id, "s", hashed), (site_id, kind, raw))
    return tags, shared


class ConsentView:
    """The ledger's answers for this process (see the module docstring); one per app."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        dsn: str,
        keyring: Keyring,
        *,
        max_entries: int = MAX_ENTRIES,
        query: Query = query_ledger,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._keyring = keyring
        self._max_entries = max_entries
        self._query = query
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._by_tag: dict[Tag, Key] = {}
        self._inflight: set[_Lookup] = set()
        self._live = False
        self._epoch = 0
        self._next: _Round | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener_pid: int | None = None
        # Counters (tests, benchmarks): ids answered from memory / by a query, requests
        # that queried everything (listener down), round trips, ids dropped by notifications.
        self.hits = 0
        self.misses = 0
        self.fallbacks = 0
        self.rounds = 0
        self.invalidated = 0

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="footfall-consent-view")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._go_down()

    @property
    def live(self) -> bool:
        """Whether answers come from memory (the listener is connected and LISTENing)."""
        return self._live

    @property
    def epoch(self) -> int:
        """Bumped whenever the listener connects or is lost (the view was dropped)."""
        return self._epoch

    @property
    def listener_pid(self) -> int | None:
        """The PostgreSQL backend of the listening connection (None while down)."""
        return self._listener_pid

    def __len__(self) -> int:
        return len(self._entries)

    # --- answers ------------------------------------------------------------------------

    async def ledger(self, site_id: int, messages: Iterable[Any]) -> LedgerView:
        """What ``load_ledger`` answers for the batch, from memory where the view holds it."""
        anonymous_ids, user_ids = batch_ids(messages)
        if not anonymous_ids and not user_ids:
            return LedgerView()
        entries = self._entries
        held = any((site_id, "a", a) in entries for a in anonymous_ids) or any(
            (site_id, "u", u) in entries for u in user_ids
        )
        # A held answer may be stale until the round trip has brought every change
        # committed before now; ids not held are queried, and a query sent after now
        # reads those changes anyway.
        if not self._live or (held and not await self.sync()):
            self.fallbacks += 1
            return await self._query(
                self._pool, site_id, stored_ids(anonymous_ids, user_ids, self._keyring)
            )
        # From here to the registration of the misses there is no await.
        view = LedgerView()
        missing_anonymous = [a for a in anonymous_ids if not self._answer(view, site_id, "a", a)]
        missing_users = [u for u in user_ids if not self._answer(view, site_id, "u", u)]
        if not missing_anonymous and not missing_users:
            return view
        self.misses += len(missing_anonymous) + len(missing_users)
        ids = stored_ids(missing_anonymous, missing_users, self._keyring)
        tags, shared = _tags(site_id, ids)
        lookup = _Lookup(site_id, tags, self._epoch, dirty=shared)
        self._inflight.add(lookup)
        try:
            found = await self._query(self._pool, site_id, ids)
        finally:
            self._inflight.discard(lookup)
        self._hold(lookup, found, missing_anonymous, missing_users)
        view.by_anonymous_id.update(found.by_anonymous_id)
        view.by_user_id.update(found.by_user_id)
        view.suppressed_anonymous_ids |= found.suppressed_anonymous_ids
        view.suppressed_user_ids |= found.suppressed_user_ids
        return view

    def _answer(self, view: LedgerView, site_id: int, kind: str, raw: str) -> bool:
        key = (site_id, kind, raw)
        entry = self._entries.get(key)
        if entry is None:
            return False
        self._entries.move_to_end(key)
        self.hits += 1
        if kind == "a":
            if entry.decision is not None:
                view.by_anonymous_id[raw] = entry.decision
            if entry.suppressed:
                view.suppressed_anonymous_ids.add(raw)
        else:
            if entry.decision is not None:
                view.by_user_id[raw] = entry.decision
            if entry.suppressed:
                view.suppressed_user_ids.add(raw)
        return True

    def _hold(
        self, lookup: _Lookup, found: LedgerView, anonymous_ids: list[str], user_ids: list[str]
    ) -> None:
        """Keep a query's answers, unless a notification may have made them stale."""
        if not self._live or lookup.epoch != self._epoch or lookup.all_dirty:
            return
        tags_of: dict[Key, list[Tag]] = {}
        for tag, key in lookup.tags.items():
            tags_of.setdefault(key, []).append(tag)
        site = lookup.site_id
        for kind, raws, decisions, suppressed in (
            ("a", anonymous_ids, found.by_anonymous_id, found.suppressed_anonymous_ids),
            ("u", user_ids, found.by_user_id, found.suppressed_user_ids),
        ):
            for raw in raws:
                key = (site, kind, raw)
                tags = tags_of.get(key, [])
                if key in lookup.dirty or key in self._entries:
                    continue
                if any(self._by_tag.get(tag, key) != key for tag in tags):
                    continue  # a stored form shared with another raw id: not held
                self._entries[key] = _Entry(decisions.get(raw), raw in suppressed, tuple(tags))
                for tag in tags:
                    self._by_tag[tag] = key
        while len(self._entries) > self._max_entries:
            _, entry = self._entries.popitem(last=False)
            for tag in entry.tags:
                self._by_tag.pop(tag, None)

    # --- invalidation -------------------------------------------------------------------

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.invalidated += 1
            for tag in entry.tags:
                self._by_tag.pop(tag, None)

    def _drop_all(self, site_id: int | None = None) -> None:
        if site_id is None:
            self.invalidated += len(self._entries)
            self._entries.clear()
            self._by_tag.clear()
        else:
            for key in [k for k in self._entries if k[0] == site_id]:
                self._drop(key)
        for lookup in self._inflight:
            if site_id is None or lookup.site_id == site_id:
                lookup.all_dirty = True

    def _on_notify(self, notify: psycopg.Notify) -> None:
        """A change committed: drop what it names (called by psycopg as it reads)."""
        try:
            self._apply(notify.payload)
        except Exception:  # a payload not of ours: forget everything rather than guess
            log.exception("consent view: unreadable notification; the view is dropped")
            self._drop_all()

    def _apply(self, payload: str) -> None:
        if payload == "*":
            self._drop_all()
            return
        site, kind, subject = payload.split(":", 2)
        if kind == "*":
            self._drop_all(int(site))
            return
        if kind not in ("a", "u", "s"):
            raise ValueError(f"unknown kind {kind!r}")
        tag = (int(site), kind, subject)
        key = self._by_tag.get(tag)
        if key is not None:
            self._drop(key)
        for lookup in self._inflight:
            marked = lookup.tags.get(tag)
            if marked is not None:
                lookup.dirty.add(marked)

    # --- the listener -------------------------------------------------------------------

    async def sync(self) -> bool:
        """Wait for a round trip on the listening connection sent after this call: every
        change committed before the call has then been applied. False if the listener is
        down (or goes down meanwhile): the caller must query the ledger."""
        if not self._live:
            return False
        round_ = self._next
        if round_ is None:
            round_ = self._next = _Round()
            self._wake.set()
        await round_.done.wait()
        return round_.ok

    def _go_live(self) -> None:
        self._epoch += 1
        self._drop_all()
        self._live = True

    def _go_down(self) -> None:
        if self._live:
            self._epoch += 1
        self._live = False
        self._listener_pid = None
        self._drop_all()
        round_, self._next = self._next, None
        if round_ is not None:
            round_.done.set()  # not ok: its requests query the ledger

    async def _listen_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, connect_timeout=5, application_name=APPLICATION_NAME
                ) as conn:
                    conn.add_notify_handler(self._on_notify)
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    row = await (await conn.execute(TRIGGERS)).fetchone()
                    if row is None or row[0] != 2:
                        log.warning(
                            "consent view: the database does not notify ledger changes"
                            " (migration 20261202_0100 missing?); every request queries the ledger"
                        )
                        await asyncio.sleep(NO_TRIGGERS_RETRY_S)
                        continue
                    self._listener_pid = row[1]
                    self._go_live()
                    log.info("consent view: listening (epoch %d)", self._epoch)
                    delay = 0.5
                    await self._serve(conn)
            except NotASession as exc:
                log.error("consent view: %s; every request queries the ledger", exc)
                await asyncio.sleep(NO_TRIGGERS_RETRY_S)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.warning(
                    "consent view: listener connection lost (%s); requests query the ledger"
                    " until it is back",
                    type(exc).__name__,
                )
            except Exception:
                log.exception("consent view: listener failed; retrying")
            finally:
                self._go_down()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _serve(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Round trips: when a request asks for one, else every :data:`IDLE_S`."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_S):
                    await self._wake.wait()
            self._wake.clear()
            round_, self._next = self._next, None
            try:
                async with asyncio.timeout(ROUND_TIMEOUT_S):
                    # Notifications come first, to _on_notify.
                    row = await (await conn.execute(SYNC)).fetchone()
                if row is None or row[0] != self._listener_pid:
                    raise NotASession(
                        "the listening connection changed backends (a pooler in transaction"
                        " mode?): the consent view needs a session of its own"
                    )
            except BaseException:
                if round_ is not None:
                    round_.done.set()
                raise
            self.rounds += 1
            if round_ is not None:
                round_.ok = True
                round_.done.set()
