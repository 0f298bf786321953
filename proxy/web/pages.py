"""The few HTML pages the proxy serves itself: small, self-contained, escaped.

Also the favicon. :data:`STYLE` is shared with the Zoom emulator's pages, so this
module imports nothing else of the proxy's at run time.
"""

from __future__ import annotations

import struct
import time
import zlib
from html import escape
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from proxy.session.model import SessionData

#: The one style sheet of every page, the emulator's included.
STYLE = """
body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}a.button,button{display:inline-block;padding:.6rem 1.2rem;border:0;
border-radius:.4rem;background:#0b5cff;color:#fff;font-size:1rem;text-decoration:none;cursor:pointer}
a.secondary,button.secondary{background:#e8e8e8;color:#222}
p.note{background:#fff4ce;border-left:4px solid #e0a800;padding:.5rem .8rem}
pre{background:#f4f4f4;padding:.8rem;overflow-x:auto;font-size:.85rem}
dt{font-weight:600}dd{margin:0 0 .5rem 0}
"""

HOME = "/"


def page(title: str, body_html: str) -> str:
    """A complete page; ``body_html`` must already be escaped."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body_html}</body></html>"
    )


def message_page(
    title: str, message: str, *, link: str = "/auth/login", label: str = "Sign in again"
) -> str:
    return page(
        title,
        f'<p>{escape(message)}</p><p><a class=button href="{escape(link)}">{escape(label)}</a></p>',
    )


def sign_out_page() -> str:
    """What a browser's ``GET /auth/logout`` shows: a button that POSTs the sign-out."""
    return page(
        "Sign out of zoom-proxy?",
        "<p>Signing out ends your zoom-proxy session in this browser and revokes the"
        " proxy's access to your Zoom account; copies of its cookie jar stop working too.</p>"
        '<form method=post action="/auth/logout"><button type=submit>Sign out</button> '
        f'<a class="button secondary" href="{HOME}">Cancel</a></form>',
    )


def signed_out_page() -> str:
    return page(
        "zoom-proxy",
        "<p>Call Zoom's API as yourself, without handling tokens.</p>"
        '<p><a class=button href="/auth/login">Sign in with Zoom</a></p>',
    )


def service_only_page(public_url: str) -> str:
    """``/`` on a proxy without the user app: nobody signs in here."""
    curl = f'curl -H "Authorization: Bearer $CALLER_KEY" {public_url}/api/users'
    return page(
        "zoom-proxy",
        "<p>This proxy serves service callers only: backends that call Zoom's API as the"
        " account, each with a key of its own (<code>service.callers</code>). Nobody signs"
        " in here.</p>"
        f"<pre>{escape(curl)}</pre>",
    )


def signed_in_page(
    session: SessionData, *, public_url: str, account_page: str | None = None
) -> str:
    user, tokens = session.user, session.tokens
    remaining = max(0, int(tokens.expires_at - time.time()))
    name = f"{user.first_name} {user.last_name}".strip() or user.id
    curl = f"curl -b zoom-jar.txt -c zoom-jar.txt {public_url}/api/users/me"
    return page(
        "zoom-proxy",
        f"<p>Signed in as <strong>{escape(name)}</strong>.</p><dl>"
        f"<dt>Email</dt><dd>{escape(user.email)}</dd>"
        f"<dt>Account</dt><dd>{escape(user.account_id)}</dd>"
        f"<dt>Access token</dt><dd>valid for {remaining // 60} min {remaining % 60} s"
        " (refreshed automatically)</dd></dl>"
        f'<p>Try it: <a href="/api/users/me">/api/users/me</a></p>'
        "<p>From a shell, download your cookie jar "
        '(<a href="/auth/cookiejar">zoom-jar.txt</a>) and use it with curl; '
        "<code>-c</code> keeps the rotated tokens:</p>"
        f"<pre>{escape(curl)}</pre>"
        "<h2>Recordings</h2><ul id=recordings><li>Looking for cloud recordings...</li></ul>"
        f"<script>{_RECORDINGS_SCRIPT}</script>"
        + (
            ""
            if account_page is None
            else f'<p>At Zoom: <a id=zoom-account href="{escape(account_page)}">'
            "your account, where you can remove this app</a> (your sessions end at once)</p>"
        )
        + '<form method=post action="/auth/logout"><button type=submit>Sign out</button></form>',
    )


#: Lists the user's cloud recordings with /download links (text only, never HTML).
_RECORDINGS_SCRIPT = """
fetch("/api/users/me/recordings").then(r => r.ok ? r.json() : {}).catch(() => ({}))
.then(data => {
  const list = document.getElementById("recordings");
  list.textContent = "";
  for (const meeting of data.meetings || []) {
    for (const file of meeting.recording_files || []) {
      if (!file.download_url) continue;
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = "/download?url=" + encodeURIComponent(file.download_url);
      link.textContent = `${meeting.topic || "Recording"} (${file.file_type || "file"})`;
      item.append(link);
      list.append(item);
    }
  }
  if (!list.children.length) list.textContent = "None found.";
});
"""


# --- the favicon ----------------------------------------------------------------------

_ICON_SIZE = 32
_BLUE = bytes((0x0B, 0x5C, 0xFF, 0xFF))
_WHITE = bytes((0xFF, 0xFF, 0xFF, 0xFF))
_CLEAR = bytes(4)


def _icon_pixel(x: int, y: int) -> bytes:
    """A white Z on a blue rounded square, 32 by 32."""
    radius, last = 6, _ICON_SIZE - 1
    corner_x = min(x, last - x, radius)
    corner_y = min(y, last - y, radius)
    if (radius - corner_x) ** 2 + (radius - corner_y) ** 2 > radius**2:
        return _CLEAR
    if 8 <= x <= 23 and (8 <= y <= 11 or 20 <= y <= 23):
        return _WHITE
    if 12 <= y <= 19 and abs(x - (23 - (y - 11) * 15 / 9)) <= 2:
        return _WHITE
    return _BLUE


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _icon() -> bytes:
    """An ICO file holding one PNG (which every current browser reads)."""
    size = _ICON_SIZE
    rows = b"".join(b"\x00" + b"".join(_icon_pixel(x, y) for x in range(size)) for y in range(size))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(rows, 9))
        + _png_chunk(b"IEND", b"")
    )
    directory = struct.pack("<HHH", 0, 1, 1) + struct.pack(
        "<BBBBHHII", size, size, 0, 0, 1, 32, len(png), 6 + 16
    )
    return directory + png


FAVICON = _icon()
#: A month: the icon never depends on who asks, and a stale one harms nobody.
FAVICON_CACHE_CONTROL = "public, max-age=2592000"


async def favicon(request: web.Request) -> web.Response:
    """``GET /favicon.ico``: the same bytes for everyone, no session looked at."""
    return web.Response(
        body=FAVICON,
        content_type="image/x-icon",
        headers={"Cache-Control": FAVICON_CACHE_CONTROL},
    )
