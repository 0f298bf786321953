"""What a signed-in session holds: the user's tokens and who the user is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from proxy.tokens.model import Tokens, User, _text, _tokens, tokens_to_json


@dataclass(frozen=True, slots=True)
class SessionData:
    """Everything a session cookie holds."""

    tokens: Tokens
    user: User
    #: When the user signed in (unix seconds; 0 for a session from before it was kept):
    #: a revocation (``app_deauthorized``) ends the sessions that began before it.
    signed_in_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "tokens": tokens_to_json(self.tokens),
            "user": asdict(self.user),
            "signed_in_at": self.signed_in_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SessionData | None:
        """Parse a stored session; ``None`` for anything malformed (that is "signed out")."""
        try:
            tokens, user = _tokens(data["tokens"]), data["user"]
            signed_in_at = data.get("signed_in_at", 0.0)
            if not isinstance(signed_in_at, int | float) or isinstance(signed_in_at, bool):
                return None
            return cls(
                tokens=tokens,
                user=User(**{name: _text(user[name]) for name in User.__slots__}),
                signed_in_at=float(signed_in_at),
            )
        except (KeyError, TypeError, ValueError):
            return None
