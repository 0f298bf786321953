"""``python -m bench ab REV [REV ...]``: zoom-proxy at several revisions, side by side.

Single benchmark runs on a shared machine move by 10-20%, far more than most changes
to the hot path. This compares revisions the way the main benchmark compares proxies:
each revision (a git revision, checked out with ``git worktree`` into the temp dir,
or ``.`` for the working tree as it is) runs as its own zoom-proxy in front of one
nginx upstream, all pinned to one core, and wrk sends small GETs to each in
interleaved rounds from the other core. The result is each revision's CPU time per
request, and its ratio to the first revision's as the median of the per-round ratios.

The proxies share one session key, so a single sign-in's cookie serves them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

from cryptography.fernet import Fernet

from proxy.callers.registry import key_sha256, new_key
from proxy.emulator import ZoomEmulator

from . import nginx, procstat, report, setup, streaming, wrk, zoomproxy
from .measure import paired
from .procs import Supervisor, free_port, raise_file_limit, run_stoppably, supervised, tool
from .setup import Pinning, emulator_running, in_rounds, median

Say = Callable[[str], None]
#: The working tree as it is, uncommitted changes included.
WORKING_TREE = "."
#: The upstream's small JSON.
_TARGET = "/api/fast"


@dataclass(frozen=True)
class Options:
    seconds: float = 4
    rounds: int = 6
    warmup: float = 1
    connections: int = 64
    #: Where py-spy's profile of each revision under load goes (none if unset).
    profile: str | None = None
    #: Count instructions under callgrind instead of timing (see :func:`_instructions`).
    instructions: bool = False
    #: Call as a service caller (a key) instead of with the cookie: revisions from
    #: issue 15 on.
    caller: bool = False


@dataclass(frozen=True)
class Revision:
    name: str
    url: str
    pid: int
    cookie: str = ""
    #: The headers every request carries: the cookie, or a caller's key.
    headers: tuple[tuple[str, str], ...] = ()


async def _git(*arguments: str) -> str:
    process = await asyncio.create_subprocess_exec(
        tool("git"),
        "-C",
        str(zoomproxy.REPO),
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"git {' '.join(arguments)} failed: {stderr.decode().strip()}")
    return stdout.decode().strip()


async def _checkout(revision: str, temp: Path, checkouts: list[Path]) -> Path:
    if revision == WORKING_TREE:
        return zoomproxy.REPO
    commit = await _git("rev-parse", "--verify", f"{revision}^{{commit}}")
    path = temp / f"tree-{len(checkouts)}-{commit[:10]}"
    await _git("worktree", "add", "--detach", str(path), commit)
    checkouts.append(path)
    return path


async def _start(
    supervisor: Supervisor,
    temp: Path,
    revisions: list[str],
    checkouts: list[Path],
    say: Say,
    *,
    instructions: bool = False,
    caller_key: str | None = None,
) -> list[Revision]:
    pinning = Pinning.detect()
    big = temp / "big.bin"
    streaming.make_sparse_file(big, 1 << 20)
    upstream_port = free_port()
    prefix = temp / "nginx-upstream"
    await nginx.start(
        supervisor,
        "nginx-upstream",
        prefix,
        nginx.upstream_config(prefix, port=upstream_port, sink_port=free_port(), big_file=big),
        port=upstream_port,
        cores=pinning.servers,
    )
    key = Fernet.generate_key().decode()
    started: list[Revision] = []
    async with emulator_running() as (emulator, emulator_url):
        endpoints = zoomproxy.ZoomEndpoints(
            oauth_base=emulator_url,
            api_base=f"http://127.0.0.1:{upstream_port}/v2",
            client_id=emulator.client_id,
            client_secret=emulator.client_secret,
        )
        overrides: dict[str, dict[str, Any]] = (
            {} if caller_key is None else {"service": _service(emulator, caller_key)}
        )
        for number, revision in enumerate(revisions):
            tree = await _checkout(revision, temp, checkouts)
            say(f"starting zoom-proxy at {revision} ({tree}) ...")
            proxy = await zoomproxy.start(
                supervisor,
                f"zoom-proxy-{number}",
                endpoints,
                temp,
                cores=pinning.servers,
                session_key=key,
                repo=tree,
                wrapper=_callgrind(temp / f"callgrind-{number}") if instructions else (),
                **cast(Any, overrides),
            )
            started.append(Revision(revision, f"{proxy.url}{_TARGET}", proxy.child.pid))
        # Signed in once, through the first: the key is the same, so is the cookie.
        cookie = await zoomproxy.signed_in_cookie(started[0].url.removesuffix(_TARGET))
        headers = (
            (("Cookie", cookie),)
            if caller_key is None
            else (("Authorization", f"Bearer {caller_key}"),)
        )
        started = [replace(revision, cookie=cookie, headers=headers) for revision in started]
        if caller_key is not None:
            # The account token is minted at the first caller request: while the
            # emulator (the token endpoint) still runs. It then lasts the hour.
            for proxy_run in started:
                await setup.check(
                    setup.Target(proxy_run.name, proxy_run.url, dict(headers), proxy_run.pid),
                    nginx.FAST_BODY,
                )
    return started


def _service(emulator: ZoomEmulator, caller_key: str) -> dict[str, Any]:
    """The ``service`` section with one caller allowed every GET."""
    return {
        "account_id": emulator.account_id,
        "client_id": emulator.service_client_id,
        "client_secret": emulator.service_client_secret,
        "callers": [{"name": "ab", "key_sha256": key_sha256(caller_key), "allow": ["GET /**"]}],
    }


async def _run_once(
    revision: Revision, seconds: float, options: Options, *, check_errors: bool = True
) -> dict[str, Any]:
    before = procstat.cpu_seconds(revision.pid)
    result = await wrk.run(
        revision.url,
        seconds=seconds,
        connections=options.connections,
        headers=dict(revision.headers),
        cores=Pinning.detect().load,
    )
    cpu = procstat.cpu_seconds(revision.pid) - before
    if result.errors and check_errors:
        raise RuntimeError(f"{revision.name}: {result.errors} errors under load")
    return {
        "requests": result.requests,
        "requests_per_second": result.requests_per_second,
        "p99_ms": result.p99_ms,
        "cpu_us_per_request": cpu / max(result.requests, 1) * 1e6,
    }


async def _profile(revision: Revision, options: Options, folder: Path) -> None:
    """py-spy's samples of ``revision`` under the same load, folded for a flame graph
    (``py-spy record --format raw``); the rounds' figures are taken without it."""
    name = revision.name.replace("/", "-")
    spy = await asyncio.create_subprocess_exec(
        tool("py-spy"),
        "record",
        "--pid",
        str(revision.pid),
        "--duration",
        str(round(options.seconds)),
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(folder / f"{name}.folded"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await _run_once(revision, options.seconds, options)
    if await spy.wait() != 0:
        raise RuntimeError("py-spy failed (it needs ptrace: run as root, or lower ptrace_scope)")


def _callgrind(out: Path) -> list[str]:
    return [tool("valgrind"), "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"]


async def _callgrind_control(*arguments: str) -> None:
    process = await asyncio.create_subprocess_exec(
        tool("callgrind_control", "valgrind"), *arguments, stdout=asyncio.subprocess.DEVNULL
    )
    if await process.wait() != 0:
        raise RuntimeError(f"callgrind_control {' '.join(arguments)} failed")


async def _instructions(revision: Revision, dump: Path, options: Options) -> dict[str, Any]:
    """Instructions per request of ``revision`` (running under callgrind): counted from
    zero after a warm-up, over ``seconds`` of wrk at 8 connections.

    A count of instructions moves by well under 1% between runs of the same code,
    whatever else the machine does; CPU time here moves by 10-20%. It weighs every
    instruction alike (a cache miss costs nothing), so it ranks changes to the Python
    code on the hot path, not to memory layout."""
    load = replace(options, connections=8)
    await _run_once(revision, options.seconds, load, check_errors=False)
    await _callgrind_control("--zero", str(revision.pid))
    result = await _run_once(revision, options.seconds * 4, load, check_errors=False)
    await _callgrind_control("--dump", str(revision.pid))
    # callgrind writes the dump beside the file it was told: <out>.1 for the first.
    text = await asyncio.to_thread(Path(f"{dump}.1").read_text)
    totals = (line for line in text.splitlines() if line.startswith(("totals:", "summary:")))
    total = int(next(totals).split()[1])
    return {"requests": result["requests"], "instructions_per_request": total / result["requests"]}


async def compare(revisions: list[str], options: Options, say: Say) -> dict[str, Any]:
    raise_file_limit()
    checkouts: list[Path] = []
    async with supervised("zoom-proxy-ab-", say) as (supervisor, temp):
        try:
            targets = await _start(
                supervisor,
                temp,
                revisions,
                checkouts,
                say,
                instructions=options.instructions,
                caller_key=new_key()[0] if options.caller else None,
            )
            if options.instructions:
                counted = {}
                for number, target in enumerate(targets):
                    say(f"counting {target.name}'s instructions ...")
                    counted[target.name] = await _instructions(
                        target, temp / f"callgrind-{number}", options
                    )
                    say(f"  {counted[target.name]['instructions_per_request']:,.0f} per request")
                first_count = counted[revisions[0]]["instructions_per_request"]
                return {
                    "options": asdict(options),
                    "revisions": {
                        name: {**data, "vs_first": data["instructions_per_request"] / first_count}
                        for name, data in counted.items()
                    },
                }
            for target in targets:
                await _run_once(target, options.warmup, options)
            runs = await in_rounds(
                targets,
                options.rounds,
                lambda target: _run_once(target, options.seconds, options),
                lambda number, target, run: say(
                    f"  round {number} {target.name:<12}"
                    f" {run['cpu_us_per_request']:7.1f} us CPU/req"
                    f" {run['requests_per_second']:8.0f} req/s"
                ),
            )
            if options.profile is not None:
                for target in targets:
                    say(f"profiling {target.name} ...")
                    await _profile(target, options, Path(options.profile))
        finally:
            await supervisor.stop_all()
            for path in checkouts:
                await _git("worktree", "remove", "--force", str(path))
    first = [run["cpu_us_per_request"] for run in runs[revisions[0]]]
    return {
        "options": asdict(options),
        "revisions": {
            name: {
                "cpu_us_per_request": median([run["cpu_us_per_request"] for run in name_runs]),
                "requests_per_second": median([run["requests_per_second"] for run in name_runs]),
                "p99_ms": median([run["p99_ms"] for run in name_runs]),
                "cpu_per_request_vs_first": paired(
                    [run["cpu_us_per_request"] for run in name_runs], first
                ),
                "runs": name_runs,
            }
            for name, name_runs in runs.items()
        },
    }


def markdown(result: dict[str, Any]) -> str:
    options = result["options"]
    if options.get("instructions"):
        lines = [
            f"zoom-proxy A/B, {result['date']}: `{result['command']}`",
            "",
            f"Small GETs under callgrind, `wrk -c8` for {options['seconds'] * 4:g} s after a"
            " warm-up: instructions the proxy ran, divided by requests answered.",
            "",
            "| revision | instructions/request | ÷ first | requests |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {name} | {data['instructions_per_request']:,.0f} | {data['vs_first']:.3f}"
            f" | {data['requests']:,} |"
            for name, data in result["revisions"].items()
        ]
        return "\n".join(lines)
    lines = [
        f"zoom-proxy A/B, {result['date']}: `{result['command']}`",
        "",
        f"Small GETs, `wrk -c{options['connections']}`, {options['rounds']} interleaved rounds"
        f" of {options['seconds']:g} s; the ratio is the median of the per-round ratios.",
        "",
        "| revision | CPU µs/request | ÷ first | req/s | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, data in result["revisions"].items():
        lines.append(
            f"| {name} | {data['cpu_us_per_request']:.1f}"
            f" | {data['cpu_per_request_vs_first']:.3f}"
            f" | {data['requests_per_second']:,.0f} | {data['p99_ms']:.2f} |"
        )
    return "\n".join(lines)


def main(
    *, revisions: list[str], options: Options, out: Path | None, say: Say, header: dict[str, str]
) -> int:
    if len(set(revisions)) != len(revisions):
        say("each revision once, please")
        return 2
    result: dict[str, Any] = dict(header)
    if options.profile is not None:
        Path(options.profile).mkdir(parents=True, exist_ok=True)
    try:
        result.update(run_stoppably(compare(revisions, options, say)))
    except RuntimeError as error:  # an unknown revision, say, or errors under load
        say(str(error))
        return 1
    print(markdown(result))
    path = out or report.RESULTS / f"ab-{result['date'].replace(':', '-')}.json"
    print(f"\nJSON: {report.write_json(result, path)}")
    return 0
