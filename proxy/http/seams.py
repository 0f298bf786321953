"""Every use of aiohttp's internals, in one place, each with why.

aiohttp is pinned to one minor version (``pyproject.toml``); ``tests/test_seams.py``
fails when a release changes any of these.
"""

from __future__ import annotations

from aiohttp.helpers import rfc822_formatted_time

#: The ``Date`` header's value now, cached per second as aiohttp's own answers use it:
#: the front's answers carry the same value aiohttp's would.
http_date = rfc822_formatted_time
