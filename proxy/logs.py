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


def redacted_target(path: str, query_string: str) -> str:
    """``path?key1&key2``: the query's keys without their values."""
    if not query_string:
        return path
    keys = [key for key, _ in parse_qsl(query_string, keep_blank_values=True)]
    return f"{path}?{'&'.join(keys)}" if keys else path


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, redacted path, status, duration, user."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        user_id = request.get(USER_ID, "-") if isinstance(request, web.Request) else "-"
        fields = {
            "method": request.method,
            "path": redacted_target(request.path, request.query_string),
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
