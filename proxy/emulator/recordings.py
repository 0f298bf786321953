"""Cloud recordings as Zoom serves them: a ``download_url`` on Zoom's web host that wants
the Bearer token and redirects to a signed URL on a storage host, which serves the bytes
with ``Range`` and conditionals.

The storage host is an app of its own (:class:`StorageServer`), run on another port,
so that whether a token crossed to it is a real question: it records every request's
headers in :attr:`StorageServer.requests`. A recording's byte k is k % 256
(:func:`proxy.emulator.api.download_chunks`), its ETag is fixed per recording.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

from aiohttp import web

from proxy.emulator.api import download_chunks
from proxy.emulator.models import InvalidAccessToken

if TYPE_CHECKING:
    from proxy.emulator.state import ZoomEmulator

_LAST_MODIFIED = "Tue, 01 Dec 2026 10:00:00 GMT"


class WebRoutes:
    """``GET|HEAD /rec/download/{id}`` on the emulator's own (web) origin."""

    def __init__(self, emulator: ZoomEmulator) -> None:
        self._emulator = emulator

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/rec/download/{id}", self.download)

    async def download(self, request: web.Request) -> web.StreamResponse:
        """Zoom's answer to a download_url: the token checked, then a redirect to a
        signed storage URL (what an expired token gets is 401 code 124)."""
        emulator = self._emulator
        emulator.count("recording_hits")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            emulator.authenticate(token if scheme.lower() == "bearer" else "")
        except InvalidAccessToken as exc:
            return web.json_response({"code": 124, "message": exc.message}, status=401)
        recording = request.match_info["id"]
        if recording not in emulator.recordings or emulator.storage_url is None:
            return web.json_response({"code": 3301, "message": "No recording."}, status=404)
        signature = secrets.token_urlsafe(16)
        location = f"{emulator.storage_url}/replay/{recording}.mp4?signature={signature}"
        return web.Response(status=302, headers={"Location": location})


class StorageServer:
    """The signed storage host recordings redirect to: no token needed, Range served."""

    def __init__(self, emulator: ZoomEmulator) -> None:
        self._emulator = emulator
        #: Every request's headers, as received, in order.
        self.requests: list[dict[str, str]] = []
        #: Bytes after which a body breaks off (the connection closes), if set.
        self.break_after: int | None = None
        #: Bytes after which a body stops arriving (the connection stays open), if set.
        self.stall_after: int | None = None
        #: Body bytes written so far, over all requests.
        self.sent = 0
        self._stalled = asyncio.Event()  # what a stalled body waits on, till shutdown

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/replay/{name}", self.serve)
        app.on_shutdown.append(self._end_stalls)
        return app

    async def _end_stalls(self, app: web.Application) -> None:
        # A stalled body may never learn that its reader left: a server that is not
        # writing or reading does not see the connection end. Shutting down ends it.
        self._stalled.set()

    async def serve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        recording = request.match_info["name"].removesuffix(".mp4")
        size = self._emulator.recordings.get(recording)
        if size is None or "signature" not in request.query:
            return web.Response(status=403, text="Request has expired")
        etag = f'"{recording}"'
        headers = {
            "Content-Type": "video/mp4",
            "Content-Disposition": f'attachment; filename="{recording}.mp4"',
            "ETag": etag,
            "Last-Modified": _LAST_MODIFIED,
            "Accept-Ranges": "bytes",
            "Set-Cookie": "storage_session=1; Path=/",
        }
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        start, end = 0, size - 1
        status = 200
        ranged = _byte_range(request.headers.get("Range"), size)
        if isinstance(ranged, str):
            headers["Content-Range"] = f"bytes */{size}"
            return web.Response(status=416, headers=headers)
        if ranged is not None and request.headers.get("If-Range", etag) == etag:
            start, end = ranged
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = end - start + 1
        await response.prepare(request)
        if request.method != "HEAD":
            try:
                if not await self._send(request, response, start, end):
                    return response
            except ConnectionError:  # the reader left while a write was under way
                self._emulator.count("recording_bodies_cut")
                return response
            except asyncio.CancelledError:  # the reader left (handler_cancellation)
                self._emulator.count("recording_bodies_cut")
                raise
        await response.write_eof()
        self._emulator.count("recording_bodies_sent")
        return response

    async def _send(
        self, request: web.Request, response: web.StreamResponse, start: int, end: int
    ) -> bool:
        """Bytes ``start`` to ``end``; False if the body broke off (``break_after``)."""
        sent = 0
        for chunk in download_chunks(end + 1, start):
            if self.break_after is not None and sent >= self.break_after:
                if request.transport is not None:
                    request.transport.close()
                return False
            if self.stall_after is not None and sent >= self.stall_after:
                await self._stalled.wait()
            await response.write(chunk)
            sent += len(chunk)
            self.sent += len(chunk)
        return True


def _byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """A single ``bytes=a-b``, ``a-`` or ``-n`` range: (first, last), "unsatisfiable",
    or None for no (or an unusable) Range header."""
    if header is None or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].partition("-")
    if not (first.isdigit() or last.isdigit()):
        return None
    if not first:
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last.isdigit() else size - 1
    if start >= size or start > end:
        return "unsatisfiable"
    return start, end
