"""``python -m bench replicas``: two replicas behind nginx round-robin, against one.

For each way of keeping sessions,

* ``cookie``: no Redis, the tokens in the cookie (one replica's refreshes are its own);
* ``cookie+redis``: the same cookie, refresh lock and rotation grace shared in Redis;
* ``redis``: ``session.store: redis``, the session read from Redis on every request;

two zoom-proxy processes (one worker each, the same session key, the same Redis) run
behind one nginx that balances round-robin, and the same nginx also fronts the first
replica alone. wrk sends small GETs with one signed-in cookie to each, interleaved in
rounds, and the ratio of 2 replicas to 1 says how far a second replica adds
throughput. Nothing is pinned: the replicas, nginx, the upstream, Redis and wrk share
the machine, so the free cores (measured before and during the runs) bound the ratio.

Tokens live an hour, so no refresh happens while measuring: ``cookie+redis`` then
costs nothing per request, and ``redis`` costs one Redis GET per request.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from . import nginx, procstat, report, streaming, wrk, zoomproxy
from .procs import (
    Child,
    Supervisor,
    free_port,
    raise_file_limit,
    run_stoppably,
    supervised,
    tool,
    wait_for_port,
)
from .setup import emulator_running, in_rounds

Say = Callable[[str], None]
#: Extra config per store; ``REDIS`` is replaced by the benchmark's Redis URL.
STORES: dict[str, dict[str, dict[str, Any]]] = {
    "cookie": {},
    "cookie+redis": {"redis": {"url": "REDIS"}},
    "redis": {"session": {"store": "redis"}, "redis": {"url": "REDIS"}},
}


@dataclass(frozen=True)
class Options:
    seconds: float = 10
    warmup: float = 2
    rounds: int = 3
    connections: int = 64
    threads: int = 2


QUICK = Options(seconds=3, warmup=1, rounds=1)


@dataclass
class Target:
    """One listener of the balancer, the replicas behind it, and a cookie for them."""

    store: str
    replicas: int
    url: str
    cookie: str
    pids: list[int]

    @property
    def name(self) -> str:
        return f"{self.store} x{self.replicas}"


def balancer_config(prefix: Path, listeners: dict[int, list[int]]) -> str:
    """nginx round-robin: each listening port spreads over its replicas' ports."""
    blocks = []
    for index, (port, backends) in enumerate(listeners.items()):
        servers = "\n".join(f"        server 127.0.0.1:{backend};" for backend in backends)
        blocks.append(
            f"""    upstream replicas{index} {{
{servers}
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        large_client_header_buffers 4 32k;
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffer_size 32k;
            proxy_buffers 8 32k;
            proxy_pass http://replicas{index};
        }}
    }}
"""
        )
    return nginx._main_section(prefix) + "".join(blocks) + "}\n"


def free_cores(seconds: float = 2.0) -> float:
    """Cores the machine left idle over ``seconds`` (idle and iowait, from /proc/stat)."""
    start = procstat.system_busy_seconds()
    time.sleep(seconds)
    busy = procstat.system_busy_seconds() - start
    return max(0.0, (os.cpu_count() or 1) - busy / seconds)


async def start_redis(supervisor: Supervisor) -> tuple[Child, str]:
    port = free_port()
    command = [tool("redis-server", "/usr/bin/redis-server"), "--port", str(port)]
    command += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    child = await supervisor.start("redis", command)
    await wait_for_port(child, port)
    return child, f"redis://127.0.0.1:{port}/0"


def _overrides(store: str, redis_url: str) -> dict[str, dict[str, Any]]:
    return {
        section: {key: redis_url if value == "REDIS" else value for key, value in values.items()}
        for section, values in STORES[store].items()
    }


async def run_once(target: Target, seconds: float, options: Options) -> dict[str, Any]:
    """One wrk run, with the replicas' CPU time and everybody else's load meanwhile."""
    foreign = procstat.ForeignLoad(list(target.pids))
    foreign.start()
    cpu_before = [procstat.cpu_seconds(pid) for pid in target.pids]
    result = await wrk.run(
        target.url,
        seconds=seconds,
        connections=options.connections,
        threads=options.threads,
        headers={"Cookie": target.cookie},
    )
    cpu = [
        procstat.cpu_seconds(pid) - before
        for pid, before in zip(target.pids, cpu_before, strict=True)
    ]
    return {
        "requests_per_second": result.requests_per_second,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "replica_cores_used": [round(c / result.seconds, 2) for c in cpu],
        "other_cores_used": foreign.share() * (os.cpu_count() or 1),
    }


async def benchmark(options: Options, say: Say, keep_temp: bool) -> dict[str, Any]:
    raise_file_limit()
    say("measuring idle cores for 2 s before starting anything ...")
    idle_before = await asyncio.to_thread(free_cores)
    async with (
        supervised("zoom-proxy-replicas-", say, keep_temp=keep_temp) as (supervisor, temp),
        emulator_running() as (emulator, emulator_url),
    ):
        targets, redis = await _start(supervisor, temp, emulator, emulator_url, say)
        say("warming up ...")
        for target in targets:
            await run_once(target, options.warmup, options)
        runs = await in_rounds(
            targets,
            options.rounds,
            lambda target: run_once(target, options.seconds, options),
            lambda number, target, run: say(
                f"  round {number} {target.name:<16}"
                f" {run['requests_per_second']:>8.0f} req/s"
                f"  p99 {run['p99_ms']:.1f} ms  replicas used"
                f" {'+'.join(f'{c:.2f}' for c in run['replica_cores_used'])} cores"
            ),
        )
        redis_cpu = procstat.cpu_seconds(redis.pid)
    return _summary(runs, options, idle_before, redis_cpu)


async def _start(
    supervisor: Supervisor, temp: Path, emulator: Any, emulator_url: str, say: Say
) -> tuple[list[Target], Child]:
    say("starting the upstream, Redis, 6 replicas and the balancer ...")
    big = temp / "big.bin"
    streaming.make_sparse_file(big, 1 << 20)
    upstream_port = free_port()
    await nginx.start(
        supervisor,
        "nginx-upstream",
        temp / "nginx-upstream",
        nginx.upstream_config(
            temp / "nginx-upstream", port=upstream_port, sink_port=free_port(), big_file=big
        ),
        port=upstream_port,
        cores=None,
    )
    redis, redis_url = await start_redis(supervisor)
    endpoints = zoomproxy.ZoomEndpoints(
        oauth_base=emulator_url,
        api_base=f"http://127.0.0.1:{upstream_port}/v2",
        client_id=emulator.client_id,
        client_secret=emulator.client_secret,
    )
    key = Fernet.generate_key().decode()
    listeners: dict[int, list[int]] = {}
    planned: list[tuple[str, int, int, list[int]]] = []
    for store in STORES:
        pair = [
            await zoomproxy.start(
                supervisor,
                f"{store}-{name}",
                endpoints,
                temp,
                cores=None,
                session_key=key,
                session=_overrides(store, redis_url).get("session", {}),
                redis=_overrides(store, redis_url).get("redis", {}),
            )
            for name in ("a", "b")
        ]
        for count in (1, 2):
            port = free_port()
            listeners[port] = [proxy.port for proxy in pair[:count]]
            planned.append((store, count, port, [proxy.child.pid for proxy in pair[:count]]))
    await nginx.start(
        supervisor,
        "balancer",
        temp / "balancer",
        balancer_config(temp / "balancer", listeners),
        port=next(iter(listeners)),
        cores=None,
    )
    targets = []
    cookies: dict[str, str] = {}
    for store, count, port, pids in planned:
        url = f"http://127.0.0.1:{port}"
        if store not in cookies:
            cookies[store] = await zoomproxy.signed_in_cookie(url)
        targets.append(Target(store, count, f"{url}/api/fast", cookies[store], pids))
    for target in targets:
        result = await wrk.run(
            target.url, seconds=1, connections=4, headers={"Cookie": target.cookie}
        )
        if result.errors or not result.requests:
            raise RuntimeError(f"{target.name}: {result.errors} errors in a 1-s check")
    return targets, redis


def _summary(
    runs: dict[str, list[dict[str, Any]]], options: Options, idle_before: float, redis_cpu: float
) -> dict[str, Any]:
    def median(name: str, key: str) -> float:
        return float(statistics.median(run[key] for run in runs[name]))

    stores: dict[str, Any] = {}
    baseline = median("cookie x1", "requests_per_second")
    for store in STORES:
        one, two = (
            median(f"{store} x1", "requests_per_second"),
            median(f"{store} x2", "requests_per_second"),
        )
        stores[store] = {
            "one_replica_rps": one,
            "two_replicas_rps": two,
            "two_over_one": two / one,
            "two_over_one_cookie_replica": two / baseline,
            "one_over_one_cookie_replica": one / baseline,
            "p99_ms_one": median(f"{store} x1", "p99_ms"),
            "p99_ms_two": median(f"{store} x2", "p99_ms"),
            "errors": sum(
                run["errors"] for name in (f"{store} x1", f"{store} x2") for run in runs[name]
            ),
        }
    others = [run["other_cores_used"] for target_runs in runs.values() for run in target_runs]
    return {
        "machine": {
            "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)),
            "idle_cores_before": round(idle_before, 2),
            "max_cores_used_by_other_programs": round(max(others), 2),
            "load_average_at_end": os.getloadavg(),
        },
        "options": asdict(options),
        "stores": stores,
        "redis_cpu_seconds_total": redis_cpu,
        "runs": runs,
    }


def markdown(result: dict[str, Any]) -> str:
    machine, options = result["machine"], result["options"]
    lines = [
        f"zoom-proxy replicas, {result['date']}: `{result['command']}`",
        "",
        f"Machine: {machine['cores']} cores, {machine['idle_cores_before']:.2f} idle before the"
        f" run; other programs took up to {machine['max_cores_used_by_other_programs']:.2f}"
        " cores during it. Nothing pinned: replicas, nginx (balancer and upstream), Redis"
        " and wrk share the machine.",
        "",
        f"Small GETs (`wrk -t{options['threads']} -c{options['connections']}"
        f" -d{options['seconds']:g}s` through nginx round-robin, median of"
        f" {options['rounds']} interleaved rounds)",
        "",
        "| store | 1 replica req/s | 2 replicas req/s | 2 ÷ 1 | 2 ÷ 1 cookie replica"
        " | p99 ms 1 → 2 | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for store, data in result["stores"].items():
        lines.append(
            f"| {store} | {data['one_replica_rps']:,.0f} | {data['two_replicas_rps']:,.0f}"
            f" | {data['two_over_one']:.2f} | {data['two_over_one_cookie_replica']:.2f}"
            f" | {data['p99_ms_one']:.1f} → {data['p99_ms_two']:.1f} | {data['errors']} |"
        )
    return "\n".join(lines)


def main(
    *, options: Options, out: Path | None, say: Say, header: dict[str, str], keep_temp: bool
) -> int:
    result: dict[str, Any] = dict(header)
    result.update(run_stoppably(benchmark(options, say, keep_temp)))
    print(markdown(result))
    path = out or report.RESULTS / f"replicas-{result['date'].replace(':', '-')}.json"
    print(f"\nJSON: {report.write_json(result, path)}")
    errors = sum(data["errors"] for data in result["stores"].values())
    return 0 if errors == 0 else 1
