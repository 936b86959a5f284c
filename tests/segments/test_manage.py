"""Managing segments: ``footfall segments …`` and the admin API, on real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.test_cli import footfall
from tests.segments.support import page, person_of, send
from tests.support import Collector, ServerThread, collector_settings, make_site, query

TOKEN = "segments-admin-token-0123456789abcdef"
RULE = {
    "key": "browsers",
    "expose": "browser",
    "when": {"count": {"type": "page"}, "within": "1h", "gte": 2},
}


def test_cli_create_update_list_show_test_delete(collector: Collector, tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    site_id, key = make_site(collector.dsn, name=name, allowed_origins=["*"])
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps(RULE))
    created = json.loads(footfall("segments", "create", str(rule), "--site", name,
                                  dsn=collector.dsn).stdout)  # fmt: skip
    assert (created["key"], created["version"], created["members"]) == ("browsers", 1, 0)
    again = footfall("segments", "create", str(rule), "--site", name, dsn=collector.dsn,
                     check=False)  # fmt: skip
    assert again.returncode != 0 and "exists" in again.stderr

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**RULE, "when": {**RULE["when"], "within": "100d"}}))
    refused = footfall("segments", "update", str(bad), "--site", name, dsn=collector.dsn,
                       check=False)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.startswith("/when/within: must be between 1 s and 90 days")

    visitor = "v-" + uuid.uuid4().hex
    send(collector.base_url, key, [page(visitor, "/a"), page(visitor, "/b")])
    person = person_of(collector.dsn, site_id, visitor)

    def test_run(*extra: str) -> dict:
        out = footfall("segments", "test", str(rule), "--site", name, *extra, dsn=collector.dsn)
        return json.loads(out.stdout)

    assert test_run()["members"] == [person]
    assert test_run("--person", str(person), "--days", "2")["members"] == [person]
    assert test_run("--person", str(person + 10_000))["members"] == []

    rule.write_text(json.dumps({**RULE, "when": {**RULE["when"], "gte": 3}}))
    updated = json.loads(footfall("segments", "update", str(rule), "--site", name,
                                  dsn=collector.dsn).stdout)  # fmt: skip
    assert updated["version"] == 2
    assert [v["version"] for v in updated["versions"]] == [1, 2]
    # The member entered under version 1; the new version no longer holds for them.
    assert test_run()["members"] == []
    listing = json.loads(footfall("segments", "list", "--site", name, dsn=collector.dsn).stdout)
    assert [(s["key"], s["version"]) for s in listing] == [("browsers", 2)]
    shown = json.loads(footfall("segments", "show", "browsers", "--site", name,
                                dsn=collector.dsn).stdout)  # fmt: skip
    assert shown["rule"]["when"]["gte"] == 3
    deleted = json.loads(footfall("segments", "delete", "browsers", "--site", name,
                                  dsn=collector.dsn).stdout)  # fmt: skip
    assert deleted["deleted"] is True
    assert footfall("segments", "show", "browsers", "--site", name, dsn=collector.dsn,
                    check=False).returncode != 0  # fmt: skip


@pytest.fixture(scope="module")
def admin_server(database: str) -> Iterator[ServerThread]:
    thread = ServerThread(collector_settings(database, admin_token=TOKEN)).start()
    yield thread
    thread.stop()


def test_admin_api(admin_server: ServerThread, database: str) -> None:
    name = f"api-{uuid.uuid4().hex[:8]}"
    site_id, key = make_site(database, name=name, allowed_origins=["*"])
    base = admin_server.base_url + "/admin/segments"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def call(method: str, path: str = "", body=None, token=auth, **params) -> httpx.Response:
        return httpx.request(method, base + path, json=body, headers=token,
                             params={"site": name, **params}, timeout=60)  # fmt: skip

    assert call("GET", token={}).status_code == 401
    assert call("GET", site="no-such-site").status_code == 404
    created = call("POST", body=RULE)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    assert call("POST", body=RULE).status_code == 409
    invalid = call("POST", body={**RULE, "key": "x", "when": {"count": {"type": "page"},
                                                               "within": 60}})  # fmt: skip
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "invalid_rule"
    assert invalid.json()["errors"] == [
        {"pointer": "/when", "message": "needs a comparison: gt, gte, lt, lte or eq"}
    ]
    visitor = "v-" + uuid.uuid4().hex
    answer = send(admin_server.base_url, key, [page(visitor, "/a"), page(visitor, "/b")])
    assert answer["segments"] == ["browsers"]
    person = person_of(database, site_id, visitor)
    assert call("GET").json()["segments"][0]["members"] == 1
    dry = call("POST", "/test", body={**RULE, "key": "three"}, days=1)
    assert dry.status_code == 200 and dry.json()["members"] == [person]
    assert call("POST", "/test", body=RULE, days=0).status_code == 422
    mismatch = call("PUT", "/browsers", body={**RULE, "key": "other"})
    assert mismatch.status_code == 400
    updated = call("PUT", "/browsers", body={**RULE, "expose": "server"})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    shown = call("GET", "/browsers").json()
    assert shown["expose"] == "server" and len(shown["versions"]) == 2
    assert call("GET", "/nothing").status_code == 404
    deleted = call("DELETE", "/browsers")
    assert deleted.json() == {"key": "browsers", "deleted": True, "memberships_closed": 1}
    assert call("GET").json() == {"segments": []}


def test_a_withdrawal_through_the_admin_api_removes_memberships(
    admin_server: ServerThread, database: str
) -> None:
    name = f"api-{uuid.uuid4().hex[:8]}"
    site_id, key = make_site(database, name=name, allowed_origins=["*"])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(admin_server.base_url + "/admin/segments", params={"site": name},
                      json=RULE, headers=auth, timeout=60).status_code == 201  # fmt: skip
    leaving, staying = "v-" + uuid.uuid4().hex, "v-" + uuid.uuid4().hex
    for visitor in (leaving, staying):
        answer = send(admin_server.base_url, key, [page(visitor, "/a"), page(visitor, "/b")])
        assert answer["segments"] == ["browsers"]
    decision = httpx.post(
        admin_server.base_url + "/admin/privacy/consent",
        json={"site": name, "anonymous_id": leaving, "purposes": {"personalization": False}},
        headers=auth,
        timeout=60,
    )
    assert decision.status_code == 200, decision.text
    rows = query(
        database,
        "SELECT person_id FROM segment_memberships WHERE site_id = %s",
        (site_id,),
    )
    assert rows == [{"person_id": person_of(database, site_id, staying)}]
    # And the ledger keeps the visitor out from then on.
    again = send(admin_server.base_url, key, [page(leaving, "/c")])
    assert again["segments"] == []


def test_hostile_admin_input_is_a_4xx(admin_server: ServerThread, database: str) -> None:
    name = f"api-{uuid.uuid4().hex[:8]}"
    make_site(database, name=name)
    base = admin_server.base_url + "/admin/segments"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    deep: dict = {"key": "deep", "when": {}}
    node = deep["when"]
    for _ in range(500):
        node["not"] = {}
        node = node["not"]
    cases = [
        httpx.post(base, params={"site": name}, json=deep, headers=auth, timeout=60),
        httpx.post(base, params={"site": name}, json=[1, 2], headers=auth, timeout=60),
        httpx.post(base, params={"site": name}, content=b"{", headers=auth, timeout=60),
        httpx.post(base + "/test", params={"site": name, "person": 2**70}, json=RULE,
                   headers=auth, timeout=60),
        httpx.get(base + "/Bad%00Key", params={"site": name}, headers=auth, timeout=60),
        httpx.get(base, params={"site": "a\x00b"}, headers=auth, timeout=60),
    ]  # fmt: skip
    assert [c.status_code // 100 for c in cases] == [4] * len(cases), [c.text for c in cases]
    assert cases[0].status_code == 422


def test_hostile_visitor_ids_are_a_4xx(collector: Collector) -> None:
    answer = httpx.get(
        collector.base_url + "/v1/segments",
        params={"writeKey": collector.write_key, "anonymousId": "a\x00b"},
        timeout=30,
    )
    assert answer.status_code == 400


def test_a_withdrawal_through_the_admin_api_cancels_pending_webhooks(
    admin_server: ServerThread, database: str
) -> None:
    """The admin API's (synchronous) withdrawal cancels the person's pending deliveries
    as an ingest withdrawal does; another person's stay pending."""
    from footfall.storage import webhooks
    from tests.webhooks.conftest import add_endpoint, outbox, run_tx

    name = f"api-{uuid.uuid4().hex[:8]}"
    site_id, key = make_site(database, name=name, allowed_origins=["*"])
    add_endpoint(database, site_id, "crm", "http://127.0.0.1:9/never")
    run_tx(database, lambda c: webhooks.set_enabled(c, site_id, "crm", False))  # stays pending
    auth = {"Authorization": f"Bearer {TOKEN}"}
    rule = {**RULE, "webhooks": ["crm"]}
    assert httpx.post(admin_server.base_url + "/admin/segments", params={"site": name},
                      json=rule, headers=auth, timeout=60).status_code == 201  # fmt: skip
    leaving, staying = "v-" + uuid.uuid4().hex, "v-" + uuid.uuid4().hex
    for visitor in (leaving, staying):
        send(admin_server.base_url, key, [page(visitor, "/a"), page(visitor, "/b")])
    assert sorted(r["status"] for r in outbox(database, site_id).values()) == ["pending"] * 2
    decision = httpx.post(
        admin_server.base_url + "/admin/privacy/consent",
        json={"site": name, "anonymous_id": leaving, "purposes": {"personalization": False}},
        headers=auth,
        timeout=60,
    )
    assert decision.status_code == 200, decision.text
    by_person = {r["person_id"]: r["status"] for r in outbox(database, site_id).values()}
    assert by_person == {
        person_of(database, site_id, leaving): "cancelled",
        person_of(database, site_id, staying): "pending",
    }
