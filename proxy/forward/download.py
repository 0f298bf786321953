"""``GET|HEAD /download?url=<download_url>``: a cloud recording, fetched with the caller's
token and streamed back (SPEC 13).

Zoom's ``download_url`` is on its web host (``https://zoom.us/rec/download/…``), wants
the user's Bearer token, and redirects to a signed URL on a storage host. The proxy
checks the URL first (:mod:`proxy.forward.download_url`: nothing is fetched from
anywhere else), follows up to :data:`MAX_REDIRECTS` redirects itself, and sends the
token only to origins in ``zoom.download_origins``. Only the range and conditional
headers go to each hop, and only the headers a download needs come back, so neither a
client cookie nor a storage host's ``Set-Cookie`` crosses. Bodies stream with
back-pressure both ways (aiohttp's client pauses reading while the client is slow).

Who the caller is, its tokens and a 401's refresh are the forwarding core's
(:meth:`proxy.forward.core.Forwarder.credentials` and ``renew``), as for ``/api``.
Downloads take aiohttp's path only: the front's lane takes ``/api/`` requests alone.
"""

from __future__ import annotations

import aiohttp
from aiohttp import hdrs, web
from yarl import URL

from proxy.errors import (
    InsecureRedirect,
    TooManyRedirects,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from proxy.forward.core import FORWARDER
from proxy.forward.download_url import Origin, checked_download_url, matches_any
from proxy.forward.handler import api_call
from proxy.web.keys import HTTP, SETTINGS

#: Redirects followed at most; one more is 502 too_many_redirects.
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: What of the client's request goes to every hop.
_TO_EVERY_HOP = (hdrs.RANGE, hdrs.IF_RANGE, hdrs.IF_NONE_MATCH, hdrs.IF_MODIFIED_SINCE)
#: What of the last hop's answer comes back.
_BACK = (
    hdrs.CONTENT_LENGTH,
    hdrs.CONTENT_RANGE,
    hdrs.CONTENT_TYPE,
    hdrs.CONTENT_DISPOSITION,
    hdrs.ETAG,
    hdrs.LAST_MODIFIED,
    hdrs.ACCEPT_RANGES,
)
_BODILESS = frozenset({204, 304})


async def download(request: web.Request) -> web.StreamResponse:
    """Handle ``GET|HEAD /download``."""
    settings = request.app[SETTINGS]
    origins = settings.zoom.download_origins
    first = checked_download_url(request.query.get("url", ""), origins).url
    headers = request.headers
    call = api_call(request)
    forwarder = request.app[FORWARDER]
    tokens, signed_in = await forwarder.credentials(call, download=True)
    to_hops = {str(name): headers[name] for name in _TO_EVERY_HOP if name in headers}
    http = request.app[HTTP]
    upstream = await follow(http, request.method, first, to_hops, tokens.access_token, origins)
    if upstream.status == 401 and upstream.url == URL(first, encoded=True):
        upstream.release()
        tokens = await forwarder.renew(call, tokens, signed_in)
        upstream = await follow(http, request.method, first, to_hops, tokens.access_token, origins)
    call.record.upstream_status = upstream.status
    async with upstream:
        return await _relay(request, upstream, call.cookies)


async def follow(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    to_hops: dict[str, str],
    access_token: str,
    origins: tuple[Origin, ...],
) -> aiohttp.ClientResponse:
    """The answer at the end of ``url``'s redirects; the token only to ``origins``."""
    for _ in range(MAX_REDIRECTS + 1):
        hop = {**to_hops, hdrs.ACCEPT_ENCODING: "identity"}
        if matches_any(url, origins):
            hop[hdrs.AUTHORIZATION] = f"Bearer {access_token}"
        try:
            response = await http.request(
                method, URL(url, encoded=True), headers=hop, allow_redirects=False
            )
        except aiohttp.ServerTimeoutError as exc:
            raise UpstreamTimeout() from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamUnreachable("Zoom's download host is unreachable.") from exc
        location = response.headers.get(hdrs.LOCATION)
        if response.status not in _REDIRECTS or location is None:
            return response
        response.release()
        following = str(URL(url, encoded=True).join(URL(location, encoded=True)))
        if url.startswith("https:") and not following.startswith("https:"):
            raise InsecureRedirect()
        url = following
    raise TooManyRedirects()


async def _relay(
    request: web.Request, upstream: aiohttp.ClientResponse, cookies: list[str]
) -> web.StreamResponse:
    """The last hop's answer, streamed; a body that breaks off cuts the client off."""
    response = web.StreamResponse(status=upstream.status)
    for name in _BACK:
        if name in upstream.headers:
            response.headers[name] = upstream.headers[name]
    for value in cookies:  # the session's, refreshed: never a hop's
        response.headers.add(hdrs.SET_COOKIE, value)
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    bodiless = request.method == "HEAD" or upstream.status in _BODILESS
    if not bodiless and hdrs.CONTENT_LENGTH not in upstream.headers:
        response.enable_chunked_encoding()
    await response.prepare(request)
    if bodiless:
        return response
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except (TimeoutError, aiohttp.ClientError):
        # The storage host broke off or went silent: so that the client can tell, its
        # connection ends with the answer incomplete.
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response
