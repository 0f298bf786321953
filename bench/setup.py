"""Set-up: the options, the pinning, and every server started and signed in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp

from proxy import serve
from proxy.callers.registry import new_key
from proxy.emulator import ZoomEmulator

from . import gobuild, nginx, streaming, zoomproxy
from .procs import Child, Supervisor, free_port, wait_for_port

Say = Callable[[str], None]
T = TypeVar("T")
GIB = 1 << 30
MIB = 1 << 20


#: The Secret Token of the webhook events sent to zoom-proxy (bench/webhooks.py).
WEBHOOK_SECRET = "bench-webhook-secret-token"
#: The benchmark's parts, in the order they run.
PARTS = ("small", "streaming", "downloads", "webhooks", "load", "workers")


@dataclass(frozen=True)
class Options:
    """How long and how hard; ``--quick`` shrinks everything for a smoke run."""

    seconds: float = 10
    connections: int = 64
    rounds: int = 3
    warmup: float = 2
    download_bytes: int = GIB
    upload_bytes: int = 512 * MIB
    stream_rounds: int = 3
    load_connections: int = 1000
    load_seconds: float = 30
    scaling_seconds: float = 10
    scaling_rounds: int = 3
    #: A small-GET run during which other programs took more than this share of the
    #: machine's CPU is measured again (after a pause), at most ``retries`` times.
    max_other_load: float = 0.10
    retries: int = 3
    #: What to measure (``--only``): all of :data:`PARTS` by default.
    parts: tuple[str, ...] = PARTS


QUICK = Options(
    seconds=3,
    rounds=1,
    warmup=1,
    download_bytes=256 * MIB,
    upload_bytes=128 * MIB,
    stream_rounds=1,
    load_seconds=6,
    scaling_seconds=3,
    scaling_rounds=1,
    retries=1,
)


@dataclass(frozen=True)
class Pinning:
    """Which cores the servers and the load generator run on (None: not pinned)."""

    cores: int
    servers: str | None
    load: str | None

    @classmethod
    def detect(cls) -> Pinning:
        usable = sorted(os.sched_getaffinity(0))
        if len(usable) < 2:
            return cls(len(usable), None, None)
        return cls(len(usable), str(usable[0]), str(usable[1]))


#: The smaller recording behind /download (bench/downloads.py; the larger is big.bin).
RECORDING_BYTES = 100 << 20

#: zoom-proxy's small-GET row for a service caller (SPEC 12) rather than a cookie.
CALLER_TARGET = "zoom-proxy caller"
#: zoom-proxy with ``session.store: redis`` (a local redis-server), small GETs only.
REDIS_TARGET = "zoom-proxy redis"
#: Targets that are zoom-proxy answering small GETs another way than the cookie row.
VARIANTS = (CALLER_TARGET, REDIS_TARGET)


@dataclass(frozen=True)
class Target:
    """Something to send small GETs to, and the process tree whose CPU time it costs."""

    name: str
    url: str
    headers: dict[str, str]
    pid: int


@dataclass
class Setup:
    """Everything the measurements need, once started and signed in."""

    temp: Path
    pinning: Pinning
    upstream: Child
    zoom: zoomproxy.ZoomProxy
    endpoints: zoomproxy.ZoomEndpoints
    targets: list[Target]
    upload_file: Path
    supervisor: Supervisor
    workers_supported: bool
    streaming_foreign_share: float = 0.0


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rotated(items: Sequence[T], by: int) -> list[T]:
    """``items`` starting at position ``by``: each round runs the targets in another order."""
    shift = by % len(items)
    return [*items[shift:], *items[:shift]]


class Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Named)


async def in_rounds(
    targets: Sequence[N],
    rounds: int,
    measure: Callable[[N], Awaitable[dict[str, Any]]],
    reported: Callable[[int, N, dict[str, Any]], None],
) -> dict[str, list[dict[str, Any]]]:
    """Every target measured once a round, in an order rotated each round, so drift on a
    shared machine hits all of them; each target's runs, by its name."""
    runs: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
    for round_number in range(rounds):
        for target in rotated(targets, round_number):
            run = await measure(target)
            runs[target.name].append(run)
            reported(round_number + 1, target, run)
    return runs


# --- set-up -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def emulator_running() -> AsyncIterator[tuple[ZoomEmulator, str]]:
    """The Zoom emulator in this process, auto-approving sign-ins."""
    emulator = ZoomEmulator()
    runner = await serve.start(emulator.app(), host="127.0.0.1", port=0, answer_half_closed=False)
    try:
        yield emulator, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def check(target: Target, expected_body: str) -> None:
    """One request through ``target``: it must answer the upstream's body, and 401 without auth."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        async with client.get(target.url, headers=target.headers) as response:
            body = await response.text()
            if response.status != 200 or body != expected_body:
                raise RuntimeError(f"{target.name}: {response.status} {body[:200]!r}")
        if target.name in ("go", "zoom-proxy", *VARIANTS):
            async with client.get(target.url) as response:
                if response.status != 401:
                    raise RuntimeError(f"{target.name} answered {response.status} without a cookie")


async def start_everything(
    supervisor: Supervisor,
    temp: Path,
    pinning: Pinning,
    options: Options,
    emulator: ZoomEmulator,
    emulator_url: str,
) -> Setup:
    servers = pinning.servers
    binaries = await gobuild.build(temp)
    big_file, upload_file = temp / "big.bin", temp / "upload.bin"
    small_file = temp / "rec100m.bin"
    await asyncio.to_thread(streaming.make_sparse_file, big_file, options.download_bytes)
    await asyncio.to_thread(streaming.make_sparse_file, small_file, RECORDING_BYTES)
    await asyncio.to_thread(streaming.make_sparse_file, upload_file, options.upload_bytes)

    sink_port = free_port()
    sink = await supervisor.start(
        "gosink",
        [str(binaries.sink), "-listen", f"127.0.0.1:{sink_port}"],
        cores=servers,
        env={"GOMAXPROCS": "1"},
    )
    await wait_for_port(sink, sink_port)
    upstream_port = free_port()
    upstream = await nginx.start(
        supervisor,
        "nginx-upstream",
        temp / "nginx-upstream",
        nginx.upstream_config(
            temp / "nginx-upstream",
            port=upstream_port,
            sink_port=sink_port,
            big_file=big_file,
            small_file=small_file,
        ),
        port=upstream_port,
        cores=servers,
    )
    api_base = f"http://127.0.0.1:{upstream_port}/v2"
    endpoints = zoomproxy.ZoomEndpoints(
        oauth_base=emulator_url,
        api_base=api_base,
        client_id=emulator.client_id,
        client_secret=emulator.client_secret,
    )
    caller_key, caller_key_sha256 = new_key()
    zoom = await zoomproxy.start(
        supervisor,
        "zoom-proxy",
        endpoints,
        temp,
        cores=servers,
        # The upstream plays Zoom's web host for recordings too (bench/downloads.py).
        zoom={"download_origins": [f"http://127.0.0.1:{upstream_port}"]},
        # Verified events go on to the Go sink (bench/webhooks.py).
        webhooks={
            "secret_token": WEBHOOK_SECRET,
            "forward_to": f"http://127.0.0.1:{sink_port}/zoom/events",
        },
        service={
            "account_id": emulator.account_id,
            "client_id": emulator.service_client_id,
            "client_secret": emulator.service_client_secret,
            "callers": [{"name": "bench", "key_sha256": caller_key_sha256, "allow": ["GET /**"]}],
        },
    )
    zoom_cookie = await zoomproxy.signed_in_cookie(zoom.url)
    # The same (Zoom-sized) access token zoom-proxy sends, for the other proxies.
    issued = emulator.issued_tokens()
    access_token = next(token for token in issued if emulator.user_for(token) is not None)
    refresh_token = next(token for token in issued if token != access_token)

    nginx_port = free_port()
    nginx_proxy = await nginx.start(
        supervisor,
        "nginx-proxy",
        temp / "nginx-proxy",
        nginx.proxy_config(
            temp / "nginx-proxy",
            port=nginx_port,
            upstream_port=upstream_port,
            access_token=access_token,
        ),
        port=nginx_port,
        cores=servers,
    )
    go_key = os.urandom(32)
    go_port = free_port()
    go_proxy = await supervisor.start(
        "goproxy",
        [
            str(binaries.proxy),
            "-listen",
            f"127.0.0.1:{go_port}",
            "-upstream",
            api_base,
            "-cookie",
            gobuild.COOKIE_NAME,
        ],
        cores=servers,
        # The one core the servers are pinned to (by default Go would run a thread for
        # every core of the machine, and fight the others for core 0).
        env={"GOMAXPROCS": "1", "BENCH_SESSION_KEY": go_key.hex()},
    )
    await wait_for_port(go_proxy, go_port)
    # A session like oauth2-proxy's: the tokens and who the user is; only the access token is used.
    go_cookie = gobuild.session_cookie(
        go_key,
        {
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_at": int(time.time()) + 3599,
            "user": nginx.USER,
        },
    )
    targets = [
        Target(
            "direct",
            f"{api_base}/fast",
            {"Authorization": f"Bearer {access_token}"},
            upstream.child.pid,
        ),
        Target("nginx", f"http://127.0.0.1:{nginx_port}/api/fast", {}, nginx_proxy.child.pid),
        Target(
            "go",
            f"http://127.0.0.1:{go_port}/api/fast",
            {"Cookie": f"{gobuild.COOKIE_NAME}={go_cookie}"},
            go_proxy.pid,
        ),
        Target("zoom-proxy", f"{zoom.url}/api/fast", {"Cookie": zoom_cookie}, zoom.child.pid),
        # The same process, called by a service caller (the account's token).
        Target(
            CALLER_TARGET,
            f"{zoom.url}/api/fast",
            {"Authorization": f"Bearer {caller_key}"},
            zoom.child.pid,
        ),
    ]
    redis_target = await _zoom_proxy_on_redis(supervisor, endpoints, temp, servers)
    if redis_target is not None:
        targets.append(redis_target)
    for target in targets:
        await check(target, nginx.FAST_BODY)
    return Setup(
        temp=temp,
        pinning=pinning,
        upstream=upstream.child,
        zoom=zoom,
        endpoints=endpoints,
        targets=targets,
        upload_file=upload_file,
        supervisor=supervisor,
        workers_supported=await zoomproxy.supports_workers(),
    )


async def _zoom_proxy_on_redis(
    supervisor: Supervisor, endpoints: zoomproxy.ZoomEndpoints, temp: Path, cores: str | None
) -> Target | None:
    """A second zoom-proxy with ``session.store: redis`` on a redis-server of its own,
    signed in; ``None`` (and no row) where redis-server is missing."""
    server = shutil.which("redis-server")
    if server is None:
        return None
    port = free_port()
    redis = await supervisor.start(
        "redis-server",
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cores=cores,
    )
    await wait_for_port(redis, port)
    proxy = await zoomproxy.start(
        supervisor,
        "zoom-proxy-redis",
        endpoints,
        temp,
        cores=cores,
        session={"store": "redis"},
        redis={"url": f"redis://127.0.0.1:{port}/0"},
    )
    cookie = await zoomproxy.signed_in_cookie(proxy.url)
    return Target(REDIS_TARGET, f"{proxy.url}/api/fast", {"Cookie": cookie}, proxy.child.pid)
