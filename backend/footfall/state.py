"""What the collector builds at start and shares between requests (see app.lifespan)."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from footfall.pipeline.process import Pipeline
from footfall.settings import Settings
from footfall.storage.sites import SiteCache
from footfall.storage.writer import Writer


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


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.footfall
    return state
