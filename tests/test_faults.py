"""Reliability under faults: shutdown with requests in flight, and no leaks after them."""

from __future__ import annotations

import asyncio
import gc
import signal
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import unused_port

from proxy.emulator import download_chunks
from proxy.web.keys import UPSTREAM
from tests.helpers.processes import TIMEOUT, first_line, running
from tests.helpers.proxies import Proxy, Zoom, proxy_config

#: Every proxy here runs on both transports: the front's lane, and aiohttp's server.
pytestmark = pytest.mark.both_transports


HELD_BYTES = 4 << 20


async def test_sigterm_keeps_serving_reports_not_ready_and_finishes_in_flight_requests(
    zoom: Zoom, tmp_path: Path
) -> None:
    port = unused_port()
    config = proxy_config(zoom.base_url, port, listen={"shutdown_timeout": 30})
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    async with (
        running("--config", str(config_path), stderr_path=tmp_path / "proxy.log") as server,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser,
    ):
        url = f"http://127.0.0.1:{port}"
        await first_line(server)
        async with browser.get(f"{url}/auth/login") as response:
            assert response.status == 200
        async with browser.get(
            f"{url}/api/_test/hold_body", params={"bytes": str(HELD_BYTES)}
        ) as download:
            first_half = await download.content.readexactly(HELD_BYTES // 2)
            await zoom.emulator.wait_for_held(1)
            server.send_signal(signal.SIGTERM)
            async with aiohttp.ClientSession() as probe:
                await until_not_ready(probe, f"{url}/readyz")
                async with probe.get(f"{url}/healthz") as health:
                    assert health.status == 200
            assert server.returncode is None
            zoom.emulator.release_held()
            body = first_half + await download.read()
        assert body == b"".join(download_chunks(HELD_BYTES))
        assert await asyncio.wait_for(server.wait(), TIMEOUT) == 0


async def until_not_ready(client: aiohttp.ClientSession, url: str) -> None:
    """The signal is asynchronous to us: ask until /readyz has turned 503."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            async with client.get(url) as response:
                if response.status == 503:
                    return
                assert response.status == 200
            await asyncio.sleep(0.05)


async def test_departing_clients_leave_no_tasks_or_connections_behind(signed_in: Proxy) -> None:
    upstream = signed_in.app[UPSTREAM]
    await warm_up(signed_in)
    baseline_tasks = len(asyncio.all_tasks())
    for _ in range(5):
        async with signed_in.client.get(
            f"{signed_in.url}/api/_test/download", params={"bytes": str(1 << 30)}
        ) as response:
            await response.content.readexactly(1 << 16)
            response.close()
    await asyncio.wait_for(signed_in.zoom.emulator.wait_for_counter("downloads_aborted", 5), 10)
    await warm_up(signed_in)
    gc.collect()
    assert len(asyncio.all_tasks()) <= baseline_tasks
    assert upstream.in_use == 0


async def warm_up(proxy: Proxy) -> None:
    async with proxy.client.get(f"{proxy.url}/api/users/me") as response:
        assert response.status == 200
