"""Anything the proxy keeps outside the process (cookies, Redis) is Fernet-sealed JSON
under the session keys: the first key encrypts, every key decrypts, so keys rotate
without signing anyone out."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def make_fernet(keys: Iterable[str]) -> MultiFernet:
    """The cipher for every cookie the proxy sets: the first key encrypts, all decrypt."""
    return MultiFernet([Fernet(key) for key in keys])


def seal(fernet: MultiFernet, data: Mapping[str, Any]) -> bytes:
    """``data`` as encrypted JSON, the way the proxy stores anything outside the process."""
    return fernet.encrypt(json.dumps(data, separators=(",", ":")).encode())


def unseal(fernet: MultiFernet, value: bytes) -> dict[str, Any] | None:
    """What :func:`seal` stored, or ``None`` if it cannot be decrypted or is not a mapping."""
    try:
        data = json.loads(fernet.decrypt(value))
    except (InvalidToken, ValueError):
        return None
    return data if isinstance(data, dict) else None
