"""``footfall profiles rebuild``: recompute live profiles from ``events``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def cmd_rebuild(args: argparse.Namespace) -> None:
    import psycopg

    from footfall.cli.main import _dsn, _settings
    from footfall.storage.profiles import rebuild
    from footfall.storage.sites import sites_named

    with psycopg.connect(_dsn(_settings())) as conn:
        sites = sites_named(conn, args.site)
        conn.commit()
        if args.site is not None and not sites:
            sys.exit(f"footfall: no site named {args.site!r}")
        for site_id, name in sites:
            started = time.perf_counter()
            with conn.transaction():  # one site at a time: its ingest waits only for it
                profiles = rebuild(conn, site_id)
            seconds = round(time.perf_counter() - started, 3)
            print(json.dumps({"site": name, "profiles": profiles, "seconds": seconds}))


def register(sub: Any) -> None:
    """Add the ``profiles`` command to the root parser's subcommands."""
    commands = sub.add_parser("profiles", help="live person profiles").add_subparsers(
        dest="profiles", required=True
    )
    rebuild = commands.add_parser(
        "rebuild",
        help="recompute person_profiles and person_sessions from events (after an upgrade,"
        " or to check them)",
    )
    rebuild.add_argument("--site", help="only this site (by name)")
    rebuild.set_defaults(func=cmd_rebuild)
