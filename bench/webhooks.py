"""Zoom's webhook events through zoom-proxy to a local backend (SPEC 14).

wrk replays distinct, freshly signed 2 KiB events (a Lua script cycles through a file
of whole requests) at ``POST /webhooks/zoom``; zoom-proxy verifies each and forwards it
to the Go sink, which answers 200. Measured: events forwarded per second (from the
proxy's own ``zoom_proxy_webhook_events_total``), the proxy's CPU per event (from
/proc), and, in this process, the CPU that verification itself costs per event
(signature and parse, the part of the work a webhook receiver cannot avoid).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

import aiohttp

from proxy.webhooks.events import parse
from proxy.webhooks.verify import signature, verify

from . import procstat, wrk
from .setup import WEBHOOK_SECRET, Options, Say, Setup

SECRET = WEBHOOK_SECRET
#: Bytes of each event's body.
EVENT_BYTES = 2048
#: Distinct events written for wrk; more than a run sends, so none is a replay.
EVENTS = 150_000
#: Connections Zoom's deliveries arrive on.
CONNECTIONS = 16
#: Calls of verify and parse timed in process.
VERIFY_ROUNDS = 20_000

_LUA = """
local requests = {}
local next_one = 0
init = function(args)
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*a")
  file:close()
  for request in string.gmatch(data, "([^%z]+)") do
    requests[#requests + 1] = request
  end
end
request = function()
  next_one = next_one % #requests + 1
  return requests[next_one]
end
"""
_FORWARDED = re.compile(
    r'^zoom_proxy_webhook_events_total\{event="[^"]*",outcome="forwarded"\} ([0-9.e+]+)$', re.M
)


def event_body(number: int) -> bytes:
    """A ``meeting.participant_joined`` event padded to :data:`EVENT_BYTES`."""
    event = {
        "event": "meeting.participant_joined",
        "event_ts": int(time.time() * 1000),
        "payload": {
            "account_id": "bench-account",
            "object": {"id": number, "uuid": secrets.token_urlsafe(16), "topic": "Bench"},
            "padding": "",
        },
    }
    short = len(json.dumps(event, separators=(",", ":")))
    event["payload"]["padding"] = "x" * (EVENT_BYTES - short)  # type: ignore[index]
    return json.dumps(event, separators=(",", ":")).encode()


def _requests(count: int, host: str) -> bytes:
    timestamp = str(int(time.time()))
    requests = []
    for number in range(count):
        body = event_body(number)
        head = (
            f"POST /webhooks/zoom HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json\r\n"
            f"x-zm-request-timestamp: {timestamp}\r\n"
            f"x-zm-signature: {signature(SECRET.encode(), timestamp, body)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return b"\0".join(requests)


async def _forwarded(proxy_url: str) -> float:
    async with aiohttp.ClientSession() as client, client.get(f"{proxy_url}/metrics") as got:
        text = await got.text()
    return sum(float(value) for value in _FORWARDED.findall(text))


def verification_cpu_us() -> float:
    """CPU microseconds to verify and parse one 2 KiB event, in this process."""
    body, timestamp = event_body(0), str(int(time.time()))
    signed = signature(SECRET.encode(), timestamp, body)
    started = time.process_time()
    for _ in range(VERIFY_ROUNDS):
        verify(
            SECRET.encode(),
            timestamp=timestamp,
            signed=signed,
            body=body,
            now=time.time(),
            max_skew=300,
        )
        parse(body)
    return (time.process_time() - started) / VERIFY_ROUNDS * 1e6


async def webhooks(setup: Setup, options: Options, say: Say) -> dict[str, Any]:
    events_file, script = setup.temp / "webhook-events.bin", setup.temp / "webhook-events.lua"
    proxy = setup.zoom
    events_file.write_bytes(_requests(EVENTS, f"127.0.0.1:{proxy.port}"))
    script.write_text(_LUA)
    pid = proxy.child.pid
    before, cpu_before = await _forwarded(proxy.url), procstat.cpu_seconds(pid)
    result = await wrk.run(
        f"{proxy.url}/webhooks/zoom",
        seconds=options.seconds,
        connections=CONNECTIONS,
        cores=setup.pinning.load,
        script=(script, events_file),
    )
    cpu = procstat.cpu_seconds(pid) - cpu_before
    forwarded = await _forwarded(proxy.url) - before
    verifying = verification_cpu_us()
    say(
        f"  {forwarded / result.seconds:.0f} events/s forwarded, "
        f"{cpu / max(forwarded, 1) * 1e6:.0f} µs CPU per event, "
        f"verification {verifying:.1f} µs per 2 KiB event"
    )
    return {
        "event_bytes": EVENT_BYTES,
        "connections": CONNECTIONS,
        "requests": result.requests,
        "errors": result.errors,
        "events_forwarded": forwarded,
        "events_per_second": forwarded / result.seconds,
        "cpu_us_per_event": cpu / max(forwarded, 1) * 1e6,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "verification_cpu_us_per_event": verifying,
        "replayed_events": result.requests > EVENTS,
    }
