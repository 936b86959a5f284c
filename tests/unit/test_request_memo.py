"""The per-request memo (pipeline/types.py RequestMemo): work done once per request, same results.

Each test counts the work a batch costs (HMACs, client-hint parses, geo look-ups)
and compares the rows with those of a pipeline whose memo remembers nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Hashable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from footfall.pipeline import device, privacy
from footfall.pipeline.consent import LedgerView, consent_step
from footfall.pipeline.device import device_step
from footfall.pipeline.geo import GeoStep
from footfall.pipeline.identity import IdentityHygiene
from footfall.pipeline.privacy import (
    MemoKey,
    PiiKey,
    PrivacyPolicy,
    SaltRing,
    memo_key,
    privacy_step,
    stored_anonymous_id,
)
from footfall.pipeline.process import Pipeline
from footfall.pipeline.types import BatchPlan, RequestContext, RequestMemo, Site
from footfall.schemas.registry import SchemaRegistry

KEY = PiiKey("k1", b"memo-tests-key-0123456789abcdef0123456789")
DAY = date(2026, 12, 2)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
HINTS = {
    "sec-ch-ua": '"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"',
    "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Windows"',
    "sec-ch-ua-platform-version": '"15.0.0"',
}


class ForgetfulMemo(RequestMemo):
    """A memo that remembers nothing: every step computes everything per message."""

    def once(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        return compute()

    def table(self, key: Hashable) -> dict[Any, Any]:
        return {}


class FakeGeo:
    """A GeoLookup stand-in: a deterministic answer per IP, and a count of look-ups."""

    def __init__(self) -> None:
        self.lookups = 0

    def lookup(self, ip: str) -> dict[str, Any]:
        self.lookups += 1
        if ip.startswith("10."):
            return {}
        return {"geo_country": "GB", "geo_city": f"City {ip.rsplit('.', 1)[-1]}", "geo_asn": 1}


class CountingHmac:
    """Stands in for the ``hmac`` module in pipeline/privacy.py: counts HMACs per input."""

    def __init__(self) -> None:
        self.inputs: list[bytes] = []

    def new(self, key: bytes, message: bytes, digestmod: Any) -> Any:
        self.inputs.append(message)
        return hmac.new(key, message, digestmod)


@pytest.fixture
def counting_hmac(monkeypatch: pytest.MonkeyPatch) -> CountingHmac:
    counter = CountingHmac()
    monkeypatch.setattr(privacy, "hmac", counter)
    return counter


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site schema with every ``x-footfall-pii`` action (the built-in ones have none)."""
    directory = tmp_path_factory.mktemp("schemas")
    (directory / "signed_up").mkdir()
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "email": {"type": "string", "x-footfall-pii": "hash"},
            "phone": {"type": "string", "x-footfall-pii": "drop"},
            "note": {"type": "string", "x-footfall-pii": "redact"},
            "plan": {"type": "string"},
        },
    }
    (directory / "signed_up" / "1-0-0.json").write_text(json.dumps(schema))
    return directory


def build(geo: FakeGeo | None = None, registry: SchemaRegistry | None = None) -> Pipeline:
    policy = PrivacyPolicy(["ref"])
    salts = SaltRing()
    salts.set(DAY, {DAY: b"t" * 32, DAY - timedelta(days=1): b"y" * 32})
    return Pipeline(
        registry=registry or SchemaRegistry(None),
        pii_key=KEY,
        steps=[
            consent_step(KEY),
            IdentityHygiene(KEY),
            privacy_step(KEY, policy, salts=salts),
            device_step,
            GeoStep(geo),  # type: ignore[arg-type]  # duck-typed GeoLookup
        ],
        privacy=policy,
    )


def context(
    site: Site,
    memo: RequestMemo | None = None,
    *,
    ip: str | None = "81.2.69.160",
    headers: dict[str, str] | None = None,
    user_agent: str | None = CHROME,
) -> RequestContext:
    raw = [(k.encode(), v.encode()) for k, v in (HINTS if headers is None else headers).items()]
    return RequestContext(
        site=site,
        received_at=NOW,
        ip=ip,
        user_agent=user_agent,
        headers=Headers(raw=raw),
        ledger=LedgerView(),
        memo=memo if memo is not None else RequestMemo(),
    )


def page(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": "page",
        "messageId": f"m-{n}",
        "anonymousId": "anon-1",
        "timestamp": "2026-12-02T11:59:00Z",
        "properties": {"url": "https://shop.example/a?token=s3cret&x=1", "path": "/a"},
        "context": {"userAgent": CHROME, "locale": "en-US", "timezone": "Europe/Berlin"},
        **fields,
    }


SITE = Site(1, "s", "k")


def test_memo_computes_once_per_key() -> None:
    memo = RequestMemo()
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert memo.once("a", compute) == 1
    assert memo.once("a", compute) == 1
    assert memo.once("b", compute) == 2
    assert memo.table("t") is memo.table("t")
    assert memo.table("t") is not memo.table("u")


def test_same_user_id_costs_one_hmac_per_request(counting_hmac: CountingHmac) -> None:
    batch = [page(n, userId="jane@example.org") for n in range(5)]
    plan = build().run(batch, context(SITE))
    assert counting_hmac.inputs.count(b"jane@example.org") == 1
    assert {row.user_id for row in plan.rows} == {KEY.hash("jane@example.org")}

    counting_hmac.inputs.clear()
    forgetful = build().run(batch, context(SITE, ForgetfulMemo()))
    assert counting_hmac.inputs.count(b"jane@example.org") == 5  # what it cost before
    assert forgetful.rows == plan.rows

    counting_hmac.inputs.clear()
    build().run(batch[:2], context(SITE))
    build().run(batch[2:4], context(SITE))
    # Nothing is kept from one request to the next.
    assert counting_hmac.inputs.count(b"jane@example.org") == 2


def test_a_personal_anonymous_id_is_hashed_once(counting_hmac: CountingHmac) -> None:
    batch = [page(n, anonymousId="+49 170 1234567") for n in range(4)]
    plan = build().run(batch, context(SITE))
    assert counting_hmac.inputs.count(b"+49 170 1234567") == 1
    assert {row.anonymous_id for row in plan.rows} == {KEY.hash("+49 170 1234567")}


def test_visitor_hash_once_per_request(counting_hmac: CountingHmac) -> None:
    site = Site(2, "anon", "k", consent_mode="anonymous", settings={"honor_gpc": True})
    batch = [page(n) for n in range(6)]
    ctx = context(site, headers={**HINTS, "sec-gpc": "1"})
    plan = build().run(batch, ctx)
    visitor = f"2|81.2.69.160|{CHROME}".encode()
    assert counting_hmac.inputs.count(visitor) == 2  # today's salt and yesterday's
    expected = hmac.new(b"t" * 32, visitor, hashlib.sha256).hexdigest()
    assert {row.visitor_hash for row in plan.rows} == {expected}
    assert all(row.anonymous_id is None for row in plan.rows)


def test_client_hints_and_geo_once_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[int] = []
    real = device.hints_from_headers

    def counted(headers: Any) -> Any:
        parses.append(1)
        return real(headers)

    monkeypatch.setattr(device, "hints_from_headers", counted)
    geo = FakeGeo()
    batch = [page(n) for n in range(8)]
    plan = build(geo).run(batch, context(SITE))
    assert (len(parses), geo.lookups) == (1, 1)
    assert {(row.os_name, row.os_version, row.geo_city) for row in plan.rows} == {
        ("Windows", "11", "City 160")
    }
    forgetful = build(FakeGeo()).run(batch, context(SITE, ForgetfulMemo()))
    assert forgetful.rows == plan.rows


def test_scrubbed_strings_are_shared_but_rows_are_not() -> None:
    batch = [page(n) for n in range(3)]
    plan = build().run(batch, context(SITE))
    urls = {row.page_url for row in plan.rows}
    assert urls == {"https://shop.example/a?x=1"}
    first, second = plan.rows[0], plan.rows[1]
    assert first.properties == second.properties
    assert first.properties is not second.properties
    assert first.context is not second.context


def test_memo_key_is_the_key() -> None:
    memo = RequestMemo()
    cached = memo_key(KEY, memo)
    assert isinstance(cached, MemoKey)
    assert memo_key(KEY, memo) is cached
    assert memo_key(cached, memo) is cached
    assert memo_key(PiiKey("k2", b"other"), memo) is not cached
    for value in ("user-1", "jane@example.org", "10.1.2.3", "d3b07384"):
        assert cached.hash(value) == KEY.hash(value)
        assert stored_anonymous_id(value, cached) == stored_anonymous_id(value, KEY)
    assert cached.key_id == KEY.key_id


# --- cached and uncached pipelines agree on any batch -------------------------------

IDS = st.sampled_from(
    ["user-1", "user-2", "jane@example.org", "+49 170 1234567", "10.2.3.4", "null", "0", 7]
)
ANONYMOUS_IDS = st.sampled_from(["anon-1", "anon-2", "bob@example.org", "192.0.2.1", 12, ""])
TEXT = st.sampled_from(
    [
        "https://shop.example/a?token=abc&x=1",
        "https://shop.example/b?ref=mail#access_token=t",
        "call +44 20 7946 0958",
        "mail jane@example.org",
        "plain words",
        "1.2.3.4",
    ]
)
AGENTS = st.sampled_from(
    [
        CHROME,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ]
)


@st.composite
def messages(draw: st.DrawFn, n: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["page", "track", "track", "identify", "alias", "group"]))
    message: dict[str, Any] = {"type": kind, "messageId": f"m-{n}"}
    if draw(st.booleans()):
        message["anonymousId"] = draw(ANONYMOUS_IDS)
    if draw(st.booleans()) or "anonymousId" not in message:
        message["userId"] = draw(IDS)
    if kind == "alias":
        message["previousId"] = draw(IDS)
    if kind == "group":
        message["groupId"] = draw(TEXT)
    if kind == "track":
        event = draw(st.sampled_from(["Signed Up", "Consent Updated", "Custom Thing"]))
        message["event"] = event
        if event == "Signed Up":
            message["properties"] = {
                "email": draw(IDS.map(str)),
                "phone": "+49 170 1234567",
                "note": draw(TEXT),
                "plan": draw(TEXT),
            }
        elif event == "Consent Updated":
            message["properties"] = {"analytics": draw(st.booleans()), "ads": False}
        else:
            message["properties"] = {"link": draw(TEXT), draw(TEXT): draw(TEXT), "n": 3}
    if kind == "page":
        message["properties"] = {"url": draw(TEXT), "title": draw(TEXT)}
    if kind == "identify":
        message["traits"] = {"email": draw(IDS), "plan": draw(TEXT), "Name": "Jane"}
    context: dict[str, Any] = {
        "page": {"url": draw(TEXT), "referrer": draw(TEXT)},
        "locale": draw(st.sampled_from(["en-US", "de_DE", "jane@example.org"])),
        "timezone": draw(st.sampled_from(["Europe/Berlin", "Mars/Base"])),
        "ip": "203.0.113.9",
    }
    if draw(st.booleans()):
        context["userAgent"] = draw(AGENTS)
    if draw(st.booleans()):
        context["userAgentData"] = {
            "brands": [{"brand": "Google Chrome", "version": "124"}],
            "mobile": draw(st.booleans()),
            "platform": draw(st.sampled_from(["Android", "macOS"])),
        }
    if draw(st.booleans()):
        context["consent"] = {"categoryPreferences": {"analytics": draw(st.booleans())}}
    if draw(st.booleans()):
        context["traits"] = {"phone": draw(TEXT)}
    message["context"] = context
    if draw(st.integers(0, 9)) == 0:
        del message["type"]  # fails validation: kept (pseudonymized) as a failure
    if draw(st.integers(0, 9)) == 0:
        message["timestamp"] = "not a time"
    return message


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 8))
    headers = dict(HINTS) if draw(st.booleans()) else {}
    if draw(st.booleans()):
        headers["sec-gpc"] = "1"
    return {
        "mode": draw(st.sampled_from(["implied", "anonymous", "required"])),
        "ip": draw(st.sampled_from([None, "81.2.69.160", "10.0.0.1", "2001:db8::1"])),
        "user_agent": draw(st.sampled_from([None, CHROME])),
        "headers": headers,
        "batch": [draw(messages(n)) for n in range(count)],
    }


def _outcome(plan: BatchPlan) -> tuple[Any, ...]:
    return plan.rows, plan.failures, plan.refused


@pytest.fixture(scope="module")
def registry(schema_dir: Path) -> Iterator[SchemaRegistry]:
    yield SchemaRegistry(schema_dir)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
def test_cached_and_uncached_pipelines_agree(
    request: dict[str, Any], registry: SchemaRegistry
) -> None:
    site = Site(3, "p", "k", consent_mode=request["mode"], settings={"allow_bots": True})
    geo, reference_geo = FakeGeo(), FakeGeo()
    options: dict[str, Any] = {
        "ip": request["ip"],
        "headers": request["headers"],
        "user_agent": request["user_agent"],
    }
    cached = build(geo, registry).run(request["batch"], context(site, **options))
    uncached = build(reference_geo, registry).run(
        request["batch"], context(site, ForgetfulMemo(), **options)
    )
    assert _outcome(cached) == _outcome(uncached)
    assert geo.lookups <= 1  # the request's one IP, looked up once


def test_a_context_copied_with_other_headers_reads_its_own() -> None:
    """dataclasses.replace keeps the memo: what it read from headers is keyed by them."""
    from dataclasses import replace

    browser = context(SITE)
    android = replace(
        browser,
        headers=Headers({"sec-ch-ua-platform": '"Android"', "sec-ch-ua-mobile": "?1"}),
    )
    assert android.memo is browser.memo
    rows = [build().run([page(n)], ctx).rows[0] for n, ctx in enumerate([browser, android])]
    assert [(r.os_name, r.device_type) for r in rows] == [
        ("Windows", "desktop"),
        ("Android", "mobile"),
    ]
