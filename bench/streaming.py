"""Large bodies through a proxy with curl: one download and one upload, each checked whole."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .procs import run_tool, tool

MB = 1_000_000
#: No transfer may take longer than this (a stuck proxy must not hang the benchmark).
MAX_SECONDS = 600


def make_sparse_file(path: Path, size: int) -> None:
    """A file of ``size`` zero bytes that takes no disk space and no time to create.

    It is read once, so its pages are in the page cache before the first transfer
    (the first read of a hole allocates them: that would slow the first round only).
    """
    with path.open("wb") as handle:
        handle.truncate(size)
    with path.open("rb") as handle:
        while handle.read(1 << 20):
            pass


def _size_of(path: Path) -> int:
    return path.stat().st_size


def _bytes_received(answer: Path) -> object:
    """What the sink says it read: its answer is ``{"bytes": N}``."""
    return json.loads(answer.read_text()).get("bytes")


@dataclass(frozen=True)
class Transfer:
    bytes: int
    mb_per_second: float


def _read_write_out(output: str, expected: int, what: str) -> Transfer:
    status, size, speed = output.split()
    if status != "200" or int(size) != expected:
        raise RuntimeError(f"{what}: HTTP {status}, {size} of {expected} bytes")
    return Transfer(int(size), float(speed) / MB)


def _header_options(cookie: str, headers: Mapping[str, str] | None) -> list[str]:
    found = {**({"Cookie": cookie} if cookie else {}), **(headers or {})}
    return [option for name, value in found.items() for option in ("-H", f"{name}: {value}")]


async def download(
    url: str,
    cookie: str,
    *,
    expected: int,
    cores: str | None,
    headers: Mapping[str, str] | None = None,
) -> Transfer:
    command = [
        tool("curl"),
        "-sS",
        "--max-time",
        str(MAX_SECONDS),
        "-o",
        os.devnull,
        *_header_options(cookie, headers),
        "-w",
        "%{http_code} %{size_download} %{speed_download}",
        url,
    ]
    return _read_write_out(await run_tool(command, cores=cores), expected, f"download {url}")


async def upload(
    url: str,
    cookie: str,
    source: Path,
    *,
    answer: Path,
    cores: str | None,
    headers: Mapping[str, str] | None = None,
) -> Transfer:
    """POST ``source`` streamed from disk; the sink's answer proves every byte arrived."""
    expected = _size_of(source)
    command = [
        tool("curl"),
        "-sS",
        "--max-time",
        str(MAX_SECONDS),
        "-X",
        "POST",
        "-T",
        str(source),
        "-H",
        "Expect:",
        "-H",
        "Content-Type: application/octet-stream",
        *_header_options(cookie, headers),
        "-o",
        str(answer),
        "-w",
        "%{http_code} %{size_upload} %{speed_upload}",
        url,
    ]
    transfer = _read_write_out(await run_tool(command, cores=cores), expected, f"upload {url}")
    received = _bytes_received(answer)
    if received != expected:
        raise RuntimeError(f"upload {url}: the sink read {received} of {expected} bytes")
    return transfer
