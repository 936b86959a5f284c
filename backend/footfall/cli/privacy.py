"""``footfall privacy export | erase | consent | retention | configure``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any


def _connect() -> Any:
    import psycopg

    from footfall.cli.main import _dsn, _settings

    return psycopg.connect(_dsn(_settings()))


def _connect_reader() -> Any:
    """Export only reads: the replica of FOOTFALL_READ_DATABASE_URL if set."""
    import psycopg

    from footfall.cli.main import _read_dsn, _settings

    return psycopg.connect(_read_dsn(_settings()))


def _subject(args: argparse.Namespace) -> tuple[str, str]:
    for kind in ("user_id", "anonymous_id", "person"):
        value = getattr(args, kind)
        if value is not None:
            return kind, value
    raise AssertionError("argparse requires one")


def cmd_export(args: argparse.Namespace) -> None:
    from footfall.cli.main import _settings
    from footfall.operations import keyring, site_id
    from footfall.storage.privacy import export_subject

    kind, value = _subject(args)
    with _connect_reader() as conn:
        data = export_subject(conn, site_id(conn, args.site), kind, value, keyring(_settings()))
    text = json.dumps(data, indent=2, sort_keys=True)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    else:
        print(text)


def cmd_erase(args: argparse.Namespace) -> None:
    from footfall.cli.main import _settings
    from footfall.operations import keyring, site_id
    from footfall.storage.privacy import erase_subject

    kind, value = _subject(args)
    with _connect() as conn, conn.transaction():
        result = erase_subject(
            conn,
            site_id(conn, args.site),
            kind,
            value,
            keyring(_settings()),
            suppress=args.suppress,
            requested_via="cli",
        )
    print(json.dumps(result, sort_keys=True))


def cmd_consent(args: argparse.Namespace) -> None:
    from footfall.cli.main import _settings
    from footfall.operations import record_consent

    purposes: dict[str, bool] = {}
    for item in args.grant:
        purposes[item] = True
    for item in args.deny:
        purposes[item] = False
    if not purposes:
        sys.exit("footfall: give --grant and/or --deny purposes (e.g. --deny analytics)")
    with _connect() as conn, conn.transaction():
        result = record_consent(
            conn,
            _settings(),
            args.site,
            anonymous_id=args.anonymous_id,
            user_id=args.user_id,
            purposes=purposes,
            policy_version=args.policy_version,
            source="admin",
        )
    print(json.dumps(result, sort_keys=True))


def cmd_retention(args: argparse.Namespace) -> None:
    from footfall.storage.privacy import apply_retention

    with _connect() as conn:
        reports = apply_retention(conn, site_name=args.site, batch_size=args.batch_size)
    for report in reports:
        print(json.dumps(dataclasses.asdict(report), sort_keys=True))


def cmd_configure(args: argparse.Namespace) -> None:
    """Change a site's consent mode and privacy settings (collectors see it within 30 s)."""
    from footfall.operations import site_id
    from footfall.storage.sites import configure_site

    changes: dict[str, Any] = {}
    for item in args.set:
        name, _, raw = item.partition("=")
        try:
            changes[name] = json.loads(raw)
        except ValueError:
            changes[name] = raw
    with _connect() as conn, conn.transaction():
        mode, settings = configure_site(
            conn,
            site_id(conn, args.site),
            consent_mode=args.consent_mode,
            set_settings=changes,
            unset=args.unset,
        )
    print(json.dumps({"site": args.site, "consent_mode": mode, "settings": settings}))


def _subject_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", required=True, help="site name")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user-id", dest="user_id", help="the raw userId (hashed here)")
    who.add_argument("--anonymous-id", dest="anonymous_id")
    who.add_argument("--person", help="a person id (persons.id)")


def register(sub: Any) -> None:
    """Add ``footfall privacy …`` to the root parser's subcommands."""
    privacy = sub.add_parser("privacy", help="GDPR/CCPA requests, consent, retention")
    commands = privacy.add_subparsers(dest="privacy", required=True)

    export = commands.add_parser("export", help="everything held about one person, as JSON")
    _subject_args(export)
    export.add_argument("--output", "-o", help="write to this file instead of stdout")
    export.set_defaults(func=cmd_export)

    erase = commands.add_parser("erase", help="delete everything held about one person")
    _subject_args(erase)
    erase.add_argument(
        "--suppress", action="store_true", help="also refuse this person's future messages"
    )
    erase.set_defaults(func=cmd_erase)

    consent = commands.add_parser("consent", help="record a consent decision in the ledger")
    consent.add_argument("--site", required=True)
    consent.add_argument("--anonymous-id", dest="anonymous_id")
    consent.add_argument("--user-id", dest="user_id")
    consent.add_argument("--grant", action="append", default=[], metavar="PURPOSE")
    consent.add_argument("--deny", action="append", default=[], metavar="PURPOSE")
    consent.add_argument("--policy-version", dest="policy_version")
    consent.set_defaults(func=cmd_consent)

    retention = commands.add_parser(
        "retention", help="delete events and failed events past each site's retention (cron)"
    )
    retention.add_argument("--site", help="only this site")
    retention.add_argument("--batch-size", type=int, default=5000)
    retention.set_defaults(func=cmd_retention)

    configure = commands.add_parser("configure", help="a site's consent mode and privacy settings")
    configure.add_argument("--site", required=True)
    configure.add_argument("--consent-mode", choices=["implied", "anonymous", "required"])
    configure.add_argument(
        "--set", action="append", default=[], metavar="NAME=JSON", help="e.g. retention_days=90"
    )
    configure.add_argument("--unset", action="append", default=[], metavar="NAME")
    configure.set_defaults(func=cmd_configure)
