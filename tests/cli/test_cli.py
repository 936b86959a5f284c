"""The `footfall` command line against a real database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from footfall.storage import migrate
from tests.support import Collector, query, scratch_database


def footfall(*args: str, dsn: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": dsn, "FOOTFALL_ENV": "test"}
    return subprocess.run(
        [sys.executable, "-m", "footfall", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def test_migrate_and_sites(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as dsn:
        out = footfall("migrate", dsn=dsn).stdout
        assert f"database at {migrate.head_revision()}" in out
        created = footfall(
            "sites", "create", "shop", "--origin", "https://shop.example", dsn=dsn
        ).stdout
        key = re.search(r"write key: (\S+)", created).group(1)
        assert key.startswith("ffw_")
        listing = footfall("sites", "list", dsn=dsn).stdout
        assert "shop" in listing and key in listing and "https://shop.example" in listing
        duplicate = footfall("sites", "create", "shop", dsn=dsn, check=False)
        assert duplicate.returncode != 0
        assert query(dsn, "SELECT name FROM sites") == [{"name": "shop"}]
        footfall("sites", "create", "staging", "--allow-bots", dsn=dsn)
        [staging] = query(dsn, "SELECT settings FROM sites WHERE name = 'staging'")
        assert staging["settings"] == {"allow_bots": True}


def test_schemas_check(tmp_path: Path) -> None:
    good = tmp_path / "good" / "signed_up"
    good.mkdir(parents=True)
    (good / "1-0-0.json").write_text(json.dumps({"type": "object"}))
    ok = footfall("schemas", "check", str(tmp_path / "good"), dsn="")
    assert "all schemas valid" in ok.stdout
    bad = tmp_path / "bad" / "signed_up"
    bad.mkdir(parents=True)
    (bad / "1-0-0.json").write_text(json.dumps({"type": 12}))
    result = footfall("schemas", "check", str(tmp_path / "bad"), dsn="", check=False)
    assert result.returncode == 1
    assert "signed_up/1-0-0.json: invalid schema" in result.stdout


def test_failed_list_and_replay(collector: Collector, tmp_path: Path) -> None:
    schema_dir = tmp_path / "schemas"
    site_id, key = collector.make_site(settings={"schema_dir": str(schema_dir), "strict": True})
    message = {"type": "track", "event": "Trial Started", "anonymousId": "a", "messageId": "cli-1"}
    httpx.post(collector.base_url + "/v1/batch", json={"batch": [message]}, auth=(key, ""))
    listing = footfall("failed", "list", "--limit", "1000", dsn=collector.dsn).stdout
    assert re.search(r"\tunknown_event\t/event no schema registered for 'Trial Started'", listing)

    (schema_dir / "trial_started").mkdir(parents=True)
    (schema_dir / "trial_started" / "1-0-0.json").write_text(json.dumps({"type": "object"}))
    out = footfall("failed", "replay", "--site-id", str(site_id), dsn=collector.dsn).stdout
    assert json.loads(out) == {"examined": 1, "stored": 1, "duplicates": 0, "still_failing": 0}
    assert [r["message_id"] for r in collector.events(site_id)] == ["cli-1"]
