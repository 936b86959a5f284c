"""``footfall schemas check | infer``: custom event schemas."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def cmd_check(args: argparse.Namespace) -> None:
    from footfall.schemas.registry import check_dir

    problems = check_dir(Path(args.directory))
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"{args.directory}: all schemas valid")


def cmd_infer(args: argparse.Namespace) -> None:
    """Write a draft 1-0-0 schema of an undeclared event from its stored examples."""
    import psycopg

    from footfall.cli.main import _dsn, _settings
    from footfall.operations import site_id
    from footfall.schemas.infer import FIRST_VERSION, infer_schema
    from footfall.schemas.registry import slugify
    from footfall.storage.events import undeclared_examples
    from footfall.storage.sites import site_settings

    with psycopg.connect(_dsn(_settings())) as conn:
        site = site_id(conn, args.site)
        examples = undeclared_examples(conn, site, args.event, args.limit)
        schema_dir = site_settings(conn, site)[1].get("schema_dir")
    if not examples:
        sys.exit(
            f"footfall: no stored undeclared {args.event!r} events on site {args.site!r}"
            " (event names are case-sensitive)"
        )
    schema = infer_schema(args.event, examples)
    text = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    directory = args.output or schema_dir
    if args.stdout or not directory:
        print(text, end="")
        if not args.stdout:
            print(
                f"footfall: site {args.site!r} has no schema_dir; give --output DIR to write"
                " the file",
                file=sys.stderr,
            )
        return
    path = Path(directory) / slugify(args.event) / f"{FIRST_VERSION}.json"
    if path.exists() and not args.force:
        sys.exit(f"footfall: {path} exists (--force replaces it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path} from {len(examples)} examples")
    if not schema_dir or Path(schema_dir).resolve() != Path(directory).resolve():
        print(f"then: footfall sites configure {args.site} --schema-dir {directory}")
    print(f"review it, then: footfall sites configure {args.site} --strict")


def register(sub: Any) -> None:
    """Add ``footfall schemas …`` to the root parser's subcommands."""
    schemas = sub.add_parser("schemas", help="event schemas").add_subparsers(
        dest="schemas", required=True
    )
    check = schemas.add_parser("check", help="validate a custom schema directory")
    check.add_argument("directory")
    check.set_defaults(func=cmd_check)

    infer = schemas.add_parser(
        "infer", help="draft a schema (1-0-0) from an undeclared event's stored examples"
    )
    infer.add_argument("event", help='the event name as sent, e.g. "Signed Up"')
    infer.add_argument("--site", required=True, help="site name")
    infer.add_argument("--limit", type=int, default=1000, help="newest examples read")
    infer.add_argument("--output", "-o", help="schema directory (default: the site's schema_dir)")
    infer.add_argument("--stdout", action="store_true", help="print instead of writing a file")
    infer.add_argument("--force", action="store_true", help="replace an existing 1-0-0")
    infer.set_defaults(func=cmd_infer)
