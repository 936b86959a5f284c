"""``footfall partitions ensure | list | split-default | drop-before``: the monthly
partitions of events."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from typing import Any


def _connect() -> Any:
    import psycopg

    from footfall.cli.main import _dsn, _settings

    return psycopg.connect(_dsn(_settings()), autocommit=True)


def cmd_ensure(args: argparse.Namespace) -> None:
    from footfall.cli.main import _settings
    from footfall.storage.partitions import ensure_partitions

    months = args.months if args.months is not None else _settings().partition_months_ahead
    with _connect() as conn:
        created = ensure_partitions(conn, months)
    print("created: " + (", ".join(created) if created else "nothing (all there)"))


def cmd_list(args: argparse.Namespace) -> None:
    from footfall.storage.partitions import list_partitions, partition_rows

    with _connect() as conn:
        for partition in list_partitions(conn):
            rows = partition_rows(conn, partition)
            lower = f"{partition.lower:%Y-%m-%d}" if partition.lower else "DEFAULT"
            upper = f"{partition.upper:%Y-%m-%d}" if partition.upper else ""
            print(f"{partition.name}\t{lower}\t{upper}\t{rows} rows")


def cmd_split_default(args: argparse.Namespace) -> None:
    from footfall.storage.partitions import split_default

    with _connect() as conn:
        moved = split_default(conn, dry_run=args.dry_run)
    verb = "would move" if args.dry_run else "moved"
    for name, rows in moved:
        print(f"{verb} {rows} rows of events_default into {name}")
    if not moved:
        print("events_default is empty")


def _cutoff(value: str) -> datetime:
    day = date.fromisoformat(value)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def cmd_drop_before(args: argparse.Namespace) -> None:
    from footfall.storage.partitions import drop_before

    with _connect() as conn:
        report = drop_before(conn, args.date, dry_run=args.dry_run)
    verb = "would drop" if args.dry_run else "dropped"
    names = ", ".join(p.name for p in report.dropped) or "nothing"
    print(f"{verb}: {names}")
    if not args.dry_run and report.dropped:
        print(
            f"deleted {report.default_rows_deleted} rows of events_default and"
            f" {report.keys_deleted} deduplication keys of events before the cutoff"
        )


def register(sub: Any) -> None:
    """Add the ``partitions`` command to the root parser's subcommands."""
    parts = sub.add_parser("partitions", help="monthly partitions of events").add_subparsers(
        dest="partitions", required=True
    )
    ensure = parts.add_parser("ensure", help="create this month's partition and those ahead")
    ensure.add_argument(
        "--months", type=int, help="months ahead (default FOOTFALL_PARTITION_MONTHS_AHEAD)"
    )
    ensure.set_defaults(func=cmd_ensure)
    parts.add_parser("list", help="partitions with their bounds and row counts").set_defaults(
        func=cmd_list
    )
    split = parts.add_parser(
        "split-default",
        help="move rows out of events_default into partitions of their months (created)",
    )
    split.add_argument("--dry-run", action="store_true", help="only print what would move")
    split.set_defaults(func=cmd_split_default)
    drop = parts.add_parser(
        "drop-before", help="retention: drop every monthly partition ending on or before DATE"
    )
    drop.add_argument("date", type=_cutoff, help="YYYY-MM-DD (UTC)")
    drop.add_argument("--dry-run", action="store_true", help="only print what would be dropped")
    drop.set_defaults(func=cmd_drop_before)
