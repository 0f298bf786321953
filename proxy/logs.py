"""Logging set-up and the access log: readable text or one JSON object a line.

The access log never shows a query value: ``/auth/callback?code=...`` carries an
authorization code, so only the query's keys are kept.
"""

from __future__ import annotations

import json
import logging
import sys
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .config import LoggingSettings

#: The Zoom user a request acted for, set by handlers once a session is loaded.
USER_ID = web.RequestKey("user_id", str)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any ``extra`` access-log fields merged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            entry.update(access)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def configure_logging(settings: LoggingSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
        user_id = request.get(USER_ID, "-") if isinstance(request, web.Request) else "-"
        fields = {
            "method": request.method,
            "path": redacted_target(request.raw_path),
            "status": response.status,
            "duration_ms": round(time * 1000, 1),
            "user_id": user_id,
            "remote": request.remote or "-",
        }
        self.logger.info(
            "%s %s %d %.1fms user=%s",
            fields["method"],
            fields["path"],
            fields["status"],
            fields["duration_ms"],
            user_id,
            extra={"access": fields},
        )
