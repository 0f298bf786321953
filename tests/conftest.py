"""Fixtures: the Zoom emulator and the proxy, both real servers on loopback sockets.

Only fixtures live here; what they are built from, and everything else the tests share,
is in ``tests/helpers/``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from proxy import serve
from proxy.emulator import ZoomEmulator
from tests.helpers import redisserver
from tests.helpers.proxies import TRANSPORTS, Proxy, ProxyFactory, Zoom, start_proxy


@pytest.fixture
async def zoom() -> AsyncIterator[Zoom]:
    emulator = ZoomEmulator()
    runner = await serve.start(emulator.app(), host="127.0.0.1", port=0, answer_half_closed=False)
    port = runner.addresses[0][1]
    yield Zoom(emulator=emulator, base_url=f"http://127.0.0.1:{port}")
    emulator.token_endpoint_mode = "ok"
    await runner.cleanup()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``both_transports`` runs once per transport, as uvicorn's suite runs
    over its two HTTP protocols."""
    if "transport" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_transports"
    ):
        metafunc.parametrize("transport", TRANSPORTS, indirect=True)


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """The transport the proxy's requests arrive on: the front's lane (the default), or
    aiohttp's server."""
    return str(getattr(request, "param", "front"))


@pytest.fixture
async def make_proxy(zoom: Zoom, transport: str) -> AsyncIterator[ProxyFactory]:
    """Start a proxy in front of the emulator; keyword arguments override config sections."""
    started: list[Proxy] = []

    async def start(**sections: Any) -> Proxy:
        proxy = await start_proxy(zoom, transport=transport, **sections)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        await proxy.close()


@pytest.fixture
async def proxy(make_proxy: ProxyFactory) -> Proxy:
    return await make_proxy()


@pytest.fixture
async def signed_in(proxy: Proxy) -> Proxy:
    await proxy.sign_in()
    return proxy


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture(scope="session")
def redis_server() -> Iterator[redisserver.RedisServer]:
    """One real redis-server for the whole run; tests keep apart by key prefix."""
    if not redisserver.available():
        pytest.skip(
            f"{redisserver.REDIS_SERVER} is missing: install Debian's redis-server package"
            " (.ci/run does)"
        )
    server = redisserver.RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_section(redis_server: redisserver.RedisServer) -> dict[str, str]:
    """A ``redis`` config section on the shared server, with a key prefix of this test's own."""
    return {"url": redis_server.url, "key_prefix": f"test-{secrets.token_hex(4)}:"}
