"""The command line: run the proxy, its demo, `gen-key` and `check-config`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from aiohttp import web

from . import serve
from .app import create_app
from .config import ConfigError, LoggingSettings, Settings, generate_key, load_settings
from .logs import configure_logging

EXIT_BAD_CONFIG = 2
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
        return _run_demo(args.port)
    settings = _load(args.config)
    if settings is None:
        return EXIT_BAD_CONFIG
    configure_logging(settings.logging)
    _serve(
        create_app(settings),
        host=settings.listen.host,
        port=settings.listen.port,
        shutdown_timeout=settings.listen.shutdown_timeout,
        message=f"zoom-proxy listening on {settings.public_url}",
    )
    return 0


def _run_demo(port: int) -> int:
    from .demo import demo_app

    configure_logging(LoggingSettings())

    async def run() -> None:
        await serve.serve_until_signalled(
            await demo_app(port),
            host="localhost",
            port=port,
            shutdown_timeout=1.0,
            announce=lambda: _announce(
                f"zoom-proxy demo, with the built-in Zoom emulator: open http://localhost:{port}/"
            ),
        )

    asyncio.run(run())
    return 0


def _serve(
    app: web.Application, *, host: str, port: int, shutdown_timeout: float, message: str
) -> None:
    asyncio.run(
        serve.serve_until_signalled(
            app,
            host=host,
            port=port,
            shutdown_timeout=shutdown_timeout,
            announce=lambda: _announce(message),
        )
    )


def _announce(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
