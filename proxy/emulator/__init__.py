"""A local Zoom for demos and tests: OAuth with PKCE and rotation, and a bit of ``/v2``.

Modules: `state` (Zoom's rules and the app factory), `oauth`, `api`, `recordings` and
`webhooks` (the HTTP surface; `webhooks` also sends Zoom's signed events), `pages` (the
HTML pages' look), `tokens` (token shapes and PKCE), `models` (values handed out),
`access_log` (an access log that never prints a query string).

Example::

    emulator = ZoomEmulator(auto_approve=False, token_lifetime=60)
    web.run_app(emulator.app(), port=9000, access_log_class=AccessLogger)
"""

from proxy.emulator.access_log import AccessLogger
from proxy.emulator.api import download_chunks
from proxy.emulator.models import EmulatedUser, RecordedRequest, TokenSet
from proxy.emulator.state import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_SCOPE,
    DEFAULT_WEBHOOK_SECRET,
    ZoomEmulator,
)
from proxy.emulator.tokens import s256_challenge
from proxy.emulator.webhooks import sign

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_SCOPE",
    "DEFAULT_WEBHOOK_SECRET",
    "AccessLogger",
    "EmulatedUser",
    "RecordedRequest",
    "TokenSet",
    "ZoomEmulator",
    "download_chunks",
    "s256_challenge",
    "sign",
]
