"""Identity stitching over real HTTP: links, merges, the shared-device rule, alias, bad ids."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from footfall.pipeline.identity import (
    Act,
    Known,
    decide_alias,
    decide_link,
    is_illegal_id,
)
from footfall.pipeline.privacy import PiiKey
from footfall.settings import DEV_PII_KEY
from tests.analytics.messages import alias, identify, page, post, track
from tests.support import Collector, make_site, query

KEY = PiiKey("k1", DEV_PII_KEY.encode())


def h(user: str) -> str:
    return KEY.hash(user)


class SiteDb:
    """A fresh site on the session's collector and what its identity tables say."""

    def __init__(self, collector: Collector, base_url: str | None = None) -> None:
        self.dsn = collector.dsn
        self.base_url = base_url or collector.base_url
        self.site_id, self.key = make_site(collector.dsn)

    def send(self, *messages: dict) -> dict:
        return post(self.base_url, self.key, messages)

    def person(self, kind: str, value: str) -> int | None:
        rows = query(
            self.dsn,
            "SELECT person_id FROM analytics.identities"
            " WHERE site_id = %s AND kind = %s AND value = %s",
            (self.site_id, kind, h(value) if kind == "user" else value),
        )
        return rows[0]["person_id"] if rows else None

    def anon(self, value: str) -> int | None:
        return self.person("anonymous", value)

    def user(self, value: str) -> int | None:
        return self.person("user", value)

    def merges(self) -> list[dict]:
        return query(
            self.dsn,
            "SELECT from_person, into_person, reason FROM person_merges WHERE site_id = %s"
            " ORDER BY id",
            (self.site_id,),
        )

    def event_persons(self) -> dict[str, int | None]:
        """message id -> the person analytics.events maps it to."""
        rows = query(
            self.dsn,
            "SELECT message_id, person_id FROM analytics.events WHERE site_id = %s",
            (self.site_id,),
        )
        return {r["message_id"]: r["person_id"] for r in rows}

    def canonical_persons(self) -> int:
        rows = query(
            self.dsn,
            "SELECT count(*) AS n FROM persons WHERE site_id = %s AND merged_into IS NULL",
            (self.site_id,),
        )
        return int(rows[0]["n"])


@pytest.fixture
def site(collector: Collector) -> SiteDb:
    return SiteDb(collector)


# --- the pure rules ------------------------------------------------------------------


def test_rules() -> None:
    anonymous, identified, other = Known(1, False), Known(2, True), Known(3, True)
    assert decide_link(None, None).act is Act.CREATE
    assert decide_link(None, identified).act is Act.ATTACH_FIRST
    assert decide_link(anonymous, None).act is Act.ATTACH_SECOND
    assert decide_link(identified, None).act is Act.CREATE_SECOND  # shared device
    assert decide_link(anonymous, identified).act is Act.MERGE
    assert decide_link(identified, other).act is Act.NOTHING  # never merge two users
    assert decide_link(identified, identified).act is Act.NOTHING
    assert decide_alias(identified, other).act is Act.MERGE  # alias is explicit
    assert decide_alias(None, other).act is Act.ATTACH_FIRST


@pytest.mark.parametrize(
    "value",
    [
        "anonymous",
        "NULL",
        "Null",
        "undefined",
        "0",
        "guest",
        " Guest ",
        "[object Object]",
        "",
        "None",
    ],
)
def test_illegal_ids(value: str) -> None:
    assert is_illegal_id(value)


@pytest.mark.parametrize("value", ["u-123", "1234", "alice@example.com", "a1b2c3", 42])
def test_legal_ids(value: object) -> None:
    assert not is_illegal_id(value)


# --- scenarios ---------------------------------------------------------------------------


def test_anonymous_browsing_then_login(site: SiteDb) -> None:
    before = [page("dev1", "/a", minutes=0), page("dev1", "/b", minutes=1)]
    site.send(*before)
    anonymous_person = site.anon("dev1")
    assert anonymous_person is not None and site.user("alice") is None

    login = identify("dev1", "alice", minutes=2)
    after = track("dev1", "Element Clicked", {"selector": "a", "tag": "a"}, userId="alice")
    site.send(login, after)

    assert site.user("alice") == site.anon("dev1") == anonymous_person
    assert site.merges() == []  # the user id joined the anonymous person: nothing to merge
    persons = site.event_persons()
    assert set(persons.values()) == {anonymous_person}
    assert len(persons) == 4


def test_login_on_a_second_device_merges_its_anonymous_person(site: SiteDb) -> None:
    site.send(page("laptop", minutes=0), identify("laptop", "bob", minutes=1))
    bob = site.user("bob")
    site.send(page("phone", "/p1", minutes=10), page("phone", "/p2", minutes=11))
    phone = site.anon("phone")
    assert phone is not None and phone != bob

    site.send(identify("phone", "bob", minutes=12))
    assert site.anon("phone") == site.anon("laptop") == site.user("bob") == bob
    assert site.merges() == [{"from_person": phone, "into_person": bob, "reason": "identify"}]
    assert set(site.event_persons().values()) == {bob}  # old events follow, none rewritten
    assert site.canonical_persons() == 1
    (person,) = query(site.dsn, "SELECT * FROM analytics.persons WHERE person_id = %s", (bob,))
    assert sorted(person["anonymous_ids"]) == ["laptop", "phone"]
    assert person["user_ids"] == [h("bob")] and person["merged_person_ids"] == [phone]

    site.send(identify("phone", "bob", minutes=13))  # idempotent
    assert len(site.merges()) == 1


def test_reset_then_another_user_on_the_same_device(site: SiteDb) -> None:
    # carol logs in, logs out (reset: a new anonymous id), dave logs in: two persons.
    site.send(page("shared-1", minutes=0), identify("shared-1", "carol", minutes=1))
    site.send(page("shared-2", minutes=5), identify("shared-2", "dave", minutes=6))
    assert site.user("carol") != site.user("dave")
    # The same device without reset: dave identifies with carol's anonymous id.
    without_reset = identify("shared-1", "dave", minutes=10)
    daves_click = track("shared-1", "Element Clicked", {"selector": "b", "tag": "b"}, userId="dave")
    carols_page = page("shared-1", "/before", minutes=0.5)
    site.send(without_reset, daves_click, carols_page)

    carol, dave = site.user("carol"), site.user("dave")
    assert carol != dave  # two users are never merged implicitly
    assert site.anon("shared-1") == carol  # the anonymous id stays on its first person
    assert site.merges() == []
    persons = site.event_persons()
    assert persons[without_reset["messageId"]] == dave  # the user id decides
    assert persons[daves_click["messageId"]] == dave
    assert persons[carols_page["messageId"]] == carol


def test_new_user_on_a_device_whose_anonymous_id_is_taken(site: SiteDb) -> None:
    site.send(identify("kiosk", "erin", minutes=0))
    site.send(identify("kiosk", "frank", minutes=5))  # frank is new: a person of his own
    assert site.user("frank") not in (None, site.user("erin"))
    assert site.anon("kiosk") == site.user("erin")
    assert site.merges() == []


def test_alias_of_a_previous_user_id_merges_explicitly(site: SiteDb) -> None:
    site.send(identify("d-old", "old-login", minutes=0), page("d-old", minutes=1))
    site.send(identify("d-new", "new-login", minutes=2))
    old, new = site.user("old-login"), site.user("new-login")
    assert old != new
    site.send(alias("new-login", "old-login", minutes=3))
    assert site.user("old-login") == site.user("new-login") == site.anon("d-old") == new
    assert site.merges() == [{"from_person": old, "into_person": new, "reason": "alias"}]


def test_alias_of_the_anonymous_id_links_it(site: SiteDb) -> None:
    # analytics.js: alias(newId) sends previousId = the current anonymous id.
    site.send(page("a-js", minutes=0))
    anonymous = site.anon("a-js")
    site.send(alias("gina", "a-js", anon="a-js", minutes=1))
    assert site.user("gina") == anonymous
    assert site.merges() == []
    # No user identity was made of the anonymous id's hash.
    assert site.person("user", "a-js") is None


def test_server_side_alias_naming_an_anonymous_id(site: SiteDb) -> None:
    # A backend aliases a visitor's anonymous id it saw earlier; no anonymousId field.
    site.send(page("a-srv", minutes=0))
    site.send(identify("a-other", "hank", minutes=1))
    visitor, hank = site.anon("a-srv"), site.user("hank")
    site.send(alias("hank", "a-srv", minutes=2))
    assert site.anon("a-srv") == hank
    assert site.merges() == [{"from_person": visitor, "into_person": hank, "reason": "alias"}]


def test_illegal_ids_never_link(site: SiteDb) -> None:
    null_user = identify("ok-device", "null", minutes=0)
    site.send(null_user, identify("undefined", "ivan", minutes=1))
    site.send(identify("undefined", "judy", minutes=2), identify("ok-2", " Guest ", minutes=3))

    rows = {
        r["message_id"]: r
        for r in query(site.dsn, "SELECT * FROM events WHERE site_id = %s", (site.site_id,))
    }
    assert rows[null_user["messageId"]]["user_id"] is None  # dropped before hashing
    for bad in ("null", " Guest ", "guest", "NULL"):
        assert site.user(bad) is None
    assert site.anon("undefined") is None
    assert site.user("ivan") != site.user("judy")  # one junk device id does not join them
    assert site.merges() == []
    assert site.anon("ok-device") is not None


# --- two collector processes at once ----------------------------------------------------


@pytest.mark.slow
def test_same_identify_on_two_collector_processes(collector: Collector, tmp_path: Path) -> None:
    """Two ``footfall serve`` processes, one database: one person, one merge record each."""
    from tests.ops.serving import serve

    first = serve(collector.dsn, tmp_path, FOOTFALL_WRITER_LINGER_MS="5")
    second = serve(collector.dsn, tmp_path, FOOTFALL_WRITER_LINGER_MS="5")
    try:
        site = SiteDb(collector, first.base_url)
        pairs = 40
        # Each user is known on one device, and browsed anonymously on another.
        setup = []
        for i in range(pairs):
            setup += [identify(f"known-{i}", f"user-{i}", minutes=0), page(f"new-{i}", minutes=1)]
        site.send(*setup)

        def send(base_url: str, messages: list[dict]) -> None:
            post(base_url, site.key, messages)

        # The same login reaches both collectors at once: once as one retried
        # message (same messageId), and once as two messages (two ids).
        threads = []
        for i in range(pairs):
            login = identify(f"new-{i}", f"user-{i}", minutes=2)
            again = dict(login, messageId=login["messageId"] + ("-b" if i % 2 else ""))
            threads.append(threading.Thread(target=send, args=(first.base_url, [login])))
            threads.append(threading.Thread(target=send, args=(second.base_url, [again])))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        merges = site.merges()
        assert len(merges) == pairs
        assert len({m["from_person"] for m in merges}) == pairs
        for i in range(pairs):
            person = site.user(f"user-{i}")
            assert site.anon(f"new-{i}") == site.anon(f"known-{i}") == person
        assert site.canonical_persons() == pairs
    finally:
        first.terminate()
        second.terminate()
