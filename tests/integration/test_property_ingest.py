"""Property test (issue 9): Segment envelopes and hostile variants through the real app.

Hypothesis generates messages — valid ones and ones with wrong types, NUL
characters, lone surrogates, huge numbers, deep nesting, extreme timestamps,
non-string ids — sends them over real HTTP to the real collector (real
PostgreSQL) and checks, for every request:

- never a 5xx;
- a 200 accounts for every message: accepted + duplicates + failed + refused ==
  messages sent, every failure has a documented reason and is in failed_events,
  and the events table grew by exactly ``accepted``;
- anything else (400/401/413 ...) stored nothing.

Derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from footfall.pipeline import reasons
from tests.support import Collector

FAILURE_REASONS = {
    value for name, value in vars(reasons).items() if name.isupper() and isinstance(value, str)
}
REFUSAL_REASONS = {"consent", "erased", "bot", "rate_limited"}

# -- a well-formed Segment message ------------------------------------------------------

simple_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-1000, 10**9), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
# A few shared ids, so retries (duplicates) and consent decisions meet later messages.
# FRESH is replaced by a new uuid when the request is sent (Hypothesis would
# otherwise keep drawing the same simplest uuid, making everything a duplicate).
FRESH = "<fresh>"
message_id = st.sampled_from([FRESH, FRESH, FRESH, "dup-1", "dup-2"])
anonymous_id = st.sampled_from([FRESH, FRESH, "visitor-1", "visitor-2"])
good_time = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
    lambda d: d.isoformat() + "Z"
)
good_context = st.fixed_dictionaries(
    {},
    optional={
        "timezone": st.sampled_from(["Europe/Paris", "America/New_York", "UTC"]),
        "locale": st.sampled_from(["fr-FR", "en"]),
        "page": st.fixed_dictionaries({"path": st.just("/pricing"), "title": st.text(max_size=20)}),
        "library": st.just({"name": "analytics-python", "version": "2.3.0"}),
    },
)
good_message = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "page", "page", "screen", "identify", "alias", "group"]),
        "anonymousId": anonymous_id,
        "messageId": message_id,
    },
    optional={
        "userId": st.uuids().map(str),
        "event": st.sampled_from(["Signed Up", "Consent Updated"]),
        "name": st.text(max_size=30),
        "timestamp": good_time,
        "sentAt": good_time,
        "context": good_context,
        "properties": st.one_of(
            st.dictionaries(st.text(max_size=10), simple_json, max_size=4),
            st.fixed_dictionaries({"analytics": st.booleans()}),  # a consent decision
        ),
        "traits": st.dictionaries(st.text(max_size=10), simple_json, max_size=4),
    },
).map(lambda m: _complete(m))


def _complete(message: dict[str, Any]) -> dict[str, Any]:
    """What each type requires (Segment spec), so unmutated messages are stored."""
    kind = message["type"]
    if kind == "track":
        message.setdefault("event", "Signed Up")
    elif kind == "alias":
        message.update(previousId=message["anonymousId"], userId=FRESH)
    elif kind == "group":
        message["groupId"] = "group-1"
    return message


# -- hostile variants: one or two fields replaced --------------------------------------


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=10),
    st.sampled_from(["a\u0000b", "\u0000", "x" * 300, "m" * 5120, "\u202e\u0007\x7f", "é✓𝄞"]),
)
rare_malformed = st.sampled_from(["\ud800", 10**400, float("inf")])  # the body is refused: 400
hostile_value = st.one_of(
    hostile_text,
    hostile_text,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=30), max_size=3),  # e.g. an id that is a list holding an e-mail
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    st.sampled_from([5, 19, 25, 300, 1100]).map(_nested),
    rare_malformed,  # one choice in many: most requests get past the JSON parser
)
extreme_time = st.sampled_from(
    [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59+14:00",
        "0001-01-01T00:00:00-12:00",
        "1969-12-31T23:59:59Z",
        "8999-06-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "not a date",
    ]
)
FIELDS = [
    "type", "messageId", "anonymousId", "userId", "event", "name", "timestamp", "sentAt",
    "originalTimestamp", "context", "properties", "traits", "previousId", "groupId",
    "context.timezone", "context.locale", "context.ip", "context.sessionId", "context.schema",
    "context.page", "properties.deep",
]  # fmt: skip
mutation = st.one_of(
    st.tuples(st.sampled_from(FIELDS), hostile_value),
    st.tuples(st.sampled_from(["timestamp", "sentAt", "originalTimestamp"]), extreme_time),
)


def _mutate(pair: tuple[dict[str, Any], list[tuple[str, Any]]]) -> dict[str, Any]:
    message, mutations = pair
    message = dict(message)
    for field, value in mutations:
        outer, _, inner = field.partition(".")
        if not inner:
            message[outer] = value
            continue
        nested = message.get(outer)
        nested = dict(nested) if isinstance(nested, dict) else {}
        nested[inner] = value
        message[outer] = nested
    return message


mutations = st.one_of(st.just([]), st.just([]), st.lists(mutation, min_size=1, max_size=2))
message = st.tuples(good_message, mutations).map(_mutate)
entry = st.one_of(message, message, message, message, hostile_value)  # sometimes not an object
request = st.one_of(
    st.tuples(st.just("/v1/batch"), st.lists(entry, min_size=1, max_size=6)),
    st.tuples(
        st.sampled_from(["/v1/track", "/v1/page", "/v1/identify", "/v1/t"]),
        message.map(lambda m: [m]),
    ),
    st.tuples(st.just("/v1/pixel/track"), message.map(lambda m: [m])),
)


def _fresh(message: Any) -> Any:
    if not isinstance(message, dict):
        return message
    return {k: str(uuid.uuid4()) if v == FRESH else v for k, v in message.items()}


def _encode(value: Any) -> bytes:
    # The stdlib encoder writes a lone surrogate as its \u escape and huge or
    # infinite numbers as they are: what a hostile client can put on the wire.
    return json.dumps(value, ensure_ascii=True).encode()


def _count(collector: Collector, table: str) -> int:
    rows = collector.query(
        f"SELECT count(*) AS n FROM {table} WHERE site_id = %s", (collector.site_id,)
    )
    return int(rows[0]["n"])


@pytest.fixture
def site(collector: Collector) -> Collector:
    """A site that takes undeclared custom events (so ``Signed Up`` is stored)."""
    site_id, key = collector.make_site(settings={"allow_undeclared_events": True})
    return dataclasses.replace(collector, site_id=site_id, write_key=key)


@pytest.fixture(scope="module")
def http() -> httpx.Client:
    with httpx.Client(timeout=30) as client:
        yield client


@settings(
    max_examples=250,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(request=request)
def test_no_5xx_and_every_message_accounted_for(
    site: Collector, http: httpx.Client, request: tuple[str, list[Any]]
) -> None:
    collector = site
    path, messages = request
    messages = [_fresh(m) for m in messages]
    events_before = _count(collector, "events")
    failed_before = _count(collector, "failed_events")
    headers = {"X-Write-Key": collector.write_key, "Content-Type": "application/json"}
    if path == "/v1/pixel/track":
        data = base64.urlsafe_b64encode(_encode(messages[0])).decode()
        response = http.get(collector.base_url + path, params={"data": data}, headers=headers)
    else:
        body = {"batch": messages} if path == "/v1/batch" else messages[0]
        if path != "/v1/batch" and not isinstance(body, dict):
            body = {"value": body}
        response = http.post(collector.base_url + path, content=_encode(body), headers=headers)

    assert response.status_code < 500, (response.status_code, response.text[:500])
    event(f"status {response.status_code}")  # the mix shows with --hypothesis-show-statistics
    events_added = _count(collector, "events") - events_before
    if response.status_code != 200:
        # 431: a pixel URL carrying a long message is over the header-section limit.
        assert response.status_code in (400, 401, 413, 431), response.text
        assert response.json()["error"]
        assert events_added == 0
        assert _count(collector, "failed_events") == failed_before
        return
    if path == "/v1/pixel/track":
        assert response.headers["content-type"] == "image/gif"
        return
    body = response.json()
    failed = body["failed"]
    refused = sum(body["refused"].values())
    assert body["accepted"] + body["duplicates"] + len(failed) + refused == len(messages)
    assert body["accepted"] == events_added
    for outcome in ("accepted", "duplicates"):
        if body[outcome]:
            event(outcome)
    for failure in failed:
        event(f"failed: {failure['reason']}")
    for reason in body["refused"]:
        event(f"refused: {reason}")
    assert {f["reason"] for f in failed} <= FAILURE_REASONS
    assert set(body["refused"]) <= REFUSAL_REASONS
    assert sorted(f["index"] for f in failed) == [f["index"] for f in failed]
    if failed:
        stored = {
            (r["message_id"], r["reason"])
            for r in collector.query(
                "SELECT message_id, reason FROM failed_events WHERE site_id = %s"
                " AND message_id = ANY(%s)",
                (collector.site_id, [f["messageId"] for f in failed]),
            )
        }
        # Every failure is kept (a retried copy of one stays one row).
        assert {f["messageId"] for f in failed} == {m for m, _ in stored}


def test_the_property_test_sees_hostile_input(collector: Collector) -> None:
    """The strategies above do reach the interesting outcomes (a guard against a
    strategy that only ever produces 400s)."""
    body = {
        "batch": [
            {"type": "page", "anonymousId": "a", "messageId": str(uuid.uuid4())},
            {"type": "page", "anonymousId": "a\u0000", "messageId": "m-nul"},
            {"type": "page", "anonymousId": ["x@example.com"]},
            {"type": "page", "anonymousId": "a", "timestamp": "0001-01-01T00:00:00Z"},
            {"type": "page", "anonymousId": "a", "properties": _nested(30)},
            7,
        ]
    }
    response = httpx.post(
        collector.base_url + "/v1/batch",
        content=_encode(body),
        headers={"X-Write-Key": collector.write_key, "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    reasons_seen = [f["reason"] for f in response.json()["failed"]]
    assert reasons_seen == [
        "limits_exceeded",
        "invalid_message",
        "invalid_timestamp",
        "limits_exceeded",
        "not_an_object",
    ]
    surrogate = httpx.post(
        collector.base_url + "/v1/track",
        content=b'{"event": "e", "anonymousId": "\\ud800"}',
        headers={"X-Write-Key": collector.write_key, "Content-Type": "application/json"},
    )
    assert surrogate.status_code == 400
