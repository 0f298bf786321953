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

SETTINGS = web.AppKey("settings", Settings)
FERNET = web.AppKey("fernet", MultiFernet)
STORAGE = web.AppKey("storage", ChunkedCookieStorage)
HTTP = web.AppKey("http", aiohttp.ClientSession)
OAUTH = web.AppKey("oauth", ZoomOAuth)
REFRESHER = web.AppKey("refresher", Refresher)
SESSIONS: web.AppKey[SessionStore] = web.AppKey("sessions")
