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

    def to_json(self) -> dict[str, Any]:
        return {"tokens": tokens_to_json(self.tokens), "user": asdict(self.user)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SessionData | None:
        """Parse a stored session; ``None`` for anything malformed (that is "signed out")."""
        try:
            tokens, user = _tokens(data["tokens"]), data["user"]
            return cls(
                tokens=tokens, user=User(**{name: _text(user[name]) for name in User.__slots__})
            )
        except (KeyError, TypeError, ValueError):
            return None
