"""Failed events and their errors hold no raw PII; one privacy policy for rows and failures.

Issue 9, items 13 (error texts), 14 (non-string identifiers), 15 (one policy object),
16 (IPs in free text, time zone and locale). The pipeline is the one the app builds
(``build_pipeline``), run on real messages; only the database is left out (the
integration twins are in tests/privacy/test_no_raw_pii.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from footfall.app import build_pipeline
from footfall.pipeline.process import Pipeline
from footfall.pipeline.types import BatchPlan, RequestContext, Site
from footfall.settings import Settings

EMAIL = "marguerite.probe@example.net"
IPV4 = "198.51.100.23"
IPV6 = "2001:db8:85a3::8a2e:370:7334"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _pipeline(**settings: Any) -> Pipeline:
    return build_pipeline(Settings.model_validate({"env": "test", **settings}))


def _site(**settings: Any) -> Site:
    return Site(1, "s", "wk", settings={"allow_undeclared_events": True, **settings})


def _run(pipeline: Pipeline, messages: list[Any], site: Site | None = None) -> BatchPlan:
    site = site or _site()
    if site.schema_dir:  # what ingest does before the pipeline (registry.prepare)
        pipeline.registry.load_site(site.schema_dir)
    ctx = RequestContext(site=site, received_at=NOW, ip="203.0.113.9")
    return pipeline.run(messages, ctx)


def _replay(pipeline: Pipeline, raw: dict[str, Any], site: Site | None = None) -> BatchPlan:
    site = site or _site()
    if site.schema_dir:
        pipeline.registry.load_site(site.schema_dir)
    ctx = RequestContext(site=site, received_at=NOW)
    return pipeline.run([raw], ctx, replay=True)


def _text(value: Any) -> str:
    return json.dumps(value, default=str).lower()


def _schema_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "schemas" / "order_placed"
    folder.mkdir(parents=True)
    (folder / "1-0-0.json").write_text(
        json.dumps(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "required": ["total"],
                "additionalProperties": False,
                "properties": {
                    "total": {"type": "integer"},
                    "note": {"type": "string", "maxLength": 8},
                    "code": {"enum": ["A", "B"]},
                    "ref": {"type": "string", "pattern": "^R[0-9]+$"},
                },
            }
        )
    )
    return tmp_path / "schemas"


# --- item 13: error messages quote no values ------------------------------------------


def test_validation_errors_never_quote_the_value(tmp_path: Path) -> None:
    site = _site(schema_dir=str(_schema_dir(tmp_path)))
    bad = {
        "type": "track",
        "event": "Order Placed",
        "anonymousId": "a-1",
        "properties": {"total": EMAIL, "note": f"ip {IPV4}", "code": IPV6, "ref": EMAIL,
                       EMAIL: 1},
    }  # fmt: skip
    plan = _run(_pipeline(), [bad], site)
    (failure,) = plan.failures
    assert failure.reason == "invalid_properties"
    messages = {e["path"]: e["message"] for e in failure.errors}
    assert messages["/properties/total"] == "must be of type integer (type)"
    assert messages["/properties/note"] == "is longer than 8 characters (maxLength)"
    assert messages["/properties/code"] == "is not one of the allowed values (enum)"
    assert messages["/properties/ref"] == "does not match the pattern ^R[0-9]+$ (pattern)"
    assert messages["/properties"] == (
        "has a property the schema does not allow (additionalProperties)"
    )
    for needle in (EMAIL, IPV4, IPV6, "marguerite"):
        assert needle.lower() not in _text(failure.errors), needle


def test_every_failure_path_stores_value_free_errors() -> None:
    """Limits, size, non-objects, the envelope, timestamps: none quotes what was sent."""
    pipeline = _pipeline(max_string_length=64, max_message_bytes=2048)
    messages: list[Any] = [
        {"type": "track", "event": "E", "anonymousId": "a", "properties": {"x": IPV4 * 10}},
        {"type": "track", "event": "E", "anonymousId": "a", "properties": {"x": ["y" * 60] * 40}},
        EMAIL,
        {"type": EMAIL, "anonymousId": "a"},
        {"type": "track", "event": "E", "anonymousId": "a", "timestamp": EMAIL},
        {"type": "track", "event": "E", "anonymousId": "a", "timestamp": IPV6},
        {"type": "identify", "anonymousId": "a", "userId": {"email": EMAIL}},
        {"type": "track", "event": f"Sent to {EMAIL}", "anonymousId": "a", "messageId": 5},
    ]
    plan = _run(pipeline, messages)
    assert sorted({f.reason for f in plan.failures}) == [
        "invalid_message", "invalid_timestamp", "limits_exceeded", "not_an_object", "too_large",
    ]  # fmt: skip
    assert len(plan.failures) == len(messages)
    for failure in plan.failures:
        text = _text(failure.errors)
        for needle in (EMAIL, IPV4, IPV6, "marguerite"):
            assert needle.lower() not in text, (failure.reason, failure.errors)


def test_error_paths_are_scrubbed_like_free_text(tmp_path: Path) -> None:
    """A JSON Pointer holds the message's own keys: an e-mail used as a key is redacted."""
    site = _site(schema_dir=str(_schema_dir(tmp_path)))
    bad = {"type": "track", "event": "Order Placed", "anonymousId": "a",
           "properties": {"total": 1, "extra": {EMAIL: {IPV4: 1}}}}  # fmt: skip
    schema = tmp_path / "schemas" / "order_placed" / "1-0-0.json"
    loose = json.loads(schema.read_text())
    loose["properties"]["extra"] = {"additionalProperties": {"additionalProperties": False}}
    loose.pop("additionalProperties")
    schema.write_text(json.dumps(loose))
    (failure,) = _run(_pipeline(), [bad], site).failures
    assert [e["path"] for e in failure.errors] == ["/properties/extra/[email]"]
    assert EMAIL not in _text(failure.errors) and IPV4 not in _text(failure.errors)


# --- item 14: non-string identifiers ------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"anonymousId": [EMAIL]},
        {"anonymousId": {"id": EMAIL}},
        {"userId": [EMAIL, 1]},
        {"anonymousId": "a", "userId": {"email": EMAIL}},
        {"type": "alias", "userId": "u-1", "previousId": [EMAIL]},
        {"anonymousId": "a", "context": {"sessionId": [EMAIL]}},
        {"anonymousId": "a", "timestamp": [EMAIL]},
        {"anonymousId": "a", "messageId": [EMAIL], "sentAt": {"at": EMAIL}},
        {"anonymousId": "a", "context": {"library": {"name": EMAIL}, "userAgent": [EMAIL]}},
    ],
)
def test_non_string_identifiers_are_pseudonymized_in_failures(fields: dict[str, Any]) -> None:
    message = {"type": "track", "event": "E", **fields}
    plan = _run(_pipeline(), [message])
    (failure,) = plan.failures
    assert "marguerite" not in _text(failure.raw), failure.raw
    assert "marguerite" not in _text(failure.errors)


def test_a_non_string_id_is_hashed_by_value() -> None:
    """The same array always gives the same pseudonym (so erasure by value can find it)."""
    one, two = (
        _run(_pipeline(), [{"type": "track", "event": "E", "anonymousId": [EMAIL]}]).failures[0]
        for _ in range(2)
    )
    assert one.raw["anonymousId"] == two.raw["anonymousId"]
    assert len(one.raw["anonymousId"]) == 64


# --- item 15: one policy for rows and failures ---------------------------------------------


def _page(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "page", "anonymousId": "a-1", "context": {"page": {"url": url}}, **extra}


def test_site_wide_sensitive_params_apply_to_failures_and_replay() -> None:
    pipeline = _pipeline(sensitive_params="promo")
    url = "https://shop.example/?promo=SECRET&page=2"
    plan = _run(pipeline, [_page(url), _page(url, timestamp="yesterday")])
    (row,) = plan.rows
    assert row.page_url == "https://shop.example/?page=2"
    (failure,) = plan.failures
    assert "secret" not in _text(failure.raw)
    fixed = {**failure.raw, "timestamp": "2026-12-01T11:00:00Z"}
    (replayed,) = _replay(pipeline, fixed).rows
    assert replayed.page_url == "https://shop.example/?page=2"


def test_replay_applies_rules_added_after_the_failure() -> None:
    """A failure stored before ``promo`` was made sensitive loses it when replayed."""
    url = "https://shop.example/?promo=SECRET&page=2"
    (failure,) = _run(_pipeline(), [_page(url, timestamp="yesterday")]).failures
    assert "promo=SECRET" in failure.raw["context"]["page"]["url"]
    fixed = {**failure.raw, "timestamp": "2026-12-01T11:00:00Z"}
    (replayed,) = _replay(_pipeline(sensitive_params="promo"), fixed).rows
    assert replayed.page_url == "https://shop.example/?page=2"
    assert "secret" not in _text(replayed.context)


def test_site_settings_sensitive_keep_and_hash_traits_for_rows_and_failures() -> None:
    site = _site(sensitive_params=["ref"], keep_params=["code"], hash_traits=["company"])
    url = "https://shop.example/?ref=ALICE&code=WINTER&token=T0K&page=2"
    identify = {
        "type": "identify",
        "anonymousId": "a-1",
        "traits": {"company": "Acme", "plan": "pro"},
        "context": {"page": {"url": url}},
    }
    messages = [_page(url), identify, _page(url, timestamp="nope"), {**identify, "sentAt": 1}]
    plan = _run(_pipeline(), messages, site)  # fmt: skip
    page, ident = plan.rows
    assert page.page_url == "https://shop.example/?code=WINTER&page=2"
    assert ident.traits is not None
    assert len(ident.traits["company"]) == 64 and ident.traits["plan"] == "pro"
    failed_page, failed_identify = (f.raw for f in plan.failures)
    assert failed_page["context"]["page"]["url"] == page.page_url
    assert failed_identify["traits"] == ident.traits
    assert failed_identify["context"]["page"]["url"] == page.page_url


def test_a_site_settings_change_is_seen() -> None:
    pipeline = _pipeline()
    url = "https://shop.example/?ref=ALICE&page=2"
    (before,) = _run(pipeline, [_page(url)], _site()).rows
    (after,) = _run(pipeline, [_page(url)], _site(sensitive_params=["ref"])).rows
    assert before.page_url == url and after.page_url == "https://shop.example/?page=2"


def test_the_privacy_step_uses_the_pipelines_policy_object() -> None:
    """Built once: the step and the failure path hold the same PrivacyPolicy."""
    from footfall.pipeline import privacy

    pipeline = _pipeline(sensitive_params="promo")
    assert pipeline.privacy.sensitive_params == frozenset({"promo"})
    assert not hasattr(privacy, "_policies")  # no module-level cache (issue 9, item 24)


# --- item 16: IPs in free text, time zone, locale ------------------------------------------


def test_ips_in_free_text_are_redacted_in_rows_and_failures() -> None:
    props = {"note": f"from {IPV4} and {IPV6}", "nested": [f"peer={IPV4}"]}
    good = {"type": "track", "event": "E", "anonymousId": "a", "properties": props}
    plan = _run(_pipeline(), [good, {**good, "timestamp": "never"}])
    (row,) = plan.rows
    assert row.properties == {"note": "from [ip] and [ip]", "nested": ["peer=[ip]"]}
    assert plan.failures[0].raw["properties"] == row.properties


@pytest.mark.parametrize(
    ("timezone", "locale", "stored"),
    [
        ("Europe/Berlin", "de-DE", ("Europe/Berlin", "de-DE")),
        ("America/Argentina/Buenos_Aires", "en_US", ("America/Argentina/Buenos_Aires", "en-US")),
        (EMAIL, EMAIL, (None, None)),
        (IPV4, "marguerite", (None, None)),
        ("Not/AZone", "en-US-x-" + "a" * 40, (None, None)),
        (["Europe/Berlin"], {"l": "de"}, (None, None)),
    ],
)
def test_timezone_and_locale_only_as_iana_zone_and_bcp47_tag(
    timezone: Any, locale: Any, stored: tuple[str | None, str | None]
) -> None:
    message = {"type": "track", "event": "E", "anonymousId": "a",
               "context": {"timezone": timezone, "locale": locale}}  # fmt: skip
    plan = _run(_pipeline(), [message, {**message, "timestamp": "never"}])
    for row in plan.rows:  # none when the envelope refuses a non-string
        assert (row.timezone, row.locale) == stored
        if stored == (None, None):  # dropped, not kept as null
            assert "timezone" not in row.context and "locale" not in row.context
    assert len(plan.rows) + len(plan.failures) == 2
    for failure in plan.failures:
        context = failure.raw["context"]
        assert (context.get("timezone"), context.get("locale")) == stored
