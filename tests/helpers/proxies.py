"""The Zoom emulator and proxies running in the test's own process, on loopback sockets:
their config, starting one, signing in, and asking with exactly one cookie.

The fixtures in ``tests/conftest.py`` (``zoom``, ``make_proxy``, ``proxy``,
``signed_in``) are built from these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import unused_port
from cryptography.fernet import Fernet
from yarl import URL

from proxy import serve
from proxy.app import create_app
from proxy.config import Settings, settings_from_mapping
from proxy.emulator import ZoomEmulator
from proxy.session.store import RedisSessions
from proxy.web.keys import SESSIONS

#: The session key of every proxy :func:`proxy_config` configures.
SESSION_KEY = Fernet.generate_key().decode()
#: An access token lifetime inside the default ``refresh.margin`` of 60 s.
SHORT_LIFETIME = 30


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

    async def close(self) -> None:
        """Close its browsers, then stop it."""
        for client in [self.client, *self._extra]:
            await client.close()
        await self.runner.cleanup()


#: ``make_proxy``: starts a proxy; keyword arguments override config sections.
ProxyFactory = Callable[..., Awaitable[Proxy]]


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


#: The two transports a request can arrive on: the front's lane, or aiohttp's server.
TRANSPORTS = ("front", "aiohttp")


async def start_proxy(zoom: Zoom, /, *, transport: str = "front", **sections: Any) -> Proxy:
    """Start a proxy in front of the emulator on a free port; stop it with :meth:`Proxy.close`.
    ``transport``: "aiohttp" has aiohttp's server answer every request."""
    port = unused_port()
    settings = settings_from_mapping(proxy_config(zoom.base_url, port, **sections), environ={})
    app = create_app(settings)
    runner = await serve.start(app, host="127.0.0.1", port=port, lane=transport == "front")
    return Proxy(
        settings=settings,
        url=settings.public_url,
        zoom=zoom,
        app=app,
        client=aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)),
        runner=runner,
    )


# --- signing in --------------------------------------------------------------------------


async def signed_in_cookie(proxy: Proxy) -> str:
    """Sign in with a client that keeps no connection open; its session's Cookie header."""
    client = aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(force_close=True),
    )
    async with client:
        await proxy.sign_in(client)
        return proxy.cookie_header(client)


async def sign_in_with_expiring_token(proxy: Proxy) -> str:
    """Sign in with an access token about to expire; later tokens live the usual hour."""
    emulator = proxy.zoom.emulator
    emulator.token_lifetime = SHORT_LIFETIME
    await proxy.sign_in()
    emulator.token_lifetime = 3599
    return proxy.cookie_header()


# --- asking with exactly one cookie ------------------------------------------------------


async def fetch_with_cookie(url: str, cookie: str) -> tuple[aiohttp.ClientResponse, str]:
    """GET ``url`` sending exactly ``cookie``, as a client without a cookie jar."""
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client,
        client.get(url, headers={"Cookie": cookie}) as response,
    ):
        return response, await response.text()


async def get_me(proxy: Proxy, cookie: str) -> aiohttp.ClientResponse:
    """``GET /api/users/me`` with exactly this cookie."""
    response, _ = await fetch_with_cookie(f"{proxy.url}/api/users/me", cookie)
    return response


def set_session_cookie(response: aiohttp.ClientResponse) -> str | None:
    """The session cookie ``response`` sets, if it sets one."""
    morsel = response.cookies.get("zoom_proxy")
    return None if morsel is None else morsel.value


async def replicas(
    make_proxy: ProxyFactory, redis: dict[str, str], *, store: str = "cookie", **sections: Any
) -> tuple[Proxy, Proxy]:
    """Two proxies with the same keys and the same Redis."""
    redis = {**redis, **sections.pop("redis", {})}
    session = {"store": store, **sections.pop("session", {})}
    a = await make_proxy(session=session, redis=redis, **sections)
    b = await make_proxy(session=session, redis=redis, **sections)
    return a, b


async def following(*proxies: Proxy) -> None:
    """Until each ``store: redis`` proxy follows Redis's changes to its sessions, so that
    what it reads from then on it holds."""
    for proxy in proxies:
        sessions = proxy.app[SESSIONS]
        assert isinstance(sessions, RedisSessions)
        await sessions.following()
