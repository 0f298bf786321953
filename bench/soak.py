"""``python -m bench soak``: minutes of mixed traffic through zoom-proxy, refreshes included.

zoom-proxy runs as a real process in front of the Zoom emulator, whose access tokens
live 70 s: with ``refresh.margin`` 60 every session refreshes about every 10 s, ahead
of expiry. Every 45 s the emulator also expires every access token at once, so
requests in flight meet Zoom's 401 and take the refresh-and-retry path. Several
signed-in sessions (one cookie jar each, which takes the refreshed cookies) share
``concurrency`` workers sending GETs, POSTs, small downloads and uploads.

Every answer must be 2xx: anything else, or a failed request, counts as an error.
Memory drift is zoom-proxy's mean RSS over the last minute minus the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from proxy import serve
from proxy.emulator import ZoomEmulator

from . import procstat, report, zoomproxy
from .procs import raise_file_limit, run_stoppably, supervised

Say = Callable[[str], None]

SESSIONS = 4
TOKEN_LIFETIME = 70
EXPIRE_EVERY = 45.0
DOWNLOAD_BYTES = 64 * 1024
UPLOAD_BYTES = 32 * 1024
#: (name, weight): what one worker picks for each request.
MIX = (
    ("get_me", 35),
    ("list_meetings", 25),
    ("create_meeting", 15),
    ("download", 15),
    ("upload", 10),
)


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


async def _one(client: aiohttp.ClientSession, base: str, kind: str) -> str | None:
    """Send one request of ``kind``; None when it went right, else what went wrong."""
    api = f"{base}/api"
    if kind == "get_me":
        async with client.get(f"{api}/users/me") as response:
            body = await response.read()
            ok = response.status == 200 and b'"id"' in body
    elif kind == "list_meetings":
        async with client.get(f"{api}/users/me/meetings") as response:
            body = await response.read()
            ok = response.status == 200 and b"meetings" in body
    elif kind == "create_meeting":
        payload = {"topic": "soak", "type": 2, "duration": 30}
        async with client.post(f"{api}/users/me/meetings", json=payload) as response:
            body = await response.read()
            ok = response.status == 201
    elif kind == "download":
        async with client.get(
            f"{api}/_test/download", params={"bytes": DOWNLOAD_BYTES}
        ) as response:
            body = await response.read()
            ok = response.status == 200 and len(body) == DOWNLOAD_BYTES
    else:
        data = random.randbytes(UPLOAD_BYTES)
        async with client.post(f"{api}/_test/upload", data=data) as response:
            body = await response.read()
            ok = response.status == 200 and json.loads(body).get("body_length") == UPLOAD_BYTES
    return None if ok else f"HTTP {response.status}: {body[:120]!r}"


async def _worker(
    client: aiohttp.ClientSession, base: str, deadline: float, seed: int, tally: Tally
) -> None:
    chooser = random.Random(seed)
    kinds = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    while time.monotonic() < deadline:
        kind = chooser.choices(kinds, weights)[0]
        tally.requests[kind] += 1
        try:
            problem = await _one(client, base, kind)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            problem = f"{type(error).__name__}: {error}"
        if problem is not None:
            tally.errors[f"{kind}: {problem}"] += 1


async def _housekeeping(emulator: ZoomEmulator, say: Say, tally: Tally, start: float) -> None:
    """Keep the emulator's records small, expire every token now and then, and report."""
    next_expiry = start + EXPIRE_EVERY
    while True:
        await asyncio.sleep(5)
        emulator.api_requests.clear()
        emulator.meetings.clear()
        now = time.monotonic()
        if now >= next_expiry:
            emulator.expire_access_tokens()
            next_expiry += EXPIRE_EVERY
        say(
            f"  {now - start:5.0f} s: {sum(tally.requests.values()):>7} requests, "
            f"{sum(tally.errors.values())} errors, {emulator.counters['refresh_ok']} refreshes"
        )


async def soak(minutes: float, concurrency: int, say: Say) -> dict[str, Any]:
    raise_file_limit()
    async with supervised("zoom-proxy-soak-", say) as (supervisor, temp):
        emulator = ZoomEmulator(token_lifetime=TOKEN_LIFETIME)
        runner = await serve.start(
            emulator.app(), host="127.0.0.1", port=0, answer_half_closed=False
        )
        zoom_base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        endpoints = zoomproxy.ZoomEndpoints(
            oauth_base=zoom_base,
            api_base=f"{zoom_base}/v2",
            client_id=emulator.client_id,
            client_secret=emulator.client_secret,
        )
        clients: list[aiohttp.ClientSession] = []
        tally = Tally()
        try:
            proxy = await zoomproxy.start(
                supervisor, "zoom-proxy-soak", endpoints, temp, cores=None
            )
            for _ in range(SESSIONS):
                client = aiohttp.ClientSession(
                    cookie_jar=aiohttp.CookieJar(unsafe=True),
                    timeout=aiohttp.ClientTimeout(total=30),
                    connector=aiohttp.TCPConnector(limit=0),
                )
                clients.append(client)
                await zoomproxy.sign_in(client, proxy.url)
            seconds = minutes * 60
            say(f"soak: {seconds:g} s, {concurrency} in flight over {SESSIONS} sessions")
            start = time.monotonic()
            deadline = start + seconds
            housekeeping = asyncio.create_task(_housekeeping(emulator, say, tally, start))
            async with procstat.sampling(proxy.child.pid, 1.0) as sampler:
                await asyncio.gather(
                    *(
                        _worker(clients[i % SESSIONS], proxy.url, deadline, i, tally)
                        for i in range(concurrency)
                    )
                )
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            elapsed = time.monotonic() - start
            window = min(60.0, seconds / 3)
            first, last = sampler.window_means(window)
            alive = proxy.child.process.returncode is None
        finally:
            for client in clients:
                await client.close()
            await runner.cleanup()
    total = sum(tally.requests.values())
    return {
        "seconds": round(elapsed, 1),
        "concurrency": concurrency,
        "sessions": SESSIONS,
        "requests": total,
        "requests_per_second": total / elapsed,
        "requests_by_kind": dict(tally.requests),
        "errors": sum(tally.errors.values()),
        "errors_by_kind": dict(tally.errors.most_common(20)),
        "refreshes": emulator.counters["refresh_ok"],
        "refreshes_rejected": emulator.counters["refresh_rejected"],
        "api_401": emulator.counters["api_401"],
        "proxy_alive_at_end": alive,
        "rss_window_seconds": window,
        "rss_first_mib": first,
        "rss_last_mib": last,
        "rss_drift_mib": last - first,
        "rss_samples_mib": [round(value, 1) for value in sampler.values()],
    }


def markdown(result: dict[str, Any]) -> str:
    window = result["rss_window_seconds"]
    rows = [
        ("duration", f"{result['seconds']:g} s, {result['concurrency']} in flight"),
        ("requests", f"{result['requests']:,} ({result['requests_per_second']:,.0f}/s)"),
        ("errors (non-2xx or failed)", str(result["errors"])),
        ("token refreshes (401s from Zoom)", f"{result['refreshes']} ({result['api_401']})"),
        (
            f"RSS, mean of first {window:g} s → last {window:g} s",
            f"{result['rss_first_mib']:.1f} → {result['rss_last_mib']:.1f} MiB "
            f"(drift {result['rss_drift_mib']:+.1f} MiB)",
        ),
    ]
    lines = [
        f"zoom-proxy soak, {result['date']}: `{result['command']}`",
        "",
        "| measure | value |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value} |" for name, value in rows]
    for problem, count in result["errors_by_kind"].items():
        lines.append(f"| error, {count} times | {problem} |")
    return "\n".join(lines)


def main(
    *, minutes: float, concurrency: int, out: Path | None, say: Say, header: dict[str, str]
) -> int:
    result: dict[str, Any] = dict(header)
    result.update(run_stoppably(soak(minutes, concurrency, say)))
    print(markdown(result))
    path = out or report.RESULTS / f"soak-{result['date'].replace(':', '-')}.json"
    print(f"\nJSON: {report.write_json(result, path)}")
    return 0 if result["errors"] == 0 and result["proxy_alive_at_end"] else 1
