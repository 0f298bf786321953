"""The markdown table, and the JSON result file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"

LABELS = {
    "direct": "direct (nginx upstream, no proxy)",
    "nginx": "nginx proxy_pass",
    "go": "Go httputil.ReverseProxy",
    "zoom-proxy": "zoom-proxy",
    "zoom-proxy caller": "zoom-proxy, service caller key",
    "zoom-proxy redis": "zoom-proxy, session.store: redis",
}


def _number(value: float, digits: int = 0) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _size(count: int) -> str:
    return f"{count >> 30} GiB" if count >= 1 << 30 else f"{count >> 20} MiB"


def markdown(result: dict[str, Any]) -> str:
    """The result as the README's tables; a part not measured (``--only``) is left out."""
    machine = result["machine"]
    if machine["servers_pinned_to"] is None:
        pinning = f"{machine['usable_cores']} usable core: nothing pinned"
    else:
        pinning = (
            f"{machine['usable_cores']} cores: proxies and upstream pinned to core "
            f"{machine['servers_pinned_to']}, wrk and curl to core "
            f"{machine['load_generator_pinned_to']}"
        )
    lines = [
        f"zoom-proxy benchmark, {result['date']}: `{result['command']}`",
        "",
        f"Machine: {pinning}. Loopback only.",
    ]
    for part, section in _SECTIONS:
        if part in result:
            lines += ["", *section(result)]
    return "\n".join(lines)


def _small_gets(result: dict[str, Any]) -> list[str]:
    options = result["options"]
    lines = [
        f"**Small GET** (`wrk -t1 -c{options['connections']} -d{options['seconds']:g}s`, "
        f"~100-byte JSON, median of {options['rounds']} interleaved rounds; "
        "CPU time of the proxy's process tree from /proc)",
        "",
        "| target | req/s | p50 ms | p99 ms | CPU µs/request |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, data in result["small_gets"].items():
        lines.append(
            f"| {LABELS.get(name, name)} | {_number(data['requests_per_second'])} "
            f"| {_number(data['p50_ms'], 2)} | {_number(data['p99_ms'], 2)} "
            f"| {_number(data['cpu_us_per_request'], 1)} |"
        )
    foreign = max(data["max_foreign_cpu_share"] for data in result["small_gets"].values())
    return [
        *lines,
        "",
        f"Other load on the machine during these runs (CPU time of anything but the "
        f"benchmark, steal included): at most {foreign:.0%} of all cores.",
    ]


def _streaming(result: dict[str, Any]) -> list[str]:
    streamed, options = result["streaming"], result["options"]
    lines = [
        f"**Streaming** (curl, {_size(streamed['download_bytes'])} down, "
        f"{_size(streamed['upload_bytes'])} up, median of {options['stream_rounds']} rounds;"
        f" other load at most {streamed['max_foreign_cpu_share']:.0%})",
        "",
        "| target | download MB/s | upload MB/s | CPU s/GB down | CPU s/GB up |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in LABELS:
        if name in streamed:
            data = streamed[name]
            lines.append(
                f"| {LABELS[name]} | {_number(data['download_mb_per_second'])} "
                f"| {_number(data['upload_mb_per_second'])} "
                f"| {_number(data['download_cpu_seconds_per_gb'], 2)} "
                f"| {_number(data['upload_cpu_seconds_per_gb'], 2)} |"
            )
    memory = streamed["zoom_proxy_memory"]
    return [
        *lines,
        "",
        "| zoom-proxy memory while streaming | value |",
        "|---|---:|",
        f"| peak RSS (VmHWM), download | {_number(memory['peak_rss_download_mib'], 1)} MiB |",
        f"| peak RSS (VmHWM), upload | {_number(memory['peak_rss_upload_mib'], 1)} MiB |",
        f"| RSS sampled every 0.1 s while streaming: max "
        f"| {_number(memory['max_sampled_rss_mib'], 1)} MiB |",
    ]


def _ratios(result: dict[str, Any]) -> list[str]:
    ratios = result["ratios"]
    rows = [
        ("req/s (higher is better)", "requests_per_second"),
        ("CPU per request (lower is better)", "cpu_us_per_request"),
        ("p50 latency (lower is better)", "p50_ms"),
        ("p99 latency (lower is better)", "p99_ms"),
        ("download MB/s (higher is better)", "download_mb_per_second"),
        ("upload MB/s (higher is better)", "upload_mb_per_second"),
    ]
    lines = [
        "**Ratios, zoom-proxy ÷ other** (median of the per-round ratios)",
        "",
        "| | ÷ nginx | ÷ Go |",
        "|---|---:|---:|",
    ]
    for label, key in rows:
        if f"{key}/nginx" in ratios:
            nginx, go = ratios[f"{key}/nginx"], ratios[f"{key}/go"]
            lines.append(f"| {label} | {_number(nginx, 2)} | {_number(go, 2)} |")
    if "cpu_us_per_request/caller_vs_cookie" in ratios:
        lines += [
            "",
            "CPU per request, service caller key ÷ cookie session (same process, same "
            f"rounds): {_number(ratios['cpu_us_per_request/caller_vs_cookie'], 2)}",
        ]
    if "cpu_us_per_request/redis_vs_cookie" in ratios:
        lines += [
            "",
            "CPU per request, `session.store: redis` ÷ `cookie` (two processes, same "
            f"rounds): {_number(ratios['cpu_us_per_request/redis_vs_cookie'], 2)}",
        ]
    return lines


def _measures(title: str, rows: list[tuple[str, str]]) -> list[str]:
    """A titled two-column table of measures and their values."""
    return [title, "", "| measure | value |", "|---|---:|"] + [
        f"| {measure} | {value} |" for measure, value in rows
    ]


def _downloads(result: dict[str, Any]) -> list[str]:
    downloaded = result["downloads"]
    peak, tail = downloaded["peak_rss_mib"], downloaded["last_mib_range_seconds"]
    return _measures(
        "**Recording downloads** (`/download`, one redirect hop on the upstream, against"
        " nginx `proxy_pass` moving the same bytes; median of the rounds)",
        [
            ("zoom-proxy /download MB/s", _number(downloaded["zoom_proxy_mb_per_second"])),
            ("nginx MB/s", _number(downloaded["nginx_mb_per_second"])),
            ("zoom-proxy ÷ nginx (paired by round)", _number(downloaded["ratio_to_nginx"], 2)),
            ("zoom-proxy peak RSS, 100 MiB recording", f"{_number(peak['100 MiB'], 1)} MiB"),
            ("zoom-proxy peak RSS, 1 GiB recording", f"{_number(peak['1 GiB'], 1)} MiB"),
            (
                "Range of the last MiB, 100 MiB recording",
                f"{_number(tail['100 MiB'] * 1000, 1)} ms",
            ),
            ("Range of the last MiB, 1 GiB recording", f"{_number(tail['1 GiB'] * 1000, 1)} ms"),
            (
                "Range time, 1 GiB ÷ 100 MiB",
                _number(downloaded["range_time_ratio_1gib_to_100mib"], 2),
            ),
        ],
    )


def _webhooks(result: dict[str, Any]) -> list[str]:
    hooks = result["webhooks"]
    return _measures(
        f"**Webhook events** (wrk, {hooks['connections']} connections, distinct signed "
        f"{hooks['event_bytes'] // 1024} KiB events, each verified and forwarded to a local"
        " backend)",
        [
            ("events forwarded per second", _number(hooks["events_per_second"])),
            ("zoom-proxy CPU per event", f"{_number(hooks['cpu_us_per_event'], 1)} µs"),
            ("p50, p99", f"{_number(hooks['p50_ms'], 2)} ms, {_number(hooks['p99_ms'], 2)} ms"),
            ("errors (socket + non-2xx)", str(hooks["errors"])),
            (
                "verification alone (signature and parse, in process)",
                f"{_number(hooks['verification_cpu_us_per_event'], 1)} µs CPU per event",
            ),
        ],
    )


def _load(result: dict[str, Any]) -> list[str]:
    load = result["concurrency"]
    window, connections = load["rss_window_seconds"], f"{load['connections']:,} connections"
    return _measures(
        "**zoom-proxy under load**",
        [
            (f"{connections}, {load['seconds']:g} s: req/s", _number(load["requests_per_second"])),
            (
                f"{connections}: p99, max",
                f"{_number(load['p99_ms'], 1)} ms, {_number(load['max_ms'], 1)} ms",
            ),
            (f"{connections}: errors (socket + non-2xx)", str(load["errors"])),
            (f"{connections}: other load on the machine", f"{load['foreign_cpu_share']:.0%}"),
            (
                f"{connections}: listen-queue overflows (kernel, all sockets)",
                str(load["listen_queue_overflows"]),
            ),
            (
                f"RSS, mean of first {window:g} s → last {window:g} s",
                f"{_number(load['rss_first_mib'], 1)} → {_number(load['rss_last_mib'], 1)} MiB",
            ),
        ],
    )


def _workers(result: dict[str, Any]) -> list[str]:
    workers = result["workers"]
    if "skipped" in workers:
        return [f"`--workers 2` ÷ `--workers 1` req/s: skipped: {workers['skipped']}"]
    lines = [
        f"`--workers 2` ÷ `--workers 1` req/s (unpinned, wrk -t2): "
        f"{_number(workers['ratio_requests_per_second'], 2)} "
        f"({_number(workers['workers=2']['requests_per_second'])} vs "
        f"{_number(workers['workers=1']['requests_per_second'])})"
    ]
    if "ceiling_ratio" in workers:  # results from before 2026-12-04 lack it
        lines.append(
            f"Ceiling on this machine, wrk and the upstream on the same "
            f"{workers['cores']} cores: {_number(workers['ceiling_ratio'], 2)} "
            f"(the whole machine spent {_number(workers['machine_cpu_us_per_request'], 1)} µs "
            f"of CPU per request with 2 workers; {workers['cores']} cores busy give at most "
            f"{_number(workers['cores'] * 1e6 / workers['machine_cpu_us_per_request'])} req/s)"
        )
    return lines


#: The report's sections in order, each with the part of the result it shows.
_SECTIONS = (
    ("small_gets", _small_gets),
    ("streaming", _streaming),
    ("ratios", _ratios),
    ("downloads", _downloads),
    ("webhooks", _webhooks),
    ("concurrency", _load),
    ("workers", _workers),
)


def write_json(result: dict[str, Any], out: Path | None) -> Path:
    path = out or RESULTS / f"{result['date'].replace(':', '-')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return path
