"""Statements and round trips of one group commit, counted on the wire (a count, not a time).

The writer's connection is traced by libpq (every protocol message the client
sends and receives); a round trip is the client sending and then waiting for
the server's answer. A 20-message tracker request alone in its group commit,
with the real transaction steps, must not take more than the figures below:
the per-commit cost that bounds ingest (issue 12). Fewer is welcome: lower
the figures with the change that earns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import pq

from footfall.app import build_pipeline, build_tx_steps
from footfall.pipeline.types import RequestContext, Site
from footfall.storage.engine import create_pool
from footfall.storage.writer import Writer
from tests.support import collector_settings, make_site

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

# (statements, round trips) of one commit at most. Before issue 12's writer
# work the typical request took 12 statements in 13 round trips (a pool check,
# BEGIN, event_ids, COPY (2 round trips), identity, sessions, profiles' lock,
# persons and 2 upserts, segments' definitions, COMMIT). Now: [BEGIN +
# event_ids + failed_events], [identity: shared lock + ids seen alone +
# persons], the sessions upsert, COPY (2), profiles (2 upserts: the identity
# step's shared lock covers them), segments' definitions (the site has none), COMMIT.
TYPICAL = (11, 9)  # a known visitor with a session id (the tracker)
NO_SESSION = (13, 10)  # no session id: + [idle-rule locks + recent sessions] (was 15 / 16)
# A known user on their known device: identity reads the ids before the lock
# (are its links already applied?), then [lock + persons] (was 13 / 14).
LOGGED_IN = (11, 10)
DUPLICATES = (3, 2)  # all stored already: [BEGIN + event_ids], COMMIT (was 4 / 4)


@dataclass
class Wire:
    statements: int = 0
    round_trips: int = 0


def _count(trace: str) -> Wire:
    """Statements sent (Query, Execute) and round trips (client messages, then the server's)."""
    wire = Wire()
    previous = None
    for line in trace.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0] not in ("F", "B"):
            continue  # a message's text spanning lines
        direction, kind = parts[0], parts[2].split()[0]
        if direction == "F" and kind in ("Query", "Execute"):
            wire.statements += 1
        if direction == "B" and previous == "F":
            wire.round_trips += 1
        previous = direction
    return wire


class Traced:
    """The writer's connection, opened by the test so that it can trace it (libpq)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        self.conn = await psycopg.AsyncConnection.connect(self.dsn)
        return self.conn

    @contextlib.contextmanager
    def tracing(self) -> Iterator[Wire]:
        """Count what the connection sends and receives inside the block."""
        assert self.conn is not None
        wire = Wire()
        with tempfile.TemporaryFile() as file:
            # libpq writes through its own stream on a copy of the descriptor,
            # flushed and closed by untrace().
            self.conn.pgconn.trace(os.dup(file.fileno()))
            self.conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            try:
                yield wire
            finally:
                self.conn.pgconn.untrace()
            file.seek(0)
            counted = _count(file.read().decode(errors="replace"))
        wire.statements, wire.round_trips = counted.statements, counted.round_trips


def _messages(visitor: str, session: bool, user: bool = False) -> list[dict[str, Any]]:
    """What footfall.js sends: page views and clicks of one visitor."""
    out: list[dict[str, Any]] = []
    for i in range(20):
        context: dict[str, Any] = {
            "page": {"path": "/p", "url": "https://shop.example/p", "title": "P"},
            "userAgent": UA,
        }
        if session:
            context["sessionId"] = "s-" + visitor
        message: dict[str, Any] = {
            "messageId": str(uuid.uuid4()),
            "anonymousId": "a-" + visitor,
            "context": context,
        }
        if user:
            message["userId"] = "u-" + visitor
        if i % 5 == 0:
            message.update(type="page", properties={"path": "/p"})
        else:
            message.update(
                type="track", event="Element Clicked", properties={"selector": "a", "tag": "a"}
            )
        out.append(message)
    return out


def _measure(dsn: str) -> dict[str, Wire]:
    site_id, key = make_site(dsn)
    site = Site(id=site_id, name="s", write_key=key)
    settings = collector_settings(dsn)
    pipeline = build_pipeline(settings)
    traced = Traced(dsn)

    async def run() -> dict[str, Wire]:
        pool = create_pool(dsn, settings)
        writer = Writer(pool, linger_ms=0, steps=build_tx_steps(settings), connect=traced.connect)
        writer.start()
        try:

            async def send(messages: list[dict[str, Any]]) -> Wire:
                ctx = RequestContext(
                    site=site, received_at=datetime.now(UTC), ip="192.0.2.7", user_agent=UA
                )
                plan = pipeline.run(messages, ctx)
                assert len(plan.rows) == 20, plan.failures
                if traced.conn is None:
                    await writer.write(plan.rows, plan.failures)
                    return Wire()
                with traced.tracing() as wire:
                    await writer.write(plan.rows, plan.failures)
                return wire

            async def known_visitor(session: bool, user: bool = False) -> Wire:
                visitor = uuid.uuid4().hex
                await send(_messages(visitor, session, user))
                return await send(_messages(visitor, session, user))

            # Warm: psycopg prepares a statement on its fifth use (a round trip once).
            for _ in range(6):
                await known_visitor(True)
                await known_visitor(False)
                await known_visitor(True, user=True)
            figures = {"typical": await known_visitor(True)}
            figures["no_session"] = await known_visitor(False)
            figures["logged_in"] = await known_visitor(True, user=True)
            again = _messages(uuid.uuid4().hex, True)
            await send(again)
            figures["duplicates"] = await send(again)
            return figures
        finally:
            await writer.close()

    return asyncio.run(run())


def test_round_trips_per_commit(database: str) -> None:
    figures = _measure(database)
    for name, (statements, round_trips) in (
        ("typical", TYPICAL),
        ("no_session", NO_SESSION),
        ("logged_in", LOGGED_IN),
        ("duplicates", DUPLICATES),
    ):
        wire = figures[name]
        assert wire.statements <= statements, (name, wire)
        assert wire.round_trips <= round_trips, (name, wire)


if __name__ == "__main__":  # print the figures: python -m tests.integration.test_writer_round_trips
    from tests.support import LOCAL_PG, scratch_database

    with scratch_database(LOCAL_PG) as dsn:
        for name, wire in _measure(dsn).items():
            print(f"{name:12s} statements {wire.statements:3d}  round trips {wire.round_trips:3d}")
