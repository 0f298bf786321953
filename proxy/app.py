"""``create_app(settings)``: the proxy's wiring, and nothing else."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp_session import session_middleware

from proxy.callers.registry import Callers
from proxy.config import Settings
from proxy.errors import RefreshRejected, SessionStoreUnavailable
from proxy.forward.core import FORWARDER, Forwarder
from proxy.forward.download import download
from proxy.forward.handler import forward
from proxy.http.client import Pool
from proxy.http.pools import Pools
from proxy.observe.lifecycle import LIFECYCLE, Lifecycle
from proxy.observe.metrics import METRICS, Metrics
from proxy.observe.record import REQUESTS, Requests
from proxy.redis import client as redis_client
from proxy.redis.tracking import Tracking
from proxy.session.cookie import ChunkedCookieStorage
from proxy.session.revocations import Revocations, SharedRevocations
from proxy.session.store import CookieSessions, RedisSessions
from proxy.tokens.account import AccountTokens
from proxy.tokens.coordination import LOCAL, Coordinator, SharedGrace
from proxy.tokens.model import Tokens
from proxy.tokens.oauth import ZoomOAuth
from proxy.tokens.refresh import Refresher
from proxy.tokens.sealing import make_fernet
from proxy.web import auth
from proxy.web.cors import screen_origin
from proxy.web.errors import error_middleware
from proxy.web.keys import (
    DOWNLOAD_HOSTS,
    FERNET,
    HTTP,
    OAUTH,
    REFRESHER,
    SESSIONS,
    SETTINGS,
    STORAGE,
    UPSTREAM,
    ZOOM_ACCOUNT_PAGE,
)
from proxy.web.middleware import bracket
from proxy.web.pages import favicon, service_only_page, signed_in_page, signed_out_page
from proxy.webhooks import receiver as webhooks

#: Connections open to Zoom at once, shared by every user and request. Waiting for a
#: free one counts against ``upstream.connect_timeout``.
UPSTREAM_CONNECTIONS = 1024
#: Bytes buffered per response body before reading pauses: large enough that a fast
#: download is not paused and resumed every 64 KiB, small enough to stay constant.
BODY_BUFFER = 1 << 19
#: Seconds a Redis refresh lock outlives the longest call to Zoom's token endpoint.
LOCK_MARGIN = 5.0


def create_app(settings: Settings) -> web.Application:
    """The proxy as an aiohttp application; the upstream client opens on startup."""
    fernet = make_fernet(key.value for key in settings.session.secret_keys)
    storage = ChunkedCookieStorage(
        fernet,
        cookie_name=settings.session.cookie_name,
        max_age=settings.session.max_age,
        secure=settings.session.cookie_secure,
        samesite=settings.session.cookie_samesite,
        trust_forwarded_proto=settings.trust_forwarded_headers,
    )
    lifecycle = Lifecycle()
    metrics = Metrics(in_flight=lambda: lifecycle.in_flight)
    requests = Requests(metrics, lifecycle, trust_forwarded=settings.trust_forwarded_headers)
    storage.on_decode_failure = metrics.count_decode_failure
    app = web.Application(
        middlewares=[
            bracket(requests),
            # Outside the error translation, so that a session changed by a refresh
            # is saved even when the answer turns out to be an error.
            session_middleware(storage),
            error_middleware(screen_origin),
        ],
    )
    app[LIFECYCLE] = lifecycle
    app[METRICS] = metrics
    app[REQUESTS] = requests
    app[SETTINGS] = settings
    app[FERNET] = fernet
    app[STORAGE] = storage
    app.cleanup_ctx.append(_shared_state)
    app.cleanup_ctx.append(_zoom_client)
    if settings.webhooks.secret_token is not None:
        app.cleanup_ctx.append(_webhooks)
        app.router.add_post("/webhooks/zoom", webhooks.receive)
    # First, so the hot path is the router's first match.
    # (?s): a decoded %0a must not make a path miss the route (a 404, where every other
    # control character gets forward's 400).
    app.router.add_route("*", "/api/{tail:(?s:.*)}", forward)
    app.router.add_get("/download", download)
    app.router.add_get("/", index if settings.users_sign_in else service_only_index)
    app.router.add_get("/favicon.ico", favicon)
    if settings.users_sign_in:  # else the sign-in routes are 404: nobody signs in
        app.router.add_get("/auth/login", auth.login)
        app.router.add_get("/auth/callback", auth.callback)
        app.router.add_post("/auth/logout", auth.logout)
        app.router.add_get("/auth/me", auth.me)
        app.router.add_get("/auth/cookiejar", auth.cookiejar)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if settings.metrics.enabled:
        app.router.add_get("/metrics", metrics.handle)
    return app


#: The coordinator the Refresher uses; set with the sessions by ``_shared_state``.
_COORDINATOR: web.AppKey[Coordinator] = web.AppKey("coordinator")


async def _shared_state(app: web.Application) -> AsyncIterator[None]:
    """Where sessions live and how replicas coordinate: in-process, or through Redis
    (one connection pool per process)."""
    settings = app[SETTINGS]
    keep_for = settings.session.max_age
    if settings.redis.url is None:
        revocations = Revocations(keep_for=keep_for)
        app[SESSIONS], app[_COORDINATOR] = CookieSessions(app[STORAGE], revocations), LOCAL
        yield
        return
    url = settings.redis.url.value
    client = redis_client.connect(url)
    store = redis_client.SharedStore(
        client,
        prefix=settings.redis.key_prefix,
        name=f"Redis at {redis_client.where(url)}",
        on_failure=app[METRICS].count_redis_failure,
    )
    lock_ttl = settings.upstream.connect_timeout + settings.upstream.timeout + LOCK_MARGIN
    shared = SharedRevocations(store, keep_for=keep_for)
    await shared.start()
    tracking = None
    if settings.session.store == "redis":
        tracking = Tracking(url, prefix=store.key("session", ""))
        sessions = RedisSessions(
            store,
            app[STORAGE],
            app[FERNET],
            max_age=settings.session.max_age,
            lock_ttl=lock_ttl,
            revocations=shared,
            tracking=tracking,
        )
        await tracking.start(sessions.forget)
        app[SESSIONS], app[_COORDINATOR] = sessions, sessions
    else:
        app[SESSIONS] = CookieSessions(app[STORAGE], shared)
        app[_COORDINATOR] = SharedGrace(
            store,
            app[FERNET],
            rotation_grace=settings.refresh.rotation_grace,
            lock_ttl=lock_ttl,
            fall_back_locally=settings.redis.on_unavailable == "local",
        )
    # Not fatal: the proxy starts, answers 503 where it needs Redis, and recovers.
    with contextlib.suppress(SessionStoreUnavailable):
        await store.ping()
    yield
    if tracking is not None:
        await tracking.close()
    await shared.close()
    await client.aclose()


async def _zoom_client(app: web.Application) -> AsyncIterator[None]:
    """Pooled keep-alive clients to Zoom for the whole process: a lean one for the API,
    aiohttp's for the (rare) OAuth calls."""
    settings = app[SETTINGS]
    upstream = Pool(
        settings.zoom.api_origin,
        limit=UPSTREAM_CONNECTIONS,
        connect_timeout=settings.upstream.connect_timeout,
        read_timeout=settings.upstream.timeout,
        buffer_limit=BODY_BUFFER,
    )
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=UPSTREAM_CONNECTIONS, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=settings.upstream.connect_timeout,
            sock_connect=settings.upstream.connect_timeout,
            sock_read=settings.upstream.timeout,
        ),
        # Bodies pass through compressed, exactly as Zoom sent them.
        auto_decompress=False,
        read_bufsize=BODY_BUFFER,
        # Zoom's cookies must never be stored, let alone sent on another user's behalf.
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )
    zoom, service = settings.zoom, settings.service
    refresh_call = _no_user_app
    if zoom.client_id is not None and zoom.client_secret is not None:
        oauth = _oauth(settings, http, zoom.client_id, zoom.client_secret.value)
        app[OAUTH], refresh_call = oauth, oauth.refresh
    refresher = Refresher(
        refresh_call,
        margin=settings.refresh.margin,
        rotation_grace=settings.refresh.rotation_grace,
        coordinator=app[_COORDINATOR],
        on_outcome=app[METRICS].count_refresh,
    )
    callers = account = None
    if service.account_id is not None and service.client_id and service.client_secret:
        service_app = _oauth(settings, http, service.client_id, service.client_secret.value)
        callers = Callers(service.callers)
        account = AccountTokens(
            functools.partial(service_app.account_token, service.account_id),
            margin=settings.refresh.margin,
            on_outcome=app[METRICS].count_account_token_mint,
        )
    app[HTTP], app[REFRESHER], app[UPSTREAM] = http, refresher, upstream
    app[DOWNLOAD_HOSTS] = download_hosts = Pools(
        connect_timeout=settings.upstream.connect_timeout,
        read_timeout=settings.upstream.timeout,
        buffer_limit=BODY_BUFFER,
    )
    app[FORWARDER] = Forwarder(
        settings,
        sessions=app[SESSIONS],
        refresher=refresher,
        upstream=upstream,
        metrics=app[METRICS],
        callers=callers,
        account=account,
    )
    yield
    if account is not None:
        await account.close()
    await refresher.close()
    upstream.close()
    download_hosts.close()
    await http.close()


async def _webhooks(app: web.Application) -> AsyncIterator[None]:
    hooks = app[webhooks.WEBHOOKS] = webhooks.Webhooks(
        app[SETTINGS].webhooks, sessions=app[SESSIONS], metrics=app[METRICS]
    )
    yield
    hooks.close()


def _oauth(
    settings: Settings, http: aiohttp.ClientSession, client_id: str, client_secret: str
) -> ZoomOAuth:
    """A Zoom OAuth app (the user app, or the service app) on Zoom's endpoints."""
    zoom = settings.zoom
    return ZoomOAuth(
        http=http,
        client_id=client_id,
        client_secret=client_secret,
        authorize_url=zoom.authorize_url,
        token_url=zoom.token_url,
        revoke_url=zoom.revoke_url,
        api_base_url=zoom.api_base_url,
        redirect_uri=settings.redirect_uri,
        scopes=zoom.scopes,
    )


async def _no_user_app(refresh_token: str) -> Tokens:
    """A proxy without the user app has no session to refresh: any cookie is foreign."""
    raise RefreshRejected()


async def service_only_index(request: web.Request) -> web.Response:
    html = service_only_page(request.app[SETTINGS].public_url)
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})


async def index(request: web.Request) -> web.Response:
    signed_in = await auth.page_session(request)
    public_url = request.app[SETTINGS].public_url
    html = (
        signed_out_page()
        if signed_in is None
        else signed_in_page(
            signed_in.data,
            public_url=public_url,
            account_page=request.app.get(ZOOM_ACCOUNT_PAGE),
        )
    )
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    upstream = request.app.get(UPSTREAM)
    ready = upstream is not None and not upstream.closed and not request.app[LIFECYCLE].draining
    return web.json_response({"ready": ready}, status=200 if ready else 503)
