"""The command line: run the proxy, its demo, `gen-key` and `check-config`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence

import uvloop
from aiohttp import web

from . import serve
from .app import create_app
from .config import ConfigError, LoggingSettings, Settings, generate_key, load_settings
from .logs import configure_logging

EXIT_BAD_CONFIG = 2
EXIT_CANNOT_LISTEN = 1
DEMO_PORT = 8080


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m proxy", description="An authenticating reverse proxy for Zoom's REST API."
    )
    parser.add_argument(
        "--config", help="config file (default: $ZOOM_PROXY_CONFIG or ./config.yaml)"
    )
    parser.add_argument("--demo", action="store_true", help="run with the built-in Zoom emulator")
    parser.add_argument(
        "--port", type=int, default=DEMO_PORT, help="the demo's port (default 8080)"
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("gen-key", help="print a new session key")
    check = commands.add_parser("check-config", help="validate a config and exit")
    check.add_argument("--config", dest="check_config", help="config file to validate")
    return parser


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
        print("config OK")
        return 0
    if args.demo:
        from .demo import demo_app

        configure_logging(LoggingSettings())
        return _serve(
            lambda: demo_app(args.port),
            host="localhost",
            port=args.port,
            shutdown_timeout=1.0,
            message=f"zoom-proxy demo, with the built-in Zoom emulator: open http://localhost:{args.port}/",
        )
    settings = _load(args.config)
    if settings is None:
        return EXIT_BAD_CONFIG
    configure_logging(settings.logging)

    async def proxy_app() -> web.Application:
        return create_app(settings)

    return _serve(
        proxy_app,
        host=settings.listen.host,
        port=settings.listen.port,
        shutdown_timeout=settings.listen.shutdown_timeout,
        message=f"zoom-proxy listening on {settings.public_url}",
    )


def _serve(
    make_app: Callable[[], Awaitable[web.Application]],
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    message: str,
) -> int:
    """Serve until SIGTERM or SIGINT; a port that cannot be bound is one clear line."""

    async def run() -> None:
        await serve.serve_until_signalled(
            await make_app(),
            host=host,
            port=port,
            shutdown_timeout=shutdown_timeout,
            announce=lambda: print(message, flush=True),
        )

    try:
        uvloop.run(run())
    except OSError as error:
        print(f"cannot listen on {host}:{port}: {error.strerror or error}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    return 0


if __name__ == "__main__":
    sys.exit(main())
