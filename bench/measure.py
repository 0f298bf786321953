"""The measurements: small GETs, streaming, many connections, and ``--workers``."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from . import nginx, procstat, streaming, wrk, zoomproxy
from .setup import (
    CALLER_TARGET,
    REDIS_TARGET,
    VARIANTS,
    Options,
    Say,
    Setup,
    Target,
    check,
    in_rounds,
    median,
    rotated,
)

RETRY_PAUSE = 5.0


async def small_gets(
    target: Target,
    setup: Setup,
    *,
    seconds: float,
    connections: int,
    load_cores: str | None,
    threads: int = 1,
) -> dict[str, Any]:
    """One wrk run against ``target``, with the CPU time its process tree spent on it.

    Also the CPU time anything else on the machine took meanwhile (``foreign``), as a
    share of all cores: a run beside a busy neighbour is suspect.
    """
    upstream_pid = setup.upstream.pid
    foreign = procstat.ForeignLoad([child.pid for child in setup.supervisor.children])
    foreign.start()
    cpu_before = procstat.cpu_seconds(target.pid)
    upstream_before = procstat.cpu_seconds(upstream_pid)
    machine_before = procstat.system_busy_seconds()
    result = await wrk.run(
        target.url,
        seconds=seconds,
        connections=connections,
        threads=threads,
        headers=target.headers,
        cores=load_cores,
    )
    cpu = procstat.cpu_seconds(target.pid) - cpu_before
    upstream_cpu = procstat.cpu_seconds(upstream_pid) - upstream_before
    machine_cpu = procstat.system_busy_seconds() - machine_before
    requests = max(result.requests, 1)
    return {
        "requests": result.requests,
        "requests_per_second": result.requests_per_second,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "cpu_us_per_request": cpu / requests * 1e6,
        "upstream_cpu_us_per_request": upstream_cpu / requests * 1e6,
        #: Every core's busy time: the proxy, the upstream, wrk and the rest.
        "machine_cpu_us_per_request": machine_cpu / requests * 1e6,
        "foreign_cpu_share": foreign.share(),
        "errors": result.errors,
    }


async def quiet_small_gets(
    target: Target, setup: Setup, options: Options, say: Say, **arguments: Any
) -> dict[str, Any]:
    """`small_gets`, measured again while other load on the machine spoils it.

    Returns the first run under ``options.max_other_load``, else the quietest one.
    """
    runs = []
    for attempt in range(options.retries + 1):
        if attempt:
            await asyncio.sleep(RETRY_PAUSE)
        run = await small_gets(target, setup, **arguments)
        run["attempt"] = attempt + 1
        runs.append(run)
        if run["foreign_cpu_share"] <= options.max_other_load:
            return run
        say(
            f"  {target.name}: other programs took {run['foreign_cpu_share']:.0%} of the CPU,"
            f" over {options.max_other_load:.0%}"
            + ("; measuring again" if attempt < options.retries else "; keeping the quietest")
        )
    return min(runs, key=lambda run: float(run["foreign_cpu_share"]))


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds, and every run."""
    keys = ("requests_per_second", "p50_ms", "p99_ms", "cpu_us_per_request")
    summary: dict[str, Any] = {key: median([run[key] for run in runs]) for key in keys}
    summary["errors"] = sum(run["errors"] for run in runs)
    summary["max_foreign_cpu_share"] = max(run["foreign_cpu_share"] for run in runs)
    summary["runs"] = runs
    return summary


async def throughput(setup: Setup, options: Options, say: Say) -> dict[str, Any]:
    """Small GETs through every target, interleaved in rounds (order rotated each round)."""
    load = setup.pinning.load
    for target in setup.targets:  # warm-up: connection pools, caches; not recorded
        await small_gets(
            target,
            setup,
            seconds=options.warmup,
            connections=options.connections,
            load_cores=load,
        )
    runs = await in_rounds(
        setup.targets,
        options.rounds,
        lambda target: quiet_small_gets(
            target,
            setup,
            options,
            say,
            seconds=options.seconds,
            connections=options.connections,
            load_cores=load,
        ),
        lambda number, target, run: say(
            f"  round {number} {target.name:<10}"
            f" {run['requests_per_second']:>9.0f} req/s  p99 {run['p99_ms']:.2f} ms"
            f"  {run['cpu_us_per_request']:.1f} us CPU/req"
            f"  (other load {run['foreign_cpu_share']:.0%})"
        ),
    )
    return {name: summarize(target_runs) for name, target_runs in runs.items()}


async def _transfer(
    setup: Setup, target: Target, direction: str, options: Options
) -> tuple[streaming.Transfer, float]:
    """One download or upload through ``target``; MB/s and its tree's CPU seconds per GB."""
    base = target.url.removesuffix("/fast")
    cookie = target.headers.get("Cookie", "")
    extra = {k: v for k, v in target.headers.items() if k != "Cookie"}
    cpu_before = procstat.cpu_seconds(target.pid)
    foreign = procstat.ForeignLoad([child.pid for child in setup.supervisor.children])
    foreign.start()
    if direction == "download":
        transfer = await streaming.download(
            f"{base}/big",
            cookie,
            expected=options.download_bytes,
            cores=setup.pinning.load,
            headers=extra,
        )
    else:
        transfer = await streaming.upload(
            f"{base}/upload",
            cookie,
            setup.upload_file,
            answer=setup.temp / "upload-answer.json",
            cores=setup.pinning.load,
            headers=extra,
        )
    cpu = procstat.cpu_seconds(target.pid) - cpu_before
    setup.streaming_foreign_share = max(setup.streaming_foreign_share, foreign.share())
    return transfer, cpu / (transfer.bytes / 1e9)


async def streams(setup: Setup, options: Options, say: Say) -> dict[str, Any]:
    """1 GiB down and 512 MiB up through each proxy (and directly), with zoom-proxy's memory."""
    zoom_pid = setup.zoom.child.pid
    # A caller streams exactly as a cookie does: the core is the same once past the key.
    targets = [target for target in setup.targets if target.name not in VARIANTS]
    speeds: dict[str, dict[str, list[float]]] = {
        target.name: {"download": [], "upload": []} for target in targets
    }
    cpu: dict[str, dict[str, list[float]]] = {
        target.name: {"download": [], "upload": []} for target in targets
    }
    memory: dict[str, Any] = {
        "rss_before_mib": procstat.rss_mib(zoom_pid),
        "peak_rss_download_mib": 0.0,
        "peak_rss_upload_mib": 0.0,
        "max_sampled_rss_mib": 0.0,
        "peak_reset_supported": True,
    }
    for round_number in range(options.stream_rounds):
        for target in rotated(targets, round_number):
            is_zoom = target.name == "zoom-proxy"
            for direction in ("download", "upload"):
                if is_zoom:
                    memory["peak_reset_supported"] &= procstat.reset_peak_rss(zoom_pid)
                async with procstat.sampling(zoom_pid, 0.1) as sampler:
                    transfer, cpu_per_gb = await _transfer(setup, target, direction, options)
                speeds[target.name][direction].append(transfer.mb_per_second)
                cpu[target.name][direction].append(cpu_per_gb)
                if is_zoom:
                    key = f"peak_rss_{direction}_mib"
                    memory[key] = max(memory[key], procstat.peak_rss_mib(zoom_pid))
                    memory["max_sampled_rss_mib"] = max(
                        memory["max_sampled_rss_mib"], *sampler.values()
                    )
                say(
                    f"  round {round_number + 1} {target.name:<10} {direction:<8}"
                    f" {transfer.mb_per_second:>7.0f} MB/s  {cpu_per_gb:.2f} CPU s/GB"
                )
    summary: dict[str, Any] = {
        target.name: {
            "download_mb_per_second": median(speeds[target.name]["download"]),
            "upload_mb_per_second": median(speeds[target.name]["upload"]),
            "download_cpu_seconds_per_gb": median(cpu[target.name]["download"]),
            "upload_cpu_seconds_per_gb": median(cpu[target.name]["upload"]),
            "runs": {"mb_per_second": speeds[target.name], "cpu_seconds_per_gb": cpu[target.name]},
        }
        for target in targets
    }
    summary["download_bytes"] = options.download_bytes
    summary["upload_bytes"] = options.upload_bytes
    summary["zoom_proxy_memory"] = memory
    summary["max_foreign_cpu_share"] = setup.streaming_foreign_share
    return summary


async def concurrency(setup: Setup, options: Options) -> dict[str, Any]:
    """Many concurrent connections through zoom-proxy: errors, and RSS every second."""
    zoom = next(target for target in setup.targets if target.name == "zoom-proxy")
    window = min(10.0, options.load_seconds / 3)
    overflows = procstat.listen_overflows()
    foreign = procstat.ForeignLoad([child.pid for child in setup.supervisor.children])
    foreign.start()
    async with procstat.sampling(zoom.pid, 1.0) as sampler:
        result = await wrk.run(
            zoom.url,
            seconds=options.load_seconds,
            connections=options.load_connections,
            headers=zoom.headers,
            cores=setup.pinning.load,
        )
    first, last = sampler.window_means(window)
    overflows = procstat.listen_overflows() - overflows if overflows >= 0 else -1
    return {
        "connections": options.load_connections,
        "seconds": options.load_seconds,
        "requests": result.requests,
        "requests_per_second": result.requests_per_second,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "socket_errors": result.socket_errors,
        "non_2xx": result.non_2xx,
        "errors": result.errors,
        "listen_queue_overflows": overflows,
        "foreign_cpu_share": foreign.share(),
        "rss_window_seconds": window,
        "rss_first_mib": first,
        "rss_last_mib": last,
        "rss_samples_mib": [round(value, 1) for value in sampler.values()],
    }


async def scaling(setup: Setup, options: Options, say: Say) -> dict[str, Any]:
    """zoom-proxy with ``--workers 2`` against ``--workers 1``, neither pinned, nor wrk."""
    if not setup.workers_supported:
        return {"skipped": "python -m proxy has no --workers option"}
    supervisor = setup.supervisor
    cookie = next(target for target in setup.targets if target.name == "zoom-proxy").headers
    targets = []
    for workers in (1, 2):
        proxy = await zoomproxy.start(
            supervisor,
            f"zoom-proxy-w{workers}",
            setup.endpoints,
            setup.temp,
            cores=None,
            workers=workers,
            session_key=setup.zoom.session_key,
        )
        targets.append(
            Target(f"workers={workers}", f"{proxy.url}/api/fast", cookie, proxy.child.pid)
        )
    try:
        for target in targets:
            await check(Target("workers", target.url, target.headers, target.pid), nginx.FAST_BODY)
            await small_gets(
                target,
                setup,
                seconds=options.warmup,
                connections=options.connections,
                load_cores=None,
                threads=2,
            )
        runs: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
        for round_number in range(options.scaling_rounds):
            for target in rotated(targets, round_number):
                run = await quiet_small_gets(
                    target,
                    setup,
                    options,
                    say,
                    seconds=options.scaling_seconds,
                    connections=options.connections,
                    load_cores=None,
                    threads=2,
                )
                say(
                    f"  round {round_number + 1} {target.name:<10}"
                    f" {run['requests_per_second']:>9.0f} req/s"
                )
                runs[target.name].append(run)
    finally:
        for target in targets:
            for child in list(supervisor.children):
                if child.pid == target.pid:
                    await supervisor.stop(child)
    summary: dict[str, Any] = {name: summarize(target_runs) for name, target_runs in runs.items()}
    one, two = summary["workers=1"], summary["workers=2"]
    summary["ratio_requests_per_second"] = two["requests_per_second"] / one["requests_per_second"]
    # wrk and the upstream share the cores with the workers: at the whole machine's CPU
    # time per request, every core busy gives at most this many requests a second.
    machine = median([run["machine_cpu_us_per_request"] for run in runs["workers=2"]])
    cores = os.cpu_count() or 1
    summary["machine_cpu_us_per_request"] = machine
    summary["cores"] = cores
    summary["ceiling_ratio"] = cores * 1e6 / machine / one["requests_per_second"]
    return summary


def paired(ours: list[float], theirs: list[float]) -> float:
    """The median of the per-round ratios: the runs of one round saw the same machine,
    so drift between rounds (a shared host's) cancels out."""
    return median([mine / other for mine, other in zip(ours, theirs, strict=True)])


def ratios(small: dict[str, Any], streamed: dict[str, Any] | None) -> dict[str, float]:
    """zoom-proxy ÷ nginx proxy and ÷ Go proxy: above 1 is better for req/s and MB/s
    only. The streaming ones only if ``streamed`` was measured."""
    found: dict[str, float] = {}
    for other in ("nginx", "go"):
        for key in ("requests_per_second", "cpu_us_per_request", "p50_ms", "p99_ms"):
            found[f"{key}/{other}"] = paired(
                [run[key] for run in small["zoom-proxy"]["runs"]],
                [run[key] for run in small[other]["runs"]],
            )
        for direction in ("download", "upload"):
            if streamed is None:
                break
            found[f"{direction}_mb_per_second/{other}"] = paired(
                streamed["zoom-proxy"]["runs"]["mb_per_second"][direction],
                streamed[other]["runs"]["mb_per_second"][direction],
            )
    found["cpu_us_per_request/caller_vs_cookie"] = paired(
        [run["cpu_us_per_request"] for run in small[CALLER_TARGET]["runs"]],
        [run["cpu_us_per_request"] for run in small["zoom-proxy"]["runs"]],
    )
    if REDIS_TARGET in small:
        found["cpu_us_per_request/redis_vs_cookie"] = paired(
            [run["cpu_us_per_request"] for run in small[REDIS_TARGET]["runs"]],
            [run["cpu_us_per_request"] for run in small["zoom-proxy"]["runs"]],
        )
    return found
