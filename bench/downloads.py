"""Recording downloads through ``/download`` (SPEC 13), against nginx ``proxy_pass``
moving the same bytes.

The nginx upstream plays Zoom's web host: ``/rec/download/<name>`` wants a Bearer
token and redirects (302) to ``/v2/<name>``, the file. zoom-proxy follows that one hop
itself; nginx proxies ``/api/<name>`` straight to the file. Measured, in interleaved
rounds: MB/s of each, zoom-proxy's peak RSS for a 100 MiB and a 1 GiB recording (it
must not grow with the size), and the time of a ``Range`` request for the last MiB of
each (it must not grow either: nothing before the range is read).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from . import procstat, streaming
from .measure import paired
from .procs import run_tool, tool
from .setup import RECORDING_BYTES, Options, Say, Setup, median, rotated

#: The smaller recording: (name on the upstream, size).
SMALL_RECORDING = ("rec100m", RECORDING_BYTES)
#: Bytes of the tail a Range request asks for.
TAIL = 1 << 20
#: Range requests per file and round (their median is kept).
RANGE_REPEATS = 5


def download_url(setup: Setup, name: str) -> str:
    """What Zoom's API would list as the recording's ``download_url``."""
    return f"{setup.endpoints.api_base.removesuffix('/v2')}/rec/download/{name}"


def _through_proxy(setup: Setup, name: str) -> str:
    return f"{setup.zoom.url}/download?url={quote(download_url(setup, name), safe='')}"


async def _range_seconds(url: str, headers: dict[str, str], size: int, setup: Setup) -> float:
    """Seconds for ``Range: bytes=<last MiB>`` through ``url`` (curl's total time)."""
    command = [
        tool("curl"),
        "-sS",
        "-o",
        "/dev/null",
        "-r",
        f"{size - TAIL}-{size - 1}",
        *[option for name, value in headers.items() for option in ("-H", f"{name}: {value}")],
        "-w",
        "%{http_code} %{size_download}",
        url,
    ]
    started = time.perf_counter()
    output = await run_tool(command, cores=setup.pinning.load)
    seconds = time.perf_counter() - started
    status, received = output.split()
    if status != "206" or int(received) != TAIL:
        raise RuntimeError(f"range through {url}: HTTP {status}, {received} bytes")
    return seconds


async def downloads(setup: Setup, options: Options, say: Say) -> dict[str, Any]:
    zoom_target = next(t for t in setup.targets if t.name == "zoom-proxy")
    nginx_target = next(t for t in setup.targets if t.name == "nginx")
    cookie = zoom_target.headers["Cookie"]
    big = ("big", options.download_bytes)
    files = (SMALL_RECORDING, big)
    speeds: dict[str, list[float]] = {"zoom-proxy": [], "nginx": []}
    peak: dict[str, float] = {name: 0.0 for name, _ in files}
    tails: dict[str, list[float]] = {name: [] for name, _ in files}
    pid = zoom_target.pid
    for round_number in range(options.stream_rounds):
        for who in rotated(["zoom-proxy", "nginx"], round_number):
            if who == "nginx":
                url, headers = f"{nginx_target.url.removesuffix('/fast')}/big", {}
            else:
                url, headers = _through_proxy(setup, "big"), {"Cookie": cookie}
            transfer = await streaming.download(
                url, "", expected=big[1], cores=setup.pinning.load, headers=headers
            )
            speeds[who].append(transfer.mb_per_second)
            say(f"  round {round_number + 1} {who:<10} /download {transfer.mb_per_second:.0f} MB/s")
        for name, size in files:
            procstat.reset_peak_rss(pid)
            await streaming.download(
                _through_proxy(setup, name),
                "",
                expected=size,
                cores=setup.pinning.load,
                headers={"Cookie": cookie},
            )
            peak[name] = max(peak[name], procstat.peak_rss_mib(pid))
            runs = [
                await _range_seconds(_through_proxy(setup, name), {"Cookie": cookie}, size, setup)
                for _ in range(RANGE_REPEATS)
            ]
            tails[name].append(median(runs))
    small_name, big_name = SMALL_RECORDING[0], big[0]
    return {
        "zoom_proxy_mb_per_second": median(speeds["zoom-proxy"]),
        "nginx_mb_per_second": median(speeds["nginx"]),
        "ratio_to_nginx": paired(speeds["zoom-proxy"], speeds["nginx"]),
        "peak_rss_mib": {"100 MiB": peak[small_name], "1 GiB": peak[big_name]},
        "last_mib_range_seconds": {
            "100 MiB": median(tails[small_name]),
            "1 GiB": median(tails[big_name]),
        },
        "range_time_ratio_1gib_to_100mib": median(tails[big_name]) / median(tails[small_name]),
        "runs": {"mb_per_second": speeds, "range_seconds": tails},
    }
