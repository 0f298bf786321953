"""The emulator's HTML pages: styled like the proxy's, and saying they are not Zoom.

Links and form actions on them are relative, as the emulator may be mounted under a
prefix (the demo serves it at ``/_emulator/``).
"""

from __future__ import annotations

import html

from aiohttp import web

from proxy.web.pages import STYLE

#: Said on every page, so that nobody takes the emulator for Zoom.
NOT_ZOOM = (
    '<p class="note">This is the built-in Zoom emulator (not Zoom), a stand-in for demos'
    " and tests: nothing here reaches Zoom, and no real account is involved.</p>"
)


def page(title: str, body: str, *, status: int = 200) -> web.Response:
    """A page styled like the proxy's; ``body`` must already be escaped."""
    heading = html.escape(title)
    text = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{heading} - Zoom emulator</title><style>{STYLE}</style></head>\n"
        f"<body><h1>{heading}</h1>{NOT_ZOOM}{body}</body></html>\n"
    )
    return web.Response(text=text, status=status, content_type="text/html")
