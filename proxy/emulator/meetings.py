"""The emulator's meetings: a user's meetings by id or UUID, as Zoom's Meeting API
finds them.

Zoom names a meeting by its numeric id, or (past meetings, recordings) by its UUID: 24
characters of base64, which may hold ``/``. Its API reference asks clients to encode a
UUID once (``Gx3Zp9%2FkQ0…%3D%3D``) unless it begins with ``/`` or holds ``//``, which
they encode twice (``%252F…``). So the emulator reads the path segment raw (before any
router decoding, which would split the UUID at its ``/``), decodes it once, and once
more if what is left is still encoded: base64 never holds a ``%``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

#: Fields a PATCH may change (Zoom accepts many more; these are the ones kept here).
UPDATABLE = frozenset({"topic", "type", "start_time", "duration", "timezone", "agenda"})
_MEETING_ID = re.compile(r"[0-9]{9,12}")


def segments(raw_path: str, prefix: str = "/v2/") -> list[str]:
    """The raw (still encoded) segments of a ``/v2`` path, without its query."""
    return raw_path.partition("?")[0].removeprefix(prefix).split("/")


def meeting_key(segment: str) -> str:
    """A numeric id as it is, else the UUID a raw path segment names."""
    once = unquote(segment)
    return unquote(once) if "%" in once else once


def find(meetings: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The meeting with this numeric id or UUID."""
    by_id = _MEETING_ID.fullmatch(key) is not None
    for meeting in meetings:
        if (str(meeting["id"]) if by_id else meeting["uuid"]) == key:
            return meeting
    return None


def update(meeting: dict[str, Any], fields: dict[str, Any]) -> str | None:
    """Apply a PATCH's ``fields``; the name of the first one Zoom would refuse, if any."""
    for name, value in fields.items():
        if name not in UPDATABLE:
            continue
        expected: type | tuple[type, ...] = int if name in ("type", "duration") else str
        if not isinstance(value, expected) or isinstance(value, bool):
            return name
    meeting.update({name: value for name, value in fields.items() if name in UPDATABLE})
    return None
