"""Consent matrix: each mode x each visitor situation -> stored, stripped or refused, as documented
(docs/privacy.md, "Consent modes"), and counted in the response."""

from __future__ import annotations

import uuid

import pytest

from tests.privacy.conftest import message

GRANTED = {"categoryPreferences": {"analytics": True, "marketing": False}}
DENIED = {"categoryPreferences": {"analytics": False}}

# mode -> situation -> expected outcome of the message under test
EXPECTED = {
    "implied": {
        "no consent": "stored",
        "granted": "stored",
        "denied": "refused",
        "withdrawn after grant": "refused",
        "GPC header": "refused",
    },
    "anonymous": {
        "no consent": "stripped",
        "granted": "stored",
        "denied": "stripped",
        "withdrawn after grant": "stripped",
        "GPC header": "stripped",
    },
    "required": {
        "no consent": "refused",
        "granted": "stored",
        "denied": "refused",
        "withdrawn after grant": "refused",
        "GPC header": "refused",
    },
}
CASES = [(mode, situation) for mode, row in EXPECTED.items() for situation in row]


def _decision(anonymous_id: str, analytics: bool) -> dict:
    return message(
        "track",
        event="Consent Updated",
        anonymousId=anonymous_id,
        userId="u-" + anonymous_id,
        properties={"analytics": analytics, "policy_version": "7"},
        context={"consent": {"categoryPreferences": {"analytics": analytics}}},
    )


@pytest.mark.parametrize(("mode", "situation"), CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_consent_matrix(new_site, mode: str, situation: str) -> None:
    site = new_site(consent_mode=mode)
    anonymous_id = f"visitor-{uuid.uuid4().hex[:8]}"
    headers = {"User-Agent": "matrix-test"}
    consent = {"no consent": None, "granted": GRANTED, "denied": DENIED}.get(situation)
    if situation == "withdrawn after grant":
        first = site.post([_decision(anonymous_id, True)])
        second = site.post([_decision(anonymous_id, False)])
        assert first["accepted"] == 1 and second["accepted"] == 1
        consent = GRANTED  # a stale client still claims consent
    if situation == "GPC header":
        headers["Sec-GPC"] = "1"
    context = {"page": {"url": "https://shop.example/p"}, "sessionId": "s-1"}
    if consent is not None:
        context["consent"] = consent
    probe = message(
        "track", event="Probe", anonymousId=anonymous_id, userId="u-" + anonymous_id,
        context=context,
    )  # fmt: skip
    answer = site.post([probe], headers=headers)

    expected = EXPECTED[mode][situation]
    stored = site.query(
        "SELECT * FROM events WHERE site_id = %s AND message_id = %s",
        (site.site_id, probe["messageId"]),
    )
    if expected == "refused":
        assert answer["accepted"] == 0 and answer["refused"] == {"consent": 1}, answer
        assert stored == []
        return
    assert answer["accepted"] == 1 and answer["refused"] == {}, answer
    (row,) = stored
    if expected == "stored":
        assert row["anonymous_id"] == anonymous_id and len(row["user_id"]) == 64
        assert row["session_id"] == "s-1" and row["visitor_hash"] is None
        assert str(row["ip_network"]) == "127.0.0.0/24"
    else:  # stripped: no identifier at all, counted by the cookieless visitor hash
        assert row["anonymous_id"] is None and row["user_id"] is None
        assert row["ip_network"] is None and row["pii_key_id"] is None
        # The client's session id is gone; a session may only be derived from the
        # visitor hash itself (sessions' idle rule), which links nothing more.
        assert row["session_id"] != "s-1" and "sessionId" not in row["context"]
        assert len(row["visitor_hash"]) == 64
        assert row["page_url"] == "https://shop.example/p"  # the event itself is kept


def test_decisions_are_ledgered_and_denials_stored_without_ids(new_site) -> None:
    site = new_site(consent_mode="required")
    answer = site.post([_decision("led-1", True), _decision("led-1", False)])
    assert answer["accepted"] == 2
    rows = site.events()
    granted = next(r for r in rows if r["properties"]["analytics"])
    denied = next(r for r in rows if not r["properties"]["analytics"])
    assert granted["anonymous_id"] == "led-1"
    assert denied["anonymous_id"] is None and denied["user_id"] is None
    ledger = site.query(
        "SELECT * FROM consent_log WHERE site_id = %s ORDER BY decided_at, id", (site.site_id,)
    )
    assert [(r["analytics"], r["granted"], r["denied"], r["source"]) for r in ledger] == [
        (True, ["analytics"], [], "message"),
        (False, [], ["analytics"], "message"),
    ]
    assert {r["anonymous_id"] for r in ledger} == {"led-1"}
    assert {r["policy_version"] for r in ledger} == {"7"}
    assert {r["user_id"] for r in ledger} == {granted["user_id"]}
    # A retried decision is recorded once.
    again = site.post([_decision("led-2", True)] * 2)
    assert again["accepted"] == 1 and again["duplicates"] == 1
    assert len(site.query("SELECT 1 FROM consent_log WHERE anonymous_id = 'led-2'")) == 1


def test_withdrawal_in_the_same_batch_governs_what_follows(new_site) -> None:
    site = new_site(consent_mode="implied")
    claim = {"consent": GRANTED}
    before = message("track", event="Before", anonymousId="b-1", context=claim)
    after = message("track", event="After", anonymousId="b-1", context=claim)
    answer = site.post([before, _decision("b-1", False), after])
    assert answer["accepted"] == 2 and answer["refused"] == {"consent": 1}
    assert sorted(r["event"] for r in site.events()) == ["Before", "Consent Updated"]


def test_a_stale_replayed_grant_does_not_beat_a_later_withdrawal(new_site) -> None:
    site = new_site(consent_mode="implied")
    site.post([_decision("st-1", False)])
    stale = _decision("st-1", True)
    stale["timestamp"] = "2020-01-01T00:00:00Z"
    answer = site.post([stale, message("track", anonymousId="st-1", context={"consent": GRANTED})])
    assert answer["accepted"] == 1 and answer["refused"] == {"consent": 1}
    assert len(site.query("SELECT 1 FROM consent_log WHERE anonymous_id = 'st-1'")) == 2


def test_regrant_after_withdrawal_resumes_collection(new_site) -> None:
    site = new_site(consent_mode="required")
    site.post([_decision("rg-1", True)])
    site.post([_decision("rg-1", False)])
    refused = site.post([message("track", anonymousId="rg-1")])
    site.post([_decision("rg-1", True)])
    resumed = site.post([message("track", anonymousId="rg-1")])
    assert refused["refused"] == {"consent": 1}
    assert resumed["accepted"] == 1


def test_ledger_grant_from_the_api_admits_server_side_messages(new_site) -> None:
    """A backend sender knows nothing of the banner: the ledger's grant is enough."""
    site = new_site(consent_mode="required")
    assert site.post([message("track", userId="crm-9")])["refused"] == {"consent": 1}
    response = site.admin("consent", {"user_id": "crm-9", "purposes": {"analytics": True}})
    assert response.status_code == 200, response.text
    assert site.post([message("track", userId="crm-9")])["accepted"] == 1
    site.admin("consent", {"user_id": "crm-9", "purposes": {"analytics": False}})
    claim = {"consent": GRANTED}
    assert site.post([message("track", userId="crm-9", context=claim)])["refused"] == {"consent": 1}
    sources = site.query("SELECT source FROM consent_log WHERE site_id = %s", (site.site_id,))
    assert [r["source"] for r in sources] == ["api", "api"]


def test_flat_consent_shape_and_explicit_grant_beats_gpc(new_site) -> None:
    site = new_site(consent_mode="required")
    flat = message("track", anonymousId="f-1", context={"consent": {"analytics": True}})
    assert site.post([flat], headers={"Sec-GPC": "1"})["accepted"] == 1


def test_gpc_can_be_ignored_and_dnt_honored_per_site(new_site) -> None:
    ignores_gpc = new_site(settings={"honor_gpc": False})
    assert (
        ignores_gpc.post([message("track", anonymousId="g-1")], {"Sec-GPC": "1"})["accepted"] == 1
    )
    default = new_site()
    assert default.post([message("track", anonymousId="g-2")], {"DNT": "1"})["accepted"] == 1
    honors_dnt = new_site(settings={"honor_dnt": True})
    assert honors_dnt.post([message("track", anonymousId="g-3")], {"DNT": "1"})["refused"] == {
        "consent": 1
    }


def test_anonymous_mode_refuses_identify_and_alias_without_consent(new_site) -> None:
    site = new_site(consent_mode="anonymous")
    answer = site.post(
        [
            message("identify", userId="id-1", traits={"plan": "pro"}),
            message("alias", userId="id-1", previousId="old-1"),
            message("page", anonymousId="a-1", properties={"url": "https://x.example/"}),
        ]
    )
    assert answer["accepted"] == 1 and answer["refused"] == {"consent": 2}


def test_failed_message_without_consent_keeps_no_identifier(new_site) -> None:
    site = new_site(consent_mode="required")
    # Fails validation (a required property missing) before the consent step runs.
    bad = message("track", event="Element Clicked", anonymousId="fail-1", userId="fail-user")
    answer = site.post([bad])
    assert len(answer["failed"]) == 1
    (failed,) = site.query("SELECT raw FROM failed_events WHERE site_id = %s", (site.site_id,))
    assert "anonymousId" not in failed["raw"] and "userId" not in failed["raw"]
