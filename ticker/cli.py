"""The `ticker` command: serve, publisher, hub, token, post, tail."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from . import aio, config
from .auth import TokenError, create_token
from .brokers import make_broker
from .brokers.base import Broker, BrokerError, BrokerUnavailable
from .config import Settings
from .hub import Hub
from .publisher import create_app
from .tail import tail

log = logging.getLogger("ticker")


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "run", None):
        parser.print_help()
        raise SystemExit(2)
    try:
        args.run(args)
    except config.ConfigError as exc:
        raise SystemExit(f"ticker: {exc}") from None
    except OSError as exc:  # most often: a port already in use
        raise SystemExit(f"ticker: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ticker", description=__doc__)
    commands = parser.add_subparsers(metavar="COMMAND")

    serve = commands.add_parser("serve", help="publisher + hub + embedded store in one process")
    _server_flags(serve, publisher=True, hub=True)
    serve.set_defaults(run=_run(_serve))

    publisher = commands.add_parser("publisher", help="the HTTP API and console, on Redis")
    _server_flags(publisher, publisher=True, hub=False)
    _worker_flags(publisher, "TICKER_PUBLISHER_WORKERS")
    publisher.set_defaults(run=_supervised(_publisher))

    hub = commands.add_parser("hub", help="the WebSocket hub, on Redis")
    _server_flags(hub, publisher=False, hub=True)
    _worker_flags(hub, "TICKER_HUB_WORKERS")
    hub.set_defaults(run=_supervised(_hub))

    token = commands.add_parser("token", help="create, list and revoke editor tokens")
    token_commands = token.add_subparsers(metavar="ACTION", required=True)
    create = token_commands.add_parser("create", help="create a token; it is printed once")
    create.add_argument("name", help="the editor's name, recorded with every change")
    _store_flags(create)
    create.set_defaults(run=_run(_token_create))
    listing = token_commands.add_parser("list", help="list token names")
    _store_flags(listing)
    listing.set_defaults(run=_run(_token_list))
    revoke = token_commands.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    _store_flags(revoke)
    revoke.set_defaults(run=_run(_token_revoke))

    post = commands.add_parser("post", help="post an item from the shell")
    post.add_argument("headline")
    post.add_argument("--edition", "-e", default="en")
    post.add_argument("--source", "-s")
    post.add_argument("--link")
    post.add_argument("--urgency", "-u", type=int)
    post.add_argument("--region", action="append", dest="regions")
    post.add_argument("--category", action="append", dest="categories")
    post.add_argument("--expires-in", type=int, metavar="SECONDS")
    post.add_argument(
        "--url",
        default=os.environ.get("TICKER_URL", "http://127.0.0.1:8000"),
        help="the publisher (env TICKER_URL)",
    )
    post.add_argument(
        "--token", default=os.environ.get("TICKER_TOKEN"), help="an editor token (env TICKER_TOKEN)"
    )
    post.set_defaults(run=_post)

    tail_cmd = commands.add_parser("tail", help="follow the live ticker in the terminal")
    tail_cmd.add_argument("--edition", "-e", default="en")
    tail_cmd.add_argument("--region")
    tail_cmd.add_argument("--category")
    tail_cmd.add_argument(
        "--hub",
        default=os.environ.get("TICKER_HUB_URL", "ws://127.0.0.1:8001/ws"),
        help="the hub's WebSocket URL (env TICKER_HUB_URL)",
    )
    tail_cmd.set_defaults(run=_tail)
    return parser


def _worker_flags(parser: argparse.ArgumentParser, env: str) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get(env) or 1),
        help=f"processes sharing the port, one per core (env {env})",
    )
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)


def _store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-url",
        help="Redis URL (env TICKER_REDIS_URL); without it the embedded store is used",
    )
    parser.add_argument(
        "--db",
        type=Path,
        dest="db_path",
        help="embedded store file (env TICKER_DB, default ticker.db)",
    )
    parser.add_argument("--log-level", help="debug, info, warning (env TICKER_LOG_LEVEL)")


def _server_flags(parser: argparse.ArgumentParser, *, publisher: bool, hub: bool) -> None:
    _store_flags(parser)
    if publisher:
        parser.add_argument("--host", help="publisher address (env TICKER_HOST)")
        parser.add_argument("--port", type=int, help="publisher port (env TICKER_PORT)")
    parser.add_argument("--hub-host", help="hub address (env TICKER_HUB_HOST)")
    parser.add_argument("--hub-port", type=int, help="hub port (env TICKER_HUB_PORT)")
    parser.add_argument(
        "--public-hub-url", help="the hub URL browsers use (env TICKER_PUBLIC_HUB_URL)"
    )
    if hub:
        parser.add_argument(
            "--allowed-origin",
            action="append",
            dest="allowed_origins",
            help="an origin whose pages may connect, repeatable; '*' for any "
            "(env TICKER_ALLOWED_ORIGINS, comma-separated)",
        )


def _settings(args: argparse.Namespace) -> Settings:
    names = (
        "redis_url",
        "db_path",
        "log_level",
        "host",
        "port",
        "hub_host",
        "hub_port",
        "public_hub_url",
        "allowed_origins",
    )
    overrides: dict[str, Any] = {n: getattr(args, n, None) for n in names}
    if overrides["allowed_origins"]:
        overrides["allowed_origins"] = tuple(overrides["allowed_origins"])
    settings = config.from_env(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


def _run(
    command: Callable[[Settings, argparse.Namespace], Awaitable[None]],
) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        settings = _settings(args)
        aio.run(command(settings, args))

    return run


@contextlib.asynccontextmanager
async def _started(broker: Broker) -> Any:
    try:
        await broker.start()
    except BrokerError as exc:
        raise SystemExit(f"ticker: {exc}") from None
    try:
        yield broker
    finally:
        await broker.close()


# --- servers ---------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: ticker stops the hub and the publisher
    together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _until_signal(*tasks: asyncio.Task[Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()


def _uvicorn(settings: Settings, app: Any) -> _Server:
    return _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            ws="none",
            lifespan="on",
            log_level=settings.log_level,
            timeout_graceful_shutdown=2,
            server_header=False,
        )
    )


async def _serve(settings: Settings, args: argparse.Namespace) -> None:
    sock = _listen(settings.host, settings.port)
    async with _started(make_broker(settings)) as broker:
        hub = Hub(settings, broker)
        await hub.start()
        server = _uvicorn(settings, create_app(settings, broker, own_broker=False))
        web = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not web.done():  # noqa: ASYNC110 (uvicorn has no event)
            await asyncio.sleep(0.05)
        if server.started:
            _print_urls(settings)
        await _until_signal(web)
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
        f"Create an editor token with: ticker token create YOUR-NAME",
        flush=True,
    )


def _require_redis(settings: Settings, what: str) -> None:
    if not settings.redis_url:
        raise SystemExit(
            f"ticker {what} runs against Redis: pass --redis-url or set "
            "TICKER_REDIS_URL (or use `ticker serve` for one process)"
        )


async def _publisher(settings: Settings, args: argparse.Namespace) -> None:
    _require_redis(settings, "publisher")
    server = _uvicorn(settings, create_app(settings, make_broker(settings)))
    sock = _listen(settings.host, settings.port, reuse_port=args.worker_index is not None)
    web = asyncio.create_task(server.serve(sockets=[sock]))
    await _until_signal(web)
    server.should_exit = True
    await web


def _supervised(
    command: Callable[[Settings, argparse.Namespace], Awaitable[None]],
) -> Callable[[argparse.Namespace], None]:
    """One process, or a supervisor of `--workers` processes that share the port through
    SO_REUSEPORT, each with its own Redis connections: the kernel spreads connections over
    them, so every core works."""

    def run(args: argparse.Namespace) -> None:
        if args.workers <= 1 or args.worker_index is not None:
            _run(command)(args)
            return
        settings = _settings(args)
        _require_redis(settings, args.argv[0])
        _supervise([sys.executable, "-m", "ticker.cli", *args.argv], args.workers)

    return run


def _supervise(command: list[str], count: int) -> None:
    """Start the workers, start again any that dies, and pass SIGTERM/SIGINT on to all."""
    workers = {i: _spawn_worker(command, i) for i in range(count)}
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in workers.values():
            process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("%s: %d workers", command[3], count)
    while workers:
        for index, process in list(workers.items()):
            code = process.poll()
            if code is None:
                continue
            if stopping:
                del workers[index]
            else:
                log.error("worker %d exited with %s; starting it again", index, code)
                workers[index] = _spawn_worker(command, index)
        time.sleep(0.2)


def _listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The publisher's listening socket, bound before anything starts, so a port in use is
    one clear error. With `reuse_port`, sibling workers bind the same port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(4096)
    return sock


def _spawn_worker(command: list[str], index: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*command, "--worker-index", str(index), "--workers", "1"])


async def _hub(settings: Settings, args: argparse.Namespace) -> None:
    _require_redis(settings, "hub")
    broker = make_broker(settings)
    try:
        await broker.start()
    except BrokerUnavailable as exc:
        # The hub keeps trying in the background; clients hear 1013 until it has the ticker.
        log.warning("store unreachable at start-up, retrying: %s", exc)
    index = args.worker_index
    hub = Hub(settings, broker, worker=index)
    await hub.start(reuse_port=index is not None)
    log.info("hub listening on %s", settings.hub_url())
    await _until_signal()
    await hub.stop()
    await broker.close()


# --- tokens ----------------------------------------------------------------------------------


async def _token_create(settings: Settings, args: argparse.Namespace) -> None:
    async with _started(make_broker(settings)) as broker:
        try:
            token = await create_token(broker.tokens, args.name)
        except (TokenError, BrokerError) as exc:
            raise SystemExit(f"ticker: {exc}") from None
    print(token)
    print(f"# token for {args.name}: shown once, stored only as a hash", file=sys.stderr)


async def _token_list(settings: Settings, args: argparse.Namespace) -> None:
    async with _started(make_broker(settings)) as broker:
        for name, created in await broker.tokens.names():
            print(f"{name}\t{created}")


async def _token_revoke(settings: Settings, args: argparse.Namespace) -> None:
    async with _started(make_broker(settings)) as broker:
        if not await broker.tokens.revoke(args.name):
            raise SystemExit(f"ticker: no token named {args.name!r}")
    print(f"revoked {args.name}")


# --- clients ---------------------------------------------------------------------------------


def _post(args: argparse.Namespace) -> None:
    if not args.token:
        raise SystemExit("ticker post needs an editor token: --token or TICKER_TOKEN")
    fields = {
        "edition": args.edition,
        "headline": args.headline,
        "source": args.source,
        "link": args.link,
        "urgency": args.urgency,
        "regions": args.regions,
        "categories": args.categories,
        "expires_in": args.expires_in,
    }
    body = json.dumps({k: v for k, v in fields.items() if v is not None}).encode()
    key = str(uuid.uuid4())  # the same key on every retry: one item, however often we retry
    for attempt in range(5):
        request = urllib.request.Request(
            f"{args.url.rstrip('/')}/api/items",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": key,
                "Authorization": f"Bearer {args.token}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                item = json.load(response)
                print(f"posted {item['id']} (version {item['version']})")
                return
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                detail = json.loads(exc.read() or b"{}")
                raise SystemExit(
                    f"ticker: {exc.code} {detail.get('message', exc.reason)}"
                ) from None
            reason = "the publisher's store is unavailable"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = str(getattr(exc, "reason", exc))
        print(f"# {reason}; retrying", file=sys.stderr)
        time.sleep(min(2**attempt * 0.5, 5))
    raise SystemExit("ticker: the item could not be posted; nothing was posted twice")


def _tail(args: argparse.Namespace) -> None:
    aio.run(tail(args.hub, args.edition, region=args.region, category=args.category))


if __name__ == "__main__":
    main()
