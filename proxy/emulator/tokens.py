"""Zoom-shaped secrets: authorization codes, JWT-like tokens, and the PKCE check.

Zoom's access and refresh tokens (user and Server-to-Server account tokens alike) are
opaque to clients but look like JWTs of about 600 characters. The emulator imitates that
shape so that cookie sizes, header sizes and log-scrubbing in the proxy are exercised
realistically; nothing ever verifies the "signature", the emulator looks tokens up in
its own tables.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Mapping

TOKEN_MIN_LENGTH = 584
TOKEN_MAX_LENGTH = 636
_SIGNATURE_BYTES = 64  # HS512
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_json(value: Mapping[str, object]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode("ascii"))


def new_token(claims: Mapping[str, object], *, length: int | None = None) -> str:
    """Return a unique ``header.payload.signature`` string of 584-636 characters.

    The payload holds *claims* plus a random ``jti`` and random padding. ``length``
    asks for another size (about that many characters), to test long tokens.
    """
    header = _b64url_json({"alg": "HS512", "v": "2.0", "kid": str(uuid.uuid4())})
    signature = _b64url(secrets.token_bytes(_SIGNATURE_BYTES))
    target = length or TOKEN_MIN_LENGTH + secrets.randbelow(TOKEN_MAX_LENGTH - TOKEN_MIN_LENGTH + 1)
    payload_chars = target - len(header) - len(signature) - 2
    bare = {**claims, "jti": secrets.token_urlsafe(16), "pad": ""}
    # Base64 turns 3 bytes into 4 characters, so this lands within a character of target.
    pad_length = payload_chars * 3 // 4 - len(json.dumps(bare, separators=(",", ":")))
    payload = _b64url_json({**bare, "pad": secrets.token_urlsafe(pad_length)[:pad_length]})
    return f"{header}.{payload}.{signature}"


def new_code() -> str:
    """Return a fresh authorization code, 32 URL-safe characters like Zoom's."""
    return secrets.token_urlsafe(24)


def s256_challenge(verifier: str) -> str:
    """Return the PKCE S256 challenge for *verifier* (RFC 7636, section 4.2)."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def verifier_matches(verifier: str, challenge: str) -> bool:
    """Whether *verifier* is well-formed and hashes to *challenge* by S256."""
    if not _VERIFIER.fullmatch(verifier):
        return False
    return secrets.compare_digest(s256_challenge(verifier), challenge)
