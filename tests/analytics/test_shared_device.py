"""A shared device without reset(): one person per session, and the views agree (issue 9, 20).

Also: analytics.person_events() follows a merged person's id (issue 9, item 21).
"""

from __future__ import annotations

import random
from datetime import timedelta

from tests.analytics.messages import T0, identify, page, post, track
from tests.support import Collector, query

DAY = (T0, T0 + timedelta(days=1))


def _shared_device_visit() -> list[dict]:
    """Ann browses, logs in, leaves; Bob logs in on the same tab: one tracker session."""
    session = {"session": "s-shared-1", "ua": "chrome_windows"}
    return [
        page("kiosk", "/", minutes=0, **session),
        identify("kiosk", "ann", minutes=1, **session),
        track("kiosk", "Element Clicked", {"selector": "a", "tag": "a"}, userId="ann",
              minutes=2, **session),
        page("kiosk", "/account", userId="ann", minutes=3, **session),
        identify("kiosk", "bob", minutes=10, **session),
        page("kiosk", "/orders", userId="bob", minutes=11, **session),
        track("kiosk", "Element Clicked", {"selector": "b", "tag": "a"}, userId="bob",
              minutes=12, **session),
    ]  # fmt: skip


def _agreement(dsn: str, site_id: int) -> list[dict]:
    """Events whose person is not the person of their session (should be none)."""
    return query(
        dsn,
        "SELECT e.message_id, e.person_id AS event_person, s.person_id AS session_person"
        " FROM analytics.events e"
        " JOIN analytics.sessions s ON s.site_id = e.site_id AND s.session_id = e.session_id"
        " WHERE e.site_id = %s AND e.person_id IS DISTINCT FROM s.person_id",
        (site_id,),
    )


def _check(collector: Collector, site_id: int) -> None:
    dsn = collector.dsn
    assert _agreement(dsn, site_id) == []
    rows = query(
        dsn,
        "SELECT person_id, count(*) AS n FROM analytics.events WHERE site_id = %s GROUP BY 1",
        (site_id,),
    )
    by_person = {r["person_id"]: r["n"] for r in rows}
    assert sorted(by_person.values()) == [3, 4]  # ann: page, identify, click, page; bob: 3
    ann = next(p for p, n in by_person.items() if n == 4)
    bob = next(p for p, n in by_person.items() if n == 3)
    sessions = query(
        dsn,
        "SELECT person_id, session_id, event_count, page_count, click_count, entry_page,"
        " from_idle_rule FROM analytics.sessions WHERE site_id = %s ORDER BY first_event_at",
        (site_id,),
    )
    assert [(s["person_id"], s["event_count"], s["page_count"], s["click_count"])
            for s in sessions] == [(ann, 4, 2, 1), (bob, 3, 1, 1)]  # fmt: skip
    assert sessions[0]["session_id"] == "s-shared-1"
    assert sessions[1]["session_id"].startswith("s-shared-1~")
    assert sessions[1]["entry_page"] == "/orders"
    assert not any(s["from_idle_rule"] for s in sessions)
    features = {
        r["person_id"]: r
        for r in query(
            dsn,
            "SELECT person_id, frequency, sessions, page_views, clicks"
            " FROM analytics.person_features WHERE site_id = %s",
            (site_id,),
        )
    }
    assert (features[ann]["frequency"], features[ann]["sessions"]) == (4, 1)
    assert (features[bob]["frequency"], features[bob]["sessions"]) == (3, 1)
    assert features[bob]["page_views"] == 1 and features[bob]["clicks"] == 1
    persons_view = {
        r["person_id"]: r["events"]
        for r in query(
            dsn, "SELECT person_id, events FROM analytics.persons WHERE site_id = %s", (site_id,)
        )
    }
    assert persons_view == {ann: 4, bob: 3}


def test_second_user_on_a_shared_device_gets_a_session_of_their_own(
    collector: Collector,
) -> None:
    site_id, key = collector.make_site()
    post(collector.base_url, key, _shared_device_visit())
    _check(collector, site_id)


def test_same_split_whatever_the_arrival_order_within_a_commit(collector: Collector) -> None:
    site_id, key = collector.make_site()
    batch = _shared_device_visit()
    random.Random(7).shuffle(batch)
    post(collector.base_url, key, batch)
    _check(collector, site_id)


def test_split_holds_across_requests_and_retries(collector: Collector) -> None:
    site_id, key = collector.make_site()
    batch = _shared_device_visit()
    for message in batch:
        post(collector.base_url, key, [message])
    post(collector.base_url, key, batch)  # every message retried: duplicates change nothing
    _check(collector, site_id)


def test_idle_rule_sessions_are_split_too(collector: Collector) -> None:
    """Server-side messages (no sessionId): the idle-rule session is split the same way."""
    site_id, key = collector.make_site()
    batch = [
        page("till-7", "/", minutes=0),
        identify("till-7", "cara", minutes=1),
        page("till-7", "/a", userId="cara", minutes=2),
        identify("till-7", "dan", minutes=5),
        page("till-7", "/b", userId="dan", minutes=6),
        page("till-7", "/c", minutes=20),  # anonymous again: the device's person, no split
    ]
    post(collector.base_url, key, batch)
    assert _agreement(collector.dsn, site_id) == []
    sessions = query(
        collector.dsn,
        "SELECT session_id, event_count, from_idle_rule FROM analytics.sessions"
        " WHERE site_id = %s ORDER BY first_event_at",
        (site_id,),
    )
    assert [s["event_count"] for s in sessions] == [4, 2]
    assert all(s["from_idle_rule"] for s in sessions)
    assert sessions[1]["session_id"].startswith(sessions[0]["session_id"] + "~")
    raw = query(
        collector.dsn,
        "SELECT idle_key FROM sessions WHERE site_id = %s AND session_id = %s",
        (site_id, sessions[1]["session_id"]),
    )
    assert raw == [{"idle_key": None}]  # never found by the idle rule's look-up


def test_a_normal_login_is_not_split(collector: Collector) -> None:
    site_id, key = collector.make_site()
    session = {"session": "s-normal", "ua": "iphone"}
    post(collector.base_url, key, [
        page("phone-1", "/", minutes=0, **session),
        identify("phone-1", "erin", minutes=1, **session),
        page("phone-1", "/x", userId="erin", minutes=2, **session),
        # erin already known from another device: that anonymous person is merged, no split
        page("laptop-1", "/", minutes=3, session="s-laptop"),
        identify("laptop-1", "erin", minutes=4, session="s-laptop"),
    ])  # fmt: skip
    sessions = query(
        collector.dsn,
        "SELECT session_id, person_id FROM analytics.sessions WHERE site_id = %s",
        (site_id,),
    )
    assert sorted(s["session_id"] for s in sessions) == ["s-laptop", "s-normal"]
    assert len({s["person_id"] for s in sessions}) == 1
    assert _agreement(collector.dsn, site_id) == []


# --- item 21 ------------------------------------------------------------------------------


def test_person_events_of_a_merged_id_are_the_survivors(collector: Collector) -> None:
    site_id, key = collector.make_site()
    post(collector.base_url, key, [
        page("desk-1", "/", minutes=0),
        identify("desk-1", "fay", minutes=1),
        page("desk-1", "/in", userId="fay", minutes=2),
        page("mobile-1", "/m", minutes=3),  # a second device, anonymous: its own person
    ])  # fmt: skip
    first = {
        r["value"]: r["person_id"]
        for r in query(
            collector.dsn,
            "SELECT value, person_id FROM analytics.identities WHERE site_id = %s",
            (site_id,),
        )
    }
    merged_id = first["mobile-1"]
    post(collector.base_url, key, [identify("mobile-1", "fay", minutes=4)])  # merges it
    survivor = query(
        collector.dsn,
        "SELECT person_id FROM analytics.identities WHERE site_id = %s AND value = 'mobile-1'",
        (site_id,),
    )[0]["person_id"]
    assert survivor != merged_id and survivor == first["desk-1"]

    def events_of(person: int) -> list[tuple[str, int]]:
        rows = query(
            collector.dsn,
            "SELECT message_id, person_id FROM analytics.person_events(%s, %s, %s)",
            (person, *DAY),
        )
        return sorted((r["message_id"], r["person_id"]) for r in rows)

    expected = sorted(
        (r["message_id"], r["person_id"])
        for r in query(
            collector.dsn,
            "SELECT message_id, person_id FROM analytics.events"
            " WHERE site_id = %s AND person_id = %s",
            (site_id, survivor),
        )
    )
    assert len(expected) == 5
    assert events_of(merged_id) == expected == events_of(survivor)
    assert events_of(-1) == []


def test_session_part_rule() -> None:
    from footfall.pipeline.sessions import session_part

    user = "ab" * 32
    assert session_part("s-1", user, 2, 1) == "s-1~" + user[:16]  # another person: split
    assert session_part("s-1", user, 1, 1) is None  # the device's own person
    assert session_part("s-1", None, None, 1) is None  # anonymous: the device's person
    assert session_part("s-1", user, 2, None) is None  # no device person (illegal id)
