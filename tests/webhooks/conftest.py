"""Webhook fixtures: a database of their own (the session collector runs a dispatcher on
the shared one), endpoints, enqueuing transactions, and dispatchers in a thread or a process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from footfall.pipeline.privacy import Keyring, keyring_of
from footfall.settings import DEV_PII_KEY
from footfall.storage import webhooks
from footfall.webhooks.dispatcher import DispatchConfig, Dispatcher
from footfall.webhooks.message import generate_secret
from footfall.webhooks.retry import RetryPolicy
from footfall.webhooks.sealing import seal
from tests.support import make_site, query, scratch_database

KEYRING = keyring_of("k1", DEV_PII_KEY)


@pytest.fixture(scope="module")
def hooks_db(admin_dsn: str) -> Iterator[str]:
    with scratch_database(admin_dsn) as dsn:
        yield dsn


@pytest.fixture
def site(hooks_db: str) -> Iterator[int]:
    site_id, _ = make_site(hooks_db)
    yield site_id
    # Nothing of this test may still be due when the next test's dispatcher runs.
    query(
        hooks_db,
        "UPDATE webhook_outbox SET status = 'cancelled' WHERE site_id = %s AND status = 'pending'",
        (site_id,),
    )


def add_endpoint(dsn: str, site_id: int, name: str, url: str, secret: str | None = None) -> str:
    secret = secret or generate_secret()
    sealed = seal(secret, KEYRING.current, site_id, name)
    run_tx(dsn, lambda c: webhooks.add_endpoint(c, site_id, name, url, sealed, "k1"))
    return secret


def run_tx(dsn: str, work: Callable[[Any], Any], *, rollback: bool = False) -> Any:
    """``work(conn)`` (a coroutine function) in one transaction, committed unless ``rollback``."""

    async def main() -> Any:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            result = await work(conn)
            await (conn.rollback() if rollback else conn.commit())
            return result

    return asyncio.run(main())


def enqueue(
    dsn: str,
    site_id: int,
    ids: Sequence[str],
    endpoints: Sequence[str] = ("crm",),
    *,
    person_id: int | None = None,
    rollback: bool = False,
) -> int:
    async def work(conn: Any) -> int:
        added = 0
        for message_id in ids:
            data: dict[str, Any] = {"segment": "engaged-reader", "anonymous_id": "a-" + message_id}
            if person_id is not None:
                data["person_id"] = person_id
            added += await webhooks.enqueue(
                conn, site_id, endpoints, "segment.entered", data, message_id
            )
        return added

    return int(run_tx(dsn, work, rollback=rollback))


def outbox(dsn: str, site_id: int) -> dict[str, dict[str, Any]]:
    rows = query(dsn, "SELECT * FROM webhook_outbox WHERE site_id = %s ORDER BY id", (site_id,))
    return {f"{r['endpoint']}/{r['message_id']}": r for r in rows}


def wait_until(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def fast_config(**overrides: Any) -> DispatchConfig:
    """Quick retries for tests: the policy under test is the same, only the scale differs."""
    policy = RetryPolicy(
        max_attempts=overrides.pop("max_attempts", 5),
        base_s=overrides.pop("base_s", 0.1),
        max_delay_s=overrides.pop("max_delay_s", 10.0),
    )
    values: dict[str, Any] = {"timeout_s": 2.0, "lease_s": 8.0, "poll_s": 1.0, "concurrency": 8}
    values.update(overrides)
    return DispatchConfig(policy=policy, **values)


class DispatcherThread:
    """A real Dispatcher with its own event loop and pool, in a background thread."""

    def __init__(self, dsn: str, config: DispatchConfig, keyring: Keyring = KEYRING) -> None:
        self.dsn = dsn
        self.config = config
        self.keyring = keyring
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.dispatcher: Dispatcher | None = None
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        pool = AsyncConnectionPool(self.dsn, min_size=1, max_size=4, open=False)
        await pool.open(wait=True)
        self.dispatcher = Dispatcher(pool, self.dsn, self.keyring, self.config)
        self.stop_event = asyncio.Event()
        self.dispatcher.start()
        self.started.set()
        await self.stop_event.wait()
        await self.dispatcher.close()
        await pool.close()

    def __enter__(self) -> DispatcherThread:
        self.thread.start()
        assert self.started.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)


@contextmanager
def dispatching(
    dsn: str, keyring: Keyring = KEYRING, **overrides: Any
) -> Iterator[DispatcherThread]:
    with DispatcherThread(dsn, fast_config(**overrides), keyring) as thread:
        yield thread


class DispatchProcess:
    """``footfall webhooks dispatch`` as a real subprocess (so it can be killed -9)."""

    def __init__(self, dsn: str, log_path: Path, **env: str) -> None:
        environment = {
            **os.environ,
            "DATABASE_URL": dsn,
            "FOOTFALL_ENV": "test",
            "FOOTFALL_LOG_FORMAT": "text",
            "FOOTFALL_WEBHOOK_TIMEOUT_S": "2",
            "FOOTFALL_WEBHOOK_LEASE_S": "8",
            "FOOTFALL_WEBHOOK_BACKOFF_BASE_S": "0.1",
            "FOOTFALL_WEBHOOK_POLL_S": "1",
            **env,
        }
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "footfall", "webhooks", "dispatch"],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while "webhook dispatcher running" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"dispatcher did not start:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9: no shutdown, no chance to record anything."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)
