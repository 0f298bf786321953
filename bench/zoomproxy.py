"""zoom-proxy as a real process (``python -m proxy --config ...``), and signing in through it."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from cryptography.fernet import Fernet

from .procs import Child, Supervisor, free_port

REPO = Path(__file__).resolve().parent.parent
COOKIE_NAME = "zoom_proxy"


@dataclass(frozen=True)
class ZoomEndpoints:
    """Where the emulator (for OAuth) and the API (the upstream) listen."""

    oauth_base: str
    api_base: str
    client_id: str
    client_secret: str


@dataclass
class ZoomProxy:
    child: Child
    port: int
    session_key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def config(
    port: int, endpoints: ZoomEndpoints, session_key: str, **overrides: dict[str, Any]
) -> dict[str, Any]:
    """A config for the benchmark: loopback, plain http, warnings only (no access log)."""
    settings: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port, "shutdown_timeout": 1},
        "public_url": f"http://127.0.0.1:{port}",
        "zoom": {
            "client_id": endpoints.client_id,
            "client_secret": endpoints.client_secret,
            "authorize_url": f"{endpoints.oauth_base}/oauth/authorize",
            "token_url": f"{endpoints.oauth_base}/oauth/token",
            "revoke_url": f"{endpoints.oauth_base}/oauth/revoke",
            "api_base_url": endpoints.api_base,
        },
        "session": {"secret_keys": [session_key], "cookie_secure": False},
        "logging": {"level": "warning"},
    }
    for section, values in overrides.items():
        settings[section] = {**settings.get(section, {}), **values}
    return settings


async def supports_workers() -> bool:
    """Whether this zoom-proxy has ``--workers N``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "--help",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=REPO,
    )
    stdout, _ = await process.communicate()
    return b"--workers" in stdout


async def start(
    supervisor: Supervisor,
    name: str,
    endpoints: ZoomEndpoints,
    temp: Path,
    *,
    cores: str | None,
    workers: int | None = None,
    session_key: str | None = None,
    repo: Path = REPO,
    wrapper: Sequence[str] = (),
    **overrides: dict[str, Any],
) -> ZoomProxy:
    """Start zoom-proxy (from the checkout ``repo``, under ``wrapper`` if given: valgrind,
    say) on a free port and wait until ``/healthz`` answers."""
    port = free_port()
    key = session_key or Fernet.generate_key().decode()
    config_path = temp / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config(port, endpoints, key, **overrides)))
    command = [*wrapper, sys.executable, "-m", "proxy", "--config", str(config_path)]
    if workers is not None:
        command += ["--workers", str(workers)]
    child = await supervisor.start(
        name, command, cores=cores, cwd=repo, env={"PYTHONUNBUFFERED": "1"}
    )
    proxy = ZoomProxy(child, port, key)
    # Under valgrind, the imports alone take a minute.
    await wait_until_healthy(proxy, patience=300.0 if wrapper else 20.0)
    return proxy


async def wait_until_healthy(proxy: ZoomProxy, patience: float = 20.0) -> None:
    deadline = time.monotonic() + patience
    async with aiohttp.ClientSession() as client:
        while True:
            if proxy.child.process.returncode is not None:
                raise RuntimeError(
                    f"zoom-proxy exited with status {proxy.child.process.returncode}:\n"
                    + proxy.child.log_tail()
                )
            try:
                async with client.get(f"{proxy.url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"zoom-proxy did not become healthy:\n{proxy.child.log_tail()}")
            await asyncio.sleep(0.1)


def session_cookies(client: aiohttp.ClientSession) -> dict[str, str]:
    """The session cookie(s) in ``client``'s jar: ``zoom_proxy`` and any ``zoom_proxy_<n>``."""
    found = {}
    for cookie in client.cookie_jar:
        suffix = cookie.key.removeprefix(f"{COOKIE_NAME}_")
        if cookie.key == COOKIE_NAME or (suffix != cookie.key and suffix.isdigit()):
            found[cookie.key] = cookie.value
    return found


async def sign_in(client: aiohttp.ClientSession, proxy_url: str) -> None:
    """Walk /auth/login, the emulator's (auto-approving) authorize page, and the callback."""
    async with client.get(f"{proxy_url}/auth/login", params={"next": "/auth/me"}) as response:
        body = await response.text()
        if response.status != 200 or response.url.path != "/auth/me":
            raise RuntimeError(f"sign-in failed: {response.status} at {response.url}: {body}")
    if not session_cookies(client):
        raise RuntimeError("sign-in set no session cookie")


async def signed_in_cookie(proxy_url: str) -> str:
    """Sign in once and return the ``Cookie`` header value that carries the session."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as client:
        await sign_in(client, proxy_url)
        return "; ".join(f"{k}={v}" for k, v in session_cookies(client).items())
