"""A streaming read replica for the data team, run here (issue 11).

Starts a PostgreSQL primary and a streaming replica of it (``pg_basebackup``)
of its own, on free ports in a temporary directory (never the shared server),
migrates the primary, runs the collector on it with
``FOOTFALL_READ_DATABASE_URL`` pointing at the replica, ingests under load
from several threads while sampling the replication lag
(``pg_stat_replication`` on the primary, ``pg_last_xact_replay_timestamp()``
on the replica), and prints the figures. Then: the analytics views on the
replica hold exactly what the primary holds, the reader role works there, and
the admin export reads the replica (paused replay hides a new event from it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from footfall.storage import migrate
from tests.support import ServerThread, collector_settings, free_port, make_site, reader_role

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "replica-test-admin-token-0123456789"
LOAD_SECONDS = 8.0
THREADS = 4
BATCH = 50


def _bin_dir() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "pg_basebackup").exists():
            return candidate
    return None


class Cluster:
    """One PostgreSQL data directory and server, run as an unprivileged user when we are root."""

    def __init__(self, bin_dir: Path, root: Path, name: str) -> None:
        self.bin = bin_dir
        self.data = root / name
        self.socket_dir = root
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None

    def run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1"
        self.run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", f"{self.data}.log", "-w", "start"
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@contextmanager
def primary_and_replica() -> Iterator[tuple[Cluster, Cluster]]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries in /usr/lib/postgresql")
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' system user to run the servers")
    root = Path(tempfile.mkdtemp(prefix="footfall-replica-"))
    if os.geteuid() == 0:
        os.chown(root, entry.pw_uid, entry.pw_gid)
    primary = Cluster(bin_dir, root, "primary")
    replica = Cluster(bin_dir, root, "replica")
    try:
        primary.run("initdb", "-D", str(primary.data), "-U", "postgres", "-A", "trust", "--no-sync")
        with open(primary.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            # Durability is not what is measured here (the 2-core machine is shared), but
            # commits stay synchronous: WAL a commit waits for is what the walsender
            # sends at once (asynchronous commit would add up to wal_writer_delay).
            conf.write("fsync = off\nfull_page_writes = off\n")
            conf.write("wal_level = replica\nmax_wal_senders = 4\nshared_buffers = 64MB\n")
        primary.start()
        replica.run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(replica.data), "-R", "-X", "stream", "--no-sync",
        )  # fmt: skip
        with open(replica.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("hot_standby = on\nhot_standby_feedback = on\n")
        replica.start()
        yield primary, replica
    finally:
        for cluster in (replica, primary):
            with suppress(subprocess.SubprocessError):
                cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _with_db(dsn: str, name: str) -> str:
    return dsn.rsplit("/", 1)[0] + "/" + name


def _scalar(dsn: str, sql: str, params: Any = None) -> Any:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _wait(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def _page(anon: str) -> dict[str, Any]:
    return {
        "type": "page",
        "messageId": str(uuid.uuid4()),
        "anonymousId": anon,
        "properties": {"path": "/p", "url": "https://example.com/p"},
        "context": {"sessionId": f"s-{anon}"},
    }


def test_replica_serves_reads_and_lag_under_load() -> None:
    with primary_and_replica() as (primary, replica):
        name = "footfall"
        with psycopg.connect(primary.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        write_dsn, read_dsn = _with_db(primary.dsn, name), _with_db(replica.dsn, name)
        migrate.upgrade(write_dsn)
        head = migrate.head_revision()
        _wait(
            lambda: (
                _scalar(read_dsn, "SELECT to_regclass('alembic_version') IS NOT NULL")
                and _scalar(read_dsn, "SELECT version_num FROM alembic_version") == head
            ),
            30,
            "the schema on the replica",
        )
        assert _scalar(read_dsn, "SELECT pg_is_in_recovery()") is True
        site_id, key = make_site(write_dsn, name="replicated", allowed_origins=["*"])
        settings = collector_settings(
            write_dsn, read_database_url=read_dsn, admin_token=ADMIN_TOKEN, demo=False
        )
        server = ServerThread(settings).start()
        try:
            _load_and_measure(server.base_url, key, write_dsn, read_dsn, site_id)
            _export_reads_the_replica(server.base_url, key, read_dsn)
        finally:
            server.stop()


def _load_and_measure(base_url: str, key: str, write_dsn: str, read_dsn: str, site_id: int) -> None:
    sent = [0] * THREADS
    errors: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=base_url, auth=(key, ""), timeout=30) as client:
            n = 0
            while not stop.is_set():
                batch = [_page(f"v{worker}-{n}-{i % 10}") for i in range(BATCH)]
                response = client.post("/v1/batch", json={"batch": batch})
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    return
                sent[worker] += len(batch)
                n += 1

    replay_lag_ms: list[float] = []
    byte_lag: list[int] = []
    replica_lag_ms: list[float] = []

    def sample() -> None:
        with (
            psycopg.connect(write_dsn, autocommit=True) as wconn,
            psycopg.connect(read_dsn, autocommit=True) as rconn,
        ):
            while not stop.is_set():
                row = wconn.execute(
                    "SELECT EXTRACT(epoch FROM replay_lag) * 1000,"
                    " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)"
                    " FROM pg_stat_replication"
                ).fetchone()
                if row is not None:
                    if row[0] is not None:
                        replay_lag_ms.append(float(row[0]))
                    byte_lag.append(int(row[1] or 0))
                # Time since the last replayed commit: an upper bound of the staleness
                # a data-team query sees while commits keep coming.
                (lag,) = rconn.execute(
                    "SELECT EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000"
                ).fetchone()
                if lag is not None:
                    replica_lag_ms.append(float(lag))
                time.sleep(0.2)

    workers = [threading.Thread(target=load, args=(w,)) for w in range(THREADS)]
    sampler = threading.Thread(target=sample)
    started = time.monotonic()
    for thread in [*workers, sampler]:
        thread.start()
    time.sleep(LOAD_SECONDS)
    stop.set()
    for thread in [*workers, sampler]:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started
    assert errors == []
    total = sum(sent)
    count = "SELECT count(*) FROM analytics.events WHERE site_id = %s"
    assert _scalar(write_dsn, count, (site_id,)) == total
    catch_up = _wait(
        lambda: _scalar(read_dsn, count, (site_id,)) == total, 30, "the replica to catch up"
    )
    # The data team's views on the replica: the same rows, sessions and persons.
    for view in ("analytics.sessions", "analytics.persons"):
        query = f"SELECT count(*) FROM {view} WHERE site_id = %s"
        assert _scalar(read_dsn, query, (site_id,)) == _scalar(write_dsn, query, (site_id,)) > 0
    role = reader_role(write_dsn)
    with psycopg.connect(read_dsn, autocommit=True) as conn:
        conn.execute(f'SET ROLE "{role}"')
        assert conn.execute(count, (site_id,)).fetchone() == (total,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT 1 FROM public.events LIMIT 1")
    assert replay_lag_ms or replica_lag_ms, "no lag sample was taken"

    def fmt(values: list[float]) -> str:
        if not values:
            return "n/a"
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        return f"median {statistics.median(ordered):.1f}, p95 {p95:.1f}, max {ordered[-1]:.1f}"

    print(
        f"\nreplica under load: {total} messages in {elapsed:.1f} s"
        f" ({total / elapsed:.0f} msg/s, {THREADS} threads, batches of {BATCH})\n"
        f"  replay_lag (pg_stat_replication), ms: {fmt(replay_lag_ms)}"
        f" ({len(replay_lag_ms)} samples)\n"
        f"  bytes not yet replayed: {fmt([float(b) for b in byte_lag])}\n"
        f"  now() - pg_last_xact_replay_timestamp() on the replica, ms: {fmt(replica_lag_ms)}\n"
        f"  replica had every row {catch_up * 1000:.0f} ms after the load stopped"
    )


def _export_reads_the_replica(base_url: str, key: str, read_dsn: str) -> None:
    def export() -> dict[str, Any]:
        response = httpx.post(
            base_url + "/admin/privacy/export",
            json={"site": "replicated", "anonymous_id": "subject-1"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    with psycopg.connect(read_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        try:
            response = httpx.post(
                base_url + "/v1/batch", json={"batch": [_page("subject-1")]}, auth=(key, "")
            )
            assert response.status_code == 200 and response.json()["accepted"] == 1
            assert "events" not in export()["tables"]  # the paused replica has not seen it
        finally:
            conn.execute("SELECT pg_wal_replay_resume()")
    _wait(lambda: "events" in export()["tables"], 30, "the export to see the event")
