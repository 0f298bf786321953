"""Values the emulator hands out: users, recorded requests, token sets, and refusals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class EmulatedUser:
    """The Zoom user who approves authorizations (and whom account tokens act as, as the
    account's owner), as ``GET /v2/users/me`` shows them."""

    id: str
    first_name: str
    last_name: str
    email: str
    account_id: str
    timezone: str = "America/Los_Angeles"
    type: int = 1
    role_name: str = "Owner"
    pmi: int = 4155550123
    language: str = "en-US"
    dept: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The body Zoom returns for ``GET /users/me``; *extra* is merged in last."""
        return {
            "id": self.id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "display_name": f"{self.first_name} {self.last_name}".strip(),
            "email": self.email,
            "type": self.type,
            "role_name": self.role_name,
            "pmi": self.pmi,
            "use_pmi": False,
            "timezone": self.timezone,
            "dept": self.dept,
            "verified": 1,
            "language": self.language,
            "status": "active",
            "account_id": self.account_id,
            "account_number": 0,
            "cluster": "us05",
            "user_created_at": "2024-01-15T09:30:00Z",
            **self.extra,
        }


def default_user() -> EmulatedUser:
    """The user the emulator signs in when none is given."""
    return EmulatedUser(
        id="KDcuGIm1QgePTO8WbOqwIQ",
        first_name="Ada",
        last_name="Lovelace",
        email="ada@example.com",
        account_id="q6gBJVO5TzexKYTb_I2rpg",
    )


@dataclass(frozen=True)
class RecordedRequest:
    """A request that reached ``/v2``, exactly as it arrived (before any auth check).

    *peer_port* is the client's source port (0 if unknown): requests that share it came
    over one keep-alive connection.
    """

    method: str
    raw_path: str
    headers: list[tuple[str, str]]
    body_sha256: str
    body_length: int
    peer_port: int = 0

    def as_json(self) -> dict[str, Any]:
        """The body of ``/v2/_test/echo``."""
        return {
            "method": self.method,
            "raw_path": self.raw_path,
            "headers": [list(pair) for pair in self.headers],
            "body_sha256": self.body_sha256,
            "body_length": self.body_length,
            "peer_port": self.peer_port,
        }


@dataclass(frozen=True)
class TokenSet:
    """A freshly issued access and refresh token pair (or a lone account token)."""

    access_token: str = field(repr=False)
    #: None for an account token (Server-to-Server OAuth), which Zoom issues without one.
    refresh_token: str | None = field(repr=False)
    expires_in: int
    scope: str

    def as_json(self, *, api_url: str) -> dict[str, Any]:
        """The body of a successful ``POST /oauth/token``."""
        body: dict[str, Any] = {"access_token": self.access_token, "token_type": "bearer"}
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return {**body, "expires_in": self.expires_in, "scope": self.scope, "api_url": api_url}


class InvalidGrant(Exception):
    """The token endpoint refuses a code, refresh token or account_id: HTTP 400 with
    Zoom's *reason* and *error* (``invalid_request`` for codes and account ids,
    ``invalid_grant`` for refresh tokens)."""

    def __init__(self, reason: str, error: str = "invalid_grant") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class InvalidAccessToken(Exception):
    """The API refuses a bearer token; *message* is Zoom's text (code 124)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
