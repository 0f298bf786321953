"""Parsing the token endpoint's answer (proxy/oauth.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from proxy.tokens.oauth import tokens_from_zoom

ZOOM_SIZED = "eyJ" + "a" * 600


def answer(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": ZOOM_SIZED,
        "token_type": "bearer",
        "refresh_token": ZOOM_SIZED + "r",
        "expires_in": 3599,
        "scope": "user:read meeting:write",
    }
    body.update(changes)
    return body


def test_zoom_tokens_are_taken_as_they_are() -> None:
    before = time.time()
    tokens = tokens_from_zoom(answer())
    assert (tokens.access_token, tokens.refresh_token) == (ZOOM_SIZED, ZOOM_SIZED + "r")
    assert before + 3599 <= tokens.expires_at <= time.time() + 3599
    assert tokens.scope == "user:read meeting:write"


@pytest.mark.parametrize(
    "token",
    ["abc\r\nX-Injected: 1", "abc\n", "abc\x00", "caf\u00e9", "", None, 42],
    ids=["crlf", "lf", "nul", "non-ascii", "empty", "null", "number"],
)
@pytest.mark.parametrize("field", ["access_token", "refresh_token"])
def test_a_token_that_cannot_go_into_a_header_line_is_refused(field: str, token: object) -> None:
    with pytest.raises(ValueError, match="tokens missing or malformed"):
        tokens_from_zoom(answer(**{field: token}))
