"""``footfall serve --workers 2``: metrics add up across workers, logs carry no PII."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.ops.metrics_text import sample
from tests.ops.serving import Served, serve
from tests.support import make_site, scratch_database

pytestmark = pytest.mark.slow

EMAIL = "jane.doe.pii@example.com"
USER_ID = "user-4471-secret"
PHONE = "+44 7700 900123"
CONTEXT_IP = "203.0.113.77"
CLIENT_IP = "127.0.0.2"  # the test connects from this address
FORWARDED_IP = "198.51.100.23"


@pytest.fixture(scope="module")
def two_workers(
    admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, str, str]]:
    with scratch_database(admin_dsn) as dsn:
        _, key = make_site(dsn, settings={"allow_undeclared_events": True})
        served = serve(dsn, tmp_path_factory.mktemp("serve"), workers=2)
        try:
            yield served, dsn, key
        finally:
            served.terminate()


def _log_entries(served: Served) -> list[dict]:
    lines = [line for line in served.log().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_metrics_add_up_across_workers(two_workers: tuple[Served, str, str]) -> None:
    served, _, key = two_workers
    before = sample(served.base_url, "footfall_messages_total", outcome="accepted")
    for _ in range(40):  # a new connection each time: both workers answer some
        body = {"event": "Ping", "anonymousId": "a", "messageId": str(uuid.uuid4())}
        response = httpx.post(served.base_url + "/v1/track", json=body, auth=(key, ""))
        assert response.status_code == 200
    pids = {
        entry["pid"]
        for entry in _log_entries(served)
        if entry["logger"] == "footfall.access" and entry["route"] == "/v1/{kind}"
    }
    assert len(pids) == 2, "both workers should have taken requests"
    for _ in range(6):  # whichever worker answers the scrape, it reports both
        after = sample(served.base_url, "footfall_messages_total", outcome="accepted")
        assert after - before == 40


def test_logs_have_request_ids_and_no_pii(two_workers: tuple[Served, str, str]) -> None:
    served, _, key = two_workers
    transport = httpx.HTTPTransport(local_address=CLIENT_IP)
    message = {
        "type": "identify",
        "messageId": str(uuid.uuid4()),
        "userId": USER_ID,
        "anonymousId": "anon-pii",
        "traits": {"email": EMAIL, "phone": PHONE},
        "context": {"ip": CONTEXT_IP, "page": {"url": f"https://shop.example/?email={EMAIL}"}},
    }
    with httpx.Client(base_url=served.base_url, transport=transport) as http:
        ok = http.post(
            "/v1/batch",
            json={"batch": [message], "writeKey": key},
            headers={"X-Request-ID": "pii-test-1", "X-Forwarded-For": FORWARDED_IP},
        )
        assert ok.status_code == 200 and ok.json()["accepted"] == 1
        assert ok.headers["X-Request-ID"] == "pii-test-1"
        basic = http.post("/v1/identify", json=message, auth=(key, ""))
        assert basic.json()["duplicates"] == 1
        data = base64.urlsafe_b64encode(json.dumps(message).encode()).decode()
        assert http.get(f"/v1/pixel/identify?data={data}&writeKey={key}").status_code == 200
        assert (
            http.post("/v1/batch", json={"batch": [message]}, auth=(EMAIL, "")).status_code == 401
        )
        assert http.post("/v1/batch", content=b"{not json", auth=(key, "")).status_code == 400

    entries = _log_entries(served)
    text = served.log()
    for secret in (EMAIL, USER_ID, PHONE, CONTEXT_IP, CLIENT_IP, FORWARDED_IP, key, "email="):
        assert secret not in text, f"{secret!r} found in the logs"
    assert base64.b64encode(f"{key}:".encode()).decode() not in text
    access = [e for e in entries if e.get("request_id") == "pii-test-1"]
    assert access == [
        {
            "ts": access[0]["ts"],
            "level": "info",
            "logger": "footfall.access",
            "pid": access[0]["pid"],
            "msg": "request",
            "request_id": "pii-test-1",
            "method": "POST",
            "route": "/v1/{kind}",
            "status": 200,
            "duration_ms": access[0]["duration_ms"],
        }
    ]
    statuses = {e["status"] for e in entries if e["logger"] == "footfall.access"}
    assert {200, 400, 401} <= statuses
    assert not any(e["logger"] == "uvicorn.access" for e in entries)
