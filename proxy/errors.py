"""The proxy's one error hierarchy.

Every failure a client can see is a :class:`ProxyError`. Handlers and helpers raise
them; :func:`error_answer` turns them into an answer in exactly one place, which
either transport writes (:mod:`proxy.web.errors` adds pages for browsers)::

    ProxyError                          (500 internal_error)
    ├── BadRequest                      (400 bad_request)
    │   ├── NotHttp                     (400 bad_request)
    │   ├── UpgradeRefused              (400 upgrade_refused)
    │   ├── RequestLineTooLong          (414 uri_too_long)
    │   ├── HeadTooLarge                (431 headers_too_large)
    │   ├── UnsafePath                  (400 unsafe_path)
    │   ├── ClientTooSlow               (408 client_too_slow)
    │   │   └── HeadTooSlow             (408 client_too_slow)
    │   ├── BadDownloadUrl              (400 bad_download_url)
    │   ├── LoginStateInvalid           (400 invalid_state)
    │   ├── CodeRejected                (400 invalid_code)
    │   ├── EventMalformed              (400 invalid_event)
    │   └── EventTooLarge               (413 event_too_large)
    ├── Unauthenticated                 (401 unauthenticated)
    ├── EventNotVerified                (401 invalid_signature)
    │   └── EventStale                  (401 stale_event)
    ├── InvalidCallerKey                (401 invalid_caller_key)
    ├── Forbidden                       (403 forbidden)
    │   ├── CrossOriginRefused          (403 cross_origin)
    │   ├── AccessDenied                (403 access_denied)
    │   └── CallerNotAllowed            (403 caller_not_allowed)
    ├── CallerRateLimited               (429 rate_limited, with Retry-After)
    ├── UpstreamUnreachable             (502 upstream_unreachable)
    ├── TooManyRedirects                (502 too_many_redirects)
    ├── InsecureRedirect                (502 insecure_redirect)
    ├── TokenEndpointInvalid            (502 token_endpoint_invalid)
    ├── ServiceCredentialsRejected      (502 service_credentials_rejected)
    ├── EventNotDelivered               (502 backend_unavailable)
    ├── TokenEndpointUnavailable        (503 token_endpoint_unavailable)
    ├── SessionStoreUnavailable         (503 session_store_unavailable)
    ├── SlowHeadsOverBudget             (503 server_busy)
    ├── RefreshBusy                     (503 refresh_in_progress)
    ├── UpstreamTimeout                 (504 upstream_timeout)
    └── RefreshRejected                 (401 unauthenticated, and the session is cleared)
        └── SessionRevoked              (401 unauthenticated, and the session is cleared)

The errors a request's framing can cause (:class:`NotHttp` to
:class:`SlowHeadsOverBudget`) end the connection: nothing after such a request is read.

Messages are written for the person who has to act on them and never contain a
token, an authorization code, a cookie value or the client secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar


class ProxyError(Exception):
    """Base of every error the proxy answers with."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "The proxy failed to handle this request."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def headers(self) -> tuple[tuple[str, str], ...]:
        """Headers its answer carries beside the usual ones."""
        return ()


class BadRequest(ProxyError):
    status = 400
    code = "bad_request"
    default_message = "The request is malformed."


class NotHttp(BadRequest):
    default_message = "The request is not valid HTTP/1.1."


class UpgradeRefused(BadRequest):
    code = "upgrade_refused"
    default_message = (
        "The proxy switches no protocol: Upgrade and CONNECT are refused. "
        "Zoom's REST API is plain HTTP/1.1."
    )


class RequestLineTooLong(BadRequest):
    status = 414
    code = "uri_too_long"
    default_message = "The request line is too long: the proxy takes up to 16 KiB."


class HeadTooLarge(BadRequest):
    status = 431
    code = "headers_too_large"
    default_message = (
        "The request's headers are too large: the proxy takes up to 32 KiB a header "
        "and 64 KiB in all."
    )


class UnsafePath(BadRequest):
    code = "unsafe_path"
    default_message = (
        "This API path is not allowed: dot segments, empty segments, backslashes, "
        "encoded slashes and control characters are refused."
    )


class ClientTooSlow(BadRequest):
    status = 408
    code = "client_too_slow"
    default_message = "The request body stalled; send it again."


class HeadTooSlow(ClientTooSlow):
    default_message = "The request's headers did not arrive in time; send it again."


class BadDownloadUrl(BadRequest):
    code = "bad_download_url"
    default_message = (
        "url must be a recording's download_url: https, on an origin in "
        "zoom.download_origins, with a path under /rec/, and no userinfo or fragment."
    )


class LoginStateInvalid(BadRequest):
    code = "invalid_state"
    default_message = "This sign-in link is stale or was started in another browser. Start again."


class CodeRejected(BadRequest):
    code = "invalid_code"
    default_message = "Zoom did not accept this authorization code. Start sign-in again."


class Unauthenticated(ProxyError):
    status = 401
    code = "unauthenticated"
    default_message = "Sign in with Zoom first."


class RefreshRejected(Unauthenticated):
    default_message = "Your Zoom authorization has ended. Sign in with Zoom again."


class SessionRevoked(RefreshRejected):
    """The user removed the app from their Zoom account (``app_deauthorized``) after
    this session began."""

    default_message = (
        "This Zoom account removed the app, which ended your session. Sign in with Zoom again."
    )


class EventMalformed(BadRequest):
    code = "invalid_event"
    default_message = (
        "This is not a Zoom event: send a JSON object with an event name, and one "
        "x-zm-request-timestamp header of unix seconds."
    )


class EventTooLarge(BadRequest):
    status = 413
    code = "event_too_large"
    default_message = "The event is larger than 1 MiB."


class EventNotVerified(ProxyError):
    """A webhook event whose signature is missing or does not verify under the Secret
    Token."""

    status = 401
    code = "invalid_signature"
    default_message = "The event's x-zm-signature does not verify under the webhook Secret Token."


class EventStale(EventNotVerified):
    code = "stale_event"
    default_message = "The event's x-zm-request-timestamp is too far from now (webhooks.max_skew)."


class InvalidCallerKey(ProxyError):
    """A service caller's ``Authorization`` is missing, malformed or not a known key."""

    status = 401
    code = "invalid_caller_key"
    default_message = (
        "Send Authorization: Bearer <caller key>, with a key listed in service.callers."
    )

    def headers(self) -> tuple[tuple[str, str], ...]:
        return (("WWW-Authenticate", 'Bearer realm="zoom-proxy"'),)


class Forbidden(ProxyError):
    status = 403
    code = "forbidden"
    default_message = "This request is not allowed."


class CrossOriginRefused(Forbidden):
    code = "cross_origin"
    default_message = (
        "Cross-origin request refused. Add the calling origin to cors.allowed_origins."
    )


class AccessDenied(Forbidden):
    code = "access_denied"
    default_message = "This Zoom account is not allowed to use this proxy."


class CallerNotAllowed(Forbidden):
    code = "caller_not_allowed"
    default_message = "This caller's allow rules do not cover this method and path."


class CallerRateLimited(ProxyError):
    """A service caller over its ``rate_per_second``: it may try again in ``retry_after``
    whole seconds."""

    status = 429
    code = "rate_limited"
    default_message = "This caller is over its rate_per_second. Retry after the given seconds."

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = max(1, retry_after)

    def headers(self) -> tuple[tuple[str, str], ...]:
        return (("Retry-After", str(self.retry_after)),)


class ServiceCredentialsRejected(ProxyError):
    """Zoom refused the Server-to-Server app's credentials or account ID."""

    status = 502
    code = "service_credentials_rejected"
    default_message = (
        "Zoom refused the proxy's service app (check service.account_id, service.client_id "
        "and service.client_secret)."
    )


class UpstreamUnreachable(ProxyError):
    status = 502
    code = "upstream_unreachable"
    default_message = "Zoom's API could not be reached. Try again shortly."


class TooManyRedirects(ProxyError):
    status = 502
    code = "too_many_redirects"
    default_message = "The download redirected more than 5 times."


class InsecureRedirect(ProxyError):
    status = 502
    code = "insecure_redirect"
    default_message = "The download redirected from https to plain http, which is refused."


class EventNotDelivered(ProxyError):
    """``webhooks.forward_to`` did not answer 2xx within ``forward_timeout``: Zoom is told
    to deliver the event again."""

    status = 502
    code = "backend_unavailable"
    default_message = "The event could not be handed to the app's backend; deliver it again."


class TokenEndpointInvalid(ProxyError):
    status = 502
    code = "token_endpoint_invalid"
    default_message = "Zoom's token endpoint gave an answer the proxy cannot use."


class TokenEndpointUnavailable(ProxyError):
    status = 503
    code = "token_endpoint_unavailable"
    default_message = "Zoom's token endpoint is unavailable. Your session is kept; retry shortly."


class UpstreamTimeout(ProxyError):
    status = 504
    code = "upstream_timeout"
    default_message = "Zoom's API did not answer in time."


class SessionStoreUnavailable(ProxyError):
    """Redis, where replicas share sessions and refreshes, did not answer in time."""

    status = 503
    code = "session_store_unavailable"
    default_message = (
        "The proxy's session store (Redis) is unreachable, so this request cannot be served "
        "safely. Your session is kept; retry shortly."
    )


class SlowHeadsOverBudget(ProxyError):
    """Partial request heads held across all connections reached their memory budget."""

    status = 503
    code = "server_busy"
    default_message = "Too many requests are arriving slowly right now; send it again shortly."


class RefreshBusy(ProxyError):
    """Another replica held this session's refresh lock for longer than a refresh can take."""

    status = 503
    code = "refresh_in_progress"
    default_message = (
        "Another replica of the proxy is still refreshing this session. "
        "Your session is kept; retry shortly."
    )


#: How to sign in again, on every 401.
WWW_AUTHENTICATE = 'Cookie realm="zoom-proxy", login="/auth/login"'


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """What a script gets for an error, on either transport: status, headers and the
    JSON body (``{"error", "message"}``, plus ``login_url`` when signed out)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def error_answer(error: ProxyError, login: str) -> ErrorAnswer:
    """The answer for ``error``; ``login``: where to sign in again, for a 401."""
    headers = [("Cache-Control", "no-store")]
    body = {"error": error.code, "message": error.message}
    if isinstance(error, Unauthenticated):
        body["login_url"] = login
        headers.append(("WWW-Authenticate", WWW_AUTHENTICATE))
    headers += error.headers()
    headers.append(("Content-Type", "application/json; charset=utf-8"))
    return ErrorAnswer(error.status, tuple(headers), json.dumps(body).encode())
