"""``python -m proxy --demo``: the proxy in front of the built-in Zoom emulator.

No Zoom app and no config are needed: the emulator plays Zoom on a free local port,
with a consent page to click through, and a throwaway session key is generated.
"""

from __future__ import annotations

from aiohttp import web

from . import serve
from .app import create_app
from .config import Settings, generate_key, settings_from_mapping
from .emulator import ZoomEmulator


def demo_settings(*, port: int, zoom_base: str, client_id: str, client_secret: str) -> Settings:
    return settings_from_mapping(
        {
            "listen": {"host": "localhost", "port": port},
            "public_url": f"http://localhost:{port}",
            "zoom": {
                "client_id": client_id,
                "client_secret": client_secret,
                "authorize_url": f"{zoom_base}/oauth/authorize",
                "token_url": f"{zoom_base}/oauth/token",
                "revoke_url": f"{zoom_base}/oauth/revoke",
                "api_base_url": f"{zoom_base}/v2",
            },
            "session": {"secret_keys": [generate_key()], "cookie_secure": False},
        },
        environ={},
    )


async def demo_app(port: int) -> web.Application:
    """The proxy app, with the emulator started beside it and stopped with it."""
    emulator = ZoomEmulator(auto_approve=False)
    emulator_runner = await serve.start(emulator.app(), host="127.0.0.1", port=0)
    emulator_port = emulator_runner.addresses[0][1]
    settings = demo_settings(
        port=port,
        zoom_base=f"http://127.0.0.1:{emulator_port}",
        client_id=emulator.client_id,
        client_secret=emulator.client_secret,
    )
    emulator.allowed_redirect_uris = {settings.redirect_uri}
    app = create_app(settings)

    async def stop_emulator(_: web.Application) -> None:
        await emulator_runner.cleanup()

    app.on_cleanup.append(stop_emulator)
    return app
