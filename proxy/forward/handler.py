"""``/api/<path>`` on aiohttp's server: the transport for every request the front's
lane leaves to aiohttp (a browser navigation, a cross-origin call, a chunked body,
Redis sessions, ...). It parses nothing itself: it hands aiohttp's request to
:class:`proxy.forward.core.Forwarder` and writes the answer the core plans.
"""

from __future__ import annotations

import asyncio

from aiohttp import hdrs, web
from multidict import CIMultiDict

from proxy.forward.core import (
    FORWARDER,
    NO_BODY,
    ApiCall,
    RequestBody,
    read_some,
    stream_body,
)
from proxy.http.methods import API_METHODS
from proxy.observe.logs import RECORD
from proxy.web.errors import SET_COOKIES
from proxy.web.keys import SETTINGS
from proxy.web.middleware import prepare


async def forward(request: web.Request) -> web.StreamResponse:
    """Handle ``ANY /api/<path>``."""
    if request.method not in API_METHODS:
        raise web.HTTPMethodNotAllowed(request.method, sorted(API_METHODS))
    call = api_call(request)
    body = NO_BODY
    if request.body_exists:  # most API calls have none: no coroutine for them
        upstream = request.app[SETTINGS].upstream
        body = await read_body(
            request, max_replay=upstream.max_replay_body, stall_limit=upstream.timeout
        )
    answer = ResponseAnswer(request)
    await request.app[FORWARDER].forward(call, body, answer)
    assert answer.response is not None
    return answer.response


def api_call(request: web.Request) -> ApiCall:
    """The core's view of an aiohttp request (``/api``, or ``/download``)."""
    headers = request.headers
    call = ApiCall(
        request.method,
        request.raw_path,
        headers.items(),
        headers.getall(hdrs.CONNECTION, ()),
        cookie_header=headers.get(hdrs.COOKIE, ""),
        forwarded_proto=headers.get("X-Forwarded-Proto"),
        record=request[RECORD],
        authorization=headers.get(hdrs.AUTHORIZATION),
    )
    # An error's answer carries the session's new cookie too (proxy.web.errors).
    request[SET_COOKIES] = call.cookies
    return call


async def read_body(request: web.Request, *, max_replay: int, stall_limit: float) -> RequestBody:
    """Buffer a request's body (it has one) of at most ``max_replay`` bytes; stream
    anything larger.

    A declared length over the limit streams at once. Otherwise (a smaller length, or
    a chunked body) up to ``max_replay`` bytes plus one read are buffered first.
    """
    length = request.content_length
    if length is not None and length > max_replay:
        return RequestBody(None, stream_body(b"", request.content, stall_limit), length)
    buffered = bytearray()
    while len(buffered) <= max_replay:
        chunk = await read_some(request.content, stall_limit)
        if not chunk:
            return RequestBody(replay=bytes(buffered))
        buffered += chunk
    return RequestBody(None, stream_body(bytes(buffered), request.content, stall_limit), length)


class ResponseAnswer:
    """The core's answer as aiohttp's response; the middleware adds the common headers."""

    __slots__ = ("_request", "response")

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.response: web.StreamResponse | None = None

    def whole(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        fields = CIMultiDict(headers)
        # aiohttp sets it from the body it is given, which is exactly Zoom's.
        fields.popall(hdrs.CONTENT_LENGTH, None)
        self.response = web.Response(status=status, headers=fields, body=body)

    async def start(
        self, status: int, headers: list[tuple[str, str]], *, streamed: bool
    ) -> asyncio.Transport | None:
        response = self.response = web.StreamResponse(status=status, headers=CIMultiDict(headers))
        await prepare(self._request, response)
        return self._request.transport if response.content_length is not None else None

    async def write(self, chunk: bytes) -> None:
        assert self.response is not None
        await self.response.write(chunk)

    async def end(self) -> None:
        assert self.response is not None
        await self.response.write_eof()

    def cut_off(self) -> None:
        if self._request.transport is not None:
            self._request.transport.close()
