"""Sites repository: create and list sites (CLI), and the collector's write-key cache."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Connection, insert, select, update

from footfall.pipeline.types import Site
from footfall.storage.outage import is_outage
from footfall.storage.tables import sites


def new_write_key() -> str:
    return "ffw_" + secrets.token_urlsafe(24)


# Server-side APIs (GET /v1/persons/{id}/profile) take the site's secret key; only its
# hash is stored (a random 256-bit key needs no salt or slow hash), so a database dump
# does not hand it out. ``footfall sites secret-key NAME`` sets (rotates) it.
SECRET_KEY_PREFIX = "ffsk_"  # noqa: S105 - a prefix, not a secret


def secret_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def rotate_secret_key(conn: Connection, site_id: int) -> str:
    """A new secret key for the site (the caller commits); the old one stops working."""
    key = SECRET_KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        update(sites).where(sites.c.id == site_id).values(secret_key_hash=secret_key_hash(key))
    )
    return key


async def site_by_secret_key(pool: AsyncConnectionPool, key: str) -> Site | None:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM sites WHERE secret_key_hash = %s", (secret_key_hash(key),))
        row = await cur.fetchone()
    return site_from_row(row) if row else None


def site_from_row(row: Any) -> Site:
    """A Site from a mapping of ``sites`` columns."""
    return Site(
        id=row["id"],
        name=row["name"],
        write_key=row["write_key"],
        allowed_origins=frozenset(row["allowed_origins"] or ()),
        consent_mode=row["consent_mode"],
        settings=dict(row["settings"] or {}),
    )


def create_site(
    conn: Connection,
    name: str,
    *,
    allowed_origins: list[str] | None = None,
    consent_mode: str = "implied",
    settings: dict[str, Any] | None = None,
    write_key: str | None = None,
) -> Site:
    """Insert a site (the caller commits) and return it with its new write key."""
    row = (
        conn.execute(
            insert(sites)
            .values(
                name=name,
                write_key=write_key or new_write_key(),
                allowed_origins=allowed_origins or [],
                consent_mode=consent_mode,
                settings=settings or {},
            )
            .returning(sites)
        )
        .mappings()
        .one()
    )
    return site_from_row(row)


def find_site_id(conn: psycopg.Connection[Any], name: str) -> int | None:
    """A site's id by its name (admin API and CLI), or None."""
    row = conn.execute("SELECT id FROM sites WHERE name = %s", (name,)).fetchone()
    return int(row[0]) if row else None


async def find_site_id_async(conn: psycopg.AsyncConnection[Any], name: str) -> int | None:
    """:func:`find_site_id` on an async connection."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT id FROM sites WHERE name = %s", (name,))
        row = await cur.fetchone()
    return int(row[0]) if row else None


def sites_named(conn: psycopg.Connection[Any], name: str | None) -> list[tuple[int, str]]:
    """(id, name) of the site called ``name``, or of every site when ``name`` is None."""
    rows = conn.execute(
        "SELECT id, name FROM sites WHERE %(name)s::text IS NULL OR name = %(name)s ORDER BY id",
        {"name": name},
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def site_settings(conn: psycopg.Connection[Any], site_id: int) -> tuple[str, dict[str, Any]]:
    """A site's consent mode and settings."""
    row = conn.execute(
        "SELECT consent_mode, settings FROM sites WHERE id = %s", (site_id,)
    ).fetchone()
    assert row is not None
    return str(row[0]), dict(row[1] or {})


def configure_site(
    conn: psycopg.Connection[Any],
    site_id: int,
    *,
    consent_mode: str | None = None,
    set_settings: dict[str, Any] | None = None,
    unset: Sequence[str] = (),
) -> tuple[str, dict[str, Any]]:
    """Change a site's consent mode and settings in the caller's transaction.

    Collectors pick the change up within their site-cache lifetime (30 s).
    """
    if consent_mode is not None:
        conn.execute("UPDATE sites SET consent_mode = %s WHERE id = %s", (consent_mode, site_id))
    if set_settings:
        conn.execute(
            "UPDATE sites SET settings = settings || %s WHERE id = %s",
            (Jsonb(set_settings), site_id),
        )
    for name in unset:
        conn.execute("UPDATE sites SET settings = settings - %s WHERE id = %s", (name, site_id))
    return site_settings(conn, site_id)


def list_sites(conn: Connection) -> list[Site]:
    return [site_from_row(r) for r in conn.execute(select(sites).order_by(sites.c.id)).mappings()]


def get_site_by_name(conn: Connection, name: str) -> Site | None:
    row = conn.execute(select(sites).where(sites.c.name == name)).mappings().one_or_none()
    return site_from_row(row) if row else None


class SiteCache:
    """Write key -> Site, re-read from the database at most every ``ttl_s`` per key.

    Bounded (least recently used keys go first). An unknown key is remembered as
    unknown for ``negative_ttl_s``, so key-guessing traffic costs one query per
    key and short while, never the cache's known keys. While the database is
    unavailable a known key keeps being served from memory (the writer then
    decides whether the request can be stored); the failed refresh is retried
    after ``negative_ttl_s``, so not every request waits for a connection.

    Also keeps the union of every site's allowed origins, which answers CORS
    preflights (they carry no write key), with the same outage rule.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        ttl_s: float = 30.0,
        *,
        negative_ttl_s: float = 5.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        self._max_keys = max_keys
        self._clock = clock
        # key -> (fresh until, site or None for unknown)
        self._by_key: OrderedDict[str, tuple[float, Site | None]] = OrderedDict()
        self._origins: tuple[float, frozenset[str]] | None = None

    def __len__(self) -> int:
        return len(self._by_key)

    async def by_write_key(self, write_key: str) -> Site | None:
        now = self._clock()
        cached = self._by_key.get(write_key)
        if cached is not None:
            self._by_key.move_to_end(write_key)
            if now < cached[0]:
                return cached[1]
        try:
            async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                await cur.execute("SELECT * FROM sites WHERE write_key = %s", (write_key,))
                row = await cur.fetchone()
        except Exception as exc:
            if cached is None or cached[1] is None or not is_outage(exc):
                raise  # an unknown key during an outage: 503 (app-level handler)
            self._by_key[write_key] = (now + self._negative_ttl, cached[1])
            return cached[1]
        site = site_from_row(row) if row else None
        self._by_key[write_key] = (now + (self._ttl if site else self._negative_ttl), site)
        self._by_key.move_to_end(write_key)
        while len(self._by_key) > self._max_keys:
            self._by_key.popitem(last=False)
        return site

    async def any_site_allows(self, origin: str) -> bool:
        now = self._clock()
        if self._origins is None or now >= self._origins[0]:
            try:
                async with self._pool.connection() as conn, conn.cursor() as cur:
                    await cur.execute("SELECT DISTINCT unnest(allowed_origins) FROM sites")
                    origins = frozenset(r[0] for r in await cur.fetchall())
            except Exception as exc:
                if self._origins is None or not is_outage(exc):
                    raise
                origins = self._origins[1]  # the last known set, while the database is down
                self._origins = (now + self._negative_ttl, origins)
            else:
                self._origins = (now + self._ttl, origins)
        allowed = self._origins[1]
        return "*" in allowed or origin in allowed


DEMO_SITE = "demo"


def ensure_demo_site(conn: psycopg.Connection[Any]) -> str:
    """The demo site's write key, creating the site the first time (the caller commits).

    Any origin is allowed: the demo page may be opened under any host name.
    """
    conn.execute(
        "INSERT INTO sites (name, write_key, allowed_origins) VALUES (%s, %s, %s)"
        " ON CONFLICT (name) DO NOTHING",
        (DEMO_SITE, new_write_key(), ["*"]),
    )
    row = conn.execute("SELECT write_key FROM sites WHERE name = %s", (DEMO_SITE,)).fetchone()
    assert row is not None
    return str(row[0])


async def demo_write_key(pool: AsyncConnectionPool) -> str | None:
    """The demo site's write key, if the site exists (``footfall serve`` created it)."""
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute("SELECT write_key FROM sites WHERE name = %s", (DEMO_SITE,))
        row = await cur.fetchone()
    return str(row[0]) if row else None


async def recent_events(
    pool: AsyncConnectionPool, site_name: str, limit: int
) -> list[dict[str, Any]]:
    """The newest stored events of a site (the demo page shows them)."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT e.received_at, e.timestamp, e.type, e.event, e.anonymous_id, e.session_id,"
            " e.page_path, e.properties FROM events e JOIN sites s ON s.id = e.site_id"
            " WHERE s.name = %s ORDER BY e.received_at DESC, e.timestamp DESC LIMIT %s",
            (site_name, limit),
        )
        return list(await cur.fetchall())


async def database_revision(pool: AsyncConnectionPool) -> str | None:
    """The Alembic revision the database is at (readiness checks it against head)."""
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute("SELECT version_num FROM alembic_version")
        row = await cur.fetchone()
    return str(row[0]) if row else None
