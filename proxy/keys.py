"""Typed application keys: what :func:`proxy.app.create_app` puts on the app for handlers."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from cryptography.fernet import MultiFernet

from .config import Settings
from .oauth import ZoomOAuth
from .refresh import Refresher
from .session import ChunkedCookieStorage
from .session_store import SessionStore
from .upstream import Pool

SETTINGS = web.AppKey("settings", Settings)
FERNET = web.AppKey("fernet", MultiFernet)
STORAGE = web.AppKey("storage", ChunkedCookieStorage)
#: For OAuth calls: few, and not worth a client of their own.
HTTP = web.AppKey("http", aiohttp.ClientSession)
#: For forwarded API calls: the hot path.
UPSTREAM = web.AppKey("upstream", Pool)
OAUTH = web.AppKey("oauth", ZoomOAuth)
REFRESHER = web.AppKey("refresher", Refresher)
SESSIONS: web.AppKey[SessionStore] = web.AppKey("sessions")
