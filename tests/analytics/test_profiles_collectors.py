"""Two collectors on one database, at once, with merges: profiles still equal a rebuild."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.analytics.messages import identify, page, post
from tests.analytics.test_profiles import new_site, rebuilt, send_messily, snapshot, stream
from tests.support import Collector, ServerThread, collector_settings


@pytest.fixture(scope="module")
def second_collector(database: str) -> Iterator[ServerThread]:
    thread = ServerThread(collector_settings(database)).start()
    yield thread
    thread.stop()


def test_two_collectors_with_merges(collector: Collector, second_collector: ServerThread) -> None:
    site_id, key = new_site(collector)
    errors: list[BaseException] = []

    def run(base_url: str, seed: int) -> None:
        try:
            send_messily(base_url, key, stream(seed), seed)
        except BaseException as exc:  # reported below
            errors.append(exc)

    # The same logins reach both collectors at once: merges race with profile steps.
    def logins(base_url: str, seed: int) -> None:
        r = random.Random(seed)
        try:
            for n in range(30):
                device, user = f"race-dev-{n % 10}", f"race-user-{n % 4}"
                session = f"race-s-{n % 10}"
                # A page first (an anonymous person), then the login: a merge when the
                # user already has a person from another device.
                post(base_url, key, [page(device, "/x", session=session, minutes=r.uniform(0, 99))])
                login: list[dict[str, Any]] = [
                    identify(device, user, session=session, minutes=r.uniform(0, 99))
                ]
                post(base_url, key, login)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(collector.base_url, 21)),
        threading.Thread(target=run, args=(second_collector.base_url, 22)),
        threading.Thread(target=logins, args=(collector.base_url, 23)),
        threading.Thread(target=logins, args=(second_collector.base_url, 24)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    incremental = snapshot(collector.dsn, site_id)
    merges = collector.query(
        "SELECT count(*) AS n FROM person_merges WHERE site_id = %s", (site_id,)
    )[0]["n"]
    assert merges > 0
    assert incremental == rebuilt(collector.dsn, site_id)
