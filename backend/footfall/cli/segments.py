"""``footfall segments create | update | list | show | test | delete`` (docs/segments.md).

The same storage functions as the admin API (``/admin/segments``). A rule that
cannot be used is refused with the JSON pointer of each problem (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def _connect() -> Any:
    import psycopg

    from footfall.cli.main import _dsn, _settings

    return psycopg.connect(_dsn(_settings()))


def _read(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as source:
            return json.load(source)
    except OSError as exc:
        sys.exit(f"footfall: cannot read {path}: {exc.strerror}")
    except ValueError as exc:
        sys.exit(f"footfall: {path} is not JSON: {exc}")


def _run(args: argparse.Namespace, work: Callable[[Any, int], Any]) -> None:
    from footfall.operations import site_id
    from footfall.pipeline.segments.rules import RuleError
    from footfall.storage.segments import SegmentExists, UnknownSegment

    try:
        with _connect() as conn, conn.transaction():
            result = work(conn, site_id(conn, args.site))
    except RuleError as exc:
        for error in exc.errors:
            print(f"{error['pointer'] or '/'}: {error['message']}", file=sys.stderr)
        sys.exit(2)
    except (SegmentExists, UnknownSegment) as exc:
        sys.exit(f"footfall: {exc.args[0]}")
    print(json.dumps(result, indent=2, sort_keys=True, default=str))


def cmd_create(args: argparse.Namespace) -> None:
    from footfall.storage.segments import create_segment

    document = _read(args.file)
    _run(args, lambda conn, site: create_segment(conn, site, document))


def cmd_update(args: argparse.Namespace) -> None:
    from footfall.storage.segments import update_segment

    document = _read(args.file)
    _run(args, lambda conn, site: update_segment(conn, site, document))


def cmd_list(args: argparse.Namespace) -> None:
    from footfall.storage.segments import list_segments

    _run(args, lambda conn, site: list_segments(conn, site))


def cmd_show(args: argparse.Namespace) -> None:
    from footfall.storage.segments import show_segment

    _run(args, lambda conn, site: show_segment(conn, site, args.key))


def cmd_delete(args: argparse.Namespace) -> None:
    from footfall.storage.segments import delete_segment

    _run(args, lambda conn, site: delete_segment(conn, site, args.key))


def cmd_test(args: argparse.Namespace) -> None:
    import asyncio

    import psycopg

    from footfall.cli.main import _dsn, _settings
    from footfall.pipeline.segments.rules import parse_rule
    from footfall.storage.segments import dry_run

    document = _read(args.file)

    def work(conn: Any, site: int) -> Any:
        segment = parse_rule(document, 0)

        async def run() -> Any:
            async with await psycopg.AsyncConnection.connect(_dsn(_settings())) as aconn:
                return await dry_run(aconn, site, segment, args.days, args.person)

        return asyncio.run(run())

    _run(args, work)


def register(sub: Any) -> None:
    """Add ``footfall segments …`` to the root parser's subcommands."""
    segments = sub.add_parser("segments", help="real-time segments (docs/segments.md)")
    commands = segments.add_subparsers(dest="segments", required=True)

    def command(name: str, help_: str, func: Callable[[argparse.Namespace], None]) -> Any:
        parser = commands.add_parser(name, help=help_)
        parser.add_argument("--site", required=True, help="site name")
        parser.set_defaults(func=func)
        return parser

    command("create", "create a segment from a rule file", cmd_create).add_argument("file")
    command("update", "a new version of a segment from a rule file", cmd_update).add_argument(
        "file"
    )
    command("list", "active segments and member counts", cmd_list)
    command("show", "a segment's rule, versions, member count", cmd_show).add_argument("key")
    command("delete", "retire a segment, closing its memberships", cmd_delete).add_argument("key")
    test = command("test", "who a rule file would match now, from stored events", cmd_test)
    test.add_argument("file")
    test.add_argument("--person", type=int, help="only this person (persons.id)")
    test.add_argument(
        "--days", type=int, default=1, choices=range(1, 91), metavar="N",
        help="events of the last N days (1-90, default 1)",
    )  # fmt: skip
