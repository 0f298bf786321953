"""Session cookies through the running proxy: bad cookies, big cookies, key rotation."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from cryptography.fernet import Fernet

from tests.helpers.proxies import SESSION_KEY, Proxy, ProxyFactory, fetch_with_cookie
from tests.helpers.raw_http import raw_request

#: Every proxy here runs on both transports: the front's lane, and aiohttp's server.
pytestmark = pytest.mark.both_transports


async def status_with_cookie(proxy: Proxy, cookie: str) -> tuple[int, str]:
    response, body = await fetch_with_cookie(f"{proxy.url}/api/users/me", cookie)
    return response.status, body


@pytest.mark.parametrize(
    "cookie",
    [
        "zoom_proxy=garbage",
        "zoom_proxy=",
        'zoom_proxy="quoted; junk"',
        "zoom_proxy=" + "A" * 3000,
        "zoom_proxy=gAAAAA" + "x" * 100,
        "zoom_proxy=a; zoom_proxy_1=b; zoom_proxy_2=c",
        "; ".join(f"zoom_proxy_{i}=x" for i in range(1, 200)),
    ],
)
async def test_garbage_session_cookies_are_signed_out_not_errors(proxy: Proxy, cookie: str) -> None:
    status, body = await status_with_cookie(proxy, cookie)
    assert status == 401
    assert '"unauthenticated"' in body


async def test_a_tampered_session_cookie_is_signed_out(signed_in: Proxy) -> None:
    name, value = signed_in.cookie_header().split("=", 1)
    tampered = value[:-10] + ("A" if value[-10] != "A" else "B") + value[-9:]
    assert (await status_with_cookie(signed_in, f"{name}={tampered}"))[0] == 401


async def test_a_truncated_session_cookie_is_signed_out(signed_in: Proxy) -> None:
    assert (await status_with_cookie(signed_in, signed_in.cookie_header()[:-20]))[0] == 401


async def test_a_session_from_a_retired_key_still_works_while_the_key_is_listed(
    make_proxy: ProxyFactory,
) -> None:
    old = await make_proxy()
    await old.sign_in()
    rotated = await make_proxy(
        session={"secret_keys": [Fernet.generate_key().decode(), SESSION_KEY]}
    )
    assert (await status_with_cookie(rotated, old.cookie_header()))[0] == 200


async def test_a_session_from_an_unlisted_key_is_signed_out(make_proxy: ProxyFactory) -> None:
    old = await make_proxy()
    await old.sign_in()
    other = await make_proxy(session={"secret_keys": [Fernet.generate_key().decode()]})
    assert (await status_with_cookie(other, old.cookie_header()))[0] == 401


async def test_long_tokens_are_split_over_cookies_and_still_work(signed_in: Proxy) -> None:
    emulator = signed_in.zoom.emulator
    emulator.token_length = 2000
    emulator.expire_access_tokens()
    async with signed_in.client.get(f"{signed_in.url}/api/users/me") as response:
        assert response.status == 200
        headers = response.headers.getall("Set-Cookie")
    assert len(headers) >= 2
    assert all(len(header.encode()) <= 4096 for header in headers)
    assert len(signed_in.session_cookies()) >= 2
    async with signed_in.client.get(f"{signed_in.url}/api/users/me") as response:
        assert response.status == 200


async def test_a_cookie_header_of_16_kib_is_accepted(signed_in: Proxy) -> None:
    padding = "; ".join(f"other{i}={'p' * 1000}" for i in range(15))
    cookie = f"{padding}; {signed_in.cookie_header()}"
    assert len(cookie) >= 16 * 1024
    assert (await status_with_cookie(signed_in, cookie))[0] == 200


async def test_an_oversized_cookie_header_is_refused_without_echoing_it(proxy: Proxy) -> None:
    secret = "s3cr3tcookie" * 6000
    answer = await raw_request(
        proxy.url,
        f"GET /api/users/me HTTP/1.1\r\nHost: x\r\nCookie: zoom_proxy={secret}\r\n\r\n".encode(),
    )
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500
    assert b"s3cr3tcookie" not in answer
    async with aiohttp.ClientSession() as client, client.get(f"{proxy.url}/healthz") as response:
        assert response.status == 200


async def test_the_session_cookie_is_secure_when_configured(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(session={"cookie_secure": True})
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.get(f"{proxy.url}/auth/login", allow_redirects=False) as response:
            assert response.cookies["zoom_proxy_login"]["secure"] is True
        # aiohttp's jar, like a browser, keeps Secure cookies off plain http, so follow by hand.
        location = response.headers["Location"]
        async with client.get(location, allow_redirects=False) as zoom_answer:
            callback = zoom_answer.headers["Location"]
        login_cookie = response.cookies["zoom_proxy_login"]
        async with client.get(
            callback,
            headers={"Cookie": f"zoom_proxy_login={login_cookie.value}"},
            allow_redirects=False,
        ) as signed_in:
            session = signed_in.cookies["zoom_proxy"]
    assert session["secure"] is True
    assert session["httponly"] is True
    assert session["samesite"] == "Lax"
    assert session["path"] == "/"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by .ci/run")
async def test_curl_with_the_cookiejar_keeps_working_across_refreshes(
    signed_in: Proxy, tmp_path: Path
) -> None:
    async with signed_in.client.get(f"{signed_in.url}/auth/cookiejar") as response:
        jar = tmp_path / "jar.txt"
        jar.write_text(await response.text())
    emulator = signed_in.zoom.emulator

    async def curl_me() -> str:
        process = await asyncio.create_subprocess_exec(
            "curl",
            "-sS",
            "-f",
            "-b",
            str(jar),
            "-c",
            str(jar),
            f"{signed_in.url}/api/users/me",
            stdout=subprocess.PIPE,
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        return out.decode()

    assert emulator.user.id in await curl_me()
    for _ in range(3):
        emulator.expire_access_tokens()
        assert emulator.user.id in await curl_me()
    assert emulator.counters["refresh_ok"] == 3
    assert emulator.counters["refresh_rejected"] == 0
