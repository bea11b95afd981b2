"""The `ticker` command: serve, publisher, hub, token, audit, archive, webhooks, post, tail."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import archive, audit, auth, config, eventloop
from .api_client import ApiError, PublisherClient, Unreachable
from .auth import TokenError
from .brokers import make_broker
from .brokers.base import Broker, BrokerError, BrokerMisconfigured, BrokerUnavailable
from .config import Settings
from .metrics import MULTIPROC_ENV
from .roles import RoleError, parse_editions, parse_roles
from .supervisor import Supervisor, stop_with_parent

# The servers (uvicorn, Starlette, websockets) are imported once the settings are read, so
# `--help` and a bad setting answer at once, without loading them.

log = logging.getLogger("ticker")

Command = Callable[[Settings, argparse.Namespace], Awaitable[None]]

# Flags that set a field of Settings; each is declared once, in config.SETTINGS.
SETTING_FLAGS = (
    "redis_url",
    "db_path",
    "log_level",
    "host",
    "port",
    "hub_host",
    "hub_port",
    "public_hub_url",
    "allowed_origins",
    "hub_workers",
    "publisher_workers",
)


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "run", None):
        parser.print_help()
        raise SystemExit(2)
    try:
        args.run(args)
    except (config.ConfigError, BrokerMisconfigured) as exc:
        # Nothing will change by trying again: one line, and the usage-error status.
        print(f"ticker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:  # most often: a port already in use
        raise SystemExit(f"ticker: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        pass


# --- the command line ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    """Flags only: nothing here reads the environment, so a bad variable cannot break
    `--help`. Settings are read when a command runs."""
    parser = argparse.ArgumentParser(prog="ticker", description=__doc__)
    commands = parser.add_subparsers(metavar="COMMAND")

    serve = commands.add_parser("serve", help="publisher + hub + embedded store in one process")
    _server_flags(serve, publisher=True, hub=True)
    serve.set_defaults(run=_run(_serve))

    publisher = commands.add_parser("publisher", help="the HTTP API and console, on Redis")
    _server_flags(publisher, publisher=True, hub=False)
    _worker_flags(publisher, "publisher_workers")
    publisher.set_defaults(run=_supervised("publisher", _publisher, "publisher_workers"))

    hub = commands.add_parser("hub", help="the WebSocket hub, on Redis")
    _server_flags(hub, publisher=False, hub=True)
    _worker_flags(hub, "hub_workers")
    hub.set_defaults(run=_supervised("hub", _hub, "hub_workers"))

    token = commands.add_parser("token", help="create, list, revoke and rotate tokens")
    token_commands = token.add_subparsers(metavar="ACTION", required=True)
    create = token_commands.add_parser("create", help="create a token; it is printed once")
    create.add_argument("name", help="the holder's name, recorded with every change")
    create.add_argument(
        "--role",
        default="editor",
        help="editor (the default), chief or admin, or several: admin,editor",
    )
    create.add_argument("--editions", help="an editor's editions, e.g. en,ar (default: all)")
    create.add_argument("--expires", help="90d, 12h or an ISO date (default: never)")
    _store_flags(create)
    create.set_defaults(run=_run(_token_create))
    listing = token_commands.add_parser("list", help="list tokens (never their secrets)")
    _store_flags(listing)
    listing.set_defaults(run=_run(_token_list))
    revoke = token_commands.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    _store_flags(revoke)
    revoke.set_defaults(run=_run(_token_revoke))
    rotate = token_commands.add_parser(
        "rotate", help="a new secret for a token (same roles); the old one stops working"
    )
    rotate.add_argument("name")
    _store_flags(rotate)
    rotate.set_defaults(run=_run(_token_rotate))
    migrate = token_commands.add_parser(
        "migrate", help="give tokens made before roles existed their roles and editions"
    )
    migrate.add_argument("--role", required=True, help="e.g. editor or chief")
    migrate.add_argument("--editions", help="for editors, e.g. en,ar (default: all)")
    _store_flags(migrate)
    migrate.set_defaults(run=_run(_token_migrate))

    trail = commands.add_parser("audit", help="read the audit trail, newest first")
    for name, text in (
        ("item", "only this item's changes"),
        ("editor", "only changes by this token name"),
        ("edition", "only this edition's changes"),
        ("from", "not before this ISO 8601 time"),
        ("to", "not after this ISO 8601 time"),
        ("cursor", "the cursor printed after the previous page"),
        ("limit", f"at most this many (default {audit.DEFAULT_LIMIT})"),
    ):
        trail.add_argument(f"--{name}", dest=f"audit_{name}", help=text)
    trail.add_argument("--json", action="store_true", help="one JSON object per line")
    _store_flags(trail)
    trail.set_defaults(run=_run(_audit))

    _webhook_parsers(commands)

    archived = commands.add_parser("archive", help="look after the archive of past items")
    archive_commands = archived.add_subparsers(metavar="ACTION", required=True)
    prune = archive_commands.add_parser(
        "prune", help="remove items posted before a date that are no longer live"
    )
    prune.add_argument("--before", required=True, help="ISO 8601 date or time (UTC if no offset)")
    prune.add_argument("--edition", action="append", help="only this edition (default: all)")
    _store_flags(prune)
    prune.set_defaults(run=_run(_archive_prune))

    push = commands.add_parser("push", help="Web Push: the VAPID keys")
    push_commands = push.add_subparsers(metavar="ACTION", required=True)
    keys = push_commands.add_parser("keys", help="create or show the VAPID key pair")
    keys_commands = keys.add_subparsers(metavar="ACTION", required=True)
    keys_create = keys_commands.add_parser(
        "create", help="make the key pair; prints the public key (the private key stays)"
    )
    keys_create.add_argument(
        "--replace",
        action="store_true",
        help="replace existing keys (every browser must subscribe again)",
    )
    _store_flags(keys_create)
    keys_create.set_defaults(run=_run(_push_keys_create))
    keys_show = keys_commands.add_parser("show", help="print the public key")
    _store_flags(keys_show)
    keys_show.set_defaults(run=_run(_push_keys_show))

    post = commands.add_parser("post", help="post an item from the shell")
    post.add_argument("headline")
    post.add_argument("--edition", "-e", default="en")
    post.add_argument("--source", "-s")
    post.add_argument("--link")
    post.add_argument("--urgency", "-u", type=int)
    post.add_argument("--region", action="append", dest="regions")
    post.add_argument("--category", action="append", dest="categories")
    post.add_argument("--expires-in", type=int, metavar="SECONDS")
    _flag(post, "url", "the publisher")
    _flag(post, "token", "an editor token")
    post.set_defaults(run=_post)

    tail_cmd = commands.add_parser("tail", help="follow the live ticker in the terminal")
    tail_cmd.add_argument("--edition", "-e", default="en")
    tail_cmd.add_argument("--region")
    tail_cmd.add_argument("--category")
    _flag(tail_cmd, "hub_url", "the hub's WebSocket URL")
    tail_cmd.set_defaults(run=_tail)
    return parser


def _webhook_parsers(commands: Any) -> None:
    """`ticker webhooks ...`, on the store directly, as `ticker token` (docs/webhooks.md)."""
    webhooks = commands.add_parser("webhooks", help="register, list and test webhooks")
    actions = webhooks.add_subparsers(metavar="ACTION", required=True)
    create = actions.add_parser("create", help="register a webhook; its secret is printed once")
    create.add_argument("url")
    create.add_argument("--edition", "-e", default="en")
    create.add_argument("--urgency", "-u", type=int, default=9, help="least urgent level sent")
    create.add_argument("--region", action="append", dest="regions")
    create.add_argument("--category", action="append", dest="categories")
    create.add_argument("--format", default="event", help="event, ninjs or ninjs3")
    create.add_argument("--description")
    for name, text in (
        ("create", None),
        ("list", "list webhooks, with why any is disabled"),
        ("delete", "delete a webhook, its queue and its log"),
        ("enable", "enable a disabled webhook"),
        ("test", "send a signed test message now"),
        ("deliveries", "the delivery log, newest first"),
    ):
        parser = create if text is None else actions.add_parser(name, help=text)
        if text is not None and name != "list":
            parser.add_argument("id", help="the webhook's id, wh_...")
        _store_flags(parser)
        parser.set_defaults(run=_run(_webhook_command(name)))


def _webhook_command(name: str) -> Command:
    async def run(settings: Settings, args: argparse.Namespace) -> None:
        from .webhooks import commands

        command = getattr(commands, "listing" if name == "list" else name)
        async with _started(make_broker(settings)) as broker:
            try:
                await command(settings, broker, args)
            except BrokerMisconfigured:
                raise
            except BrokerError as exc:
                raise SystemExit(f"ticker: {exc}") from None

    return run


def _flag(parser: argparse.ArgumentParser, name: str, help: str, **kwargs: Any) -> None:
    """The flag of setting `name`, as config.SETTINGS declares it. Its value stays text
    until config reads it, so a bad flag gets the same one-line error as a bad variable."""
    row = config.setting(name)
    assert row.flag is not None, name
    parser.add_argument(row.flag, dest=name, help=f"{help} (env {row.env})", **kwargs)


def _worker_flags(parser: argparse.ArgumentParser, name: str) -> None:
    _flag(parser, name, "processes sharing the port, one per core")
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)


def _store_flags(parser: argparse.ArgumentParser) -> None:
    _flag(parser, "redis_url", "Redis URL; without it the embedded store is used")
    _flag(parser, "db_path", "embedded store file, default ticker.db")
    _flag(parser, "log_level", "debug, info, warning, error, critical")


def _server_flags(parser: argparse.ArgumentParser, *, publisher: bool, hub: bool) -> None:
    _store_flags(parser)
    if publisher:
        _flag(parser, "host", "publisher address")
        _flag(parser, "port", "publisher port; 0 for any free port")
    _flag(parser, "hub_host", "hub address")
    _flag(parser, "hub_port", "hub port; 0 for any free port")
    _flag(parser, "public_hub_url", "the hub URL browsers use")
    if hub:
        _flag(
            parser,
            "allowed_origins",
            "an origin whose pages may connect, repeatable; '*' for any (comma-separated)",
            action="append",
        )


# --- running a command -----------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in SETTING_FLAGS}
    settings = config.from_env(**overrides)
    from . import servers

    servers.setup_logging(settings.log_level)
    return settings


def _run(command: Command) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        settings = _settings(args)
        eventloop.run(command(settings, args))

    return run


def _supervised(name: str, command: Command, workers: str) -> Callable[[argparse.Namespace], None]:
    """One process, or a supervisor of N worker processes that share the port through
    SO_REUSEPORT, each with its own Redis connections: the kernel spreads connections over
    them, so every core works."""

    def run(args: argparse.Namespace) -> None:
        settings = _settings(args)
        if args.worker_index is not None:
            if args.supervisor_pid is not None:
                stop_with_parent(args.supervisor_pid)
            eventloop.run(command(settings, args))
            return
        count = getattr(settings, workers)
        if count <= 1:
            eventloop.run(command(settings, args))
            return
        _require_redis(settings, name)
        eventloop.run(_check_store(settings))  # a store that refuses us is one line, not N
        supervisor_pid = str(os.getpid())

        def worker(index: int) -> list[str]:
            return [
                *(sys.executable, "-m", "ticker.cli", *args.argv),
                *("--worker-index", str(index), "--workers", "1"),
                *("--supervisor-pid", supervisor_pid),
            ]

        with _shared_metrics(name):
            code = Supervisor(name, worker, count, stop_timeout=settings.shutdown_grace + 10).run()
        if code:
            raise SystemExit(code)

    return run


@contextlib.contextmanager
def _shared_metrics(name: str) -> Iterator[None]:
    """Publisher workers count into one directory (prometheus_client's multiprocess mode),
    so a scrape of the shared port, whichever worker answers it, adds up all of them. The
    hub's workers are scraped one by one instead (TICKER_HUB_METRICS_PORT)."""
    if name != "publisher":
        yield
        return
    given = os.environ.get(MULTIPROC_ENV)
    directory = given or tempfile.mkdtemp(prefix="ticker-metrics-")
    Path(directory).mkdir(parents=True, exist_ok=True)
    for stale in Path(directory).glob("*.db"):  # counts of an earlier run
        stale.unlink()
    os.environ[MULTIPROC_ENV] = directory  # the workers inherit it
    try:
        yield
    finally:
        if not given:
            shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def _started(broker: Broker) -> AsyncIterator[Broker]:
    """The store, for a command that cannot work without it."""
    try:
        await broker.start()
    except BrokerMisconfigured:
        raise
    except BrokerError as exc:
        raise SystemExit(f"ticker: {exc}") from None
    try:
        yield broker
    finally:
        await broker.close()


async def _start_or_retry(broker: Broker) -> None:
    """The store, for a server that starts anyway: an unreachable store answers 503 (and
    /readyz says so) until it is back, while a store that refuses us stops the process."""
    try:
        await broker.start()
    except BrokerUnavailable as exc:
        log.warning("store unreachable at start-up, retrying: %s", exc)


async def _check_store(settings: Settings) -> None:
    broker = make_broker(settings)
    try:
        await _start_or_retry(broker)
    finally:
        await broker.close()


def _require_redis(settings: Settings, what: str) -> None:
    if not settings.redis_url:
        print(
            f"ticker {what} runs against Redis: pass --redis-url or set "
            "TICKER_REDIS_URL (or use `ticker serve` for one process)",
            file=sys.stderr,
        )
        raise SystemExit(2)


# --- servers ---------------------------------------------------------------------------------


async def _serve(settings: Settings, args: argparse.Namespace) -> None:
    from . import servers
    from .hub import Hub
    from .publisher import create_app

    sock = servers.listen(settings.host, settings.port, backlog=settings.accept_backlog)
    settings = replace(settings, port=sock.getsockname()[1])  # the real one, if 0 asked any
    async with _started(make_broker(settings, exclusive=True)) as broker:
        hub = Hub(settings, broker)
        try:
            await hub.start()
        except BaseException:
            await hub.stop()  # its tasks end before the store closes under them
            raise
        settings = replace(settings, hub_port=hub.port)
        server = servers.web_server(settings, create_app(settings, broker, own_broker=False))
        web = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not web.done():  # noqa: ASYNC110 (uvicorn has no event)
            await asyncio.sleep(0.05)
        if server.started:
            _print_urls(settings)
        await servers.until_signal(web)
        server.should_exit = True
        await hub.stop()
        await web


def _print_urls(settings: Settings) -> None:
    base = f"http://{settings.host}:{settings.port}"
    store = settings.redis_url or f"embedded ({settings.db_path})"
    print(
        f"ticker is running\n"
        f"  demo page         {base}/demo\n"
        f"  newsroom console  {base}/\n"
        f"  HTTP API          {base}/api/items?edition={settings.vocabulary.editions[0]}\n"
        f"  WebSocket hub     {settings.hub_url()}?edition={settings.vocabulary.editions[0]}\n"
        f"  store             {store}\n"
        f"Create an editor token with: ticker token create YOUR-NAME --role editor",
        flush=True,
    )


async def _publisher(settings: Settings, args: argparse.Namespace) -> None:
    from . import servers
    from .publisher import create_app

    _require_redis(settings, "publisher")
    reuse_port = args.worker_index is not None
    sock = servers.listen(
        settings.host, settings.port, backlog=settings.accept_backlog, reuse_port=reuse_port
    )
    # Started here rather than in the app's lifespan, so a store that refuses us stops the
    # process instead of leaving a publisher that answers 503 forever.
    broker = make_broker(settings)
    await _start_or_retry(broker)
    try:
        server = servers.web_server(settings, create_app(settings, broker, own_broker=False))
        web = asyncio.create_task(server.serve(sockets=[sock]))
        await servers.until_signal(web)
        server.should_exit = True
        await web
    finally:
        await broker.close()
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            # This worker's gauges leave the sum; its counters stay in the totals.
            multiprocess.mark_process_dead(os.getpid())


async def _hub(settings: Settings, args: argparse.Namespace) -> None:
    from . import servers
    from .hub import Hub

    _require_redis(settings, "hub")
    broker = make_broker(settings)
    # The hub keeps trying in the background; clients hear 503 until it has the ticker.
    await _start_or_retry(broker)
    index = args.worker_index
    hub = Hub(settings, broker, worker=index)
    own: asyncio.Server | None = None
    try:
        await hub.start(reuse_port=index is not None)  # a port in use raises here
        if settings.hub_metrics_port is not None:
            # A port of this worker's own, so /metrics answers for this worker every time.
            port = settings.hub_metrics_port + (index or 0)
            own = await asyncio.get_running_loop().create_server(
                hub.websockets.connection, settings.hub_host, port
            )
            log.info("hub worker %s answers /metrics on port %d", index or 0, port)
        log.info(
            "hub listening on %s:%d (browsers dial %s)",
            settings.hub_host,
            hub.port,
            settings.hub_url(),
        )
        await servers.until_signal()
    finally:
        if own is not None:
            own.close()
        # Also after a failed start: the hub's tasks and the store's follow must end, or
        # the process would wait for them forever instead of exiting.
        await hub.stop()
        await broker.close()


# --- tokens ----------------------------------------------------------------------------------


def _usage(message: str) -> SystemExit:
    """Bad input to a command: one line, and the usage-error status."""
    print(f"ticker: {message}", file=sys.stderr)
    return SystemExit(2)


def _operator() -> audit.Request:
    """Commands on the store's machine are recorded as the shell user who ran them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return audit.Request(actor=f"shell:{user}", role=audit.OPERATOR)


async def _token_create(settings: Settings, args: argparse.Namespace) -> None:
    try:
        auth.check_name(args.name)
        spec = auth.token_spec(
            args.role,
            args.editions,
            args.expires,
            known=settings.vocabulary.editions,
            now=datetime.now(UTC),
        )
    except (TokenError, RoleError) as exc:
        raise _usage(str(exc)) from None
    async with _started(make_broker(settings)) as broker:
        try:
            token = await auth.issue(broker.tokens, args.name, spec, _operator())
        except BrokerMisconfigured:
            raise
        except BrokerError as exc:
            raise SystemExit(f"ticker: {exc}") from None
    print(token)
    scope = ",".join(spec.editions) if spec.editions else "all editions"
    print(
        f"# token for {args.name} ({','.join(spec.roles)}; {scope}; "
        f"expires {spec.expires or 'never'}): shown once, stored only as a hash",
        file=sys.stderr,
    )


async def _token_list(settings: Settings, args: argparse.Namespace) -> None:
    async with _started(make_broker(settings)) as broker:
        for record in await broker.tokens.records():
            shown = auth.describe(record, settings.legacy_token_role)
            roles = ",".join(shown["roles"]) + (" (legacy)" if shown["legacy"] else "")
            editions = ",".join(shown["editions"] or ["all"])
            print(
                f"{record.name}\t{roles}\t{editions}\texpires {record.expires or 'never'}"
                f"\tcreated {record.created}\tlast used {record.last_used or 'never'}"
            )


async def _token_revoke(settings: Settings, args: argparse.Namespace) -> None:
    async with _started(make_broker(settings)) as broker:
        if not await auth.revoke(broker.tokens, args.name, _operator()):
            raise SystemExit(f"ticker: no token named {args.name!r}")
    print(f"revoked {args.name}")


async def _token_rotate(settings: Settings, args: argparse.Namespace) -> None:
    async with _started(make_broker(settings)) as broker:
        token = await auth.rotate(broker.tokens, args.name, _operator())
    if token is None:
        raise SystemExit(f"ticker: no token named {args.name!r}")
    print(token)
    print(f"# new secret for {args.name}: the old one no longer works", file=sys.stderr)


async def _token_migrate(settings: Settings, args: argparse.Namespace) -> None:
    try:
        roles = parse_roles(args.role)
        editions = parse_editions(args.editions, settings.vocabulary.editions, roles)
    except RoleError as exc:
        raise _usage(str(exc)) from None
    async with _started(make_broker(settings)) as broker:
        names = await auth.migrate(broker.tokens, tuple(sorted(roles)), editions, _operator())
    for name in names:
        print(f"migrated {name}")
    print(f"# {len(names)} token(s) given {','.join(sorted(roles))}", file=sys.stderr)


async def _audit(settings: Settings, args: argparse.Namespace) -> None:
    given = {
        name: value
        for name in audit.FILTERS
        if (value := getattr(args, f"audit_{name}", None)) is not None
    }
    try:
        query = audit.parse_query(given, settings.vocabulary.editions)
    except audit.AuditQueryError as exc:
        raise _usage(f"--{exc.field}: {exc.message}") from None
    async with _started(make_broker(settings)) as broker:
        try:
            page = await broker.audit.query(query, datetime.now(UTC))
        except audit.AuditQueryError as exc:
            raise _usage(f"--{exc.field}: {exc.message}") from None
    for entry in page.entries:
        if args.json:
            print(json.dumps(entry.to_dict(), ensure_ascii=False))
            continue
        what = entry.item or entry.subject or ""
        changes = ", ".join(
            f"{field}: {json.dumps(before, ensure_ascii=False)} -> "
            f"{json.dumps(after, ensure_ascii=False)}"
            for field, (before, after) in entry.changes.items()
        )
        print(
            f"{entry.at}\t{entry.actor}\t{entry.role or '-'}\t{entry.action}\t"
            f"{entry.edition or '-'}\t{what}\t{entry.address or '-'}\t{changes}"
        )
    if page.cursor:
        print(f"# more: --cursor {page.cursor}", file=sys.stderr)


# --- the archive -----------------------------------------------------------------------------


async def _archive_prune(settings: Settings, args: argparse.Namespace) -> None:
    try:
        before = archive.time_key(args.before, "--before")
    except archive.QueryError as exc:
        raise SystemExit(f"ticker: {exc}") from None
    editions = settings.vocabulary.editions
    unknown = sorted(set(args.edition or ()) - set(editions))
    if unknown:
        raise SystemExit(f"ticker: --edition must be one of {', '.join(editions)}")
    async with _started(make_broker(settings)) as broker:
        for edition in args.edition or editions:
            removed = await broker.prune_archive(edition, before)
            await broker.audit.record(
                audit.for_operation(
                    "archive.pruned",
                    subject=edition,
                    by=_operator(),
                    changes={"before": [None, args.before], "removed": [None, removed]},
                )
            )
            print(f"{edition}: removed {removed} items posted before {args.before}")


async def _push_keys_create(settings: Settings, args: argparse.Namespace) -> None:
    from .push.sender import new_keys
    from .push.store import push_store_for

    async with _started(make_broker(settings)) as broker:
        store = push_store_for(broker)
        keys = new_keys()
        before = await store.keys()
        if not await store.set_keys(keys, replace=args.replace):
            raise SystemExit(
                "ticker: VAPID keys exist already (ticker push keys show); --replace makes "
                "new ones, and every browser must then subscribe again"
            )
        # The public key only: the private key never leaves the store.
        old = None if before is None else before.public_key
        await broker.audit.record(
            audit.for_operation(
                "push.keys_replaced" if before else "push.keys_created",
                subject="vapid",
                by=_operator(),
                changes={"public_key": [old, keys.public_key]},
            )
        )
    print(keys.public_key)
    print("# the VAPID public key; the private key stays in the store", file=sys.stderr)


async def _push_keys_show(settings: Settings, args: argparse.Namespace) -> None:
    from .push.store import push_store_for

    async with _started(make_broker(settings)) as broker:
        keys = await push_store_for(broker).keys()
    if keys is None:
        raise SystemExit("ticker: no VAPID keys yet: ticker push keys create")
    print(keys.public_key)


# --- clients ---------------------------------------------------------------------------------


def _post(args: argparse.Namespace) -> None:
    settings = config.client_from_env(url=args.url, token=args.token)
    if not settings.token:
        raise SystemExit("ticker post needs an editor token: --token or TICKER_TOKEN")
    client = PublisherClient(
        settings.url,
        settings.token,
        on_retry=lambda reason: print(f"# {reason}; retrying", file=sys.stderr),
    )
    try:
        item = client.post_item(
            args.edition,
            args.headline,
            source=args.source,
            link=args.link,
            urgency=args.urgency,
            regions=args.regions,
            categories=args.categories,
            expires_in=args.expires_in,
        )
    except ApiError as exc:
        raise SystemExit(f"ticker: {exc.status} {exc.message}") from None
    except Unreachable:
        raise SystemExit("ticker: the item could not be posted; nothing was posted twice") from None
    print(f"posted {item['id']} (version {item['version']})")


def _tail(args: argparse.Namespace) -> None:
    from .tail import tail

    settings = config.client_from_env(hub_url=args.hub_url)
    eventloop.run(tail(settings.hub_url, args.edition, region=args.region, category=args.category))


if __name__ == "__main__":
    main()
