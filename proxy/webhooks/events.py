"""A verified event's body, read as far as the proxy needs: its name and payload."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from proxy.errors import EventMalformed

URL_VALIDATION = "endpoint.url_validation"
DEAUTHORIZED = "app_deauthorized"
#: Event names counted by name in metrics; any other is counted as ``other``.
KNOWN_EVENTS = frozenset(
    {
        URL_VALIDATION,
        DEAUTHORIZED,
        "meeting.created",
        "meeting.updated",
        "meeting.deleted",
        "meeting.started",
        "meeting.ended",
        "meeting.participant_joined",
        "meeting.participant_left",
        "recording.completed",
        "recording.started",
        "recording.stopped",
        "recording.deleted",
        "recording.transcript_completed",
        "webinar.started",
        "webinar.ended",
        "user.created",
        "user.updated",
        "user.deleted",
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    payload: dict[str, Any]

    @property
    def label(self) -> str:
        """The name as metrics count it: one of a known set, or ``other``."""
        return self.name if self.name in KNOWN_EVENTS else "other"


def parse(body: bytes) -> Event:
    """The event in ``body``; :class:`EventMalformed` unless it is a JSON object (UTF-8)
    with a string ``event`` and, if any, an object ``payload``."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise EventMalformed() from None
    if not isinstance(data, dict):
        raise EventMalformed()
    name, payload = data.get("event"), data.get("payload", {})
    if not isinstance(name, str) or not name or not isinstance(payload, dict):
        raise EventMalformed()
    return Event(name, payload)
