"""Logging set-up, request ids and the access log: readable text or one JSON object a line.

Every line logged while a request is handled carries its request id. The access log
never shows a query value: ``/auth/callback?code=...`` carries an authorization
code, so only the query's keys are kept.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar, Token
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from proxy.config import LoggingSettings

#: The request id of the request being handled, for log lines that have no request.
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="-")
_REQUEST_ID_HEADER = "X-Request-ID"
_MAX_REQUEST_ID = 128


def accepted_request_id(value: str | None) -> str:
    """The client's ``X-Request-ID`` if sane (1-128 printable ASCII), else a new one."""
    if value and len(value) <= _MAX_REQUEST_ID and all(0x21 <= ord(c) <= 0x7E for c in value):
        return value
    return _new_request_id()


class _RandomIds:
    """New request ids, each 16 bytes of the OS's randomness in hex (as random as
    ``uuid4().hex``), drawn 4 KiB at a time: ``os.urandom`` is a system call, and one
    per request showed beside the four that move the request's bytes."""

    _DRAWN = 4096

    def __init__(self) -> None:
        self._hex = ""
        self._at = 0
        # A forked worker must not hand out the ids its parent had drawn.
        os.register_at_fork(after_in_child=self._forget)

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._hex):
            self._hex, at = os.urandom(self._DRAWN).hex(), 0
        self._at = at + 32
        return self._hex[at : at + 32]

    def _forget(self) -> None:
        self._hex, self._at = "", 0


_new_request_id = _RandomIds()


class RequestRecord:
    """What is known of one request while it is handled, for its logs and metrics."""

    __slots__ = (
        "_context",
        "caller",
        "method",
        "raw_target",
        "request_id",
        "trust_forwarded",
        "upstream_status",
        "user_id",
    )

    def __init__(
        self,
        method: str,
        raw_target: str,
        request_id: str,
        context: Token[str],
        trust_forwarded: bool,
    ) -> None:
        self.method = method
        #: As the client sent it: never logged whole (its query may carry a code).
        self.raw_target = raw_target
        self.request_id = request_id
        #: The Zoom user the request acted for, once its session is known.
        self.user_id = "-"
        #: Or the service caller it came from, once its key is known.
        self.caller: str | None = None
        #: The status Zoom's API answered with, for a forwarded request.
        self.upstream_status: int | None = None
        #: Whether ``X-Forwarded-For`` names the client (``trust_forwarded_headers``).
        self.trust_forwarded = trust_forwarded
        self._context = context

    def end(self) -> None:
        """No more log lines belong to this request."""
        current_request_id.reset(self._context)


#: The record of the request aiohttp handles (none for one its parser refused).
RECORD = web.RequestKey("record", RequestRecord)


def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer names its request, errors and streams too."""
    record = request.get(RECORD)
    if record is not None:
        response.headers[_REQUEST_ID_HEADER] = record.request_id


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any ``extra`` access-log fields merged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            entry.update(access)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def configure_logging(settings: LoggingSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())


def redacted_target(raw_target: str) -> str:
    """``/raw/path?key1&key2``: the still-encoded path and the query's keys, no values.

    The path stays percent-encoded and control characters in keys are escaped, so a
    request cannot forge a second log line.
    """
    path, _, query = raw_target.partition("?")
    keys = [key for key, _ in parse_qsl(query, keep_blank_values=True)]
    if not keys:
        return path
    return f"{path}?{'&'.join(keys)}".encode("unicode_escape").decode("ascii")


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, redacted path, status, duration, user."""

    @property
    def enabled(self) -> bool:
        # aiohttp skips the whole access-log call when this is false.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # A request aiohttp's parser refused has no record (and reached no app).
        record = request.get(RECORD)
        log_access(
            self.logger,
            method=request.method,
            raw_target=request.raw_path,
            status=response.status,
            seconds=time,
            user_id="-" if record is None else record.user_id,
            caller=None if record is None else record.caller,
            request_id="-" if record is None else record.request_id,
            upstream_status=None if record is None else record.upstream_status,
            remote=client_address(
                request.remote,
                request.headers.get("X-Forwarded-For"),
                trusted=record is not None and record.trust_forwarded,
            ),
        )


def log_access(
    logger: logging.Logger,
    *,
    method: str,
    raw_target: str,
    status: int,
    seconds: float,
    user_id: str,
    request_id: str,
    upstream_status: int | None,
    remote: str,
    caller: str | None = None,
) -> None:
    """The access-log line (and its JSON fields) for one answered request: who made it
    is ``user=<id>``, or ``caller=<name>`` for a service caller."""
    fields = {
        "method": method,
        "path": redacted_target(raw_target),
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "user_id": user_id,
        "caller": caller,
        "request_id": request_id,
        "upstream_status": upstream_status,
        "remote": remote,
    }
    logger.info(
        "%s %s %d %.1fms %s upstream=%s remote=%s",
        method,
        fields["path"],
        status,
        fields["duration_ms"],
        f"user={user_id}" if caller is None else f"caller={caller}",
        upstream_status or "-",
        remote,
        extra={"access": fields, "request_id": request_id},
    )


def client_address(peer: str | None, forwarded_for: str | None, *, trusted: bool) -> str:
    """The client's address; behind a trusted front proxy, the right-most
    ``X-Forwarded-For`` hop, the one the front proxy itself saw."""
    if trusted and forwarded_for:
        last = forwarded_for.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return peer or "-"
