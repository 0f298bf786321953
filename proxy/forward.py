"""``/api/<path>``: forwarding to Zoom's API with the session's bearer token.

The path and query go upstream byte for byte (Zoom's double-encoded meeting UUIDs
must survive), bodies stream both ways, and a 401 from Zoom triggers one refresh and,
when the request body could be kept, one retry.
"""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp_session import get_session
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .errors import (
    ClientTooSlow,
    Unauthenticated,
    UnsafePath,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from .keys import HTTP, REFRESHER, SESSIONS, SETTINGS, STORAGE
from .logs import UPSTREAM_STATUS, USER_ID
from .metrics import METRICS
from .security import is_safe_api_path
from .session import Tokens
from .session_store import SignedIn

API_PREFIX = "/api/"
#: What Zoom's API uses. Anything else (TRACE would echo the bearer token back) is 405.
API_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: RFC 9110 section 7.6.1, plus the non-standard ``Proxy-Connection`` still sent by some clients.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: Never forwarded to Zoom: the proxy's own cookies, the client's credentials, its Host.
_DROPPED_REQUEST = HOP_BY_HOP | {"cookie", "host", "authorization", "expect"}
_FORWARDED = frozenset({"forwarded", "x-real-ip"})
_DROPPED_RESPONSE = HOP_BY_HOP | {"set-cookie"}
#: CORS is the proxy's to decide (``cors.allowed_origins``), never Zoom's.
_CORS_RESPONSE_PREFIX = "access-control-"
#: Headers aiohttp's client would invent; the client's own (or none) go upstream instead.
_NO_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})
#: Bodies up to this size are read whole and sent with the headers in one write.
SMALL_BODY = 1 << 16
_LARGE_BYTES = 1 << 20


def _connection_named(headers: CIMultiDictProxy[str]) -> set[str]:
    return {
        name.strip().lower()
        for value in headers.getall("Connection", ())
        for name in value.split(",")
    }


def request_headers_for_zoom(
    headers: CIMultiDictProxy[str], *, access_token: str, trust_forwarded: bool
) -> CIMultiDict[str]:
    """The client's headers minus everything Zoom must not see, plus the bearer token.

    Header names with an underscore are dropped: some servers read ``X_Auth`` as
    ``X-Auth``, which would let a client smuggle a header past these filters.
    """
    named = _connection_named(headers)
    result: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if lower in _DROPPED_REQUEST or lower in named or "_" in lower:
            continue
        if not trust_forwarded and (lower in _FORWARDED or lower.startswith("x-forwarded-")):
            continue
        result.add(name, value)
    result["Authorization"] = f"Bearer {access_token}"
    return result


def response_headers_for_client(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """Zoom's headers minus hop-by-hop ones and its cookies; the rest pass unchanged."""
    named = _connection_named(headers)
    return CIMultiDict(
        (name, value)
        for name, value in headers.items()
        if name.lower() not in _DROPPED_RESPONSE
        and name.lower() not in named
        and not name.lower().startswith(_CORS_RESPONSE_PREFIX)
    )


@functools.lru_cache(maxsize=4096)
def upstream_url(api_base_url: str, raw_path: str) -> URL:
    """Zoom's URL for a raw ``/api/...`` request target, or :class:`UnsafePath`.

    Cached: clients call the same few paths over and over, and a URL is immutable.
    """
    if not raw_path.startswith(API_PREFIX):
        raise UnsafePath()
    path, question, query = raw_path[len(API_PREFIX) :].partition("?")
    # A "#" would end the URL upstream and silently drop the rest of the query.
    if not is_safe_api_path(path) or any(
        c == "#" or ord(c) < 0x21 or ord(c) == 0x7F for c in query
    ):
        raise UnsafePath()
    return URL(f"{api_base_url}/{path}{question}{query}", encoded=True)


def _is_safe_query(query: str) -> bool:
    # A "#" would end the URL upstream and silently drop the rest of the query.
    return not any(c == "#" or ord(c) < 0x21 or ord(c) == 0x7F for c in query)


@dataclass(frozen=True, slots=True)
class RequestBody:
    """A request body: kept whole when small enough to replay, else streamed once."""

    replay: bytes | None
    stream: AsyncIterator[bytes] | None = None

    @property
    def replayable(self) -> bool:
        return self.replay is not None

    def payload(self) -> bytes | io.BytesIO | AsyncIterator[bytes] | None:
        if self.replay is None:
            return self.stream
        if len(self.replay) > _LARGE_BYTES:
            # aiohttp warns that large raw bytes block the loop; it streams a BytesIO.
            return io.BytesIO(self.replay)
        return self.replay or None


async def read_body(request: web.Request, *, max_replay: int, stall_limit: float) -> RequestBody:
    """Buffer a body of at most ``max_replay`` bytes; stream anything larger.

    A declared length over the limit streams at once. Otherwise (a smaller length, or
    a chunked body) up to ``max_replay`` bytes plus one read are buffered first. A
    client silent for ``stall_limit`` seconds mid-body is given up on, so it cannot hold
    a connection to Zoom forever.
    """
    if not request.body_exists:
        return RequestBody(replay=b"")
    length = request.content_length
    if length is not None and length > max_replay:
        return RequestBody(replay=None, stream=_stream(b"", request.content, stall_limit))
    buffered = bytearray()
    while len(buffered) <= max_replay:
        chunk = await _read_some(request.content, stall_limit)
        if not chunk:
            return RequestBody(replay=bytes(buffered))
        buffered += chunk
    return RequestBody(replay=None, stream=_stream(bytes(buffered), request.content, stall_limit))


async def _read_some(reader: aiohttp.StreamReader, stall_limit: float) -> bytes:
    try:
        async with asyncio.timeout(stall_limit):
            return await reader.readany()
    except TimeoutError as exc:
        raise ClientTooSlow() from exc


async def _stream(
    head: bytes, rest: aiohttp.StreamReader, stall_limit: float
) -> AsyncIterator[bytes]:
    if head:
        yield head
    while chunk := await _read_some(rest, stall_limit):
        yield chunk


async def _send(
    request: web.Request, url: URL, tokens: Tokens, body: RequestBody
) -> aiohttp.ClientResponse:
    settings = request.app[SETTINGS]
    headers = request_headers_for_zoom(
        request.headers,
        access_token=tokens.access_token,
        trust_forwarded=settings.trust_forwarded_headers,
    )
    try:
        with request.app[METRICS].upstream_latency.time():
            upstream = await request.app[HTTP].request(
                request.method,
                url,
                headers=headers,
                data=body.payload(),
                allow_redirects=False,
                skip_auto_headers=_NO_AUTO_HEADERS,
            )
    except aiohttp.ConnectionTimeoutError as exc:
        raise UpstreamUnreachable() from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout() from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnreachable() from exc
    request[UPSTREAM_STATUS] = upstream.status
    return upstream


async def forward(request: web.Request) -> web.StreamResponse:
    """Handle ``ANY /api/<path>``."""
    if request.method not in API_METHODS:
        raise web.HTTPMethodNotAllowed(request.method, sorted(API_METHODS))
    settings = request.app[SETTINGS]
    url = upstream_url(settings.zoom.api_base_url, request.raw_path)
    signed_in = await request.app[SESSIONS].load(request)
    if signed_in is None:
        raise Unauthenticated()
    request[USER_ID] = signed_in.data.user.id
    refresher = request.app[REFRESHER]
    tokens = await refresher.fresh(signed_in.data.tokens, session_id=signed_in.id)
    new_cookie = await _keep(request, signed_in, tokens)
    body = await read_body(
        request, max_replay=settings.upstream.max_replay_body, stall_limit=settings.upstream.timeout
    )
    upstream = await _send(request, url, tokens, body)
    try:
        if upstream.status == 401:
            tokens = await refresher.after_401(tokens, session_id=signed_in.id)
            new_cookie = await _keep(request, signed_in, tokens) or new_cookie
            if body.replayable:
                upstream.release()
                upstream = await _send(request, url, tokens, body)
        return await _relay(request, upstream, new_cookie=new_cookie)
    finally:
        upstream.release()


async def _keep(request: web.Request, signed_in: SignedIn, tokens: Tokens) -> bool:
    """Record refreshed tokens in the session at once; whether the cookie changed.

    Zoom has already spent the old refresh token, so the new one must reach the client
    whatever the answer turns out to be, an error included.
    """
    if tokens == signed_in.data.tokens:
        return False
    return await request.app[SESSIONS].keep(request, signed_in, tokens)


async def _relay(
    request: web.Request, upstream: aiohttp.ClientResponse, *, new_cookie: bool
) -> web.StreamResponse:
    headers = response_headers_for_client(upstream.headers)
    length = upstream.content_length
    if length is not None and length <= SMALL_BODY and request.method != "HEAD":
        return await _relay_whole(upstream, headers, length)
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    if new_cookie:
        # Before prepare(): a prepared response can no longer take cookies, and the
        # session middleware does not save into streamed responses.
        await request.app[STORAGE].save_session(request, response, await get_session(request))
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except (TimeoutError, aiohttp.ClientError, ConnectionError):
        _cut_off(request)
        return response
    await response.write_eof()
    return response


async def _relay_whole(
    upstream: aiohttp.ClientResponse, headers: CIMultiDict[str], length: int
) -> web.StreamResponse:
    """A small body of known length, sent with its headers in one write.

    The session middleware saves a refreshed session into this kind of response.
    """
    try:
        body = await upstream.content.readexactly(length)
    except (TimeoutError, aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
        raise UpstreamUnreachable("Zoom's answer broke off.") from exc
    del headers["Content-Length"]
    return web.Response(status=upstream.status, reason=upstream.reason, headers=headers, body=body)


def _cut_off(request: web.Request) -> None:
    """Zoom broke off mid-body (or the client left): close the client's connection rather
    than end the body cleanly, so the client can tell the body is incomplete."""
    if request.transport is not None:
        request.transport.close()
