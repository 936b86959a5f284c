"""No raw PII at rest: PII sent in every field the protocol allows is found in no column of any table."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import psycopg

from tests.privacy.conftest import message

EMAIL = "jane.doe.pii@example.org"
EMAIL_ENCODED = "jane.doe.pii%40example.org"
PHONE = "+49 170 5550123"
PHONE_DIGITS = "1705550123"
CLIENT_IP = "203.0.113.77"
CONTEXT_IP = "198.51.100.23"
USER_ID = "customer-4711-zeta"
TOKEN = "tok_SECRETsecret9931"
PASSWORD = "hunter2-PASSWORD-xyz"
SESSION = "sess-SECRET-5512"
CUSTOMER_NO = "CUST-0099-KAPPA"  # not recognisable as PII: only the schema mark protects it

RAW_VALUES = [EMAIL, EMAIL_ENCODED, PHONE, PHONE_DIGITS, "5550123", CLIENT_IP, CONTEXT_IP,
              USER_ID, TOKEN, PASSWORD, SESSION, CUSTOMER_NO]  # fmt: skip

URL = (
    f"https://shop.example/account?email={EMAIL_ENCODED}&token={TOKEN}&page=2#access_token={TOKEN}"
)
REFERRER = f"https://u:{PASSWORD}@login.example/cb?password={PASSWORD}&session={SESSION}&ok=1"
TITLE = f"Welcome {EMAIL}, call {PHONE}"
TEXT = f"Contact me at {EMAIL} or {PHONE}"


def _context() -> dict:
    return {
        "ip": CONTEXT_IP,
        "page": {
            "url": URL,
            "referrer": REFERRER,
            "title": TITLE,
            "path": f"/users/{EMAIL}/profile",
            "search": f"?email={EMAIL_ENCODED}&token={TOKEN}",
        },
        "campaign": {"source": "newsletter", "term": EMAIL, "content": PHONE},
        "traits": {"email": EMAIL, "phone": PHONE, "nickname": TEXT},
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0",
        "consent": {"categoryPreferences": {"analytics": True}},
    }


def _schema_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "schemas" / "order_placed"
    folder.mkdir(parents=True)
    (folder / "1-0-0.json").write_text(
        json.dumps(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {
                    "buyer_email": {"type": "string", "x-footfall-pii": "hash"},
                    "customer_no": {"type": "string", "x-footfall-pii": "hash"},
                    "buyer_phone": {"type": "string", "x-footfall-pii": "drop"},
                    "gift_note": {"type": "string", "x-footfall-pii": "redact"},
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "sku": {"type": "string"},
                                "engraving": {"type": "string", "x-footfall-pii": "redact"},
                            },
                        },
                    },
                    "comment": {"type": "string"},
                },
            }
        )
    )
    return tmp_path / "schemas"


def _messages() -> list[dict]:
    context = _context()
    return [
        message("identify", userId=USER_ID, anonymousId="dev-pii-1", context=context,
                traits={"email": EMAIL, "phone": PHONE, "name": "Jane Doe", "bio": TEXT,
                        "address": {"street": "1 Main St", "city": "Berlin"}}),
        message("track", event="Free Text", userId=USER_ID, anonymousId="dev-pii-1",
                context=context, properties={"text": TEXT, "nested": {"deep": [TEXT, URL]},
                                             "email": EMAIL, "link": URL}),
        message("track", event="Order Placed", userId=USER_ID, anonymousId="dev-pii-1",
                context=context,
                properties={"buyer_email": EMAIL, "buyer_phone": PHONE, "gift_note": "Love, Jane",
                            "customer_no": CUSTOMER_NO,
                            "items": [{"sku": "A1", "engraving": "J.D. 1990"}], "comment": TEXT}),
        message("page", name=TITLE, anonymousId="dev-pii-1", userId=USER_ID, context=context,
                properties={"url": URL, "referrer": REFERRER, "title": TITLE, "path": "/account",
                            "search": f"?token={TOKEN}"}),
        message("alias", previousId=EMAIL, userId=USER_ID, context=context),
        message("group", groupId="acme", userId=USER_ID, traits={"email": EMAIL, "note": TEXT},
                context=context),
        # An email as anonymousId: hashed, not stored as sent.
        message("track", event="Free Text", anonymousId=EMAIL, context=context,
                properties={"text": TEXT}),
        # Consent decision (goes to the ledger too).
        message("track", event="Consent Updated", anonymousId="dev-pii-1", userId=USER_ID,
                context=context, properties={"analytics": True, "policy_version": "3"}),
        # Failures keep the message, pseudonymized: no raw PII there either.
        message("track", event="Free Text", userId=USER_ID, anonymousId="dev-pii-1",
                timestamp="not a date", context=context, properties={"text": TEXT}),
        message("track", event="Order Placed", userId=USER_ID, context=context,
                properties={"buyer_email": 12345, "comment": TEXT, "customer_no": CUSTOMER_NO}),
        message("bogus", userId=USER_ID, context=context, properties={"text": TEXT}),
    ]  # fmt: skip


def _text_columns(dsn: str) -> list[tuple[str, str, str]]:
    rows = psycopg.connect(dsn, autocommit=True).execute(
        "SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE t.table_type = 'BASE TABLE'"
        " AND c.table_schema NOT IN ('pg_catalog', 'information_schema')"
        " AND (c.data_type IN ('text', 'character varying', 'character', 'jsonb', 'json',"
        " 'inet', 'cidr', 'bytea') OR c.udt_name IN ('_text', '_varchar', '_jsonb'))"
    )
    return list(rows)


def _find(dsn: str, needle: str) -> list[str]:
    hits = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema, table, column in _text_columns(dsn):
            (count,) = conn.execute(
                f'SELECT count(*) FROM "{schema}"."{table}"'
                f' WHERE strpos(lower("{column}"::text), lower(%s)) > 0',
                (needle,),
            ).fetchone()
            if count:
                hits.append(f"{schema}.{table}.{column} ({count})")
    return hits


def test_no_raw_pii_in_any_table(new_site, tmp_path: Path) -> None:
    site = new_site(settings={"schema_dir": str(_schema_dir(tmp_path))})
    headers = {"X-Forwarded-For": f"10.1.1.1, {CLIENT_IP}", "User-Agent": "pii-test"}
    answer = site.post(_messages(), headers=headers)
    assert answer["accepted"] == 8, answer
    assert len(answer["failed"]) == 3, answer
    # The pixel and single-message endpoints too.
    pixel = message("page", userId=USER_ID, context=_context(), properties={"url": URL})
    data = base64.urlsafe_b64encode(json.dumps(pixel).encode()).decode()
    httpx.get(
        site.base_url + "/v1/pixel/page",
        params={"data": data, "writeKey": site.write_key},
        headers=headers,
        timeout=30,
    ).raise_for_status()
    httpx.post(
        site.base_url + "/v1/track",
        json=message("track", userId=USER_ID, properties={"text": TEXT}, context=_context()),
        auth=(site.write_key, ""),
        headers=headers,
        timeout=30,
    ).raise_for_status()

    assert _find(site.dsn, "newsletter"), "the scan finds what is stored"
    for value in RAW_VALUES:
        assert _find(site.dsn, value) == [], f"{value!r} stored"

    rows = site.events()
    assert len(rows) == 10
    assert {str(r["ip_network"]) for r in rows} == {"203.0.113.0/24"}  # the client's, truncated
    assert all(len(r["user_id"]) == 64 for r in rows if r["user_id"])
    assert all(r["pii_key_id"] == "k1" for r in rows if r["user_id"])
    order = next(r for r in rows if r["event"] == "Order Placed")
    assert order["properties"]["gift_note"] == "[redacted]"
    assert "buyer_phone" not in order["properties"]
    assert len(order["properties"]["buyer_email"]) == 64
    assert order["properties"]["items"] == [{"sku": "A1", "engraving": "[redacted]"}]
    page = next(r for r in rows if r["type"] == "page" and r["event"])
    assert page["page_url"] == "https://shop.example/account?page=2"
    assert page["page_referrer"] == "https://login.example/cb?ok=1"
    assert page["page_title"] == "Welcome [email], call [phone]"
    free = next(r for r in rows if r["event"] == "Free Text" and r["user_id"])
    assert free["properties"]["text"] == "Contact me at [email] or [phone]"
    assert free["properties"]["nested"] == {
        "deep": ["Contact me at [email] or [phone]", "https://shop.example/account?page=2"]
    }
    ledger = site.query("SELECT * FROM consent_log WHERE site_id = %s", (site.site_id,))
    hashed_ids = {r["user_id"] for r in rows if r["user_id"]}
    assert len(hashed_ids) == 1  # one user, hashed the same everywhere
    assert len(ledger) == 1 and ledger[0]["user_id"] in hashed_ids


def test_forwarded_for_is_ignored_from_an_untrusted_peer(collector) -> None:
    """The session collector trusts no proxy: a client cannot choose its IP by a header."""
    httpx.post(
        collector.base_url + "/v1/batch",
        json={"batch": [message("track", event="Element Clicked", anonymousId="x",
                                properties={"selector": "a", "tag": "a"})]},
        auth=(collector.write_key, ""),
        headers={"X-Forwarded-For": CLIENT_IP, "Forwarded": f"for={CONTEXT_IP}"},
        timeout=30,
    ).raise_for_status()  # fmt: skip
    (row,) = collector.events()
    assert str(row["ip_network"]) == "127.0.0.0/24"


def test_ip_storage_none(new_site) -> None:
    site = new_site(settings={"ip_storage": "none"})
    site.post([message("track", anonymousId="x")], headers={"X-Forwarded-For": CLIENT_IP})
    (row,) = site.events()
    assert row["ip_network"] is None


def test_client_cannot_claim_already_pseudonymized(collector) -> None:
    """The collector's own marker is stripped from input: PII is hashed regardless."""
    import httpx

    message = {
        "type": "identify",
        "anonymousId": "forged-1",
        "userId": "raw-user-123",
        "traits": {"email": "forger@example.com"},
        "_footfall_pseudonymized": "k1",
        "_footfall_truncated": True,
    }
    response = httpx.post(
        collector.base_url + "/v1/batch", json={"batch": [message]}, auth=(collector.write_key, "")
    )
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text
    row = collector.events()[0]
    assert row["user_id"] not in (None, "raw-user-123")
    assert row["traits"]["email"] != "forger@example.com"
