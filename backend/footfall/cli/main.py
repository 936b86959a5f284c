"""``footfall serve | migrate | sites | schemas | failed | partitions | privacy | profiles``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from footfall.cli import partitions, privacy, profiles, schemas, segments, webhooks
from footfall.errors import FootfallError
from footfall.settings import Settings


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        sys.exit(f"footfall: invalid configuration:\n{exc}")


def _dsn(settings: Settings) -> str:
    from footfall.storage.engine import resolve_database_url

    return resolve_database_url(settings)


def _read_dsn(settings: Settings) -> str:
    """Where read-only commands go: FOOTFALL_READ_DATABASE_URL (a replica), else the primary."""
    return settings.read_database_url or _dsn(settings)


def cmd_serve(args: argparse.Namespace) -> None:
    from footfall.api import server
    from footfall.app import prepare_database

    settings = _settings()
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    # Once, here, before any worker starts: workers skip it (app.create_worker_app).
    dsn = _dsn(settings)
    demo_key = prepare_database(settings, dsn)
    # Workers get these settings (in uvicorn's pickled config, not the environment):
    # the resolved URL, so they use this process's embedded server, and the demo as
    # decided here (with a URL set, the default would turn it off).
    worker_settings = settings.model_copy(
        update={"database_url": dsn, "demo": settings.demo_enabled}
    )
    if demo_key:
        base = f"http://{host}:{port}"
        print(
            f"\nFootfall collector on {base}  (embedded PostgreSQL: {settings.embedded})\n"
            f"  demo page : {base}/demo\n"
            f"  write key : {demo_key}\n"
            f"  try it    : curl -u '{demo_key}:' {base}/v1/track \\\n"
            "                -H 'Content-Type: application/json' \\\n"
            '                -d \'{"event": "Signed Up", "anonymousId": "a1",'
            ' "properties": {"plan": "pro"}}\'\n',
            flush=True,
        )
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting through
    # SystemExit (not the default handler) lets atexit stop the embedded PostgreSQL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from footfall.observability import logging_config, metrics_dir

    # With several workers, each writes its metrics to files in a fresh
    # directory that /metrics adds up (set before the workers are spawned).
    with metrics_dir(workers > 1):
        server.run(
            worker_settings,
            host=host,
            port=port,
            workers=workers,
            log_level=settings.log_level,
            log_config=logging_config(settings.log_level, settings.log_format),
            access_log=False,  # it logs client IPs; footfall.access logs requests without
            timeout_graceful_shutdown=30,
        )


def cmd_migrate(args: argparse.Namespace) -> None:
    from footfall.storage import migrate

    dsn = _dsn(_settings())
    migrate.upgrade(dsn, args.revision)
    print(f"database at {migrate.current_revision(dsn)}")


def cmd_sites_create(args: argparse.Namespace) -> None:
    from footfall.storage.engine import create_sync_engine
    from footfall.storage.sites import create_site

    site_settings: dict[str, Any] = {}
    if args.strict:
        site_settings["strict"] = True
    if args.allow_bots:
        site_settings["allow_bots"] = True
    if args.schema_dir:
        site_settings["schema_dir"] = str(Path(args.schema_dir).resolve())
    engine = create_sync_engine(_dsn(_settings()))
    with engine.begin() as conn:
        site = create_site(
            conn,
            args.name,
            allowed_origins=args.origin,
            consent_mode=args.consent_mode,
            settings=site_settings,
        )
    engine.dispose()
    print(f"site {site.name} (id {site.id}) write key: {site.write_key}")


def cmd_sites_configure(args: argparse.Namespace) -> None:
    """Strictness and schema directory of a site (collectors see it within 30 s)."""
    import psycopg

    from footfall.operations import site_id
    from footfall.storage.sites import configure_site

    changes: dict[str, Any] = {}
    unset: list[str] = []
    if args.strict is not None:
        changes["strict"] = args.strict
    if args.schema_dir == "":
        unset.append("schema_dir")
    elif args.schema_dir:
        changes["schema_dir"] = str(Path(args.schema_dir).resolve())
    with psycopg.connect(_dsn(_settings())) as conn, conn.transaction():
        mode, settings = configure_site(
            conn,
            site_id(conn, args.name),
            consent_mode=args.consent_mode,
            set_settings=changes,
            unset=unset,
        )
    print(json.dumps({"site": args.name, "consent_mode": mode, "settings": settings}))


def cmd_sites_list(args: argparse.Namespace) -> None:
    from footfall.storage.engine import create_sync_engine
    from footfall.storage.sites import list_sites

    engine = create_sync_engine(_dsn(_settings()))
    with engine.connect() as conn:
        for site in list_sites(conn):
            origins = ",".join(sorted(site.allowed_origins)) or "-"
            print(f"{site.id}\t{site.name}\t{site.write_key}\t{origins}\t{site.consent_mode}")
    engine.dispose()


def cmd_sites_secret_key(args: argparse.Namespace) -> None:
    from footfall.storage.engine import create_sync_engine
    from footfall.storage.sites import get_site_by_name, rotate_secret_key

    engine = create_sync_engine(_dsn(_settings()))
    with engine.begin() as conn:
        site = get_site_by_name(conn, args.name)
        if site is None:
            sys.exit(f"footfall: no site named {args.name!r}")
        key = rotate_secret_key(conn, site.id)
    engine.dispose()
    print(f"site {site.name} (id {site.id}) secret key: {key}")


def cmd_failed_list(args: argparse.Namespace) -> None:
    from footfall.storage.failed import list_failed

    for row in list_failed(_read_dsn(_settings()), args.status, args.limit):
        first = row["errors"][0] if row["errors"] else {}
        print(
            f"{row['id']}\t{row['site']}\t{row['received_at']:%Y-%m-%dT%H:%M:%S}\t"
            f"{row['reason']}\t{first.get('path', '')} {first.get('message', '')}"
        )


def cmd_failed_replay(args: argparse.Namespace) -> None:
    from footfall.app import build_pipeline, build_tx_steps
    from footfall.replay import replay_failed

    settings = _settings()
    report = asyncio.run(
        replay_failed(
            _dsn(settings),
            build_pipeline(settings),
            args.site_id,
            steps=build_tx_steps(settings),
        )
    )
    print(json.dumps(dataclasses.asdict(report)))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="footfall", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the collector (migrates first)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="bring the database schema to head")
    mig.add_argument("revision", nargs="?", default="head")
    mig.set_defaults(func=cmd_migrate)

    sites = sub.add_parser("sites", help="manage sites").add_subparsers(dest="sites", required=True)
    create = sites.add_parser("create", help="create a site and print its write key")
    create.add_argument("name")
    create.add_argument("--origin", action="append", default=[], help="allowed browser origin")
    create.add_argument(
        "--consent-mode", default="implied", choices=["implied", "anonymous", "required"]
    )
    create.add_argument(
        "--strict",
        action="store_true",
        help="fail track events without a schema (unknown_event) instead of storing them",
    )
    create.add_argument(
        "--allow-bots",
        action="store_true",
        help="store bots and headless browsers (device_type 'bot') instead of refusing them",
    )
    create.add_argument("--schema-dir", help="this site's custom event schemas")
    create.set_defaults(func=cmd_sites_create)
    sites.add_parser("list", help="list sites").set_defaults(func=cmd_sites_list)
    secret = sites.add_parser(
        "secret-key", help="set a new secret key for the server-side APIs and print it once"
    )
    secret.add_argument("name")
    secret.set_defaults(func=cmd_sites_secret_key)
    configure = sites.add_parser("configure", help="change a site's strictness or schemas")
    configure.add_argument("name")
    strict = configure.add_mutually_exclusive_group()
    strict.add_argument("--strict", dest="strict", action="store_true", default=None)
    strict.add_argument(
        "--no-strict", dest="strict", action="store_false", help="store undeclared events"
    )
    configure.add_argument("--schema-dir", help="this site's custom event schemas ('' unsets)")
    configure.add_argument("--consent-mode", choices=["implied", "anonymous", "required"])
    configure.set_defaults(func=cmd_sites_configure)
    schemas.register(sub)

    failed = sub.add_parser("failed", help="failed events").add_subparsers(
        dest="failed", required=True
    )
    listing = failed.add_parser("list", help="list failed events")
    listing.add_argument(
        "--status", default="pending", choices=["pending", "replayed", "unreplayable"]
    )
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=cmd_failed_list)
    replay = failed.add_parser("replay", help="re-validate and store what now passes")
    replay.add_argument("--site-id", type=int, help="only this site's failed events")
    replay.set_defaults(func=cmd_failed_replay)
    partitions.register(sub)
    privacy.register(sub)
    profiles.register(sub)
    segments.register(sub)
    webhooks.register(sub)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except FootfallError as exc:  # e.g. an unknown site: the same words as the admin API
        sys.exit(f"footfall: {exc.detail}")
