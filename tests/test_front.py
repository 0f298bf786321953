"""The connection's first reader (proxy/http/front.py) and its lane (proxy/forward/lane.py).

Plain signed-in ``/api`` calls are answered without aiohttp's server; at the first
request the lane declines, the connection goes to aiohttp for good. These tests speak
raw HTTP/1.1 over one connection, so that what matters here (pipelining, pieces,
hand-over points, framing) is exactly what the proxy sees.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import struct

import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from proxy.http import front
from proxy.observe.lifecycle import LIFECYCLE
from proxy.web.keys import UPSTREAM
from tests.helpers.proxies import Proxy, ProxyFactory, signed_in_cookie
from tests.helpers.raw_http import connection, read_answers, request


def aiohttp_connections(proxy: Proxy) -> int:
    """Connections aiohttp's server reads: those handed over, once the sign-in's are gone."""
    assert proxy.runner.server is not None
    return len(proxy.runner.server.connections)


@pytest.fixture
async def cookie(proxy: Proxy) -> str:
    return await signed_in_cookie(proxy)


@pytest.fixture
async def streaming(make_proxy: ProxyFactory) -> tuple[Proxy, str]:
    """A proxy that streams every body over 1,000 bytes (too large to keep and send
    again), and a signed-in cookie for it."""
    proxy = await make_proxy(upstream={"max_replay_body": 1000})
    return proxy, await signed_in_cookie(proxy)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_proxy_api_call_is_answered_without_aiohttps_server(
    proxy: Proxy,
    cookie: str,
) -> None:
    async with connection(proxy) as (reader, writer):
        writer.write(request("GET", "/api/users/me", cookie))
        [answer] = await read_answers(reader, 1)
        assert answer.status == 200
        assert answer.json()["id"] == proxy.zoom.emulator.user.id
        assert answer.header("X-Request-ID")
        assert answer.header("Vary") == "Origin"
        assert aiohttp_connections(proxy) == 0


async def test_the_connection_goes_to_aiohttp_at_the_first_request_the_lane_declines(
    proxy: Proxy,
    cookie: str,
) -> None:
    async with connection(proxy) as (reader, writer):
        writer.write(request("GET", "/api/_test/echo/first", cookie))
        [first] = await read_answers(reader, 1)
        assert aiohttp_connections(proxy) == 0
        writer.write(request("GET", "/auth/me", cookie))
        [me] = await read_answers(reader, 1)
        assert aiohttp_connections(proxy) == 1
        writer.write(request("GET", "/api/_test/echo/third", cookie))
        [third] = await read_answers(reader, 1)
    assert first.json()["raw_path"] == "/v2/_test/echo/first"
    assert me.status == 200
    assert "user" in me.json()
    assert third.json()["raw_path"] == "/v2/_test/echo/third"
    # One connection to the proxy all along, so Zoom saw one keep-alive client too.
    assert first.json()["peer_port"] == third.json()["peer_port"]


async def test_pipelined_requests_are_answered_in_order(proxy: Proxy, cookie: str) -> None:
    async with connection(proxy) as (reader, writer):
        writer.write(
            request("GET", "/api/_test/echo/one", cookie)
            + request("POST", "/api/_test/echo/two", cookie, body=b"second")
            + request("GET", "/healthz", cookie)
            + request("GET", "/api/_test/echo/four", cookie)
        )
        one, two, health, four = await read_answers(reader, 4)
    assert one.json()["raw_path"] == "/v2/_test/echo/one"
    assert two.json()["raw_path"] == "/v2/_test/echo/two"
    assert two.json()["body_sha256"] == sha256(b"second")
    assert health.json() == {"status": "ok"}
    assert four.json()["raw_path"] == "/v2/_test/echo/four"


async def test_a_head_sent_byte_by_byte_is_answered(proxy: Proxy, cookie: str) -> None:
    async with connection(proxy) as (reader, writer):
        for byte in request("GET", "/api/users/me", cookie):
            writer.write(bytes([byte]))
            await writer.drain()
        [answer] = await read_answers(reader, 1)
    assert answer.status == 200
    assert aiohttp_connections(proxy) == 0


async def test_a_body_sent_in_pieces_reaches_zoom_whole(proxy: Proxy, cookie: str) -> None:
    body = bytes(range(256)) * 20
    raw = request("PUT", "/api/_test/upload", cookie, body=body)
    async with connection(proxy) as (reader, writer):
        for start in range(0, len(raw), 1000):
            writer.write(raw[start : start + 1000])
            await writer.drain()
        [answer] = await read_answers(reader, 1)
    assert answer.json() == {"body_length": len(body), "body_sha256": sha256(body)}
    assert aiohttp_connections(proxy) == 0


async def test_an_upload_over_the_replay_limit_streams_to_zoom_whole(
    streaming: tuple[Proxy, str],
) -> None:
    proxy, cookie = streaming
    body = bytes(range(251)) * 12_000  # 3 MB: past every buffer on the way
    async with connection(proxy) as (reader, writer):
        writer.write(request("PUT", "/api/_test/upload", cookie, f"Content-Length: {len(body)}"))
        for start in range(0, len(body), 1 << 16):
            writer.write(body[start : start + (1 << 16)])
            await writer.drain()
        [answer] = await read_answers(reader, 1)
    assert answer.json() == {"body_length": len(body), "body_sha256": sha256(body)}
    assert aiohttp_connections(proxy) == 0


async def test_a_request_pipelined_behind_a_streamed_body_is_answered_next(
    streaming: tuple[Proxy, str],
) -> None:
    proxy, cookie = streaming
    body = b"s" * 5000
    async with connection(proxy) as (reader, writer):
        writer.write(
            request("PUT", "/api/_test/upload", cookie, body=body)
            + request("GET", "/api/_test/echo/after", cookie)
        )
        upload, after = await read_answers(reader, 2)
    assert upload.json()["body_sha256"] == sha256(body)
    assert after.json()["raw_path"] == "/v2/_test/echo/after"


async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    proxy: Proxy,
    cookie: str,
) -> None:
    body = b"c" * 1000
    head = request(
        "PUT",
        "/api/_test/upload",
        cookie,
        "Expect: 100-continue",
        f"Content-Length: {len(body)}",
    )
    async with connection(proxy) as (reader, writer):
        writer.write(head)
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        [answer] = await read_answers(reader, 1)
    assert answer.json()["body_sha256"] == sha256(body)


async def test_zooms_401_sends_a_replayable_body_to_zoom_once_more_not_twice(
    proxy: Proxy,
    cookie: str,
) -> None:
    emulator = proxy.zoom.emulator
    emulator.expire_access_tokens()
    body = b'{"topic": "replayed"}'
    async with connection(proxy) as (reader, writer):
        writer.write(request("PUT", "/api/_test/upload", cookie, body=body))
        [answer] = await read_answers(reader, 1)
    assert answer.json()["body_sha256"] == sha256(body)
    assert answer.header("Set-Cookie")
    assert emulator.counters["api_401"] == 1
    assert emulator.counters["refresh_ok"] == 1
    uploads = [r for r in emulator.api_requests if r.raw_path == "/v2/_test/upload"]
    assert [r.body_sha256 for r in uploads] == [sha256(body)] * 2


async def test_a_streamed_upload_zoom_refuses_gets_its_401_with_the_refreshed_cookie(
    streaming: tuple[Proxy, str],
) -> None:
    proxy, cookie = streaming
    proxy.zoom.emulator.expire_access_tokens()
    async with connection(proxy) as (reader, writer):
        writer.write(request("PUT", "/api/_test/upload", cookie, body=b"u" * 5000))
        [refused] = await read_answers(reader, 1)
        assert refused.status == 401
        assert refused.json()["code"] == 124
        refreshed = refused.header("Set-Cookie")
        assert refreshed is not None
        assert refreshed.startswith("zoom_proxy=")
        assert "HttpOnly" in refreshed
        assert "Path=/" in refreshed
        assert aiohttp_connections(proxy) == 0
        # The refreshed session works; the one before it is spent at Zoom.
        writer.write(request("GET", "/api/users/me", refreshed.split(";")[0]))
        [again] = await read_answers(reader, 1)
    assert again.status == 200
    assert proxy.zoom.emulator.counters["refresh_ok"] == 1


async def test_a_streamed_upload_whose_refresh_zoom_refuses_signs_the_user_out(
    streaming: tuple[Proxy, str],
) -> None:
    proxy, cookie = streaming
    proxy.zoom.emulator.expire_access_tokens()
    proxy.zoom.emulator.revoke_all()
    async with connection(proxy) as (reader, writer):
        writer.write(request("PUT", "/api/_test/upload", cookie, body=b"u" * 5000))
        [answer] = await read_answers(reader, 1)
    assert answer.status == 401
    assert answer.json()["error"] == "unauthenticated"
    assert answer.json()["login_url"].endswith("/auth/login?next=%2Fapi%2F_test%2Fupload")
    assert answer.header("WWW-Authenticate")
    cleared = answer.header("Set-Cookie")
    assert cleared is not None
    assert cleared.startswith('zoom_proxy=""')
    assert "Max-Age=0" in cleared


#: Framings only aiohttp may judge: were the lane to read them otherwise, the second
#: request inside would reach Zoom (request smuggling).
SMUGGLED = "GET /api/_test/echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
AMBIGUOUS_FRAMINGS = {
    "length and chunked": ["Content-Length: 4", "Transfer-Encoding: chunked"],
    "two lengths": ["Content-Length: 0", f"Content-Length: {len(SMUGGLED)}"],
    "chunked, obfuscated": ["Transfer-Encoding: xchunked"],
    "length, folded": ["Content-Length: 0", " 1"],
    "length with a space before the colon": ["Content-Length : 0"],
}


@pytest.mark.parametrize("headers", AMBIGUOUS_FRAMINGS.values(), ids=AMBIGUOUS_FRAMINGS.keys())
async def test_framing_only_aiohttp_may_judge_is_left_to_it(
    proxy: Proxy, cookie: str, headers: list[str]
) -> None:
    raw = request("POST", "/api/_test/echo/outer", cookie, *headers)
    async with connection(proxy) as (reader, writer):
        writer.write(raw + SMUGGLED.encode())
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    assert answer.split(b" ", 2)[1].startswith(b"4"), answer[:100]
    paths = [r.raw_path for r in proxy.zoom.emulator.api_requests]
    assert "/v2/_test/echo/smuggled" not in paths


async def test_http_1_0_is_left_to_aiohttp(proxy: Proxy, cookie: str) -> None:
    raw = request("GET", "/api/users/me", cookie, version="1.0")
    async with connection(proxy) as (reader, writer):
        writer.write(raw)
        answer = await asyncio.wait_for(reader.read(), timeout=10)  # closed after it
    assert answer.startswith(b"HTTP/1.0 200")  # aiohttp answers in the version asked


async def test_connection_close_ends_the_connection_after_the_answer(
    proxy: Proxy, cookie: str
) -> None:
    raw = request("GET", "/api/users/me", cookie, "Connection: close")
    async with connection(proxy) as (reader, writer):
        writer.write(raw)
        [answer] = await read_answers(reader, 1)
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    assert answer.status == 200
    assert answer.header("Connection") == "close"


async def test_an_idle_connection_closes_after_the_keepalive_timeout(
    proxy: Proxy, cookie: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(front, "KEEPALIVE_TIMEOUT", 0.2)
    async with connection(proxy) as (reader, writer):
        writer.write(request("GET", "/api/users/me", cookie))
        [answer] = await read_answers(reader, 1)
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    assert answer.status == 200


async def test_a_cookie_that_fails_to_decrypt_is_counted_once(proxy: Proxy, cookie: str) -> None:
    async with connection(proxy) as (reader, writer):
        writer.write(request("GET", "/api/users/me", "zoom_proxy=Z0FBQUFBQm5vdGFzZXNzaW9u"))
        [answer] = await read_answers(reader, 1)
    assert answer.status == 401
    async with aiohttp.ClientSession() as client, client.get(f"{proxy.url}/metrics") as metrics:
        text = await metrics.text()
    assert "zoom_proxy_session_decode_failures_total 1.0" in text


@pytest.mark.parametrize(
    ("replay_limit", "framing"),
    [
        (100_000, "Content-Length: 5000"),  # read whole on the lane
        (1000, "Content-Length: 5000"),  # streamed on the lane
        (100_000, "Transfer-Encoding: chunked"),  # aiohttp's
    ],
    ids=["whole", "streamed", "chunked"],
)
async def test_a_client_silent_mid_body_gets_408_after_upstream_timeout(
    make_proxy: ProxyFactory, replay_limit: int, framing: str
) -> None:
    proxy = await make_proxy(upstream={"timeout": 0.5, "max_replay_body": replay_limit})
    cookie = await signed_in_cookie(proxy)
    start = b"a" * 100 if framing.startswith("Content") else b"64\r\n" + b"a" * 50
    async with connection(proxy) as (reader, writer):
        writer.write(request("PUT", "/api/_test/upload", cookie, framing) + start)
        [answer] = await read_answers(reader, 1)
        if framing.startswith("Content"):  # the lane's: where a next request starts is unknown
            assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    assert answer.status == 408
    assert answer.json()["error"] == "client_too_slow"
    uploads = [r for r in proxy.zoom.emulator.api_requests if r.raw_path == "/v2/_test/upload"]
    assert all(r.body_length < 5000 for r in uploads)  # nothing reached Zoom as complete


async def test_a_client_that_resets_its_connection_cancels_its_call_to_zoom(
    proxy: Proxy, cookie: str
) -> None:
    """A reset, unlike a FIN (which may shut only the client's sending side, and is
    answered), says the client is gone."""
    emulator = proxy.zoom.emulator
    lifecycle = proxy.app[LIFECYCLE]
    async with connection(proxy) as (_, writer):
        writer.write(request("GET", "/api/_test/hold_headers", cookie))
        await emulator.wait_for_held()
        assert lifecycle.in_flight == 1
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await asyncio.wait_for(emulator.wait_for_counter("holds_aborted", 1), timeout=10)
    assert lifecycle.in_flight == 0
    assert proxy.app[UPSTREAM].in_use == 0


async def test_a_client_that_reads_nothing_is_sent_nothing_more(proxy: Proxy, cookie: str) -> None:
    """Pipelined requests wait while answers pile up unread: the proxy stops asking Zoom."""
    pipelined = 300
    download = request("GET", "/api/_test/download?bytes=65536", cookie)
    host, port = proxy.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(download * pipelined)
        counter = proxy.zoom.emulator.wait_for_counter("api_ok", pipelined)
        with pytest.raises(TimeoutError):  # what piles up is bounded: Zoom stops being asked
            await asyncio.wait_for(counter, timeout=2)
        answers = await read_answers(reader, pipelined)  # and reading lets it all through
    finally:
        writer.close()
    assert [len(a.body) for a in answers] == [65536] * pipelined


async def test_shutdown_lets_an_answer_being_sent_finish(proxy: Proxy, cookie: str) -> None:
    emulator = proxy.zoom.emulator
    async with connection(proxy) as (reader, writer):
        writer.write(request("GET", "/api/_test/hold_headers", cookie))
        await emulator.wait_for_held()
        stopping = asyncio.ensure_future(proxy.runner.cleanup())
        emulator.release_held()
        [answer] = await read_answers(reader, 1)
        await stopping
    assert answer.status == 200
    assert answer.json() == {"released": True}


async def test_the_lane_counts_logs_and_names_each_request(
    proxy: Proxy, cookie: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with connection(proxy) as (reader, writer):
        writer.write(request("GET", "/api/users/me", cookie, "X-Request-ID: trace-42"))
        [answer] = await read_answers(reader, 1)
    assert answer.header("X-Request-ID") == "trace-42"
    [line] = [r for r in caplog.records if r.getMessage().startswith("GET /api/users/me ")]
    assert line.access["request_id"] == "trace-42"  # type: ignore[attr-defined]
    assert line.access["status"] == 200  # type: ignore[attr-defined]
    assert line.access["user_id"] == proxy.zoom.emulator.user.id  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as client, client.get(f"{proxy.url}/metrics") as metrics:
        text = await metrics.text()
    assert 'zoom_proxy_requests_total{method="GET",route="api",status="2xx"} 1.0' in text


BROWSER_ONLY = {
    "a cross-origin POST": (["Origin: https://evil.example"], 403),
    "a cross-site POST": (["Sec-Fetch-Site: cross-site"], 403),
}


@pytest.mark.parametrize(("headers", "status"), BROWSER_ONLY.values(), ids=BROWSER_ONLY.keys())
async def test_what_a_browser_sent_cross_origin_is_screened(
    proxy: Proxy, cookie: str, headers: list[str], status: int
) -> None:
    async with connection(proxy) as (reader, writer):
        writer.write(request("POST", "/api/_test/echo/x", cookie, *headers, body=b"{}"))
        [answer] = await read_answers(reader, 1)
    assert answer.status == status
    assert [r for r in proxy.zoom.emulator.api_requests if r.raw_path == "/v2/_test/echo/x"] == []


async def test_a_navigation_gets_a_page_not_json(make_proxy: ProxyFactory, cookie: str) -> None:
    dead_api = await make_proxy(zoom={"api_base_url": f"http://127.0.0.1:{unused_port()}/v2"})
    async with connection(dead_api) as (reader, writer):
        writer.write(request("GET", "/api/users/me", cookie, "Accept: text/html"))
        [answer] = await read_answers(reader, 1)
    assert answer.status == 502
    assert (answer.header("Content-Type") or "").startswith("text/html")


async def test_shutdown_closes_idle_connections(proxy: Proxy, cookie: str) -> None:
    async with connection(proxy) as (reader, writer):
        writer.write(request("GET", "/api/users/me", cookie))
        [answer] = await read_answers(reader, 1)
        await proxy.runner.cleanup()
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
    assert answer.status == 200
