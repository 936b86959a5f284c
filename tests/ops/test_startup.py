"""Start-up work runs once, before the workers (issue 9, item 23).

``footfall serve`` runs ``prepare_database`` (migrations, partitions, the demo
site) in its own process; the app its workers build never migrates.
"""

from __future__ import annotations

import httpx
import pytest
from alembic import command

from footfall.app import prepare_database
from footfall.storage import migrate
from tests.support import ServerThread, collector_settings, query, scratch_database

OLDER = "20261201_1010"


def test_a_worker_app_does_not_migrate(admin_dsn: str) -> None:
    from footfall.app import create_worker_app

    with scratch_database(admin_dsn) as dsn:
        command.downgrade(migrate.alembic_config(dsn), OLDER)
        settings = collector_settings(dsn, demo=False)
        server = ServerThread(settings)
        server.app = create_worker_app(settings)  # what `footfall serve` hands uvicorn
        server.server.config.app = server.app
        server.start()
        try:
            ready = httpx.get(server.base_url + "/readyz").json()
            assert ready["checks"]["schema_at_head"] is False
            assert migrate.current_revision(dsn) == OLDER
        finally:
            server.stop()


def test_serve_hands_workers_their_settings_in_the_config_not_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The factory uvicorn pickles to each worker carries the resolved URL and the demo."""
    import pickle

    from footfall.api import server

    captured = {}

    class Captured(Exception):
        pass

    def fake_server(config: object) -> None:
        captured["config"] = config
        raise Captured

    monkeypatch.setattr(server.uvicorn, "Server", fake_server)
    settings = collector_settings("postgresql://h/db", demo=True)
    with pytest.raises(Captured):
        server.run(settings, host="127.0.0.1", port=0, workers=2)
    factory = pickle.loads(pickle.dumps(captured["config"].app))  # as spawn sends it
    assert factory.args[0].database_url == "postgresql://h/db"
    assert factory.args[0].demo_enabled is True


def test_prepare_database_migrates_and_creates_the_demo_site_once(admin_dsn: str) -> None:
    with scratch_database(admin_dsn) as dsn:
        command.downgrade(migrate.alembic_config(dsn), OLDER)
        settings = collector_settings(dsn, demo=True)
        key = prepare_database(settings, dsn)
        assert migrate.current_revision(dsn) == migrate.head_revision()
        assert key is not None and key.startswith("ffw_")
        assert prepare_database(settings, dsn) == key  # idempotent: one demo site
        assert query(dsn, "SELECT count(*) AS n FROM sites WHERE name = 'demo'") == [{"n": 1}]
        assert prepare_database(collector_settings(dsn, demo=False), dsn) is None
