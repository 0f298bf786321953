"""The few HTML pages the proxy serves itself: small, self-contained, escaped."""

from __future__ import annotations

import time
from html import escape

from .session import SessionData

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}a.button,button{display:inline-block;padding:.6rem 1.2rem;border:0;
border-radius:.4rem;background:#0b5cff;color:#fff;font-size:1rem;text-decoration:none;cursor:pointer}
pre{background:#f4f4f4;padding:.8rem;overflow-x:auto;font-size:.85rem}
dt{font-weight:600}dd{margin:0 0 .5rem 0}
"""


def page(title: str, body_html: str) -> str:
    """A complete page; ``body_html`` must already be escaped."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body_html}</body></html>"
    )


def message_page(
    title: str, message: str, *, link: str = "/auth/login", label: str = "Sign in again"
) -> str:
    return page(
        title,
        f'<p>{escape(message)}</p><p><a class=button href="{escape(link)}">{escape(label)}</a></p>',
    )


def signed_out_page() -> str:
    return page(
        "zoom-proxy",
        "<p>Call Zoom's API as yourself, without handling tokens.</p>"
        '<p><a class=button href="/auth/login">Sign in with Zoom</a></p>',
    )


def signed_in_page(session: SessionData, *, public_url: str) -> str:
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
        '<form method=post action="/auth/logout"><button type=submit>Sign out</button></form>',
    )
