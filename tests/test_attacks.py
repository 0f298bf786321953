"""The attacker's test suite: open redirects, smuggling, confinement, hostile input.

Each test is written from the attacker's side against the running proxy, and names
the peer advisory it mirrors where there is one.
"""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import aiohttp
import pytest
from yarl import URL

from tests.helpers import redirect_corpus
from tests.helpers.proxies import Proxy, ProxyFactory, fetch_with_cookie
from tests.helpers.raw_http import raw_request

OWN_PAYLOADS = [
    "/\\evil.example",
    "/\t/evil.example",
    "/ /evil.example",
    "/%09/evil.example",
    "/%2f%2fevil.example",
    "/%5cevil.example",
    "/%5c%5cevil.example",
    "///evil.example",
    "/./\\evil.example",
    "/.\\evil.example",
    "//user@evil.example",
    "/@evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,x",
    "http://evil.example",
    "https:evil.example",
    "\t//evil.example",
    " //evil.example",
    "\\/evil.example",
    "\uff0f\uff0fevil.example",  # fullwidth solidus
    "/%0d%0aSet-Cookie:x=1",
    "/\r\nSet-Cookie: x=1",
    "//evil.example%2f..",
    "/..//evil.example",
    "/%2e%2e//evil.example",
    "/" + "a" * 5000,
]


def open_redirect_payloads() -> list[str]:
    """The generated corpus, plus the shared file's payloads when that optional file exists."""
    return redirect_corpus.payloads_with_shared()


def raw_query_value(payload: str) -> str:
    """The payload pasted into a URL as-is, escaping only what cannot travel in one."""
    return "".join(
        c if 0x21 <= ord(c) < 0x7F and c not in "#&+" else quote(c, safe="") for c in payload
    )


async def post_login_location(proxy: Proxy, next_query: str) -> str:
    """Sign in with ``?next=<next_query>`` (already encoded); where the callback sends us."""
    client = proxy.new_client()
    login = URL(f"{proxy.url}/auth/login?next={next_query}", encoded=True)
    async with client.get(login, allow_redirects=False) as response:
        authorize = response.headers["Location"]
    async with client.get(authorize, allow_redirects=False) as response:
        callback = response.headers["Location"]
    async with client.get(callback, allow_redirects=False) as response:
        assert response.status == 302
        location: str = response.headers["Location"]
    await client.close()
    return location


def assert_stays_on(proxy: Proxy, location: str) -> None:
    assert "\r" not in location
    assert "\n" not in location
    for browser_view in (location, location.replace("\\", "/").replace("\t", "")):
        target = urlsplit(urljoin(f"{proxy.url}/", browser_view))
        assert (target.scheme, target.netloc) == ("http", urlsplit(proxy.url).netloc), location


def test_the_redirect_corpus_outnumbers_the_shared_file_and_has_every_family() -> None:
    shared = redirect_corpus.shared_payloads()  # empty when the optional file is absent
    corpus = redirect_corpus.payloads()
    assert len(corpus) >= max(redirect_corpus.SHARED_FILE_SIZE, len(shared))
    used = set(open_redirect_payloads())
    for name, family in redirect_corpus.families().items():
        assert family, name
        assert set(family) <= used, name


async def test_no_known_open_redirect_leaves_the_proxy(proxy: Proxy) -> None:
    """oauth2-proxy's open-redirect CVEs: `/\\evil.com`, `/%09/evil.com`, `/./\\evil.com`."""
    # The proxy reads nothing but the decoded `next`, so a spelling that decodes to a
    # value already tried is the same request to it and is not sent again.
    tried: set[str | None] = set()
    for payload in open_redirect_payloads() + OWN_PAYLOADS:
        for encoded in (quote(payload, safe=""), raw_query_value(payload)):
            received = URL(f"/auth/login?next={encoded}", encoded=True).query.get("next")
            if received in tried:
                continue
            tried.add(received)
            location = await post_login_location(proxy, encoded)
            assert_stays_on(proxy, location)


async def test_a_local_next_survives_sign_in(proxy: Proxy) -> None:
    location = await post_login_location(proxy, quote("/api/users/me?page_size=5", safe=""))
    assert location == "/api/users/me?page_size=5"


async def test_forwarded_host_and_proto_never_change_the_redirect_uri(proxy: Proxy) -> None:
    async with proxy.client.get(
        f"{proxy.url}/auth/login",
        headers={
            "Host": "evil.example",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
            "Forwarded": "host=evil.example;proto=https",
        },
        allow_redirects=False,
    ) as response:
        query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["redirect_uri"] == [f"{proxy.url}/auth/callback"]


async def test_forwarded_uri_headers_cannot_skip_authentication(proxy: Proxy) -> None:
    """oauth2-proxy's skip-auth bypasses through `X-Forwarded-Uri` and query strings."""
    for headers, path in [
        ({"X-Forwarded-Uri": "/healthz", "X-Original-URL": "/healthz"}, "/api/users/me"),
        ({}, "/api/users/me?/healthz"),
        ({}, "/api/users/me?x=/../../healthz"),
    ]:
        async with proxy.client.get(f"{proxy.url}{path}", headers=headers) as response:
            assert response.status == 401
    assert proxy.zoom.emulator.api_requests == []


@pytest.mark.both_transports
async def test_underscore_and_forwarded_headers_are_not_smuggled_to_zoom(signed_in: Proxy) -> None:
    """oauth2-proxy's `X-Auth_Request_User` smuggling via underscores."""
    async with signed_in.client.get(
        f"{signed_in.url}/api/_test/echo/h",
        headers={
            "X-Auth_Request_User": "admin",
            "Authorization_": "Bearer stolen",
            "X-Forwarded-For": "10.0.0.1",
            "X-Forwarded-Host": "evil.example",
            "X-Real-IP": "10.0.0.1",
            "Forwarded": "for=10.0.0.1",
            "Connection": "X-Secret-Hop",
            "X-Secret-Hop": "1",
        },
    ) as response:
        names = {name.lower() for name, _ in (await response.json())["headers"]}
    smuggled = {
        "x-auth_request_user",
        "authorization_",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-real-ip",
        "forwarded",
        "x-secret-hop",
    }
    assert names.isdisjoint(smuggled)


@pytest.mark.both_transports
async def test_forwarded_headers_pass_when_trusted(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(trust_forwarded_headers=True)
    await proxy.sign_in()
    async with proxy.client.get(
        f"{proxy.url}/api/_test/echo/h", headers={"X-Forwarded-For": "10.0.0.1"}
    ) as response:
        assert ["X-Forwarded-For", "10.0.0.1"] in (await response.json())["headers"]


@pytest.mark.both_transports
async def test_none_of_the_proxys_cookie_chunks_reach_zoom(signed_in: Proxy) -> None:
    """Duende BFF forwarded its own cookies upstream."""
    emulator = signed_in.zoom.emulator
    emulator.token_length = 2000
    emulator.expire_access_tokens()
    async with signed_in.client.get(f"{signed_in.url}/api/users/me") as response:
        assert response.status == 200
    assert len(signed_in.session_cookies()) >= 2
    async with signed_in.client.get(
        f"{signed_in.url}/api/_test/echo/c", headers={"Cookie": "other=kept"}
    ) as response:
        headers = (await response.json())["headers"]
    assert [v for k, v in headers if k.lower() == "cookie"] == []


@pytest.mark.both_transports
@pytest.mark.parametrize(
    "path",
    [
        "/api/users/%2e%2e/%2e%2e/oauth/token",
        "/api/users/%2E%2E/x",
        "/api/users/..%2f..%2fx",
        "/api/users/..;/x",
        "/api/..;a=b/x",
        "/api/%2F%2Fevil.example/x",
        "/api//evil.example/x",
        "/api/%5c%5cevil.example/x",
        "/api/users/me%00",
        "/api/users/%zz",
        "/api/users/%2",
    ],
)
async def test_nothing_escapes_the_api_base_path(signed_in: Proxy, path: str) -> None:
    before = len(signed_in.zoom.emulator.api_requests)
    answer = await raw_request(
        signed_in.url,
        f"GET {path} HTTP/1.1\r\nHost: x\r\nCookie: {signed_in.cookie_header()}\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 400")
    assert len(signed_in.zoom.emulator.api_requests) == before


@pytest.mark.both_transports
async def test_a_fragment_in_the_request_target_is_400_not_a_truncated_query(
    signed_in: Proxy,
) -> None:
    before = len(signed_in.zoom.emulator.api_requests)
    answer = await raw_request(
        signed_in.url,
        f"GET /api/users/me?a=1#frag&b=2 HTTP/1.1\r\nHost: x\r\n"
        f"Cookie: {signed_in.cookie_header()}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 400")
    assert len(signed_in.zoom.emulator.api_requests) == before


async def test_the_session_cookie_shows_no_token_in_clear_or_base64(signed_in: Proxy) -> None:
    value = "".join(signed_in.session_cookies().values())
    decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    for token in signed_in.zoom.emulator.issued_tokens():
        assert token not in value
        assert token.encode() not in decoded
        assert token[:40].encode() not in decoded


async def test_a_get_can_never_sign_a_user_out(signed_in: Proxy) -> None:
    for method in ("GET", "HEAD"):
        async with signed_in.client.request(method, f"{signed_in.url}/auth/logout") as response:
            assert response.status == 405
    assert signed_in.zoom.emulator.counters["revoke"] == 0
    async with signed_in.client.get(f"{signed_in.url}/auth/me") as response:
        assert response.status == 200


HOSTILE_REQUESTS = [
    b"GET /api/users/me HTTP/1.0\r\n\r\n",
    b"BREW /api/users/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"FOO / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /api/users/%zz%%%GG HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /api/users/me?" + b"q=" + b"x" * (1024 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 70000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + b"zoom_proxy_1=a; " * 3000 + b"\r\n\r\n",
    b"GET /auth/callback?code=%ff%fe&state=%01 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /auth/callback?code=a&code=b&state=&state=x&error= HTTP/1.1\r\n"
    b"Host: x\r\nConnection: close\r\n\r\n",
    b"GET /auth/callback?code=x&state=%ff%fe%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
    b"GET /api/users/me HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /api/users/me HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
]


@pytest.mark.both_transports
@pytest.mark.parametrize("request_bytes", HOSTILE_REQUESTS, ids=lambda b: repr(b[:30]))
async def test_hostile_input_gets_a_4xx_and_the_proxy_lives_on(
    proxy: Proxy, request_bytes: bytes
) -> None:
    # The proxy must answer an oversized request from its first 64 KiB. Sending the rest
    # would race its close: unread bytes turn the close into a reset that eats the answer.
    answer = await asyncio.wait_for(raw_request(proxy.url, request_bytes[:65536]), timeout=10)
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]
    assert b"Traceback" not in answer
    async with aiohttp.ClientSession() as client, client.get(f"{proxy.url}/healthz") as health:
        assert health.status == 200


@pytest.mark.both_transports
@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "MKCOL", "LOCK", "PURGE"])
async def test_methods_zooms_api_does_not_use_are_405_and_never_reach_zoom(
    signed_in: Proxy, method: str
) -> None:
    """TRACE would have Zoom echo the bearer token back to the client."""
    before = len(signed_in.zoom.emulator.api_requests)
    async with signed_in.client.request(method, f"{signed_in.url}/api/users/me") as response:
        assert response.status == 405
        assert "PATCH" in response.headers["Allow"]
    assert len(signed_in.zoom.emulator.api_requests) == before


@pytest.mark.both_transports
async def test_a_copied_cookie_is_dead_after_logout(signed_in: Proxy) -> None:
    copied = signed_in.cookie_header()
    async with signed_in.client.post(f"{signed_in.url}/auth/logout") as response:
        assert response.status == 204
    response, _ = await fetch_with_cookie(f"{signed_in.url}/api/users/me", copied)
    assert response.status == 401
