"""Zoom's REST API under ``/v2``: a few real routes and the ``/v2/_test/*`` helpers.

Every request is first read (streaming, hashed) and recorded exactly as received, then
its bearer token is checked, then it is routed. The ``_test`` routes give the proxy's
tests what real Zoom does only sometimes: echoes, large or broken bodies, gzip,
rate limits, cookies, and answers held until the test releases them.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gzip
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.emulator import meetings
from proxy.emulator.models import EmulatedUser, InvalidAccessToken, RecordedRequest

if TYPE_CHECKING:
    from proxy.emulator.state import ZoomEmulator

CHUNK_SIZE = 64 * 1024
KEPT_BODY_LIMIT = 1024 * 1024  # bodies up to this size stay readable by handlers
PAGE_SIZE = 30
_RATE_LIMIT_MESSAGE = (
    "You have reached the maximum per-second rate limit for this API. Try again later."
)
_PATTERN = bytes(range(256)) * (CHUNK_SIZE // 256 + 1)

_RECORD = web.RequestKey("record", RecordedRequest)
_BODY = web.RequestKey[bytes | None]("body")
_USER = web.RequestKey("user", EmulatedUser)


def download_chunks(size: int, start: int = 0) -> Iterator[bytes]:
    """The body of ``/v2/_test/download?bytes=size`` from byte *start* on, in pieces of
    at most 64 KiB: byte k is k % 256."""
    for offset in range(start, size, CHUNK_SIZE):
        first = offset % 256
        yield _PATTERN[first : first + min(CHUNK_SIZE, size - offset)]


def _api_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def _json_object(body: bytes | None) -> dict[str, Any] | None:
    try:
        fields = json.loads(body) if body else None
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


def _size_param(request: web.Request) -> int | None:
    raw = request.query.get("bytes", "")
    return int(raw) if raw.isascii() and raw.isdigit() else None


async def _octet_stream(
    request: web.Request, send: Callable[[web.StreamResponse, int], Awaitable[None]]
) -> web.StreamResponse:
    """Check ``?bytes=N``, send headers promising N bytes, then let ``send`` write them."""
    size = _size_param(request)
    if size is None:
        return _api_error(400, 300, "Invalid field: bytes.")
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = size
    await response.prepare(request)
    await send(response, size)
    return response


def _zoom_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _peer_port(request: web.Request) -> int:
    """The client's source port, 0 if unknown (say, a Unix socket)."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    port = peer[1] if isinstance(peer, tuple) and len(peer) > 1 else 0
    return port if isinstance(port, int) else 0


async def _receive(request: web.Request) -> tuple[RecordedRequest, bytes | None]:
    """Read the body in constant memory; keep it only when at most KEPT_BODY_LIMIT."""
    peer_port = _peer_port(request)
    digest = hashlib.sha256()
    length = 0
    kept: bytearray | None = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK_SIZE):
        digest.update(chunk)
        length += len(chunk)
        if kept is not None and length <= KEPT_BODY_LIMIT:
            kept += chunk
        else:
            kept = None
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
    record = RecordedRequest(
        request.method, request.raw_path, headers, digest.hexdigest(), length, peer_port
    )
    return record, None if kept is None else bytes(kept)


class ApiRoutes:
    """The ``/v2`` sub-application of one `ZoomEmulator`."""

    def __init__(self, emulator: ZoomEmulator) -> None:
        self._emulator = emulator

    def app(self) -> web.Application:
        """A sub-application to mount at ``/v2``."""
        app = web.Application(middlewares=[self._gate])
        router = app.router
        router.add_get("/users/me", self.users_me)
        router.add_get("/users/me/meetings", self.list_meetings)
        router.add_get("/users/me/recordings", self.list_recordings)
        router.add_post("/users/me/meetings", self.create_meeting)
        router.add_route("*", "/meetings/{tail:.+}", self.meeting)
        router.add_get("/past_meetings/{tail:.+}", self.past_meeting)
        router.add_get("/past_webinars/{tail:.+}", self.past_webinar)
        router.add_route("*", "/_test/echo/{tail:.*}", self.echo)
        router.add_route("*", "/_test/unauthorized", self.unauthorized)
        router.add_get("/_test/download", self.download)
        router.add_get("/_test/chunked", self.chunked)
        router.add_post("/_test/upload", self.upload)
        router.add_put("/_test/upload", self.upload)
        router.add_get("/_test/gzip", self.gzip)
        router.add_get("/_test/rate_limited", self.rate_limited)
        router.add_get("/_test/set_cookie", self.set_cookie)
        router.add_get("/_test/broken", self.broken)
        router.add_get("/_test/hold_headers", self.hold_headers)
        router.add_get("/_test/hold_body", self.hold_body)
        return app

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record, authenticate, then route; unknown paths answer Zoom's JSON 404."""
        emulator = self._emulator
        request[_RECORD], request[_BODY] = await _receive(request)
        emulator.api_requests.append(request[_RECORD])
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            request[_USER] = emulator.authenticate(token if scheme.lower() == "bearer" else "")
        except InvalidAccessToken as exc:
            emulator.count("api_401")
            return _api_error(401, 124, exc.message)
        emulator.count("api_ok")
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return _api_error(404, 404, "Not found")
        except web.HTTPMethodNotAllowed:
            return _api_error(405, 405, "Method not allowed")

    async def users_me(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(request[_USER].as_json())

    async def list_meetings(self, request: web.Request) -> web.StreamResponse:
        listed = self._emulator.meetings.get(request[_USER].id, [])
        return web.json_response(
            {
                "page_size": PAGE_SIZE,
                "total_records": len(listed),
                "next_page_token": "",
                "meetings": listed[:PAGE_SIZE],
            }
        )

    async def list_recordings(self, request: web.Request) -> web.StreamResponse:
        """Every recording, one meeting each, its ``download_url`` on this origin."""
        origin = str(request.url.origin())
        meetings = [
            {
                "uuid": recording,
                "topic": f"Recording {recording}",
                "recording_files": [
                    {
                        "id": recording,
                        "file_type": "MP4",
                        "file_size": size,
                        "download_url": f"{origin}/rec/download/{recording}",
                    }
                ],
            }
            for recording, size in self._emulator.recordings.items()
        ]
        return web.json_response({"total_records": len(meetings), "meetings": meetings})

    async def create_meeting(self, request: web.Request) -> web.StreamResponse:
        fields = _json_object(request[_BODY])
        if fields is None:
            return _api_error(400, 300, "Request Body should be a valid JSON object.")
        topic = fields.get("topic", "Zoom Meeting")
        if not isinstance(topic, str):
            return _api_error(400, 300, "Invalid field: topic.")
        user = request[_USER]
        meeting_id = 10**10 + secrets.randbelow(9 * 10**10)
        now = _zoom_time(self._emulator.clock())
        meeting: dict[str, Any] = {
            "uuid": base64.b64encode(secrets.token_bytes(16)).decode("ascii"),
            "id": meeting_id,
            "host_id": user.id,
            "host_email": user.email,
            "topic": topic,
            "type": fields.get("type", 2),
            "status": "waiting",
            "start_time": fields.get("start_time", now),
            "duration": fields.get("duration", 60),
            "timezone": fields.get("timezone", user.timezone),
            "agenda": fields.get("agenda", ""),
            "created_at": now,
            "join_url": f"https://us05web.zoom.us/j/{meeting_id}",
        }
        self._emulator.meetings.setdefault(user.id, []).append(meeting)
        return web.json_response(meeting, status=201)

    def _meeting(self, request: web.Request, segment: str) -> dict[str, Any] | None:
        user_meetings = self._emulator.meetings.get(request[_USER].id, [])
        return meetings.find(user_meetings, meetings.meeting_key(segment))

    async def meeting(self, request: web.Request) -> web.StreamResponse:
        """``/meetings/{meetingId}``: GET, PATCH (204), DELETE (204); and GET
        ``/meetings/{meetingId or UUID}/recordings`` (none are ever recorded here)."""
        parts = meetings.segments(request.raw_path)[1:]
        found = self._meeting(request, parts[0])
        if found is None:
            return _api_error(404, 3001, f"Meeting does not exist: {parts[0]}.")
        if parts[1:] == ["recordings"] and request.method == "GET":
            return _api_error(404, 3301, "There is no recording for this meeting.")
        if parts[1:] or request.method not in ("GET", "PATCH", "DELETE"):
            raise web.HTTPNotFound()
        if request.method == "GET":
            return web.json_response(found)
        if request.method == "DELETE":
            self._emulator.meetings[request[_USER].id].remove(found)
            return web.Response(status=204)
        fields = _json_object(request[_BODY])
        if fields is None:
            return _api_error(400, 300, "Request Body should be a valid JSON object.")
        refused = meetings.update(found, fields)
        if refused is not None:
            return _api_error(400, 300, f"Invalid field: {refused}.")
        return web.Response(status=204)

    async def past_meeting(self, request: web.Request) -> web.StreamResponse:
        """``/past_meetings/{meetingUUID}``: the meeting, found by its UUID however the
        client encoded it."""
        parts = meetings.segments(request.raw_path)[1:]
        if len(parts) != 1:
            raise web.HTTPNotFound()
        found = self._meeting(request, parts[0])
        if found is None:
            return _api_error(404, 3001, f"Meeting does not exist: {parts[0]}.")
        return web.json_response(
            {key: found[key] for key in ("uuid", "id", "host_id", "topic", "type", "duration")}
        )

    async def past_webinar(self, request: web.Request) -> web.StreamResponse:
        """A route where Zoom's 401 is about the resource, not the token: the emulated
        account has no webinars, so every past webinar belongs to another account."""
        self._emulator.count("api_401_not_token")
        return _api_error(401, 1010, "User does not belong to this account")

    async def unauthorized(self, request: web.Request) -> web.StreamResponse:
        """A 401 whatever the token: Zoom's JSON error with ``?code=N``; with
        ``?code=none``, JSON without a code; with no ``code``, plain text (as a gateway
        in front of Zoom might send)."""
        self._emulator.count("api_401_test")
        code = request.query.get("code")
        if code is None:
            return web.Response(status=401, text="Unauthorized")
        if not code.isdigit():
            return web.json_response({"message": "Unauthorized"}, status=401)
        return _api_error(401, int(code), "Unauthorized")

    async def echo(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(request[_RECORD].as_json())

    async def upload(self, request: web.Request) -> web.StreamResponse:
        record = request[_RECORD]
        return web.json_response(
            {"body_length": record.body_length, "body_sha256": record.body_sha256}
        )

    async def download(self, request: web.Request) -> web.StreamResponse:
        async def send(response: web.StreamResponse, size: int) -> None:
            try:
                for chunk in download_chunks(size):
                    await response.write(chunk)
            except (ConnectionError, asyncio.CancelledError):
                # The reader (the proxy) went away mid-body: tests wait on this.
                self._emulator.count("downloads_aborted")
                raise
            await response.write_eof()

        return await _octet_stream(request, send)

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        """*bytes* bytes of the download pattern, of a length not told: chunked."""
        size = _size_param(request)
        if size is None:
            return _api_error(400, 300, "Invalid field: bytes.")
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        for chunk in download_chunks(size):
            await response.write(chunk)
        await response.write_eof()
        return response

    async def broken(self, request: web.Request) -> web.StreamResponse:
        """Promise *bytes* bytes, send about half, then close the connection."""

        async def send(response: web.StreamResponse, size: int) -> None:
            for chunk in download_chunks(size // 2):
                await response.write(chunk)
            if request.transport is not None:
                request.transport.close()

        return await _octet_stream(request, send)

    async def hold_headers(self, request: web.Request) -> web.StreamResponse:
        """Send nothing until `ZoomEmulator.release_held`, then ``{"released": true}``."""
        await self._emulator.hold()
        return web.json_response({"released": True})

    async def hold_body(self, request: web.Request) -> web.StreamResponse:
        """Promise *bytes* bytes, send the first half, hold until released, send the rest."""

        async def send(response: web.StreamResponse, size: int) -> None:
            try:
                for chunk in download_chunks(size // 2):
                    await response.write(chunk)
                await self._emulator.hold()
                for chunk in download_chunks(size, start=size // 2):
                    await response.write(chunk)
            except ConnectionError:
                return  # the client went away: aiohttp ends this quietly
            await response.write_eof()

        return await _octet_stream(request, send)

    async def gzip(self, request: web.Request) -> web.StreamResponse:
        """A precompressed JSON body; X-Original-SHA256 is the hash of the gzip bytes."""
        document = {"message": "compressed by the emulator", "items": list(range(100))}
        payload = gzip.compress(json.dumps(document).encode(), mtime=0)
        headers = {
            "Content-Encoding": "gzip",
            "X-Original-SHA256": hashlib.sha256(payload).hexdigest(),
        }
        return web.Response(body=payload, headers=headers, content_type="application/json")

    async def rate_limited(self, request: web.Request) -> web.StreamResponse:
        headers = {
            "Retry-After": email.utils.formatdate(self._emulator.clock() + 1, usegmt=True),
            "X-RateLimit-Category": "Light",
            "X-RateLimit-Type": "QPS",
        }
        response = _api_error(429, 429, _RATE_LIMIT_MESSAGE)
        response.headers.update(headers)
        return response

    async def set_cookie(self, request: web.Request) -> web.StreamResponse:
        response = web.json_response({"cookies": "set"})
        response.set_cookie("zm_aid", secrets.token_urlsafe(16), path="/")
        response.set_cookie("_zm_ssid", secrets.token_urlsafe(16), path="/", httponly=True)
        return response
