"""``python -m proxy --demo``: the proxy in front of the built-in Zoom emulator.

No Zoom app and no config are needed: the emulator plays Zoom under ``/_emulator/`` on
the proxy's own port, with a consent page to click through, and a throwaway session key
is generated. Only the one port is used, so the demo works wherever a browser can reach
that port: in a container (``--host 0.0.0.0``) or on a remote machine (with
``--public-url`` saying how the browser reaches it).
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from proxy.app import create_app
from proxy.config import Settings, generate_key, settings_from_mapping
from proxy.emulator import ZoomEmulator
from proxy.emulator.recordings import StorageServer, WebRoutes
from proxy.web.keys import ZOOM_ACCOUNT_PAGE

#: Where the emulator's routes live on the proxy's port.
EMULATOR_PREFIX = "/_emulator"
#: Where the emulated storage host serves recordings' bytes.
STORAGE_PREFIX = "/_storage"
#: The demo's one recording.
DEMO_RECORDING_SIZE = 4 << 20


#: The demo's service caller, allowed every call: ``--demo`` prints its key.
DEMO_CALLER = "demo-backend"


def demo_settings(
    *, host: str, port: int, public_url: str, emulator: ZoomEmulator, caller_key_sha256: str
) -> Settings:
    """The browser goes to the emulator's consent page at ``public_url``; the proxy calls
    the emulator's token endpoint and API on its own listening address. Service callers
    are on too, with the emulator's Server-to-Server app and one caller whose key hashes
    to ``caller_key_sha256``. Raises :class:`proxy.config.ConfigError` for a
    ``public_url`` that is not an origin."""
    browser_side = f"{public_url}{EMULATOR_PREFIX}"
    own_origin = f"http://{_url_host(_own_address(host))}:{port}"
    server_side = f"{own_origin}{EMULATOR_PREFIX}"
    return settings_from_mapping(
        {
            "listen": {"host": host, "port": port},
            "public_url": public_url,
            "zoom": {
                "client_id": emulator.client_id,
                "client_secret": emulator.client_secret,
                "authorize_url": f"{browser_side}/oauth/authorize",
                "token_url": f"{server_side}/oauth/token",
                "revoke_url": f"{server_side}/oauth/revoke",
                "api_base_url": f"{server_side}/v2",
                # The emulator's recordings are served on the demo's own port.
                "download_origins": [own_origin],
            },
            "service": {
                "account_id": emulator.account_id,
                "client_id": emulator.service_client_id,
                "client_secret": emulator.service_client_secret,
                "callers": [
                    {"name": DEMO_CALLER, "key_sha256": caller_key_sha256, "allow": ["* /**"]}
                ],
            },
            # The emulator signs its events (a user removing the app) with this.
            "webhooks": {"secret_token": emulator.webhook_secret},
            # Secure cookies only where the browser comes over https (a TLS front).
            "session": {
                "secret_keys": [generate_key()],
                "cookie_secure": public_url.startswith("https://"),
            },
        },
        environ={},
    )


def default_public_url(host: str, port: int) -> str:
    """How a browser on this machine reaches the demo listening on ``host``."""
    address = "localhost" if _is_wildcard(host) else host
    return f"http://{_url_host(address)}:{port}"


def demo_app(settings: Settings, emulator: ZoomEmulator) -> web.Application:
    """The proxy app, with ``emulator`` mounted under :data:`EMULATOR_PREFIX`, and one
    cloud recording: its ``download_url`` at ``/rec/download/…`` on the demo's port (a
    download_url's path starts with ``/rec/``), its bytes under :data:`STORAGE_PREFIX`.
    The emulator's events go to the proxy's webhook route, and the signed-in page links
    to the emulator's account page, where the user can remove the app."""
    emulator.allowed_redirect_uris = {settings.redirect_uri}
    app = create_app(settings)
    app.add_subapp(EMULATOR_PREFIX, emulator.app())
    WebRoutes(emulator).setup(app)
    app.add_subapp(STORAGE_PREFIX, StorageServer(emulator).app())
    [own_origin] = settings.zoom.download_origins
    emulator.storage_url = f"{own_origin}{STORAGE_PREFIX}"
    emulator.add_recording(DEMO_RECORDING_SIZE)
    emulator.webhook_url = f"{own_origin}/webhooks/zoom"
    app[ZOOM_ACCOUNT_PAGE] = f"{settings.public_url}{EMULATOR_PREFIX}/account"
    return app


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")  # noqa: S104 - recognising it, not binding it


def _own_address(host: str) -> str:
    """An address the proxy reaches itself at, listening on ``host``."""
    if host == "::":
        return "::1"
    return "127.0.0.1" if _is_wildcard(host) or host == "localhost" else host


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:  # a name
        return host
