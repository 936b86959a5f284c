"""Fixtures for the privacy tests: a collector behind a trusted proxy, with the admin API on."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support import ServerThread, collector_settings, make_site, query

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
PII_KEY = "privacy-tests-key-0123456789abcdef0123456789"


@pytest.fixture(scope="session")
def privacy_server(database: str) -> Iterator[ServerThread]:
    """A second collector on the session database: 127.0.0.1 is a trusted proxy, admin API on."""
    settings = collector_settings(
        database, trusted_proxies="127.0.0.1", admin_token=ADMIN_TOKEN, pii_key=PII_KEY
    )
    thread = ServerThread(settings).start()
    yield thread
    thread.stop()


@dataclass
class PrivacySite:
    base_url: str
    dsn: str
    site_id: int
    name: str
    write_key: str

    def post(self, messages: list[dict[str, Any]], headers: dict[str, str] | None = None) -> dict:
        response = httpx.post(
            self.base_url + "/v1/batch",
            json={"batch": messages},
            auth=(self.write_key, ""),
            headers=headers or {},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def admin(
        self, path: str, body: dict[str, Any], token: str | None = ADMIN_TOKEN
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(
            self.base_url + "/admin/privacy/" + path,
            json={"site": self.name, **body},
            headers=headers,
            timeout=60,
        )

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        return query(self.dsn, sql, params)

    def events(self) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM events WHERE site_id = %s ORDER BY timestamp, message_id",
            (self.site_id,),
        )


@pytest.fixture
def new_site(privacy_server: ServerThread, database: str):
    """Make a site on the privacy collector: new_site(consent_mode=..., settings={...})."""

    def make(consent_mode: str = "implied", settings: dict[str, Any] | None = None) -> PrivacySite:
        name = f"privacy-{uuid.uuid4().hex[:8]}"
        site_id, key = make_site(
            database,
            name=name,
            allowed_origins=["*"],
            consent_mode=consent_mode,
            settings={"allow_undeclared_events": True, **(settings or {})},
        )
        return PrivacySite(privacy_server.base_url, database, site_id, name, key)

    return make


def message(kind: str = "track", **fields: Any) -> dict[str, Any]:
    """A message with a fresh messageId; track messages default to a custom event."""
    base: dict[str, Any] = {"type": kind, "messageId": str(uuid.uuid4())}
    if kind == "track":
        base["event"] = "Thing Happened"
    base.update(fields)
    return base


def dump(value: Any) -> str:
    return json.dumps(value, default=str)
