"""The request methods the proxy knows, and what each set is for."""

from __future__ import annotations

from typing import Final

#: What Zoom's API uses. Anything else (TRACE would echo the bearer token back) is 405.
API_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Methods that change something: a cross-origin page must not make a browser send them.
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Methods a request may be sent again with after a connection broke before any answer
#: (RFC 9110 section 9.2.2).
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Methods whose requests carry a body, so an empty one still gets ``Content-Length: 0``.
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
