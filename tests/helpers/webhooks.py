"""Zoom's side of a webhook, for tests: events signed as Zoom signs them (computed
here, apart from the proxy's code), and a backend that records what it is sent."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from proxy import serve
from tests.helpers.proxies import Proxy

SECRET = "webhook-secret-token-for-tests"


def zoom_signature(timestamp: str, body: bytes, secret: str = SECRET) -> str:
    message = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def event_body(event: str = "meeting.started", **payload: Any) -> bytes:
    payload = payload or {"object": {"id": 85746065432, "topic": "Weekly"}}
    return json.dumps({"event": event, "event_ts": 1764864000000, "payload": payload}).encode()


async def post_event(
    proxy: Proxy,
    body: bytes,
    *,
    timestamp: str | None = None,
    signature: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> tuple[int, bytes]:
    """POST ``body`` to the proxy's webhook route, signed now unless told otherwise."""
    stamp = str(int(time.time())) if timestamp is None else timestamp
    sent = [("Content-Type", "application/json"), ("x-zm-request-timestamp", stamp)]
    sent.append(("x-zm-signature", signature or zoom_signature(stamp, body)))
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"{proxy.url}/webhooks/zoom", data=io.BytesIO(body), headers=sent + (headers or [])
        ) as got,
    ):
        return got.status, await got.read()


@dataclass
class Backend:
    """The app's backend: records each event; ``status`` to answer, ``hold`` to wait on."""

    url: str = ""
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    status: int = 200
    hold: asyncio.Event | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), dict(request.headers)))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=self.status)


@asynccontextmanager
async def running_backend() -> AsyncIterator[Backend]:
    backend = Backend()
    app = web.Application()
    app.router.add_post("/zoom/events", backend.handle)
    runner = await serve.start(app, host="127.0.0.1", port=0, lane=False)
    backend.url = f"http://127.0.0.1:{runner.addresses[0][1]}/zoom/events"
    try:
        yield backend
    finally:
        if backend.hold is not None:
            backend.hold.set()
        await runner.cleanup()
