"""Incremental memberships == a recomputation from ``events``, over generated streams.

Real HTTP into the real collector and PostgreSQL. Each example: a fresh site with
the documented example rules (plus short-window ones), a few visitors sending
generated events in shuffled batches, with retried batches, duplicate messages,
client clocks that are off (the collector corrects them: clock-skew rules) and
identify calls that merge visitors into one person. Then, at a chosen moment, the
incrementally kept window state is evaluated (the sweeper's path) and compared
per person with the oracle (tests/segments/oracle.py) reading the stored events.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from footfall.pipeline.segments.evaluate import epoch_ms, event_of
from footfall.pipeline.segments.rules import parse_rule
from footfall.storage import segments as store
from footfall.storage.segments import Definitions, sweep_once
from tests.segments import oracle
from tests.segments.support import define, example, message, send
from tests.support import ServerThread, collector_settings, make_site

RULES = [
    example("engaged-reader"),
    example("hesitant-buyer"),
    example("abandoned-cart"),
    example("tech-enthusiast"),
    example("mobile-pricing-to-signup"),
    {
        "key": "short-absence",
        "expose": "browser",
        "when": {
            "after": {"type": "page", "where": {"page_path": {"glob": "/product/*"}}},
            "absent": {"event": "Product Added"},
            "for": 20,
            "lookback": 40,
        },
    },
    # Sensitive to nearly every event, so a lost or doubled event shows.
    {"key": "pages-3", "when": {"count": {"type": "page"}, "within": "1h", "gte": 3}},
    {"key": "tracks-2-4", "when": {"count": {"type": "track"}, "within": "1h", "gte": 2, "lte": 4}},
    {"key": "paths-2", "when": {"distinct": {"field": "page_path"}, "within": "1h", "eq": 2}},
    {
        "key": "short-sequence",
        "when": {
            "sequence": [
                {"type": "page", "where": {"page_path": {"eq": "/pricing"}}},
                {"event": "Product Added"},
            ],
            "within": 15,
            "lookback": 30,
        },
    },
]
SEGMENTS = [parse_rule(r, 1) for r in RULES]

MOBILE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
DESKTOP = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0 Safari/537.36"
)
PATHS = [
    "/articles/a",
    "/articles/tech/x",
    "/articles/tech/y",
    "/articles/tech/z",
    "/product/1",
    "/pricing",
    "/",
]


@pytest.fixture(scope="module")
def quiet_server(database: str) -> Iterator[ServerThread]:
    """A collector without a sweeper: the test decides when time-based changes happen."""
    thread = ServerThread(collector_settings(database, segments_sweeper=False)).start()
    yield thread
    thread.stop()


def _message(visitor: str, kind: str, at: datetime, skew_s: int, detail: int) -> dict:
    path = PATHS[detail % len(PATHS)]
    if kind == "page":
        fields = {
            "context": {"page": {"path": path, "url": "https://shop.example" + path}},
            "properties": {"path": path},
        }
        out = message("page", visitor, **fields)
    elif kind == "hover":
        out = message(
            "track",
            visitor,
            event="Element Hovered",
            properties={"selector": "#subscribe", "dwell_ms": 600},
        )
    elif kind == "engaged":
        out = message(
            "track",
            visitor,
            event="Page Engaged",
            context={"page": {"path": path}},
            properties={"engaged_ms": detail * 997 % 90_000, "max_scroll_percent": 50},
        )
    elif kind == "identify":
        # Mostly one user: both visitors logging in as it merges their persons.
        out = message("identify", visitor, userId=f"user-{int(detail > 900)}")
    else:
        names = {"added": "Product Added", "order": "Order Completed", "signup": "Signed Up"}
        props = {"plan": ["pro", "free"][detail % 2]} if kind == "signup" else {"sku": "1"}
        out = message("track", visitor, event=names[kind], properties=props)
    # A client whose clock is off by skew_s: the collector corrects by sentAt.
    client_now = datetime.now(UTC) + timedelta(seconds=skew_s)
    out["timestamp"] = (at + timedelta(seconds=skew_s)).isoformat()
    out["sentAt"] = client_now.isoformat()
    return out


streams = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 1, 1, 2]),  # visitor
        st.sampled_from(
            ["page", "page", "hover", "engaged", "added", "order", "signup", "identify", "identify"]
        ),
        st.integers(0, 90),  # seconds before "now" the event happened
        st.integers(-3600, 3600),  # client clock skew
        st.integers(0, 1000),  # detail
    ),
    min_size=1,
    max_size=30,
)


async def _profiles(dsn: str, site_id: int, persons: list[int]) -> dict:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        return await store.profile_attributes(conn, site_id, persons)


def _recompute(dsn: str, site_id: int, now: datetime) -> dict[int, set[str]]:
    """The oracle: every stored event of each person, evaluated from scratch."""
    with psycopg.connect(dsn) as conn:
        records = conn.execute(
            "SELECT person_id, type, event, page_path, properties, timestamp"
            " FROM analytics.events WHERE site_id = %s AND person_id IS NOT NULL",
            (site_id,),
        ).fetchall()
        by_person: dict[int, list[dict]] = {}
        for person, kind, event, path, properties, timestamp in records:
            by_person.setdefault(int(person), []).append(
                event_of(
                    {
                        "type": kind,
                        "event": event,
                        "page_path": path,
                        "properties": properties,
                        "timestamp": timestamp,
                    }
                )
            )
    profiles = asyncio.run(_profiles(dsn, site_id, sorted(by_person)))
    now_ms = epoch_ms(now)
    return {
        person: {s.key for s in SEGMENTS if oracle.member(s, events, profiles.get(person), now_ms)}
        for person, events in by_person.items()
    }


def _incremental(dsn: str, site_id: int, now: datetime) -> dict[int, set[str]]:
    """The kept window state of every person, evaluated at ``now`` (the sweeper's path)."""

    async def sweep() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
            await conn.execute(
                "UPDATE segment_state SET due_at = %s WHERE site_id = %s",
                (now - timedelta(seconds=1), site_id),
            )
            await sweep_once(conn, Definitions(), now, limit=10_000)

    asyncio.run(sweep())
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT person_id, segment_key FROM segment_memberships"
            " WHERE site_id = %s AND exited_at IS NULL",
            (site_id,),
        ).fetchall()
    out: dict[int, set[str]] = {}
    for person, key in rows:
        out.setdefault(int(person), set()).add(key)
    return out


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stream=streams,
    seed=st.integers(0, 2**32),
    later_s=st.sampled_from([0, 25, 45, 130, 700, 3700]),
    logins=st.lists(st.integers(0, 90), max_size=2),
)
def test_incremental_memberships_equal_recomputation(
    quiet_server: ServerThread, database: str, stream, seed: int, later_s: int, logins
) -> None:
    rng = random.Random(seed)
    site_id, key = make_site(
        database, allowed_origins=["*"], settings={"allow_undeclared_events": True}
    )
    for rule in RULES:
        define(database, site_id, rule)
    visitors = [f"v{i}-{uuid.uuid4().hex[:8]}" for i in range(3)]
    # Visitors 0 and 1 logging in as one user: their persons merge.
    stream = stream + [(i, "identify", ago, 0, 0) for i, ago in enumerate(logins)]
    agents = [MOBILE if rng.random() < 0.5 else DESKTOP for _ in visitors]
    base = datetime.now(UTC)
    messages = [
        (v, _message(visitors[v], kind, base - timedelta(seconds=ago), skew, detail))
        for v, kind, ago, skew, detail in stream
    ]
    rng.shuffle(messages)  # out of order
    batches: list[tuple[int, list[dict]]] = []
    while messages:
        size = rng.randint(1, 4)
        part, messages = messages[:size], messages[size:]
        # One visitor per request, as a browser sends them.
        visitor = part[0][0]
        batch = [m for v, m in part if v == visitor]
        messages = [(v, m) for v, m in part if v != visitor] + messages
        if rng.random() < 0.2:
            batch.append(dict(batch[0]))  # the same message twice in one batch
        batches.append((visitor, batch))
    for visitor, batch in batches:
        sends = 2 if rng.random() < 0.25 else 1  # a retry after a lost answer
        for _ in range(sends):
            send(quiet_server.base_url, key, batch, user_agent=agents[visitor])
    now = datetime.now(UTC) + timedelta(seconds=later_s)
    incremental = _incremental(database, site_id, now)
    recomputed = {p: keys for p, keys in _recompute(database, site_id, now).items() if keys}
    assert incremental == recomputed
