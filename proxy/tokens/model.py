"""What Zoom's OAuth gives: a token pair, and the user it belongs to."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class User:
    """The Zoom user a session belongs to, as ``GET /users/me`` describes them."""

    id: str
    email: str
    first_name: str
    last_name: str
    account_id: str

    @classmethod
    def from_zoom(cls, data: Mapping[str, Any]) -> User:
        """Build from Zoom's JSON; raises ``ValueError`` when it lacks an id."""
        user_id = data.get("id")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("Zoom's user has no id")
        return cls(
            id=user_id,
            **{name: _text(data.get(name)) for name in ("email", "first_name", "last_name")},
            account_id=_text(data.get("account_id")),
        )


@dataclass(frozen=True, slots=True)
class Tokens:
    """One Zoom token pair; ``expires_at`` is the access token's expiry in unix seconds."""

    access_token: str
    refresh_token: str
    expires_at: float
    scope: str

    def expires_within(self, seconds: float, *, now: float | None = None) -> bool:
        return self.expires_at - (time.time() if now is None else now) <= seconds

    def __repr__(self) -> str:
        return f"Tokens(expires_at={self.expires_at!r}, scope={self.scope!r})"


def tokens_to_json(tokens: Tokens) -> dict[str, Any]:
    return asdict(tokens)


def tokens_from_json(data: object) -> Tokens | None:
    """Parse stored tokens; ``None`` for anything malformed."""
    try:
        return _tokens(data)
    except (KeyError, TypeError, ValueError):
        return None


def _tokens(data: Any) -> Tokens:
    return Tokens(
        access_token=_required_text(data["access_token"]),
        refresh_token=_required_text(data["refresh_token"]),
        expires_at=float(data["expires_at"]),
        scope=_text(data["scope"]),
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _required_text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("empty")
    return value
