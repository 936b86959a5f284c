"""Keyed hashes: stable across requests and collector processes, different per key, key id kept;
a rotated-out key still finds old rows (export, erasure, the consent ledger)."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import httpx
import pytest

from tests.privacy.conftest import PII_KEY, message
from tests.support import ServerThread, collector_settings, make_site, query

NEW_KEY = "rotated-key-abcdefghijklmnopqrstuvwxyz0123456789"


def _post(base_url: str, key: str, messages: list[dict]) -> dict:
    response = httpx.post(
        base_url + "/v1/batch", json={"batch": messages}, auth=(key, ""), timeout=30
    )
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def twin_and_rotated(database: str):
    """A second collector with the same key, and one whose key was rotated (old key kept)."""
    twin = ServerThread(collector_settings(database, pii_key=PII_KEY)).start()
    rotated = ServerThread(
        collector_settings(
            database,
            pii_key=NEW_KEY,
            pii_key_id="k2",
            pii_previous_keys=f"k1:{PII_KEY}",
            admin_token="rotated-admin-token-0123456789",
        )
    ).start()
    yield twin, rotated
    twin.stop()
    rotated.stop()


def test_same_user_id_same_hash_across_requests_and_processes(
    privacy_server, twin_and_rotated, database: str
) -> None:
    twin, rotated = twin_and_rotated
    site_id, key = make_site(
        database, allowed_origins=["*"], settings={"allow_undeclared_events": True}
    )
    user = f"user-{uuid.uuid4().hex[:6]}"
    for base in (privacy_server.base_url, privacy_server.base_url, twin.base_url):
        assert _post(base, key, [message("track", userId=user)])["accepted"] == 1
    assert _post(rotated.base_url, key, [message("track", userId=user)])["accepted"] == 1

    rows = query(database, "SELECT user_id, pii_key_id FROM events WHERE site_id = %s", (site_id,))
    by_key = {}
    for row in rows:
        by_key.setdefault(row["pii_key_id"], set()).add(row["user_id"])
    expected_k1 = hmac.new(PII_KEY.encode(), user.encode(), hashlib.sha256).hexdigest()
    expected_k2 = hmac.new(NEW_KEY.encode(), user.encode(), hashlib.sha256).hexdigest()
    assert by_key == {"k1": {expected_k1}, "k2": {expected_k2}}
    assert len(rows) == 4 and expected_k1 != expected_k2


def test_rotated_key_still_finds_old_rows(privacy_server, twin_and_rotated, database: str) -> None:
    _, rotated = twin_and_rotated
    name = f"rot-{uuid.uuid4().hex[:6]}"
    site_id, key = make_site(
        database, name=name, allowed_origins=["*"], settings={"allow_undeclared_events": True}
    )
    user = "rotating-user"
    _post(privacy_server.base_url, key, [message("track", userId=user)])  # hashed with k1
    withdrawal = message(
        "track", event="Consent Updated", userId=user, properties={"analytics": False}
    )
    _post(privacy_server.base_url, key, [withdrawal])  # ledgered under k1
    # The collector on k2 still honours the k1 ledger entry.
    claim = {"consent": {"analytics": True}}
    after = _post(rotated.base_url, key, [message("track", userId=user, context=claim)])
    assert after["refused"] == {"consent": 1}
    _post(rotated.base_url, key, [message("track", userId=user, properties={"n": 2})])

    headers = {"Authorization": "Bearer rotated-admin-token-0123456789"}
    exported = httpx.post(
        rotated.base_url + "/admin/privacy/export",
        json={"site": name, "user_id": user},
        headers=headers,
        timeout=30,
    ).json()
    assert len(exported["identifiers"]["user_id_hashes"]) == 2
    assert {r["pii_key_id"] for r in exported["tables"]["events"]} == {"k1"}
    assert len(exported["tables"]["consent_log"]) == 1
    erased = httpx.post(
        rotated.base_url + "/admin/privacy/erase",
        json={"site": name, "user_id": user},
        headers=headers,
        timeout=30,
    ).json()
    assert erased["deleted"]["consent_log"] == 1
    assert (
        query(
            database, "SELECT 1 FROM events WHERE site_id = %s AND user_id IS NOT NULL", (site_id,)
        )
        == []
    )
