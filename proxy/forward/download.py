"""``GET|HEAD /download?url=<download_url>``: a cloud recording, fetched with the caller's
token and streamed back (SPEC 13).

Zoom's ``download_url`` is on its web host (``https://zoom.us/rec/download/…``), wants
the user's Bearer token, and redirects to a signed URL on a storage host. The proxy
checks the URL first (:mod:`proxy.forward.download_url`: nothing is fetched from
anywhere else), follows up to :data:`MAX_REDIRECTS` redirects itself, and sends the
token only to origins in ``zoom.download_origins``. Only the range and conditional
headers go to each hop, and only the headers a download needs come back, so neither a
client cookie nor a storage host's ``Set-Cookie`` crosses.

The hops go through the proxy's own HTTP client (:mod:`proxy.http.pools`: one
keep-alive pool per origin), with ``upstream``'s timeouts, and the answer is relayed by
the forwarding core's :func:`~proxy.forward.core.relay`, as ``/api``'s is: bytes of a
known length go straight to the client while it keeps up, and reading from the storage
host pauses while it does not. Who the caller is, its tokens and a 401's refresh are the
core's too (:meth:`~proxy.forward.core.Forwarder.credentials` and ``renew``).
Downloads take aiohttp's path only: the front's lane takes ``/api/`` requests alone.
"""

from __future__ import annotations

import time

from aiohttp import hdrs, web
from yarl import URL

from proxy.errors import InsecureRedirect, TooManyRedirects, UpstreamUnreachable
from proxy.forward.core import FORWARDER, relay
from proxy.forward.download_url import Origin, checked_download_url, matches_any
from proxy.forward.handler import ResponseAnswer, api_call
from proxy.http.client import Response
from proxy.http.pools import Pools
from proxy.observe.metrics import METRICS
from proxy.web.keys import DOWNLOAD_HOSTS, SETTINGS

#: Redirects followed at most; one more is 502 too_many_redirects.
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: What of the client's request goes to every hop.
_TO_EVERY_HOP = (hdrs.RANGE, hdrs.IF_RANGE, hdrs.IF_NONE_MATCH, hdrs.IF_MODIFIED_SINCE)
#: What of the last hop's answer comes back (lower case, as it is matched).
_BACK = frozenset(
    name.lower()
    for name in (
        hdrs.CONTENT_LENGTH,
        hdrs.CONTENT_RANGE,
        hdrs.CONTENT_TYPE,
        hdrs.CONTENT_DISPOSITION,
        hdrs.ETAG,
        hdrs.LAST_MODIFIED,
        hdrs.ACCEPT_RANGES,
    )
)


async def download(request: web.Request) -> web.StreamResponse:
    """Handle ``GET|HEAD /download``."""
    origins = request.app[SETTINGS].zoom.download_origins
    first = checked_download_url(request.query.get("url", ""), origins).url
    headers = request.headers
    call = api_call(request)
    forwarder = request.app[FORWARDER]
    tokens, signed_in = await forwarder.credentials(call, download=True)
    to_hops = [(str(name), headers[name]) for name in _TO_EVERY_HOP if name in headers]
    hosts = request.app[DOWNLOAD_HOSTS]
    observe = request.app[METRICS].observe_upstream_latency
    started = time.perf_counter()
    try:
        upstream, last = await follow(
            hosts, request.method, first, to_hops, tokens.access_token, origins
        )
        if upstream.status == 401 and last == first:
            upstream.release()
            tokens = await forwarder.renew(call, tokens, signed_in)
            upstream, last = await follow(
                hosts, request.method, first, to_hops, tokens.access_token, origins
            )
    finally:
        observe(started)
    call.record.upstream_status = upstream.status
    answer = ResponseAnswer(request)
    try:
        await relay(upstream, answer, _headers_back(upstream, call.cookies))
    finally:
        upstream.release()
    assert answer.response is not None
    return answer.response


async def follow(
    hosts: Pools,
    method: str,
    url: str,
    to_hops: list[tuple[str, str]],
    access_token: str,
    origins: tuple[Origin, ...],
) -> tuple[Response, str]:
    """The answer at the end of ``url``'s redirects, and the URL that gave it; the token
    goes only to ``origins``."""
    for _ in range(MAX_REDIRECTS + 1):
        hop = URL(url, encoded=True)
        headers = [*to_hops, (hdrs.ACCEPT_ENCODING, "identity")]
        if matches_any(url, origins):
            headers.append((hdrs.AUTHORIZATION, f"Bearer {access_token}"))
        response = await hosts.for_url(hop).request(method, hop.raw_path_qs, headers, None)
        location = _location(response)
        if response.status not in _REDIRECTS or location is None:
            return response, url
        response.release()
        following = hop.join(URL(location, encoded=True))
        if following.scheme not in ("http", "https") or not following.raw_host:
            raise UpstreamUnreachable("The download redirected to a URL that is not http(s).")
        if hop.scheme == "https" and following.scheme != "https":
            raise InsecureRedirect()
        if not _fits_a_request_line(following.raw_path_qs):
            raise UpstreamUnreachable("The download redirected to a malformed URL.")
        url = str(following)
    raise TooManyRedirects()


def _fits_a_request_line(target: str) -> bool:
    return target.isascii() and target.isprintable() and " " not in target


def _location(response: Response) -> str | None:
    for name, value in response.headers:
        if name.lower() == b"location":
            return value.decode("latin-1")
    return None


def _headers_back(upstream: Response, cookies: list[str]) -> list[tuple[str, str]]:
    """The last hop's headers a download needs, then the session's cookie: never a
    hop's ``Set-Cookie``."""
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in upstream.headers
        if name.lower().decode("latin-1") in _BACK
    ]
    headers += [(hdrs.SET_COOKIE, value) for value in cookies]
    headers.append((hdrs.CACHE_CONTROL, "no-store"))
    return headers
