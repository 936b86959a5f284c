"""Configuration from ``FOOTFALL_*`` environment variables, validated once at start."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PII_KEY = "footfall-development-key-do-not-use-in-production"


class Settings(BaseSettings):
    """Every setting of the collector; see docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="FOOTFALL_", extra="ignore", populate_by_name=True)

    env: Literal["development", "production", "test"] = "development"
    # Also read from plain DATABASE_URL (the convention of most hosts).
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    # A streaming replica for the paths that only read (admin/CLI export, failed
    # list): they may lag the primary by the replication delay. Unset: the primary.
    read_database_url: str | None = None
    data_dir: Path = Path(".footfall")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # The collector's own public origin (scheme://host[:port]), e.g. what the
    # browser sees behind a proxy. Browser requests from it pass the origin check
    # of every site (the demo page, a first-party tracker). Unset: none do.
    public_url: str | None = None

    # HTTP server (footfall serve): the total size of a request's header section
    # (431 above), how long a client may take to send it (from the connection's
    # first byte or from the end of the previous response), to send a body, and
    # how long an idle keep-alive connection is kept.
    max_header_bytes: int = 16 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_timeout_s: int = 5

    # Database pool of each worker process.
    pool_min_size: int = 2
    pool_max_size: int = 10
    pool_timeout_s: float = 3.0

    # Group commit: the writer commits when this many messages are waiting or
    # the oldest has waited this long, whichever comes first.
    writer_max_batch: int = 2000
    writer_linger_ms: float = 2.0
    writer_queue_max: int = 50_000
    # Groups committing at once per worker, each on its own connection: the next
    # group starts while one waits for its round trips.
    writer_concurrency: int = Field(default=2, ge=1)
    retry_after_s: int = 5
    # Write key -> site cache of each worker: a known key is re-read after this
    # long (and served from memory while the database is down); an unknown key
    # is remembered as unknown for the shorter time; at most this many keys.
    site_cache_ttl_s: float = 30.0
    site_cache_negative_ttl_s: float = 5.0
    site_cache_max_keys: int = 10_000

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
    # Retired keys kept for look-ups (erasure, export, the consent ledger) after a
    # rotation: "id:secret,id:secret". See docs/privacy.md, key rotation.
    pii_previous_keys: str = ""
    # Peers whose X-Forwarded-For / Forwarded headers are believed: IPs or CIDRs, comma-separated.
    trusted_proxies: str = ""
    # Bearer token of the admin API (/admin/privacy/...); the API is off while unset.
    admin_token: str | None = None
    # Query parameter names removed from every URL, on top of the built-in list.
    sensitive_params: str = ""

    # Rate limits, token buckets in each worker process (so N workers allow N
    # times as much); 0 disables. A site's settings may override them
    # (rate_limit_per_s, rate_limit_burst, ip_rate_limit_per_s, ip_rate_limit_burst).
    rate_limit_per_s: float = 0.0  # messages per second per site
    rate_limit_burst: float = 0.0  # 0: twice the rate
    ip_rate_limit_per_s: float = 0.0  # requests per second per client IP and site
    ip_rate_limit_burst: float = 0.0
    rate_limit_max_buckets: int = 100_000  # idle buckets are evicted past this
    # (behind a load balancer, set FOOTFALL_TRUSTED_PROXIES so the client IP is right)

    # Partitions of events created ahead (months after the current one) at start.
    partition_months_ahead: int = 2

    metrics_enabled: bool = True
    log_format: Literal["json", "text"] = "json"
    access_log: bool = True

    # GeoIP (MaxMind GeoLite2/GeoIP2 .mmdb files, e.g. from `geoipupdate`): the City
    # database enables geo enrichment; the ASN database adds geo_asn/geo_asn_org.
    geoip_city_db: Path | None = None
    geoip_asn_db: Path | None = None

    # Real-time segments (docs/segments.md): how often each collector's sweeper looks
    # for persons whose membership changes with time alone; off: no sweeper here.
    segments_sweeper: bool = True
    segments_sweep_interval_s: float = Field(default=0.5, gt=0, le=60)

    # Webhooks (docs/webhooks.md): the dispatcher each collector process runs, and
    # the delivery policy of the outbox.
    webhook_dispatcher: bool = True
    webhook_max_attempts: int = Field(default=15, ge=1, le=100)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhook_lease_s: float = Field(default=60.0, gt=0)
    webhook_backoff_base_s: float = Field(default=10.0, gt=0)
    webhook_backoff_max_s: float = Field(default=21600.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1, le=1000)
    webhook_poll_s: float = Field(default=5.0, gt=0)
    webhook_retention_days: int = Field(default=7, ge=0)

    tracker_path: str = "/a/s.js"
    # First-party id cookie (ff_id) carrying the tracker's anonymousId, set on browser
    # ingest answers when consent allows; see docs/tracker.md (ITP).
    id_cookie: bool = False
    id_cookie_domain: str | None = None  # e.g. example.com: shared by its subdomains
    id_cookie_max_age_days: int = Field(default=400, ge=1, le=400)  # browsers cap at 400
    demo: bool | None = None  # default: on with the embedded database
    log_level: str = "info"

    @field_validator("database_url", "read_database_url")
    @classmethod
    def _normalize_dsn(cls, value: str | None) -> str | None:
        """Accept postgres://, postgresql:// and SQLAlchemy's postgresql+psycopg://."""
        if not value:
            return None
        for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql://" + value[len(prefix) :]
        return value

    @field_validator("schema_dir", "geoip_city_db", "geoip_asn_db", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        """``FOOTFALL_GEOIP_CITY_DB=`` (as compose passes an unset variable) means none."""
        return None if value == "" else value

    @field_validator("tracker_path")
    @classmethod
    def _path_starts_with_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @field_validator("public_url")
    @classmethod
    def _origin_only(cls, value: str | None) -> str | None:
        """Kept as an origin: scheme://host[:port], lower-case, no path."""
        if not value:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL, e.g. https://collector.example")
        netloc = parts.netloc.lower()
        default_port = {"http": ":80", "https": ":443"}[parts.scheme]
        if netloc.endswith(default_port):  # browsers leave the default port out of Origin
            netloc = netloc[: -len(default_port)]
        return f"{parts.scheme}://{netloc}"

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: str) -> str:
        for part in _split(value):
            ipaddress.ip_network(part, strict=False)  # ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        # "development" and "test" may run on the published key; nothing else may.
        lenient = self.env in ("development", "test")
        if not lenient and (not self.pii_key or self.pii_key == DEV_PII_KEY):
            raise ValueError(
                "FOOTFALL_PII_KEY must be set to a secret (>= 32 random bytes) outside development"
            )
        if not lenient and len(self.pii_key) < 32:
            raise ValueError("FOOTFALL_PII_KEY must be at least 32 characters")
        if not self.pii_key_id or ":" in self.pii_key_id or "," in self.pii_key_id:
            raise ValueError("FOOTFALL_PII_KEY_ID must be non-empty, without ':' or ','")
        ids = [self.pii_key_id]
        for key_id, secret in self.previous_pii_keys:
            if not key_id or not secret or key_id in ids:
                raise ValueError(
                    "FOOTFALL_PII_PREVIOUS_KEYS must be 'id:secret,...' with ids unique"
                    " and different from FOOTFALL_PII_KEY_ID"
                )
            if secret == DEV_PII_KEY and not lenient:
                raise ValueError("FOOTFALL_PII_PREVIOUS_KEYS holds the development key")
            ids.append(key_id)
        if self.webhook_lease_s < self.webhook_timeout_s + 5:
            # A claim must outlive the request it covers, or a second dispatcher
            # would send the same message while the first is still waiting.
            raise ValueError(
                "FOOTFALL_WEBHOOK_LEASE_S must exceed FOOTFALL_WEBHOOK_TIMEOUT_S by at least 5"
            )
        if self.admin_token is not None and not lenient and len(self.admin_token) < 24:
            raise ValueError("FOOTFALL_ADMIN_TOKEN must be at least 24 characters")
        return self

    @property
    def previous_pii_keys(self) -> list[tuple[str, str]]:
        """``FOOTFALL_PII_PREVIOUS_KEYS`` as (key id, secret) pairs."""
        pairs = []
        for part in _split(self.pii_previous_keys):
            key_id, _, secret = part.partition(":")
            pairs.append((key_id.strip(), secret.strip()))
        return pairs

    @property
    def extra_sensitive_params(self) -> frozenset[str]:
        return frozenset(p.lower() for p in _split(self.sensitive_params))

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def demo_enabled(self) -> bool:
        return self.embedded if self.demo is None else self.demo


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
