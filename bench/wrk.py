"""wrk: run it, and read requests, req/s, latency percentiles and errors from its output."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .procs import run_tool, tool

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_LATENCY_LINE = re.compile(
    r"^\s*Latency\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)\s+([\d.]+)(us|ms|s|m|h)", re.M
)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.M
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)", re.M)


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: dict[str, int]
    non_2xx: int

    @property
    def errors(self) -> int:
        """Socket errors of every kind plus 4xx/5xx responses."""
        return sum(self.socket_errors.values()) + self.non_2xx


def parse(output: str) -> WrkResult:
    percentiles = {int(p): float(v) * _UNITS_MS[u] for p, v, u in _PERCENTILE.findall(output)}
    requests = _REQUESTS.search(output)
    rate = _RATE.search(output)
    if requests is None or rate is None or 50 not in percentiles or 99 not in percentiles:
        raise ValueError(f"cannot read wrk's output:\n{output}")
    socket_errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    found = _SOCKET_ERRORS.search(output)
    if found is not None:
        socket_errors = dict(zip(socket_errors, map(int, found.groups()), strict=True))
    non_2xx = _NON_2XX.search(output)
    latency = _LATENCY_LINE.search(output)
    max_ms = float(latency.group(5)) * _UNITS_MS[latency.group(6)] if latency else float("nan")
    return WrkResult(
        requests=int(requests.group(1)),
        seconds=float(requests.group(2)) * _UNITS_MS[requests.group(3)] / 1000,
        requests_per_second=float(rate.group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        max_ms=max_ms,
        socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


async def run(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    headers: Mapping[str, str] | None = None,
    cores: str | None = None,
    request_timeout: float = 2.0,
    script: tuple[Path, Path] | None = None,
) -> WrkResult:
    """``script``: a Lua script for wrk, and the one argument it is given."""
    command = [
        tool("wrk"),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={request_timeout:g}s",
        "--latency",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script[0])]
    command.append(url)
    if script is not None:
        command += ["--", str(script[1])]
    return parse(await run_tool(command, cores=cores))
