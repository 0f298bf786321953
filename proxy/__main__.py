"""The command line: run the proxy, its demo, `gen-key` and `check-config`."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

import uvloop
import yaml
from aiohttp import web

from . import serve
from .app import create_app
from .config import (
    ConfigError,
    LoggingSettings,
    Settings,
    effective_config,
    generate_key,
    load_settings,
)
from .logs import configure_logging

log = logging.getLogger("proxy")

EXIT_BAD_CONFIG = 2
EXIT_CANNOT_LISTEN = 1
DEMO_PORT = 8080


_EPILOG = """\
commands:
  python -m proxy [--config PATH] [--workers N]   run the proxy
  python -m proxy --demo [--port N]               try it with the built-in Zoom emulator
  python -m proxy gen-key                         print a new session key
  python -m proxy check-config [--config PATH]    validate a config, print it (secrets masked)

The config is --config, else $ZOOM_PROXY_CONFIG, else ./config.yaml. A bad config
prints one line per problem and exits 2.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m proxy",
        description="An authenticating reverse proxy for Zoom's REST API.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", help="config file (default: $ZOOM_PROXY_CONFIG or ./config.yaml)"
    )
    parser.add_argument("--demo", action="store_true", help="run with the built-in Zoom emulator")
    parser.add_argument(
        "--port", type=int, default=DEMO_PORT, help="the demo's port (default 8080)"
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="processes sharing the port through SO_REUSEPORT (default 1)",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser(
        "gen-key", help="print a new session key", description="Print a new Fernet session key."
    )
    check = commands.add_parser(
        "check-config",
        help="validate a config, print it with secrets masked",
        description="Validate a config: print the effective config (secrets masked) and exit 0,"
        " or print every problem, one per line, and exit 2.",
    )
    check.add_argument("--config", dest="check_config", help="config file to validate")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _load(path: str | None) -> Settings | None:
    try:
        return load_settings(path)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "gen-key":
        print(generate_key())
        return 0
    if args.command == "check-config":
        settings = _load(args.check_config or args.config)
        if settings is None:
            return EXIT_BAD_CONFIG
        print(yaml.safe_dump(effective_config(settings), sort_keys=False), end="")
        return 0
    if args.demo:
        from .demo import demo_app

        configure_logging(LoggingSettings())
        return _serve(
            lambda: demo_app(args.port),
            host="localhost",
            port=args.port,
            shutdown_timeout=1.0,
            message=_demo_banner(f"http://localhost:{args.port}"),
        )
    settings = _load(args.config)
    if settings is None:
        return EXIT_BAD_CONFIG
    configure_logging(settings.logging)

    async def proxy_app() -> web.Application:
        return create_app(settings)

    serve_one = functools.partial(
        _serve,
        proxy_app,
        host=settings.listen.host,
        port=settings.listen.port,
        shutdown_timeout=settings.listen.shutdown_timeout,
        message=f"zoom-proxy listening on {settings.public_url}",
        # JSON logs are the only output then: a plain line would break the stream.
        on_stdout=settings.logging.format == "text",
    )
    if args.workers == 1:
        return serve_one()
    return _run_workers(args.workers, functools.partial(serve_one, reuse_port=True))


def _run_workers(count: int, serve_one: Callable[[], int]) -> int:
    """Fork ``count`` workers sharing the port (SO_REUSEPORT); the kernel spreads
    connections over them. Signals are passed on; the worst exit status is returned."""
    children: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(serve_one())
        children.append(pid)

    def pass_on(signum: int, _: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    return max(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) for child in children)


def _serve(
    make_app: Callable[[], Awaitable[web.Application]],
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    message: str,
    on_stdout: bool = True,
    reuse_port: bool = False,
) -> int:
    """Serve until SIGTERM or SIGINT; a port that cannot be bound is one clear line."""

    async def run() -> None:
        await serve.serve_until_signalled(
            await make_app(),
            host=host,
            port=port,
            reuse_port=reuse_port,
            shutdown_timeout=shutdown_timeout,
            announce=lambda: _announce(message, on_stdout=on_stdout),
        )

    try:
        uvloop.run(run())
    except OSError as error:
        print(f"cannot listen on {host}:{port}: {error.strerror or error}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    return 0


def _demo_banner(url: str) -> str:
    return f"""\
zoom-proxy demo, with the built-in Zoom emulator: no Zoom app needed.
  1. Open {url}/ and click "Sign in with Zoom", then "Approve".
  2. Try the API as that user: {url}/api/users/me
  3. From a shell: save the cookie jar linked on that page as zoom-jar.txt, then
       curl -b zoom-jar.txt -c zoom-jar.txt {url}/api/users/me
Stop with Ctrl-C."""


def _announce(message: str, *, on_stdout: bool) -> None:
    """Printed for the person at the terminal; logged instead when logs are JSON."""
    if on_stdout:
        # One write: --workers share stdout, and separate writes of the text and its
        # newline (unbuffered stdout) would interleave into broken lines.
        sys.stdout.write(f"{message}\n")
        sys.stdout.flush()
    else:
        log.info("%s", message)


if __name__ == "__main__":
    sys.exit(main())
