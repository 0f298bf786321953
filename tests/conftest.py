"""Fixtures: the Zoom emulator and the proxy, both real servers on loopback sockets."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from cryptography.fernet import Fernet
from yarl import URL

from proxy import serve
from proxy.app import create_app
from proxy.config import Settings, settings_from_mapping
from proxy.emulator import ZoomEmulator
from tests import redisserver

SESSION_KEY = Fernet.generate_key().decode()


@dataclass
class Zoom:
    """The emulator's state, and where it listens."""

    emulator: ZoomEmulator
    base_url: str


@dataclass
class Proxy:
    """A running proxy: its settings, URL, and a browser-like client with a cookie jar."""

    settings: Settings
    url: str
    zoom: Zoom
    app: web.Application
    client: aiohttp.ClientSession
    runner: web.AppRunner
    _extra: list[aiohttp.ClientSession] = field(default_factory=list)

    def new_client(self) -> aiohttp.ClientSession:
        """Another browser: its own, empty cookie jar."""
        client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self._extra.append(client)
        return client

    async def sign_in(
        self, client: aiohttp.ClientSession | None = None, next_path: str = "/"
    ) -> None:
        """Walk the whole sign-in flow the way a browser would, following redirects."""
        async with (client or self.client).get(
            f"{self.url}/auth/login", params={"next": next_path}
        ) as response:
            assert response.status == 200, await response.text()
            assert response.url.path == URL(next_path).path

    def session_cookies(self, client: aiohttp.ClientSession | None = None) -> dict[str, str]:
        name = self.settings.session.cookie_name
        jar = (client or self.client).cookie_jar
        return {
            c.key: c.value
            for c in jar
            if c.key == name or (c.key.startswith(f"{name}_") and c.key[len(name) + 1 :].isdigit())
        }

    def cookie_header(self, client: aiohttp.ClientSession | None = None) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.session_cookies(client).items())


async def fetch_with_cookie(url: str, cookie: str) -> tuple[aiohttp.ClientResponse, str]:
    """GET ``url`` sending exactly ``cookie``, as a client without a cookie jar."""
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client,
        client.get(url, headers={"Cookie": cookie}) as response,
    ):
        return response, await response.text()


def proxy_config(zoom_base: str, port: int, **sections: Any) -> dict[str, Any]:
    """A config mapping pointing at the emulator; ``sections`` override per top-level key."""
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "public_url": f"http://127.0.0.1:{port}",
        "zoom": {
            "client_id": "emulator-client-id",
            "client_secret": "emulator-client-secret",
            "authorize_url": f"{zoom_base}/oauth/authorize",
            "token_url": f"{zoom_base}/oauth/token",
            "revoke_url": f"{zoom_base}/oauth/revoke",
            "api_base_url": f"{zoom_base}/v2",
        },
        "session": {"secret_keys": [SESSION_KEY], "cookie_secure": False},
        "upstream": {"connect_timeout": 2, "timeout": 2},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(name), dict):
            config[name] = {**config[name], **value}
        else:
            config[name] = value
    return config


@pytest.fixture
async def zoom() -> AsyncIterator[Zoom]:
    emulator = ZoomEmulator()
    runner = await serve.start(emulator.app(), host="127.0.0.1", port=0, answer_half_closed=False)
    port = runner.addresses[0][1]
    yield Zoom(emulator=emulator, base_url=f"http://127.0.0.1:{port}")
    emulator.token_endpoint_mode = "ok"
    await runner.cleanup()


ProxyFactory = Callable[..., Awaitable[Proxy]]


@pytest.fixture
async def make_proxy(zoom: Zoom) -> AsyncIterator[ProxyFactory]:
    """Start a proxy in front of the emulator; keyword arguments override config sections."""
    started: list[tuple[web.AppRunner, Proxy]] = []

    async def start(**sections: Any) -> Proxy:
        port = unused_port()
        settings = settings_from_mapping(proxy_config(zoom.base_url, port, **sections), environ={})
        app = create_app(settings)
        runner = await serve.start(app, host="127.0.0.1", port=port)
        proxy = Proxy(
            settings=settings,
            url=settings.public_url,
            zoom=zoom,
            app=app,
            client=aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)),
            runner=runner,
        )
        started.append((runner, proxy))
        return proxy

    yield start
    for runner, proxy in started:
        for client in [proxy.client, *proxy._extra]:
            await client.close()
        await runner.cleanup()


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
