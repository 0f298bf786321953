"""Typed application keys: what :func:`proxy.app.create_app` puts on the app for handlers."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from cryptography.fernet import MultiFernet

from proxy.config import Settings
from proxy.http.client import Pool
from proxy.http.pools import Pools
from proxy.session.cookie import ChunkedCookieStorage
from proxy.session.store import SessionStore
from proxy.tokens.oauth import ZoomOAuth
from proxy.tokens.refresh import Refresher

SETTINGS = web.AppKey("settings", Settings)
FERNET = web.AppKey("fernet", MultiFernet)
STORAGE = web.AppKey("storage", ChunkedCookieStorage)
#: For OAuth calls: few, and not worth a client of their own.
HTTP = web.AppKey("http", aiohttp.ClientSession)
#: For forwarded API calls: the hot path.
UPSTREAM = web.AppKey("upstream", Pool)
#: For recording downloads: Zoom's web hosts and the storage hosts they redirect to.
DOWNLOAD_HOSTS = web.AppKey("download_hosts", Pools)
OAUTH = web.AppKey("oauth", ZoomOAuth)
REFRESHER = web.AppKey("refresher", Refresher)
SESSIONS: web.AppKey[SessionStore] = web.AppKey("sessions")
#: Where a user manages (and removes) the app at Zoom, linked from the signed-in page:
#: set by ``--demo`` to the emulator's account page.
ZOOM_ACCOUNT_PAGE = web.AppKey("zoom_account_page", str)
