"""What the collector builds at start and shares between requests (see app.lifespan)."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from footfall.api.ratelimit import RateLimiter
from footfall.pipeline.privacy import Keyring
from footfall.pipeline.process import Pipeline
from footfall.settings import Settings
from footfall.storage.consent_view import ConsentView
from footfall.storage.salts import SaltStore
from footfall.storage.segments import SegmentsStep
from footfall.storage.sites import SiteCache
from footfall.storage.writer import Writer
from footfall.webhooks.dispatcher import Dispatcher


@dataclass(slots=True)
class AppState:
    settings: Settings
    dsn: str
    pool: AsyncConnectionPool
    writer: Writer
    sites: SiteCache
    pipeline: Pipeline
    head_revision: str | None
    demo_write_key: str | None = None
    # FOOTFALL_READ_DATABASE_URL: where the read-only paths go (a replica); else ``dsn``.
    read_dsn: str | None = None
    rate_limiter: RateLimiter = field(default_factory=RateLimiter)
    # Privacy (issue 4): the visitor-hash salts kept loaded, the PII keys for look-ups.
    salts: SaltStore | None = None
    keyring: Keyring | None = None
    # The consent ledger as this process sees it (issue 12): answers without a query.
    consent: ConsentView | None = None
    # Segments (issue 10): the writer's step, whose definitions the pull endpoints share.
    segments: SegmentsStep | None = None
    # Webhooks (issue 10): this process's outbox dispatcher, unless turned off.
    webhooks: Dispatcher | None = None

    @property
    def reader_dsn(self) -> str:
        """The DSN of the paths that only read: the replica if one is configured."""
        return self.read_dsn or self.dsn


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.footfall
    return state
