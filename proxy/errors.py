"""The proxy's one error hierarchy.

Every failure a client can see is a :class:`ProxyError`. Handlers and helpers raise
them; :mod:`proxy.http_errors` turns them into responses in exactly one place::

    ProxyError                          (500 internal_error)
    ├── BadRequest                      (400 bad_request)
    │   ├── UnsafePath                  (400 unsafe_path)
    │   ├── ClientTooSlow               (408 client_too_slow)
    │   ├── LoginStateInvalid           (400 invalid_state)
    │   └── CodeRejected                (400 invalid_code)
    ├── Unauthenticated                 (401 unauthenticated)
    ├── Forbidden                       (403 forbidden)
    │   ├── CrossOriginRefused          (403 cross_origin)
    │   └── AccessDenied                (403 access_denied)
    ├── UpstreamUnreachable             (502 upstream_unreachable)
    ├── TokenEndpointInvalid            (502 token_endpoint_invalid)
    ├── TokenEndpointUnavailable        (503 token_endpoint_unavailable)
    ├── SessionStoreUnavailable         (503 session_store_unavailable)
    ├── RefreshBusy                     (503 refresh_in_progress)
    ├── UpstreamTimeout                 (504 upstream_timeout)
    └── RefreshRejected                 (401 unauthenticated, and the session is cleared)

Messages are written for the person who has to act on them and never contain a
token, an authorization code, a cookie value or the client secret.
"""

from __future__ import annotations

from typing import ClassVar


class ProxyError(Exception):
    """Base of every error the proxy answers with."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "The proxy failed to handle this request."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class BadRequest(ProxyError):
    status = 400
    code = "bad_request"
    default_message = "The request is malformed."


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


class UpstreamUnreachable(ProxyError):
    status = 502
    code = "upstream_unreachable"
    default_message = "Zoom's API could not be reached. Try again shortly."


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


class RefreshBusy(ProxyError):
    """Another replica held this session's refresh lock for longer than a refresh can take."""

    status = 503
    code = "refresh_in_progress"
    default_message = (
        "Another replica of the proxy is still refreshing this session. "
        "Your session is kept; retry shortly."
    )
