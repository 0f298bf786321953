"""Replicas as real ``python -m proxy`` processes sharing one Redis, as in production."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import unused_port

from tests.helpers.processes import TIMEOUT, first_line, running
from tests.helpers.proxies import Zoom, fetch_with_cookie, proxy_config


@asynccontextmanager
async def replica_processes(
    tmp_path: Path, zoom: Zoom, count: int, *args: str, **sections: Any
) -> AsyncIterator[list[str]]:
    """``count`` proxy processes with one config but their own ports; yields their URLs.

    On the way out each gets SIGTERM (a parent passes it on to its workers) and must
    exit 0: the Redis pool closes cleanly.
    """
    urls, processes = [], []
    async with AsyncExitStack() as stack:
        for index in range(count):
            port = unused_port()
            config = tmp_path / f"replica-{index}.yaml"
            config.write_text(yaml.safe_dump(proxy_config(zoom.base_url, port, **sections)))
            process = await stack.enter_async_context(
                running("--config", str(config), *args, stderr_path=tmp_path / f"{index}.log")
            )
            assert "listening" in await first_line(process)
            urls.append(f"http://127.0.0.1:{port}")
            processes.append(process)
        try:
            yield urls
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            codes = [await asyncio.wait_for(p.wait(), TIMEOUT) for p in processes]
        assert codes == [0] * count


async def sign_in(url: str) -> str:
    """Sign in through the proxy at ``url``; the ``Cookie`` header of the session."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(f"{url}/auth/login") as response:
            assert response.status == 200
        return "; ".join(f"{c.key}={c.value}" for c in jar if c.key.startswith("zoom_proxy"))


async def statuses(urls: list[str], cookie: str, count: int) -> list[int]:
    """``count`` concurrent ``GET /api/users/me``, round-robin over ``urls``."""
    answers = await asyncio.gather(
        *(fetch_with_cookie(f"{urls[i % len(urls)]}/api/users/me", cookie) for i in range(count))
    )
    return [response.status for response, _ in answers]


@pytest.mark.parametrize("store", ["cookie", "redis"])
async def test_two_proxy_processes_refresh_once_for_50_concurrent_requests(
    tmp_path: Path, zoom: Zoom, redis_section: dict[str, str], store: str
) -> None:
    async with replica_processes(
        tmp_path, zoom, 2, session={"store": store}, redis=redis_section
    ) as urls:
        cookie = await sign_in(urls[0])
        zoom.emulator.expire_access_tokens()
        assert await statuses(urls, cookie, 50) == [200] * 50
    assert zoom.emulator.counters["refresh_ok"] == 1
    assert zoom.emulator.counters["refresh_rejected"] == 0


async def test_forked_workers_share_one_refresh_through_redis(
    tmp_path: Path, zoom: Zoom, redis_section: dict[str, str]
) -> None:
    """``--workers 2``: two processes behind one port, each with its own pool."""
    async with replica_processes(tmp_path, zoom, 1, "--workers", "2", redis=redis_section) as urls:
        cookie = await sign_in(urls[0])
        zoom.emulator.expire_access_tokens()
        assert await statuses(urls, cookie, 50) == [200] * 50
    assert zoom.emulator.counters["refresh_ok"] == 1
    assert zoom.emulator.counters["refresh_rejected"] == 0
