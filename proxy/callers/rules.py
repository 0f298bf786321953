"""A service caller's allow rules (SPEC 12): ``METHOD PATTERN``, such as ``GET /users/**``.

``METHOD`` is an HTTP method in capitals or ``*`` for any; a ``GET`` rule does not allow
``HEAD`` unless that is written too. ``PATTERN`` is matched on the raw, still encoded path
after ``/api`` (no query), split on a literal ``/`` only, so a ``%2F`` stays inside its
segment. ``*`` matches exactly one non-empty segment, ``**`` (last only) one or more, and
any other segment must be equal byte for byte: nothing is decoded, so ``%7E`` is not ``~``.

A path with an empty segment is never allowed, whatever the rules. The proxy answers 400
to ``//`` before rules are checked, so this keeps the matcher safe on its own; the one
trailing ``/`` the proxy lets through (``/users/me/``) is therefore refused here (403).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_METHOD = re.compile(r"[A-Z]+|\*")
#: A literal segment: a path's characters (RFC 3986 pchar) only, since the path it is
#: compared with is still encoded; anything else could never match what reaches the rules.
_LITERAL = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()+,;=:@]|%[0-9A-Fa-f]{2})+")


@dataclass(frozen=True, slots=True)
class AllowRule:
    """One rule, parsed: build it with :func:`parse_rule`."""

    method: str
    segments: tuple[str, ...]
    text: str

    def allows(self, method: str, path: str) -> bool:
        """Whether this rule allows ``method`` on ``path`` (the raw path after ``/api``)."""
        have = _split(path)
        return have is not None and _matches(self, method, have)


def parse_rule(text: str) -> AllowRule:
    """The rule ``text`` says, or :class:`ValueError` saying what is wrong with it."""
    parts = text.split(" ")
    if len(parts) != 2:
        raise ValueError("write a rule as METHOD PATTERN with one space, such as 'GET /users/**'")
    method, pattern = parts
    if not _METHOD.fullmatch(method):
        raise ValueError(f"method {method!r}: an HTTP method in capitals, such as GET, or *")
    if not pattern.startswith("/"):
        raise ValueError(f"pattern {pattern!r} must start with /")
    segments = tuple(pattern[1:].split("/"))
    for index, segment in enumerate(segments):
        if segment == "*" or (segment == "**" and index == len(segments) - 1):
            continue
        if segment == "**":
            raise ValueError("** may only be the last segment")
        if not segment:
            raise ValueError("the pattern has an empty segment (// or a trailing /)")
        if "*" in segment:
            raise ValueError(f"segment {segment!r}: * and ** must stand alone in a segment")
        if not _LITERAL.fullmatch(segment):
            raise ValueError(
                f"segment {segment!r}: only a path's characters, as sent, with % followed"
                " by two hex digits (no ?, #, spaces, control characters, or {name}: use *)"
            )
    return AllowRule(method, segments, text)


def allowed(rules: Sequence[AllowRule], method: str, path: str) -> bool:
    """Whether any rule allows ``method`` on ``path`` (the raw path after /api, starting
    with '/'). The path is split once, whatever the number of rules."""
    have = _split(path)
    return have is not None and any(_matches(rule, method, have) for rule in rules)


def _split(path: str) -> list[str] | None:
    """The path's segments, or None if it is not one any rule may allow."""
    if not path.startswith("/"):
        return None
    have = path[1:].split("/")
    return None if "" in have else have


def _matches(rule: AllowRule, method: str, have: list[str]) -> bool:
    if rule.method not in ("*", method):
        return False
    want = rule.segments
    if want and want[-1] == "**":
        if len(have) < len(want):
            return False
    elif len(have) != len(want):
        return False
    # Not strict: a last ** is paired with the first of the segments it matches, and every
    # segment is already known to be non-empty, so the rest need no look.
    return all(w in (h, "*", "**") for w, h in zip(want, have, strict=False))
