"""``python -m bench [--quick] [...]``, ``python -m bench soak [--minutes N]``,
``python -m bench replicas`` and ``python -m bench ab REV [REV ...]``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from . import ab, replicas, report, run, soak


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="zoom-proxy beside nginx and a minimal Go proxy, on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10)")
    parser.add_argument("--connections", type=int, help="wrk connections for small GETs (64)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of small GETs (3)")
    parser.add_argument("--load-connections", type=int, help="connections for the load test (1000)")
    parser.add_argument("--load-duration", type=float, help="seconds of the load test (30)")
    parser.add_argument(
        "--max-other-load",
        type=float,
        help="measure a run again if other programs took more than this share of the CPU (0.1)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=run.PARTS,
        help="measure only this part (repeatable); the report leaves the others out",
    )
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/<date>.json)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir and logs")
    commands = parser.add_subparsers(dest="command")
    soak_parser = commands.add_parser("soak", help="mixed traffic with token refreshes")
    soak_parser.add_argument("--minutes", type=float, default=5.0, help="how long (5)")
    soak_parser.add_argument("--concurrency", type=int, default=20, help="requests in flight (20)")
    soak_parser.add_argument("--out", dest="soak_out", type=Path, help="also write JSON here")
    replicas_parser = commands.add_parser(
        "replicas", help="2 replicas behind nginx round-robin against 1, per session store"
    )
    replicas_parser.add_argument("--seconds", type=float, help="seconds per wrk run (10)")
    replicas_parser.add_argument("--replica-rounds", type=int, help="interleaved rounds (3)")
    replicas_parser.add_argument("--out", dest="replicas_out", type=Path, help="JSON here")
    ab_parser = commands.add_parser(
        "ab", help="zoom-proxy at several git revisions (or . for the working tree), side by side"
    )
    ab_parser.add_argument("revisions", nargs="+", help="the first is the baseline")
    ab_parser.add_argument("--seconds", dest="ab_seconds", type=float, help="per wrk run (4)")
    ab_parser.add_argument("--ab-rounds", type=int, help="interleaved rounds (6)")
    ab_parser.add_argument("--out", dest="ab_out", type=Path, help="JSON here")
    ab_parser.add_argument(
        "--profile", help="also record each revision with py-spy, into this folder"
    )
    ab_parser.add_argument(
        "--ab-connections", type=int, help="wrk connections (64; 1000 for the load row)"
    )
    ab_parser.add_argument(
        "--caller",
        action="store_true",
        help="call with a service caller's key instead of the cookie (revisions with callers)",
    )
    ab_parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per request under callgrind instead (repeatable to <1%%)",
    )
    return parser


def _options(args: argparse.Namespace) -> run.Options:
    options = run.QUICK if args.quick else run.Options()
    changes = {
        "seconds": args.duration,
        "connections": args.connections,
        "rounds": args.rounds,
        "load_connections": args.load_connections,
        "load_seconds": args.load_duration,
        "max_other_load": args.max_other_load,
        "parts": tuple(args.only) if args.only else None,
    }
    return dataclasses.replace(options, **{k: v for k, v in changes.items() if v is not None})


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted: every process stopped, temp files removed", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(arguments)
    command = shlex.join(["python", "-m", "bench", *arguments])
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if args.command == "soak":
        return soak.main(
            minutes=args.minutes,
            concurrency=args.concurrency,
            out=args.soak_out,
            say=_say,
            header={"date": date, "command": command},
        )
    if args.command == "replicas":
        options = replicas.QUICK if args.quick else replicas.Options()
        changes = {"seconds": args.seconds, "rounds": args.replica_rounds}
        return replicas.main(
            options=dataclasses.replace(options, **{k: v for k, v in changes.items() if v}),
            out=args.replicas_out,
            say=_say,
            header={"date": date, "command": command},
            keep_temp=args.keep_temp,
        )
    if args.command == "ab":
        changes = {
            "seconds": args.ab_seconds,
            "rounds": args.ab_rounds,
            "profile": args.profile,
            "connections": args.ab_connections,
            "instructions": args.instructions,
            "caller": args.caller,
        }
        return ab.main(
            revisions=args.revisions,
            options=dataclasses.replace(ab.Options(), **{k: v for k, v in changes.items() if v}),
            out=args.ab_out,
            say=_say,
            header={"date": date, "command": command},
        )
    result = {"date": date, "command": command}
    result.update(run.run_async(_options(args), _say, args.keep_temp))
    print(report.markdown(result))
    path = report.write_json(result, args.out)
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
