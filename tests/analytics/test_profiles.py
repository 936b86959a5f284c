"""Live profiles over real HTTP: retries never count twice, merges combine, and the
incremental profile equals a rebuild from ``events`` after a messy stream."""

from __future__ import annotations

import json
import random
import threading
from datetime import timedelta
from typing import Any
from unittest.mock import ANY

import psycopg
import pytest

from footfall.storage.privacy import erase_subject, export_subject
from footfall.storage.profiles import rebuild
from tests.analytics.messages import T0, alias, identify, page, post, track
from tests.cli.test_cli import footfall
from tests.support import Collector, make_site, query


def new_site(collector: Collector) -> tuple[int, str]:
    """A site that takes custom events (``Signed Up`` …) without a schema."""
    return make_site(collector.dsn, settings={"allow_undeclared_events": True})


def snapshot(dsn: str, site_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    profiles = query(
        dsn, "SELECT * FROM person_profiles WHERE site_id = %s ORDER BY person_id", (site_id,)
    )
    for row in profiles:
        del row["updated_at"]
    sessions = query(
        dsn,
        "SELECT * FROM person_sessions WHERE site_id = %s ORDER BY person_id, session_id",
        (site_id,),
    )
    return profiles, sessions


def rebuilt(dsn: str, site_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with psycopg.connect(dsn) as conn:
        rebuild(conn, site_id)
    return snapshot(dsn, site_id)


def person(dsn: str, site_id: int, anonymous_id: str) -> int:
    (row,) = query(
        dsn,
        "SELECT person_id FROM analytics.identities"
        " WHERE site_id = %s AND kind = 'anonymous' AND value = %s",
        (site_id, anonymous_id),
    )
    return int(row["person_id"])


def profile_of(dsn: str, site_id: int, person_id: int) -> dict[str, Any]:
    (row,) = query(
        dsn,
        "SELECT * FROM person_profiles WHERE site_id = %s AND person_id = %s",
        (site_id, person_id),
    )
    return row


def test_retried_message_counts_once(collector: Collector) -> None:
    site_id, key = new_site(collector)
    batch = [
        page("r1", "/a", session="s1", minutes=0),
        track("r1", "Element Clicked", {"selector": "a", "tag": "a"}, session="s1", minutes=1),
        track("r1", "Signed Up", {"plan": "pro"}, session="s1", minutes=2),
    ]
    first = post(collector.base_url, key, [*batch, batch[1]])  # a copy inside the batch
    assert first["accepted"] == 3, first
    post(collector.base_url, key, batch)  # the client retries the whole batch
    post(collector.base_url, key, [batch[2]])
    row = profile_of(collector.dsn, site_id, person(collector.dsn, site_id, "r1"))
    assert (row["events"], row["pages"], row["clicks"], row["custom_tracks"]) == (3, 1, 1, 1)
    assert row["sessions"] == 1
    assert snapshot(collector.dsn, site_id) == rebuilt(collector.dsn, site_id)


def test_merge_combines_profiles(collector: Collector) -> None:
    site_id, key = new_site(collector)
    campaign = {"campaign": {"source": "news", "medium": "email", "name": "launch"}}
    # Device 1, anonymous: the first touch, from a campaign, on a phone.
    phone = [
        page("d1", "/landing", session="p1", ua="iphone", context=dict(campaign), minutes=0),
        track("d1", "Scroll Depth Reached", {"depth_percent": 70}, session="p1", minutes=1),
        track("d1", "Page Engaged", {"engaged_ms": 5000}, session="p1", minutes=2),
    ]
    # Device 2: alice logs in, on a desktop, later.
    desk = [
        identify("d2", "alice", session="q1", ua="edge", minutes=60),
        page("d2", "/pricing", session="q1", ua="edge", minutes=61),
        track("d2", "Page Engaged", {"engaged_ms": 2000, "max_scroll_percent": 40},
              session="q1", ua="edge", minutes=62),
    ]  # fmt: skip
    post(collector.base_url, key, phone)
    post(collector.base_url, key, desk)
    phone_person = person(collector.dsn, site_id, "d1")
    alice = person(collector.dsn, site_id, "d2")
    assert phone_person != alice
    # Alice logs in on the phone: its anonymous person merges into hers.
    post(collector.base_url, key, [identify("d1", "alice", session="p1", ua="iphone", minutes=3)])
    assert person(collector.dsn, site_id, "d1") == alice
    assert not query(
        collector.dsn,
        "SELECT 1 FROM person_profiles WHERE person_id = %s",
        (phone_person,),
    )
    merged = profile_of(collector.dsn, site_id, alice)
    assert merged["events"] == 7 and merged["pages"] == 2 and merged["sessions"] == 2
    assert merged["engaged_ms"] == 7000 and merged["max_scroll_percent"] == 70
    assert merged["first_seen"] == T0 and merged["last_seen"] == T0 + timedelta(minutes=62)
    # First touch of the earlier person, last values of the later events.
    assert (merged["utm_source"], merged["utm_medium"], merged["utm_campaign"]) == (
        "news",
        "email",
        "launch",
    )
    assert merged["first_touch_page"] == "/landing"
    assert merged["last_page_path"] == "/pricing" and merged["device_type"] == "desktop"
    assert snapshot(collector.dsn, site_id) == rebuilt(collector.dsn, site_id)


def test_out_of_order_timestamps_use_event_time(collector: Collector) -> None:
    site_id, key = new_site(collector)
    post(collector.base_url, key, [page("o1", "/late", session="s", ua="edge", minutes=30)])
    post(collector.base_url, key, [page("o1", "/early", session="s", ua="iphone", minutes=5)])
    row = profile_of(collector.dsn, site_id, person(collector.dsn, site_id, "o1"))
    assert row["first_seen"] == T0 + timedelta(minutes=5)
    assert row["last_seen"] == T0 + timedelta(minutes=30)
    assert (row["last_page_path"], row["first_touch_page"]) == ("/late", "/early")
    assert row["device_type"] == "desktop"  # the device of the latest event
    (part,) = query(collector.dsn, "SELECT * FROM person_sessions WHERE site_id = %s", (site_id,))
    assert part["device_type"] == "mobile"  # the device of the session's first event
    assert part["last_at"] - part["first_at"] == timedelta(minutes=25)
    assert snapshot(collector.dsn, site_id) == rebuilt(collector.dsn, site_id)


# --- a realistic, messy stream ----------------------------------------------------------

UAS = ["iphone", "edge", "ipad", "firefox_mac", "android", "googlebot"]
ZONES = [None, "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Not/AZone"]
PATHS = ["/", "/articles/1", "/articles/2", "/product/9", "/pricing", ""]
EVENTS = [
    ("Element Clicked", lambda r: {"selector": "a", "tag": "a"}),
    ("Element Hovered", lambda r: {"selector": "#s", "dwell_ms": r.choice([0, 250, 10**11])}),
    ("Scroll Depth Reached", lambda r: {"depth_percent": r.choice([25, 50, 100])}),
    (
        "Page Engaged",
        lambda r: {
            "engaged_ms": r.randint(0, 90000),
            "max_scroll_percent": r.choice([33.5, 99.49, 150]),
        },
    ),
    ("Video Playback Started", lambda r: {"position": 0}),
    ("Video Playback Completed", lambda r: {"position": 90}),
    ("Video Playback Paused", lambda r: {"position": 10}),
    ("Product Added", lambda r: {"sku": "x"}),
    ("Signed Up", lambda r: {}),
]


def stream(seed: int) -> list[dict[str, Any]]:
    """Visitors on several devices over days, some logging in (merges), some aliasing."""
    r = random.Random(seed)
    messages: list[dict[str, Any]] = []
    for visitor in range(8):
        devices = [f"v{seed}-{visitor}-{d}" for d in range(r.randint(1, 3))]
        user = f"user-{seed}-{visitor}" if r.random() < 0.7 else None
        for device in devices:
            ua, zone = r.choice(UAS), r.choice(ZONES)
            context = {"timezone": zone} if zone else {}
            start = r.uniform(0, 7 * 24 * 60)
            for s in range(r.randint(1, 3)):
                session = r.choice([f"{device}-s{s}", None])  # None: the idle rule
                minute = start + s * r.uniform(40, 600)
                campaign = {"campaign": {"source": r.choice(["news", "ads"]), "name": "c"}}
                for n in range(r.randint(1, 6)):
                    minute += r.uniform(0, 5)
                    fields: dict[str, Any] = {
                        "session": session,
                        "ua": ua,
                        "context": dict(context, **(campaign if n == 0 else {})),
                        "minutes": minute,
                    }
                    if user and r.random() < 0.2:
                        messages.append(identify(device, user, **fields))
                    elif r.random() < 0.4:
                        path = r.choice(PATHS)
                        messages.append(page(device, path, **fields))
                    else:
                        name, props = r.choice(EVENTS)
                        messages.append(track(device, name, props(r), **fields))
        if user and r.random() < 0.3:
            messages.append(alias(f"{user}-new", user, minutes=r.uniform(0, 9000)))
    return messages


def send_messily(base_url: str, key: str, messages: list[dict[str, Any]], seed: int) -> None:
    """Shuffled (out of order), in random batches from two clients at once, with retries
    of whole batches and copies of messages inside a batch."""
    r = random.Random(seed)
    messages = messages[:]
    r.shuffle(messages)
    batches: list[list[dict[str, Any]]] = []
    while messages:
        size = r.randint(1, 12)
        batch, messages = messages[:size], messages[size:]
        if r.random() < 0.3:
            batch.append(r.choice(batch))
        batches.append(batch)
        if r.random() < 0.3:
            batches.append(list(batch))  # the retry
    halves = [batches[0::2], batches[1::2]]
    errors: list[BaseException] = []

    def client(part: list[list[dict[str, Any]]]) -> None:
        try:
            for batch in part:
                post(base_url, key, batch)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_equals_rebuild(collector: Collector, seed: int) -> None:
    site_id, key = new_site(collector)
    send_messily(collector.base_url, key, stream(seed), seed)
    incremental = snapshot(collector.dsn, site_id)
    merges = query(collector.dsn, "SELECT count(*) AS n FROM person_merges WHERE site_id = %s",
                   (site_id,))[0]["n"]  # fmt: skip
    events = query(collector.dsn, "SELECT count(*) AS n FROM events WHERE site_id = %s",
                   (site_id,))[0]["n"]  # fmt: skip
    assert incremental[0], "no profiles"
    assert sum(p["events"] for p in incremental[0]) == events  # every event has a person here
    assert incremental == rebuilt(collector.dsn, site_id), f"{merges} merges"


def test_rebuild_command(collector: Collector) -> None:
    site_id, key = new_site(collector)
    (name,) = [r["name"] for r in query(collector.dsn, "SELECT name FROM sites WHERE id = %s",
                                        (site_id,))]  # fmt: skip
    send_messily(collector.base_url, key, stream(7), 7)
    before = snapshot(collector.dsn, site_id)
    query(collector.dsn, "UPDATE person_profiles SET events = 0 WHERE site_id = %s", (site_id,))
    query(collector.dsn, "DELETE FROM person_sessions WHERE site_id = %s", (site_id,))
    out = footfall("profiles", "rebuild", "--site", name, dsn=collector.dsn).stdout
    assert json.loads(out) == {"site": name, "profiles": len(before[0]), "seconds": ANY}
    assert snapshot(collector.dsn, site_id) == before
    missing = footfall("profiles", "rebuild", "--site", "no-such-site", dsn=collector.dsn,
                       check=False)  # fmt: skip
    assert missing.returncode != 0 and "no site named" in missing.stderr


def test_rebuild_of_some_persons(collector: Collector) -> None:
    site_id, key = new_site(collector)
    send_messily(collector.base_url, key, stream(11), 11)
    before = snapshot(collector.dsn, site_id)
    first, second, third = (p["person_id"] for p in before[0][:3])
    query(
        collector.dsn,
        "UPDATE person_profiles SET events = 0, last_page_path = 'x' WHERE person_id = ANY(%s)",
        ([first, second, third],),
    )
    query(collector.dsn, "DELETE FROM person_sessions WHERE person_id = %s", (first,))
    with psycopg.connect(collector.dsn) as conn:
        assert rebuild(conn, site_id, [first, second]) == 2
    after = snapshot(collector.dsn, site_id)
    assert after[1] == before[1]
    assert [p for p in after[0] if p["person_id"] != third] == [
        p for p in before[0] if p["person_id"] != third
    ]
    assert next(p for p in after[0] if p["person_id"] == third)["events"] == 0  # not asked


def test_erasure_of_a_device_recomputes_the_remaining_profile(collector: Collector) -> None:
    site_id, key = new_site(collector)
    post(collector.base_url, key, [
        page("phone", "/secret-landing", session="p", ua="iphone", minutes=0),
        page("phone", "/secret-2", session="p", ua="iphone", minutes=1),
        identify("phone", "erin", session="p", ua="iphone", minutes=2),
        identify("laptop", "erin", session="l", ua="edge", minutes=60),
        page("laptop", "/home", session="l", ua="edge", minutes=61),
    ])  # fmt: skip
    erin = person(collector.dsn, site_id, "laptop")
    assert profile_of(collector.dsn, site_id, erin)["events"] == 5
    keyring = collector.server.app.state.footfall.keyring
    with psycopg.connect(collector.dsn) as conn:
        erase_subject(conn, site_id, "anonymous_id", "phone", keyring)
    row = profile_of(collector.dsn, site_id, erin)
    assert row["events"] == 3  # the phone's anonymous page views are gone
    assert row["first_touch_page"] == "/home"  # nothing of the erased pages is left
    assert "secret" not in str(snapshot(collector.dsn, site_id))
    assert snapshot(collector.dsn, site_id) == rebuilt(collector.dsn, site_id)


def test_erasure_of_a_user_removes_profile_rows(collector: Collector) -> None:
    site_id, key = new_site(collector)
    post(collector.base_url, key, [
        identify("f1", "frank", session="x", minutes=0),
        page("f1", "/a", session="x", minutes=1),
        page("g1", "/b", session="y", minutes=2),
    ])  # fmt: skip
    frank = person(collector.dsn, site_id, "f1")
    keyring = collector.server.app.state.footfall.keyring
    with psycopg.connect(collector.dsn) as conn:
        export = export_subject(conn, site_id, "user_id", "frank", keyring)
        assert [r["person_id"] for r in export["tables"]["person_profiles"]] == [frank]
        assert len(export["tables"]["person_sessions"]) == 1
        erased = erase_subject(conn, site_id, "user_id", "frank", keyring)
    assert erased["deleted"]["person_profiles"] == 1
    assert erased["deleted"]["person_sessions"] == 1
    profiles, sessions = snapshot(collector.dsn, site_id)
    assert [p["person_id"] for p in profiles] == [person(collector.dsn, site_id, "g1")]
    assert all(s["person_id"] != frank for s in sessions)
