"""``footfall webhooks endpoints add|list|remove|enable|disable|reseal``,
``footfall webhooks list|retry|dispatch`` (docs/webhooks.md)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _settings() -> Any:
    from footfall.cli.main import _settings as settings

    return settings()


def _dsn() -> str:
    from footfall.cli.main import _dsn as dsn

    return dsn(_settings())


def _keys() -> Any:
    from footfall.operations import keyring

    return keyring(_settings())


def _site(name: str | None) -> int | None:
    """The id of the site named ``name`` (None for None); an unknown name exits."""
    if name is None:
        return None
    import psycopg

    from footfall.operations import site_id

    with psycopg.connect(_dsn()) as conn:
        return site_id(conn, name)


def _run(work: Callable[[Any], Awaitable[T]]) -> T:
    """``work(conn)`` in one transaction on a fresh connection."""
    import psycopg

    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(_dsn()) as conn, conn.transaction():
            return await work(conn)

    return asyncio.run(main())


def cmd_endpoint_add(args: argparse.Namespace) -> None:
    import psycopg

    from footfall.storage import webhooks
    from footfall.webhooks.message import check_endpoint, generate_secret, secret_key
    from footfall.webhooks.sealing import seal

    try:
        check_endpoint(args.name, args.url)
        secret = args.secret or generate_secret()
        secret_key(secret)
    except ValueError as exc:
        sys.exit(f"footfall: {exc}")
    site_id = _site(args.site)
    assert site_id is not None
    key = _keys().current
    sealed = seal(secret, key, site_id, args.name)
    try:
        _run(lambda c: webhooks.add_endpoint(c, site_id, args.name, args.url, sealed, key.key_id))
    except psycopg.errors.UniqueViolation:
        sys.exit(f"footfall: site {args.site!r} already has an endpoint named {args.name!r}")
    print(f"endpoint {args.name} of site {args.site}: {args.url}")
    if not args.secret:
        # Shown once, as a site's write key is: the receiver verifies signatures with it.
        print(f"signing secret (give it to the receiver; not shown again): {secret}")


def cmd_endpoint_list(args: argparse.Namespace) -> None:
    from footfall.storage import webhooks

    site_id = _site(args.site)
    for ep in _run(lambda c: webhooks.list_endpoints(c, site_id)):
        state = "enabled" if ep.enabled else "disabled"
        print(f"{ep.site_id}\t{ep.name}\t{ep.url}\t{state}\t{ep.created_at:%Y-%m-%dT%H:%M:%S}")


def cmd_endpoint_remove(args: argparse.Namespace) -> None:
    from footfall.storage import webhooks

    site_id = _site(args.site)
    assert site_id is not None
    existed, cancelled = _run(lambda c: webhooks.remove_endpoint(c, site_id, args.name))
    if not existed:
        sys.exit(f"footfall: site {args.site!r} has no endpoint named {args.name!r}")
    print(f"removed endpoint {args.name}; {cancelled} pending deliveries cancelled")


def _cmd_endpoint_enable(enabled: bool) -> Callable[[argparse.Namespace], None]:
    def command(args: argparse.Namespace) -> None:
        from footfall.storage import webhooks

        site_id = _site(args.site)
        assert site_id is not None
        if not _run(lambda c: webhooks.set_enabled(c, site_id, args.name, enabled)):
            sys.exit(f"footfall: site {args.site!r} has no endpoint named {args.name!r}")
        print(f"endpoint {args.name} {'enabled' if enabled else 'disabled (deliveries wait)'}")

    return command


def cmd_endpoint_reseal(args: argparse.Namespace) -> None:
    """Seal every secret under the current PII key (after a key rotation)."""
    from footfall.storage import webhooks
    from footfall.webhooks.sealing import SealError, seal, unseal

    keyring = _keys()

    async def work(conn: Any) -> tuple[int, list[str]]:
        done, problems = 0, []
        for site_id, name, sealed, key_id in await webhooks.sealed_secrets(conn):
            if key_id == keyring.current.key_id:
                continue
            try:
                secret = unseal(sealed, key_id, keyring, site_id, name)
            except SealError as exc:
                problems.append(f"site {site_id} endpoint {name}: {exc}")
                continue
            resealed = seal(secret, keyring.current, site_id, name)
            await webhooks.store_sealed_secret(
                conn, site_id, name, resealed, keyring.current.key_id
            )
            done += 1
        return done, problems

    done, problems = _run(work)
    print(f"resealed {done} endpoint secrets under key {keyring.current.key_id}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(1)


def cmd_list(args: argparse.Namespace) -> None:
    from footfall.storage import webhooks

    site_id = _site(args.site)
    rows = _run(
        lambda c: webhooks.list_deliveries(
            c, site_id=site_id, status=args.status, endpoint=args.endpoint, limit=args.limit
        )
    )
    print("id\tsite\tendpoint\tmessage_id\ttype\tstatus\tattempts\tlast_status\tlast_error")
    for r in rows:
        print(
            f"{r['id']}\t{r['site']}\t{r['endpoint']}\t{r['message_id']}\t{r['event_type']}\t"
            f"{r['status']}\t{r['attempts']}\t{r['last_status'] or '-'}\t{r['last_error'] or '-'}"
        )


def cmd_retry(args: argparse.Namespace) -> None:
    from footfall.storage import webhooks

    site_id = _site(args.site)
    count = _run(
        lambda c: webhooks.retry_dead(c, site_id=site_id, endpoint=args.endpoint, ids=args.ids)
    )
    print(f"{count} dead deliveries queued again")


def cmd_dispatch(args: argparse.Namespace) -> None:
    """Run a dispatcher in the foreground until SIGTERM or Ctrl-C."""
    import logging.config

    from footfall.observability import logging_config
    from footfall.storage.engine import create_pool
    from footfall.webhooks.dispatcher import DispatchConfig, Dispatcher

    settings = _settings()
    dsn = _dsn()
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))

    async def main() -> None:
        pool = create_pool(dsn, settings)
        await pool.open(wait=True, timeout=30)
        dispatcher = Dispatcher(pool, dsn, _keys(), DispatchConfig.from_settings(settings))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        dispatcher.start()
        print("webhook dispatcher running", flush=True)
        await stop.wait()
        await dispatcher.close()
        await pool.close()

    asyncio.run(main())


def register(sub: Any) -> None:
    """Add the ``webhooks`` command to the root parser's subcommands."""
    hooks = sub.add_parser("webhooks", help="webhook endpoints and deliveries").add_subparsers(
        dest="webhooks", required=True
    )
    endpoints = hooks.add_parser("endpoints", help="where a site's webhooks go").add_subparsers(
        dest="endpoints", required=True
    )
    add = endpoints.add_parser("add", help="add an endpoint; prints its new signing secret")
    add.add_argument("--site", required=True, help="site name")
    add.add_argument("name", help="endpoint name, as segment definitions refer to it")
    add.add_argument("url", help="http(s) URL the webhooks are POSTed to")
    add.add_argument("--secret", help="use this whsec_ secret instead of generating one")
    add.set_defaults(func=cmd_endpoint_add)
    listing = endpoints.add_parser("list", help="endpoints (secrets are never shown)")
    listing.add_argument("--site", help="only this site")
    listing.set_defaults(func=cmd_endpoint_list)
    for verb, func, text in (
        ("remove", cmd_endpoint_remove, "delete an endpoint; its pending deliveries are cancelled"),
        ("enable", _cmd_endpoint_enable(True), "resume deliveries to an endpoint"),
        ("disable", _cmd_endpoint_enable(False), "pause deliveries (they wait, pending)"),
    ):
        command = endpoints.add_parser(verb, help=text)
        command.add_argument("--site", required=True, help="site name")
        command.add_argument("name")
        command.set_defaults(func=func)
    endpoints.add_parser(
        "reseal", help="seal every endpoint secret under the current PII key (after rotation)"
    ).set_defaults(func=cmd_endpoint_reseal)

    deliveries = hooks.add_parser("list", help="deliveries: status, attempts, last error")
    deliveries.add_argument("--site", help="only this site")
    deliveries.add_argument("--endpoint", help="only this endpoint name")
    deliveries.add_argument(
        "--status", choices=["pending", "delivered", "dead", "cancelled", "undeliverable"]
    )
    deliveries.add_argument("--limit", type=int, default=50)
    deliveries.set_defaults(func=cmd_list)
    retry = hooks.add_parser("retry", help="send dead deliveries again (all, or by id)")
    retry.add_argument("ids", nargs="*", type=int, help="outbox ids (default: every dead one)")
    retry.add_argument("--site", help="only this site")
    retry.add_argument("--endpoint", help="only this endpoint name")
    retry.set_defaults(func=cmd_retry)
    hooks.add_parser(
        "dispatch", help="run a dispatcher alone (the collector runs one too unless disabled)"
    ).set_defaults(func=cmd_dispatch)
