"""The benchmark: set everything up on loopback, measure, and tear it all down."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from dataclasses import asdict
from typing import Any

import aiohttp

from . import downloads, webhooks, zoomproxy
from .measure import concurrency, ratios, scaling, streams, throughput
from .procs import raise_file_limit, run_stoppably, supervised, tool
from .setup import PARTS, QUICK, Options, Pinning, Say, emulator_running, start_everything

__all__ = ["PARTS", "QUICK", "Options", "benchmark", "run_async", "versions"]


async def benchmark(options: Options, *, say: Say, keep_temp: bool = False) -> dict[str, Any]:
    """Run every measurement; always stop every process and remove every temp file."""
    file_limit = raise_file_limit()
    pinning = Pinning.detect()
    if pinning.servers is None:
        say(f"only {pinning.cores} core usable: nothing is pinned")
    else:
        say(f"servers pinned to core {pinning.servers}, load generator to core {pinning.load}")
    async with (
        supervised("zoom-proxy-bench-", say, keep_temp=keep_temp) as (supervisor, temp),
        emulator_running() as (emulator, emulator_url),
    ):
        say("building the Go proxy and starting nginx, the emulator and the proxies ...")
        setup = await start_everything(supervisor, temp, pinning, options, emulator, emulator_url)
        parts = options.parts
        measured: dict[str, Any] = {}
        if "small" in parts:
            say("small GETs (wrk):")
            measured["small_gets"] = await throughput(setup, options, say)
        if "streaming" in parts:
            say("streaming (curl):")
            measured["streaming"] = await streams(setup, options, say)
        if "small" in parts:
            measured["ratios"] = ratios(measured["small_gets"], measured.get("streaming"))
        if "downloads" in parts:
            say("recording downloads (/download, one redirect):")
            measured["downloads"] = await downloads.downloads(setup, options, say)
        if "webhooks" in parts:
            say("webhook events (wrk, signed 2 KiB events, forwarded to a local backend):")
            measured["webhooks"] = await webhooks.webhooks(setup, options, say)
        if "load" in parts:
            say(f"{options.load_connections} connections for {options.load_seconds:g} s:")
            load = measured["concurrency"] = await concurrency(setup, options)
            say(f"  {load['requests_per_second']:.0f} req/s, {load['errors']} errors")
        if "workers" in parts:
            say("--workers scaling:")
            measured["workers"] = await scaling(setup, options, say)
    return {
        "versions": await versions(),
        "machine": {
            "cores": os.cpu_count(),
            "usable_cores": pinning.cores,
            "servers_pinned_to": pinning.servers,
            "load_generator_pinned_to": pinning.load,
            "open_files_limit": file_limit,
            "load_average_at_start": os.getloadavg(),
        },
        "options": asdict(options),
        **measured,
    }


async def _first_line(*command: str) -> str:
    """The first line a ``--version``-like command prints (nginx -v writes to stderr)."""
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except OSError:
        return "unavailable"
    output, _ = await process.communicate()
    lines = output.decode(errors="replace").strip().splitlines()
    return " ".join(lines[0].split()[:4]) if lines else ""


async def _git_state() -> str:
    """The commit measured, marked "+changes" when proxy/ differs from it."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    commit = await _first_line(git, "-C", str(zoomproxy.REPO), "rev-parse", "--short", "HEAD")
    changes = await _first_line(git, "-C", str(zoomproxy.REPO), "status", "--porcelain", "proxy")
    return f"{commit}+changes" if changes else commit


async def versions() -> dict[str, str]:
    return {
        "zoom-proxy": await _git_state(),
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "nginx": await _first_line(tool("nginx", "/usr/sbin/nginx"), "-v"),
        "go": await _first_line(tool("go"), "version"),
        "wrk": await _first_line(tool("wrk"), "-v"),
        "curl": await _first_line(tool("curl"), "--version"),
    }


def run_async(options: Options, say: Say, keep_temp: bool) -> dict[str, Any]:
    return run_stoppably(benchmark(options, say=say, keep_temp=keep_temp))
