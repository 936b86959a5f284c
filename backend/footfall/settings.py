"""Configuration from ``FOOTFALL_*`` environment variables, validated once at start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PII_KEY = "footfall-development-key-do-not-use-in-production"


class Settings(BaseSettings):
    """Every setting of the collector; see docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="FOOTFALL_", extra="ignore", populate_by_name=True)

    env: Literal["development", "production", "test"] = "development"
    # Also read from plain DATABASE_URL (the convention of most hosts).
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Path(".footfall")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1

    # Database pool of each worker process.
    pool_min_size: int = 2
    pool_max_size: int = 10
    pool_timeout_s: float = 3.0

    # Group commit: the writer commits when this many messages are waiting or
    # the oldest has waited this long, whichever comes first.
    writer_max_batch: int = 2000
    writer_linger_ms: float = 2.0
    writer_queue_max: int = 50_000
    retry_after_s: int = 5

    # Input limits (bytes unless stated).
    max_request_bytes: int = 500 * 1024
    max_message_bytes: int = 32 * 1024
    max_batch_messages: int = 2500
    max_json_depth: int = 20
    max_string_length: int = 8192

    schema_dir: Path | None = None
    schema_reload_s: float = 5.0

    # Pseudonymization key (HMAC-SHA256) and its id, stored with each hash.
    pii_key: str = DEV_PII_KEY
    pii_key_id: str = "k1"

    tracker_path: str = "/a/s.js"
    demo: bool | None = None  # default: on with the embedded database
    log_level: str = "info"

    @field_validator("database_url")
    @classmethod
    def _normalize_dsn(cls, value: str | None) -> str | None:
        """Accept postgres://, postgresql:// and SQLAlchemy's postgresql+psycopg://."""
        if not value:
            return None
        for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql://" + value[len(prefix) :]
        return value

    @field_validator("tracker_path")
    @classmethod
    def _path_starts_with_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.env == "production" and self.pii_key == DEV_PII_KEY:
            raise ValueError(
                "FOOTFALL_PII_KEY must be set to a secret (>= 32 random bytes) in production"
            )
        if self.env == "production" and len(self.pii_key) < 32:
            raise ValueError("FOOTFALL_PII_KEY must be at least 32 characters")
        return self

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def demo_enabled(self) -> bool:
        return self.embedded if self.demo is None else self.demo
