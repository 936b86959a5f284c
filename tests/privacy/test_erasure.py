"""Erasure leaves no row referencing the person in any table; the export holds exactly the rows
the erasure then deletes; suppression refuses the erased ids afterwards; the log holds no PII."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import psycopg

from tests.privacy.conftest import PII_KEY, message


def _table_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            )
        ]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def _references(dsn: str, texts: list[str], exact: list[str]) -> list[str]:
    """Columns of any table holding one of ``texts`` (substring), or person references equal
    to one of ``exact`` (person ids are small integers: compared in person columns only)."""
    hits = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT c.table_schema, c.table_name, c.column_name, c.data_type"
            " FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE t.table_type = 'BASE TABLE'"
            " AND c.table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table, column, kind in columns:
            ref = f'"{schema}"."{table}"'
            textual = kind in ("text", "jsonb", "json", "character varying", "ARRAY")
            for value in texts if textual else []:
                n = conn.execute(
                    f'SELECT count(*) FROM {ref} WHERE strpos("{column}"::text, %s) > 0', (value,)
                ).fetchone()[0]
                if n:
                    hits.append(f"{table}.{column} holds {value!r} ({n})")
            person_ref = (
                "person" in column
                or column == "merged_into"
                or (table == "persons" and column == "id")
            )
            for value in exact if person_ref else []:
                n = conn.execute(
                    f'SELECT count(*) FROM {ref} WHERE "{column}"::text = %s', (value,)
                ).fetchone()[0]
                if n:
                    hits.append(f"{table}.{column} = {value!r} ({n})")
    return hits


def _populate(site, tag: str) -> dict[str, str]:
    ids = {
        "user": f"erase-user-{tag}",
        "other": f"keep-user-{tag}",
        "dev1": f"erase-dev1-{tag}",
        "dev2": f"erase-dev2-{tag}",
        "shared": f"shared-dev-{tag}",
        "other_dev": f"keep-dev-{tag}",
    }
    u, v = ids["user"], ids["other"]
    page = {"url": "https://shop.example/p"}
    batch = [
        message("page", anonymousId=ids["dev1"], properties=page),
        message("identify", anonymousId=ids["dev1"], userId=u, traits={"email": "e@x.org"}),
        message("track", anonymousId=ids["dev1"], userId=u, properties={"n": 1}),
        message("page", anonymousId=ids["dev2"], properties=page),
        message("track", anonymousId=ids["dev2"], userId=u, properties={"n": 2}),
        message("track", event="Consent Updated", anonymousId=ids["dev1"], userId=u,
                properties={"analytics": True}),
        # Fail validation: kept in failed_events, pseudonymized.
        message("track", event="Element Clicked", anonymousId=ids["dev1"], userId=u),
        message("track", event="Element Clicked", anonymousId=ids["dev2"]),
        # A shared device: the subject first, then someone else.
        message("identify", anonymousId=ids["shared"], userId=u,
                context={"sessionId": f"s-u-{tag}"}),
        message("track", anonymousId=ids["shared"], userId=v, context={"sessionId": f"s-v-{tag}"}),
        message("page", anonymousId=ids["other_dev"], userId=v, properties=page),
        message("identify", anonymousId=ids["other_dev"], userId=v),
    ]  # fmt: skip
    answer = site.post(batch)
    assert answer["accepted"] == 10 and len(answer["failed"]) == 2, answer
    return ids


def test_erasure_leaves_no_reference_and_export_holds_what_it_deletes(new_site) -> None:
    site = new_site()
    ids = _populate(site, uuid.uuid4().hex[:6])
    exported = site.admin("export", {"user_id": ids["user"]})
    assert exported.status_code == 200, exported.text
    export = exported.json()
    identifiers = export["identifiers"]
    assert {ids["dev1"], ids["dev2"], ids["shared"]} <= set(identifiers["anonymous_ids"])
    assert len(export["tables"]["events"]) == 7
    assert len(export["tables"]["failed_events"]) == 2
    assert len(export["tables"]["consent_log"]) == 1
    exported_ids = {r["message_id"] for r in export["tables"]["events"]}

    before = _table_counts(site.dsn)
    erased = site.admin("erase", {"user_id": ids["user"], "suppress": True})
    assert erased.status_code == 200, erased.text
    after = _table_counts(site.dsn)
    deleted = {t: before[t] - after[t] for t in before if before[t] > after[t]}
    assert deleted == {t: len(rows) for t, rows in export["tables"].items()}
    assert erased.json()["deleted"] == deleted

    # Nothing left that points at the person.
    texts = [
        ids["dev1"],
        ids["dev2"],
        ids["user"],
        *identifiers["user_id_hashes"],
        f"s-u-{ids['user'][-6:]}",
    ]
    exact = identifiers["person_ids"]
    assert _references(site.dsn, texts, exact) == []
    remaining = {r["message_id"] for r in site.events()}
    assert not remaining & exported_ids
    # The other person, including their use of the shared device, is untouched.
    assert len(remaining) == 3
    log = site.query("SELECT * FROM erasure_log WHERE site_id = %s", (site.site_id,))
    assert len(log) == 1 and log[0]["counts"] == deleted and log[0]["suppressed"]
    assert ids["user"] not in json.dumps(log, default=str)

    # Suppression: the erased ids are refused from now on; the other person is not.
    answer = site.post(
        [
            message("track", userId=ids["user"]),
            message("track", anonymousId=ids["dev1"]),
            message("track", anonymousId=ids["other_dev"], userId=ids["other"]),
        ]
    )
    assert answer["accepted"] == 1 and answer["refused"] == {"erased": 2}


def test_erasure_by_anonymous_id_keeps_the_identified_person(new_site) -> None:
    site = new_site()
    ids = _populate(site, uuid.uuid4().hex[:6])
    export = site.admin("export", {"anonymous_id": ids["dev2"]}).json()
    # Only what the device did anonymously; the user's own rows need the user's request.
    assert {r["anonymous_id"] for r in export["tables"]["events"]} == {ids["dev2"]}
    assert all(r["user_id"] is None for r in export["tables"]["events"])
    erased = site.admin("erase", {"anonymous_id": ids["dev2"]}).json()
    assert erased["deleted"]["events"] == 1
    assert erased["deleted"]["failed_events"] == 1
    assert len(site.events()) == 9


def test_admin_api_needs_the_token(new_site) -> None:
    site = new_site()
    assert site.admin("export", {"user_id": "x"}, token=None).status_code == 401
    assert site.admin("export", {"user_id": "x"}, token="wrong").status_code == 401
    assert site.admin("erase", {"user_id": "x", "anonymous_id": "y"}).status_code == 400
    assert site.admin("export", {"user_id": "x"} | {"site": "nope"}).status_code == 404


def test_admin_api_is_off_without_a_token(collector) -> None:
    import httpx

    response = httpx.post(
        collector.base_url + "/admin/privacy/export", json={"site": "x", "user_id": "y"}
    )
    assert response.status_code == 404
    assert response.json()["error"] == "admin_api_disabled"


def test_cli_export_and_erase(new_site, tmp_path) -> None:
    site = new_site()
    ids = _populate(site, uuid.uuid4().hex[:6])
    env = {
        **os.environ,
        "DATABASE_URL": site.dsn,
        "FOOTFALL_ENV": "test",
        "FOOTFALL_PII_KEY": PII_KEY,
    }

    def footfall(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "footfall", "privacy", *args],
            env=env, capture_output=True, text=True, check=True, timeout=120,
        ).stdout  # fmt: skip

    out = tmp_path / "export.json"
    footfall("export", "--site", site.name, "--user-id", ids["user"], "-o", str(out))
    export = json.loads(out.read_text())
    result = json.loads(footfall("erase", "--site", site.name, "--user-id", ids["user"]))
    assert result["deleted"] == {t: len(rows) for t, rows in export["tables"].items()}
    assert not result["suppressed"]


def test_erasure_waits_for_a_commit_in_flight_before_deleting(new_site) -> None:
    """Lock order with the writer: a group commit holds the site's identity lock shared
    from its identity step to its end; erasure takes it exclusively before it deletes
    anything, so it waits for the commit instead of deadlocking with it half-way."""
    import threading

    from footfall.pipeline.privacy import keyring_of
    from footfall.storage import identity
    from footfall.storage.privacy import erase_subject
    from tests.support import collector_settings

    site = new_site()
    ids = _populate(site, uuid.uuid4().hex[:6])
    before = len(site.events())
    settings = collector_settings(site.dsn, pii_key=PII_KEY)
    keyring = keyring_of(settings.pii_key_id, settings.pii_key, settings.previous_pii_keys)
    done: list[dict] = []
    pids: list[int] = []
    with psycopg.connect(site.dsn) as writer_like:
        writer_like.execute(
            "SELECT pg_advisory_xact_lock_shared(%s)", (identity.site_lock(site.site_id),)
        )

        def erase() -> None:
            with psycopg.connect(site.dsn) as conn, conn.transaction():
                pids.append(conn.info.backend_pid)
                done.append(erase_subject(conn, site.site_id, "anonymous_id", ids["dev2"], keyring))

        thread = threading.Thread(target=erase)
        thread.start()
        thread.join(2)
        # Still waiting on the site's lock, and it has written (row-locked) nothing yet:
        # no table of its transaction is open for writing.
        assert thread.is_alive() and not done and pids
        locks = writer_like.execute(
            "SELECT locktype, mode, granted FROM pg_locks WHERE pid = %s", (pids[0],)
        ).fetchall()
        assert ("advisory", "ExclusiveLock", False) in locks
        assert not [lock for lock in locks if lock[1] == "RowExclusiveLock"]
        assert len(site.events()) == before
        writer_like.rollback()  # the commit in flight ends
    thread.join(30)
    assert done and done[0]["deleted"]["events"] == 1
    assert len(site.events()) == before - 1
