"""``footfall webhooks …`` as a real subprocess against a real database."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from standardwebhooks import Webhook

from footfall.settings import DEV_PII_KEY
from tests.support import make_site, query
from tests.webhooks.conftest import dispatching, enqueue, outbox, wait_until
from tests.webhooks.receiver import Receiver, Reply


def footfall(*args: str, dsn: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DATABASE_URL": dsn, "FOOTFALL_ENV": "test", **env}
    return subprocess.run(
        [sys.executable, "-m", "footfall", "webhooks", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def test_endpoints_add_list_remove_and_the_secret_shown_once(hooks_db: str) -> None:
    site_id, _ = make_site(hooks_db, name="cli-shop")
    out = footfall(
        "endpoints", "add", "--site", "cli-shop", "crm", "https://crm.example/h", dsn=hooks_db
    ).stdout
    secret = re.search(r"(whsec_\S+)", out).group(1)
    Webhook(secret)  # the reference library accepts it
    listing = footfall("endpoints", "list", "--site", "cli-shop", dsn=hooks_db).stdout
    assert "crm\thttps://crm.example/h\tenabled" in listing
    assert "whsec_" not in listing
    # Stored sealed, never in clear.
    row = query(hooks_db, "SELECT * FROM webhook_endpoints WHERE site_id = %s", (site_id,))[0]
    assert secret.encode() not in bytes(row["secret_sealed"])
    assert secret[6:].encode() not in bytes(row["secret_sealed"])
    again = footfall(
        "endpoints",
        "add",
        "--site",
        "cli-shop",
        "crm",
        "https://x.example/h",
        dsn=hooks_db,
        check=False,
    )
    assert again.returncode != 0 and "already has an endpoint named 'crm'" in again.stderr
    bad = footfall(
        "endpoints", "add", "--site", "cli-shop", "cms", "ftp://x", dsn=hooks_db, check=False
    )
    assert bad.returncode != 0 and "http" in bad.stderr
    bad_secret = footfall(
        "endpoints",
        "add",
        "--site",
        "cli-shop",
        "cms",
        "https://x.example/",
        "--secret",
        "whsec_c2hvcnQ=",
        dsn=hooks_db,
        check=False,
    )
    assert bad_secret.returncode != 0 and "c2hvcnQ" not in bad_secret.stderr
    nosite = footfall("endpoints", "list", "--site", "nope", dsn=hooks_db, check=False)
    assert nosite.returncode != 0 and "no site named 'nope'" in nosite.stderr

    enqueue(hooks_db, site_id, ["m1"])
    removed = footfall("endpoints", "remove", "--site", "cli-shop", "crm", dsn=hooks_db).stdout
    assert "1 pending deliveries cancelled" in removed
    assert outbox(hooks_db, site_id)["crm/m1"]["status"] == "cancelled"
    assert footfall("endpoints", "list", "--site", "cli-shop", dsn=hooks_db).stdout == ""


def test_list_shows_dead_and_retry_sends_them_again(hooks_db: str) -> None:
    site_id, _ = make_site(hooks_db, name="cli-retry")
    healthy = [False]

    def plan(_id: str, _seen: int, _path: str) -> Reply:
        return Reply(200) if healthy[0] else Reply(502, body=b"bad gateway")

    with Receiver("whsec_" + "C" * 40, plan) as receiver:
        footfall(
            "endpoints",
            "add",
            "--site",
            "cli-retry",
            "crm",
            receiver.url,
            "--secret",
            "whsec_" + "C" * 40,
            dsn=hooks_db,
        )
        with dispatching(hooks_db, max_attempts=2, base_s=0.05):
            enqueue(hooks_db, site_id, ["d1", "d2"])
            wait_until(
                lambda: {r["status"] for r in outbox(hooks_db, site_id).values()} == {"dead"},
                what="dead",
            )
            listing = footfall(
                "list", "--site", "cli-retry", "--status", "dead", dsn=hooks_db
            ).stdout
            lines = listing.strip().splitlines()
            assert lines[0].startswith("id\tsite\tendpoint\tmessage_id")
            assert len(lines) == 3
            assert all("\tdead\t2\t502\tHTTP 502: bad gateway" in line for line in lines[1:])
            d1 = outbox(hooks_db, site_id)["crm/d1"]["id"]
            healthy[0] = True
            # Only d1, by id.
            assert (
                "1 dead deliveries queued again" in footfall("retry", str(d1), dsn=hooks_db).stdout
            )
            wait_until(
                lambda: outbox(hooks_db, site_id)["crm/d1"]["status"] == "delivered",
                what="d1 delivered",
            )
            assert outbox(hooks_db, site_id)["crm/d2"]["status"] == "dead"
            # Then all of the site's.
            out = footfall("retry", "--site", "cli-retry", dsn=hooks_db).stdout
            assert "1 dead deliveries queued again" in out
            wait_until(
                lambda: outbox(hooks_db, site_id)["crm/d2"]["status"] == "delivered",
                what="d2 delivered",
            )
    assert receiver.counts() == {"d1": 3, "d2": 3}
    row = outbox(hooks_db, site_id)["crm/d1"]
    assert (row["attempts"], row["last_error"]) == (1, None)


def test_reseal_after_a_pii_key_rotation(hooks_db: str) -> None:
    site_id, _ = make_site(hooks_db, name="cli-reseal")
    secret = "whsec_" + "D" * 40
    footfall(
        "endpoints",
        "add",
        "--site",
        "cli-reseal",
        "crm",
        "https://x.example/h",
        "--secret",
        secret,
        dsn=hooks_db,
    )
    rotated = {
        "FOOTFALL_PII_KEY": "rotated-key-" + "z" * 32,
        "FOOTFALL_PII_KEY_ID": "k2",
        "FOOTFALL_PII_PREVIOUS_KEYS": f"k1:{DEV_PII_KEY}",
    }
    out = footfall("endpoints", "reseal", dsn=hooks_db, **rotated).stdout
    assert "under key k2" in out
    row = query(hooks_db, "SELECT * FROM webhook_endpoints WHERE site_id = %s", (site_id,))[0]
    assert row["secret_key_id"] == "k2"
    from footfall.pipeline.privacy import keyring_of
    from footfall.webhooks.sealing import unseal

    ring = keyring_of("k2", rotated["FOOTFALL_PII_KEY"])
    assert unseal(bytes(row["secret_sealed"]), "k2", ring, site_id, "crm") == secret
