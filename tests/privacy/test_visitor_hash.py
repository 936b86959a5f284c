"""Cookieless visitor hash (consent mode "anonymous"): same visitor same day -> same hash; next
day -> different; a visit across midnight stays one visitor; old salts are deleted.

The clock is the request's ``received_at`` and the salt day: both are passed in, nothing sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from footfall.app import build_pipeline, build_tx_steps
from footfall.pipeline.privacy import SaltRing, visitor_hash
from footfall.pipeline.types import RequestContext, Site
from footfall.storage.salts import rotate
from footfall.storage.writer import store_messages
from tests.support import collector_settings, make_site, query, scratch_database

DAY1 = date(2026, 3, 14)
DAY2 = DAY1 + timedelta(days=1)
SITE = Site(id=1, name="anon", write_key="k", consent_mode="anonymous")
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"


def _at(day: date, hh: int, mm: int) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC)


def _page() -> dict:
    return {"type": "page", "messageId": str(uuid.uuid4()), "anonymousId": "cookie-1"}


def _hash_of(pipeline, site: Site, at: datetime, ip: str = "192.0.2.10", ua: str = UA) -> str:
    ctx = RequestContext(site=site, received_at=at, ip=ip, user_agent=ua)
    plan = pipeline.run([_page()], ctx)
    (row,) = plan.rows
    assert row.anonymous_id is None and row.ip_network is None
    return row.visitor_hash


def test_same_day_same_hash_next_day_different() -> None:
    ring = SaltRing()
    ring.set(DAY1, {DAY1: b"a" * 32})
    pipeline = build_pipeline(collector_settings("postgresql://unused"), salts=ring)
    morning = _hash_of(pipeline, SITE, _at(DAY1, 9, 0))
    assert _hash_of(pipeline, SITE, _at(DAY1, 21, 30)) == morning
    assert morning == visitor_hash(b"a" * 32, SITE.id, "192.0.2.10", UA)  # keyed by the salt
    assert _hash_of(pipeline, SITE, _at(DAY1, 9, 0), ip="192.0.2.11") != morning
    assert _hash_of(pipeline, SITE, _at(DAY1, 9, 0), ua="curl/8") != morning
    other_site = Site(id=2, name="b", write_key="k2", consent_mode="anonymous")
    assert _hash_of(pipeline, other_site, _at(DAY1, 9, 0)) != morning

    ring.set(DAY2, {DAY1: b"a" * 32, DAY2: b"b" * 32})
    next_day = _hash_of(pipeline, SITE, _at(DAY2, 9, 0))
    assert next_day != morning
    # A request received just before midnight but processed after the switch keeps its day.
    assert _hash_of(pipeline, SITE, _at(DAY1, 23, 59)) == morning


@pytest.fixture
def scratch(admin_dsn: str) -> Iterator[str]:
    with scratch_database(admin_dsn) as dsn:
        yield dsn


def test_visit_across_midnight_stays_one_visitor(scratch: str) -> None:
    site_id, key = make_site(scratch, consent_mode="anonymous")
    site = Site(id=site_id, name="s", write_key=key, consent_mode="anonymous")
    settings = collector_settings(scratch)
    ring = SaltRing()
    pipeline = build_pipeline(settings, salts=ring)
    steps = build_tx_steps(settings)

    async def scenario() -> dict[str, str]:
        stored: dict[str, str] = {}
        async with await psycopg.AsyncConnection.connect(scratch) as conn:

            async def visit(name: str, at: datetime, ua: str = UA) -> None:
                ctx = RequestContext(site=site, received_at=at, ip="198.51.100.4", user_agent=ua)
                plan = pipeline.run([_page()], ctx)
                async with conn.transaction():
                    await store_messages(conn, plan.rows, [], steps)
                stored[name] = plan.rows[0].visitor_hash

            ring.set(DAY1, await rotate(conn, DAY1))
            await visit("night owl 23:50", _at(DAY1, 23, 50))
            await visit("early bird 22:00", _at(DAY1, 22, 0), ua="early/1")
            ring.set(DAY2, await rotate(conn, DAY2))
            await visit("night owl 00:10", _at(DAY2, 0, 10))
            await visit("night owl 00:35", _at(DAY2, 0, 35))
            await visit("early bird 00:50", _at(DAY2, 0, 50), ua="early/1")
            await visit("newcomer 00:10", _at(DAY2, 0, 10), ua="new/1")
            await visit("night owl 09:00", _at(DAY2, 9, 0))
            ring.set(DAY2 + timedelta(days=1), await rotate(conn, DAY2 + timedelta(days=1)))
        return stored

    stored = asyncio.run(scenario())
    # What the rows hold is what the visitor is counted by.
    rows = {
        r["message_id"]: r["visitor_hash"]
        for r in query(scratch, "SELECT message_id, visitor_hash FROM events")
    }
    assert set(rows.values()) == set(stored.values())
    owl = stored["night owl 23:50"]
    assert stored["night owl 00:10"] == owl  # continuity across midnight
    assert stored["night owl 00:35"] == owl  # ... for as long as the visit goes on
    assert stored["night owl 09:00"] != owl  # a new visit the next morning: a new hash
    assert stored["early bird 00:50"] != stored["early bird 22:00"]  # idle > 30 min
    assert stored["newcomer 00:10"] not in (owl, stored["early bird 22:00"])
    # Only today's and yesterday's salts exist.
    days = [r["day"] for r in query(scratch, "SELECT day FROM visitor_salts ORDER BY day")]
    assert days == [DAY2, DAY2 + timedelta(days=1)]


def test_visit_across_midnight_in_one_commit(scratch: str) -> None:
    """Requests from both sides of midnight in one group commit: the rows are written
    with their final hash (no UPDATE), each continuing the visit the one before it did."""
    site_id, key = make_site(scratch, consent_mode="anonymous")
    site = Site(id=site_id, name="s", write_key=key, consent_mode="anonymous")
    settings = collector_settings(scratch)
    ring = SaltRing()
    pipeline = build_pipeline(settings, salts=ring)
    steps = build_tx_steps(settings)

    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(scratch) as conn:
            await rotate(conn, DAY1)
            ring.set(DAY2, await rotate(conn, DAY2))
            rows = []
            for at in (_at(DAY1, 23, 50), _at(DAY2, 0, 10), _at(DAY2, 0, 35), _at(DAY2, 1, 30)):
                ctx = RequestContext(site=site, received_at=at, ip="198.51.100.4", user_agent=UA)
                rows += pipeline.run([_page()], ctx).rows
            async with conn.transaction():
                await store_messages(conn, rows, [], steps)

    asyncio.run(scenario())
    stored = [
        r["visitor_hash"]
        for r in query(
            scratch,
            "SELECT visitor_hash FROM events WHERE site_id = %s ORDER BY received_at",
            (site_id,),
        )
    ]
    assert stored[0] == stored[1] == stored[2]  # 00:35 goes on with the visit 00:10 continued
    assert stored[3] != stored[0]  # 55 minutes later: a new visit, today's hash
