"""The command line: run the proxy, its demo, `gen-key` and `check-config`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

import uvloop
import yaml
from aiohttp import web

from proxy import __version__, serve
from proxy.app import create_app
from proxy.callers.registry import new_key
from proxy.config import (
    ConfigError,
    LoggingSettings,
    Settings,
    effective_config,
    generate_key,
    load_settings,
)
from proxy.observe.logs import configure_logging

log = logging.getLogger("proxy")

EXIT_BAD_CONFIG = 2
EXIT_CANNOT_LISTEN = 1
DEMO_PORT = 8080


_EPILOG = """\
commands:
  zoom-proxy [--config PATH] [--host H] [--port N] [--workers N]
      run the proxy
  zoom-proxy --demo [--host H] [--port N] [--public-url URL]
      try it with the built-in Zoom emulator: no Zoom app needed
  zoom-proxy gen-key
      print a new session key
  zoom-proxy gen-caller-key
      print a new service caller key, and the key_sha256 line for its config entry
  zoom-proxy check-config [--config PATH]
      validate a config, print it (secrets masked)

`python -m proxy` is the same as `zoom-proxy`. The config is --config, else
$ZOOM_PROXY_CONFIG, else ./config.yaml. A bad config prints one line per problem and
exits 2; so does a flag that does not apply.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_program(),
        description="An authenticating reverse proxy for Zoom's REST API.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"zoom-proxy {__version__}")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $ZOOM_PROXY_CONFIG or ./config.yaml)",
    )
    parser.add_argument("--demo", action="store_true", help="run with the built-in Zoom emulator")
    parser.add_argument(
        "--host",
        metavar="ADDRESS",
        help="address to listen on, instead of listen.host (the demo's default: localhost)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        metavar="N",
        help=f"port to listen on, instead of listen.port (the demo's default: {DEMO_PORT})",
    )
    parser.add_argument(
        "--public-url",
        metavar="URL",
        help="with --demo: how browsers reach it (default: http://localhost:PORT, or the"
        " --host address)",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="processes sharing the port through SO_REUSEPORT (default 1)",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser(
        "gen-key", help="print a new session key", description="Print a new Fernet session key."
    )
    commands.add_parser(
        "gen-caller-key",
        help="print a new service caller key and its key_sha256",
        description="Print a new service caller key (give it to the backend) and the"
        " key_sha256 line to paste into its entry under service.callers.",
    )
    check = commands.add_parser(
        "check-config",
        help="validate a config, print it with secrets masked",
        description="Validate a config: print the effective config (secrets masked) and exit 0,"
        " or print every problem, one per line, and exit 2.",
    )
    check.add_argument(
        "--config", dest="check_config", metavar="PATH", help="config file to validate"
    )
    return parser


def _program() -> str:
    """The name the user typed: the console script, or ``python -m proxy``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m proxy" if name in ("", "__main__.py") else name


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 1 and 65535")
    return value


def _misused(args: argparse.Namespace) -> str | None:
    """Why the flags given do not go together, if they do not: a flag that would be
    ignored is refused instead."""
    given = {
        flag
        for flag, value in (
            ("--config", args.config),
            ("--demo", args.demo or None),
            ("--host", args.host),
            ("--port", args.port),
            ("--public-url", args.public_url),
            ("--workers", args.workers),
        )
        if value is not None
    }
    if args.command in ("gen-key", "gen-caller-key") and given:
        return f"{args.command} takes no options (got {', '.join(sorted(given))})"
    if args.command == "check-config" and given - {"--config"}:
        return f"check-config takes only --config (got {', '.join(sorted(given - {'--config'}))})"
    if args.demo and "--config" in given:
        return "--demo needs no config: drop --config, or drop --demo to run with it"
    if args.demo and "--workers" in given:
        return "--demo runs in one process (its emulator's state is in memory): drop --workers"
    if not args.demo and "--public-url" in given:
        return "--public-url is for --demo; the proxy takes public_url from its config"
    return None


def _load(path: str | None) -> Settings | None:
    try:
        return load_settings(path)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    problem = _misused(args)
    if problem is not None:
        parser.error(problem)  # exits 2
    if args.command == "gen-key":
        print(generate_key())
        return 0
    if args.command == "gen-caller-key":
        key, digest = new_key()
        print(f"{key}\nkey_sha256: {digest}")
        return 0
    if args.command == "check-config":
        settings = _load(args.check_config or args.config)
        if settings is None:
            return EXIT_BAD_CONFIG
        print(yaml.safe_dump(effective_config(settings), sort_keys=False), end="")
        return 0
    if args.demo:
        return _demo(args)
    settings = _load(args.config)
    if settings is None:
        return EXIT_BAD_CONFIG
    listen = dataclasses.replace(
        settings.listen,
        host=settings.listen.host if args.host is None else args.host,
        port=settings.listen.port if args.port is None else args.port,
    )
    settings = dataclasses.replace(settings, listen=listen)
    configure_logging(settings.logging)

    async def proxy_app() -> web.Application:
        return create_app(settings)

    serve_one = functools.partial(
        _serve,
        proxy_app,
        host=listen.host,
        port=listen.port,
        shutdown_timeout=listen.shutdown_timeout,
        message=f"zoom-proxy listening on {settings.public_url}",
        # JSON logs are the only output then: a plain line would break the stream.
        on_stdout=settings.logging.format == "text",
    )
    if args.workers in (None, 1):
        return serve_one()
    return _run_workers(args.workers, functools.partial(serve_one, reuse_port=True))


def _demo(args: argparse.Namespace) -> int:
    from proxy.demo import default_public_url, demo_app, demo_settings
    from proxy.emulator import ZoomEmulator

    host = "localhost" if args.host is None else args.host
    port = DEMO_PORT if args.port is None else args.port
    emulator = ZoomEmulator(auto_approve=False)
    caller_key, caller_key_sha256 = new_key()
    try:
        settings = demo_settings(
            host=host,
            port=port,
            public_url=args.public_url or default_public_url(host, port),
            emulator=emulator,
            caller_key_sha256=caller_key_sha256,
        )
    except ConfigError as error:
        for problem in error.problems:
            print(problem.replace("public_url", "--public-url", 1), file=sys.stderr)
        return EXIT_BAD_CONFIG
    configure_logging(LoggingSettings())

    async def app() -> web.Application:
        return demo_app(settings, emulator)

    return _serve(
        app,
        host=host,
        port=port,
        shutdown_timeout=1.0,
        message=_demo_banner(settings.public_url, caller_key),
    )


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


def _demo_banner(url: str, caller_key: str) -> str:
    return f"""\
zoom-proxy demo, with the built-in Zoom emulator: no Zoom app needed.
  1. Open {url}/ and click "Sign in with Zoom", then "Approve".
  2. Try the API as that user: {url}/api/users/me
  3. From a shell: save the cookie jar linked on that page as zoom-jar.txt, then
       curl -b zoom-jar.txt -c zoom-jar.txt {url}/api/users/me
  4. As a backend (a service caller, calling as the account; no sign-in):
       curl -H "Authorization: Bearer {caller_key}" {url}/api/users/me
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
