"""``/api/<path>``: forwarding to Zoom's API with the session's bearer token.

The path and query go upstream byte for byte (Zoom's double-encoded meeting UUIDs
must survive), bodies stream both ways, and a 401 from Zoom triggers one refresh and,
when the request body could be kept, one retry.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from aiohttp_session import get_session
from multidict import CIMultiDict

from proxy.errors import ClientTooSlow, Unauthenticated, UnsafePath, UpstreamUnreachable
from proxy.forward.headers import request_headers_for_zoom, response_headers_for_client
from proxy.http.client import Body, BodyBrokeOff, Response
from proxy.http.front import take_handover_note
from proxy.observe.logs import UPSTREAM_STATUS, USER_ID
from proxy.observe.metrics import METRICS
from proxy.session.store import SignedIn
from proxy.tokens.model import Tokens
from proxy.web.keys import REFRESHER, SESSIONS, SETTINGS, STORAGE, UPSTREAM
from proxy.web.middleware import prepare
from proxy.web.untrusted import is_safe_api_path

API_PREFIX = "/api/"
#: What Zoom's API uses. Anything else (TRACE would echo the bearer token back) is 405.
API_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: Bodies up to this size are read whole and sent with the headers in one write.
SMALL_BODY = 1 << 16


@functools.lru_cache(maxsize=4096)
def upstream_target(base_path: str, raw_path: str) -> str:
    """The request target at Zoom for a raw ``/api/...`` one, or :class:`UnsafePath`.

    Cached: clients call the same few paths over and over.
    """
    if not raw_path.startswith(API_PREFIX):
        raise UnsafePath()
    path, question, query = raw_path[len(API_PREFIX) :].partition("?")
    # A "#" would end the URL upstream and silently drop the rest of the query.
    if not is_safe_api_path(path) or any(
        c == "#" or ord(c) < 0x21 or ord(c) == 0x7F for c in query
    ):
        raise UnsafePath()
    return f"{base_path}/{path}{question}{query}"


@dataclass(frozen=True, slots=True)
class RequestBody:
    """A request body: kept whole when small enough to replay, else streamed once
    (with the client's ``Content-Length`` when it gave one, else chunked)."""

    replay: bytes | None
    stream: AsyncIterator[bytes] | None = None
    length: int | None = None

    @property
    def replayable(self) -> bool:
        return self.replay is not None

    def payload(self) -> Body:
        return self.stream if self.replay is None else self.replay


NO_BODY = RequestBody(replay=b"")


async def read_body(request: web.Request, *, max_replay: int, stall_limit: float) -> RequestBody:
    """Buffer a request's body (it has one) of at most ``max_replay`` bytes; stream
    anything larger.

    A declared length over the limit streams at once. Otherwise (a smaller length, or
    a chunked body) up to ``max_replay`` bytes plus one read are buffered first. A
    client silent for ``stall_limit`` seconds mid-body is given up on, so it cannot hold
    a connection to Zoom forever.
    """
    length = request.content_length
    if length is not None and length > max_replay:
        return RequestBody(None, stream_body(b"", request.content, stall_limit), length)
    buffered = bytearray()
    while len(buffered) <= max_replay:
        chunk = await _read_some(request.content, stall_limit)
        if not chunk:
            return RequestBody(replay=bytes(buffered))
        buffered += chunk
    return RequestBody(None, stream_body(bytes(buffered), request.content, stall_limit), length)


class BodyReader(Protocol):
    """A request body as it arrives: aiohttp's, or :class:`proxy.http.body.BodyStream`."""

    async def readany(self) -> bytes:
        """Some of the body, or ``b""`` at its end."""


async def _read_some(reader: BodyReader, stall_limit: float) -> bytes:
    try:
        async with asyncio.timeout(stall_limit):
            return await reader.readany()
    except TimeoutError as exc:
        raise ClientTooSlow() from exc


async def stream_body(head: bytes, rest: BodyReader, stall_limit: float) -> AsyncIterator[bytes]:
    """``head``, then ``rest`` as it arrives, given up on after ``stall_limit`` s of
    silence (:class:`ClientTooSlow`)."""
    if head:
        yield head
    while chunk := await _read_some(rest, stall_limit):
        yield chunk


async def _send(request: web.Request, target: str, tokens: Tokens, body: RequestBody) -> Response:
    headers = request_headers_for_zoom(
        request.headers,
        access_token=tokens.access_token,
        trust_forwarded=request.app[SETTINGS].trust_forwarded_headers,
    )
    started = time.perf_counter()
    try:
        upstream = await request.app[UPSTREAM].request(
            request.method, target, headers, body.payload(), content_length=body.length
        )
    finally:  # failures too: a slow timeout is exactly what the histogram must show
        request.app[METRICS].observe_upstream_latency(started)
    request[UPSTREAM_STATUS] = upstream.status
    return upstream


async def forward(request: web.Request) -> web.StreamResponse:
    """Handle ``ANY /api/<path>``."""
    if request.method not in API_METHODS:
        raise web.HTTPMethodNotAllowed(request.method, sorted(API_METHODS))
    settings = request.app[SETTINGS]
    target = upstream_target(settings.zoom.api_base_path, request.raw_path)
    signed_in = await request.app[SESSIONS].load(request)
    if signed_in is None:
        raise Unauthenticated()
    request[USER_ID] = signed_in.data.user.id
    refresher = request.app[REFRESHER]
    tokens = await refresher.fresh(signed_in.data.tokens, session_id=signed_in.id)
    new_cookie = tokens is not signed_in.data.tokens and await _keep(request, signed_in, tokens)
    body = NO_BODY
    if request.body_exists:  # most API calls have none: no coroutine for them
        body = await read_body(
            request,
            max_replay=settings.upstream.max_replay_body,
            stall_limit=settings.upstream.timeout,
        )
    refused = _refused_on_the_front(request, tokens)
    if refused:
        tokens = await refresher.after_401(tokens, session_id=signed_in.id)
        new_cookie = await _keep(request, signed_in, tokens) or new_cookie
    upstream = await _send(request, target, tokens, body)
    try:
        if upstream.status == 401 and not refused:
            tokens = await refresher.after_401(tokens, session_id=signed_in.id)
            new_cookie = await _keep(request, signed_in, tokens) or new_cookie
            if body.replayable:
                upstream.release()
                upstream = await _send(request, target, tokens, body)
        headers = response_headers_for_client(upstream.headers)
        length = upstream.content_length
        if length is not None and length <= SMALL_BODY and request.method != "HEAD":
            # The session middleware saves a refreshed session into this kind of response.
            return web.Response(
                status=upstream.status,
                headers=_without_length(headers),
                body=upstream.body_if_complete() or await whole_body(upstream),
            )
        return await _relay(request, upstream, headers, new_cookie=new_cookie)
    finally:
        upstream.release()


@dataclass(frozen=True, slots=True)
class RefusedByZoom:
    """The note :mod:`proxy.forward.lane` hands a request over with after Zoom answered it
    401: the access token Zoom refused."""

    access_token: str


def _refused_on_the_front(request: web.Request, tokens: Tokens) -> bool:
    """Whether the front already sent this request with ``tokens`` and Zoom refused them
    (so it is not sent with them a second time)."""
    note = take_handover_note(request.protocol)
    return isinstance(note, RefusedByZoom) and note.access_token == tokens.access_token


async def _keep(request: web.Request, signed_in: SignedIn, tokens: Tokens) -> bool:
    """Record refreshed tokens in the session at once; whether the cookie changed.

    Zoom has already spent the old refresh token, so the new one must reach the client
    whatever the answer turns out to be, an error included.
    """
    if tokens == signed_in.data.tokens:
        return False
    return await request.app[SESSIONS].keep(request, signed_in, tokens)


async def _relay(
    request: web.Request, upstream: Response, headers: CIMultiDict[str], *, new_cookie: bool
) -> web.StreamResponse:
    """A body of unknown or large size, streamed as it arrives."""
    response = web.StreamResponse(status=upstream.status, headers=headers)
    if new_cookie:
        # Before prepare(): a prepared response can no longer take cookies, and the
        # session middleware does not save into streamed responses.
        await request.app[STORAGE].save_session(request, response, await get_session(request))
    await prepare(request, response)
    if upstream.bodiless:
        await response.write_eof()
        return response
    if upstream.content_length is not None and request.transport is not None:
        # Zoom's bytes are exactly what the client must get: they skip the coroutine.
        upstream.stream_to(request.transport)
    try:
        async for chunk in upstream.chunks():
            await response.write(chunk)
    except ConnectionError:  # BodyBrokeOff, or the client left
        _cut_off(request)
        return response
    await response.write_eof()
    return response


async def whole_body(upstream: Response) -> bytes:
    """A small body of known length that has not all arrived with the headers."""
    try:
        return await upstream.read()
    except BodyBrokeOff as exc:
        raise UpstreamUnreachable("Zoom's answer broke off.") from exc


def _without_length(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    # aiohttp sets it from the body it is given, which is exactly Zoom's.
    del headers["Content-Length"]
    return headers


def _cut_off(request: web.Request) -> None:
    """Zoom broke off mid-body (or the client left): close the client's connection rather
    than end the body cleanly, so the client can tell the body is incomplete."""
    if request.transport is not None:
        request.transport.close()
