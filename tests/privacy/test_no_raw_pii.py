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
TEXT_IP = "192.0.2.146"  # IP addresses in free text (issue 9, item 16)
TEXT_IPV6 = "2001:db8:4006:812::200e"
PROBE = "marguerite.probe@example.net"  # quoted by the validator's own messages (item 13)

RAW_VALUES = [EMAIL, EMAIL_ENCODED, PHONE, PHONE_DIGITS, "5550123", CLIENT_IP, CONTEXT_IP,
              USER_ID, TOKEN, PASSWORD, SESSION, CUSTOMER_NO, TEXT_IP, TEXT_IPV6, PROBE,
              "marguerite"]  # fmt: skip

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
                    "quantity": {"type": "integer"},
                    "coupon": {"type": "string", "maxLength": 4},
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
        # Error messages never quote the value (item 13): an e-mail where a number belongs,
        # an IP in a string that is too long.
        message("track", event="Order Placed", userId=USER_ID, context=context,
                properties={"quantity": PROBE, "coupon": TEXT_IPV6, PROBE: TEXT_IP}),
        # Non-string identifiers (item 14): pseudonymized by value in failed_events.raw.
        message("track", event="Free Text", anonymousId=[EMAIL, PROBE], context=context),
        message("identify", anonymousId="dev-pii-1", userId={"email": PROBE, "id": USER_ID},
                context=context),
        message("track", event="Free Text", anonymousId="dev-pii-1", timestamp=PROBE,
                context={**context, "sessionId": [EMAIL]}),
        # IPs in free text (item 16), and an e-mail / phone where a zone / locale belongs.
        message("track", event="Free Text", anonymousId="dev-pii-1",
                context={**context, "timezone": PROBE, "locale": PHONE},
                properties={"text": f"seen from {TEXT_IP} and [{TEXT_IPV6}]:443"}),
        message("track", event="Free Text", anonymousId="dev-pii-1",
                context={**context, "timezone": TEXT_IP, "locale": f"en-{TEXT_IP}"},
                properties={"text": TEXT_IPV6}),
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
    assert answer["accepted"] == 10, answer
    assert len(answer["failed"]) == 7, answer
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
    assert len(rows) == 12
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
    texts = [r["properties"].get("text") for r in rows if r["event"] == "Free Text"]
    assert "seen from [ip] and [[ip]]:443" in texts and "[ip]" in texts
    assert all(r["timezone"] is None and r["locale"] is None for r in rows)
    # The failures say what was wrong without saying what was sent.
    errors = {
        e["message"]
        for f in site.query("SELECT errors FROM failed_events WHERE site_id = %s", (site.site_id,))
        for e in f["errors"]
    }
    assert {"must be of type integer (type)", "is longer than 4 characters (maxLength)"} <= errors
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


def test_site_wide_sensitive_params_in_failed_events_and_after_replay(
    database: str, tmp_path: Path
) -> None:
    """FOOTFALL_SENSITIVE_PARAMS strips ``promo`` from events, from failed_events.raw, and
    from what ``footfall failed replay`` stores (issue 9, item 15)."""
    import os
    import subprocess
    import sys

    from tests.support import ServerThread, collector_settings, make_site

    settings = collector_settings(database, sensitive_params="promo,voucher")
    server = ServerThread(settings).start()
    try:
        schema_dir = tmp_path / "schemas"
        site_id, key = make_site(database, settings={"schema_dir": str(schema_dir), "strict": True})
        url = "https://shop.example/cart?promo=SECRET-PROMO-77&page=2"
        context = {"page": {"url": url, "search": "?voucher=SECRET-VOUCHER-88"}}
        page = message("page", anonymousId="promo-1", context=context)
        track = message("track", event="Cart Viewed", anonymousId="promo-1", context=context,
                        properties={"link": url})  # fmt: skip
        answer = httpx.post(
            server.base_url + "/v1/batch",
            json={"batch": [page, track]},
            auth=(key, ""),
            timeout=30,
        ).json()
        assert answer["accepted"] == 1 and answer["failed"][0]["reason"] == "unknown_event"
        for secret in ("SECRET-PROMO-77", "SECRET-VOUCHER-88"):
            assert _find(database, secret) == [], secret

        (schema_dir / "cart_viewed").mkdir(parents=True)
        (schema_dir / "cart_viewed" / "1-0-0.json").write_text(json.dumps({"type": "object"}))
        env = {**os.environ, "DATABASE_URL": database, "FOOTFALL_ENV": "test",
               "FOOTFALL_SENSITIVE_PARAMS": "promo,voucher"}  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "footfall", "failed", "replay", "--site-id", str(site_id)],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        assert json.loads(out)["stored"] == 1
        rows = (
            psycopg.connect(database, autocommit=True)
            .execute(
                "SELECT type, page_url, page_search, properties FROM events WHERE site_id = %s",
                (site_id,),
            )
            .fetchall()
        )
        assert len(rows) == 2
        for _, page_url, page_search, properties in rows:
            assert page_url == "https://shop.example/cart?page=2"
            assert page_search in (None, "")
        assert rows[0][3].get("link", rows[1][3].get("link")) == "https://shop.example/cart?page=2"
        for secret in ("SECRET-PROMO-77", "SECRET-VOUCHER-88"):
            assert _find(database, secret) == [], secret
    finally:
        server.stop()
