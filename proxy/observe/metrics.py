"""Prometheus metrics, through prometheus-client, on ``GET /metrics``.

Each app has its own registry, so several apps in one process (tests, the demo)
never share counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from proxy.http.methods import API_METHODS

#: By ``status // 100``: aiohttp allows any status from 100 to 999.
_STATUS_CLASSES = tuple(f"{digit}xx" for digit in range(10))
_ROUTE_CLASSES = (
    ("/api/", "api"),
    ("/download?", "download"),
    ("/auth/", "auth"),
    ("/healthz", "probe"),
    ("/readyz", "probe"),
)


def route_class(path: str) -> str:
    """A small, fixed label set: never the path itself, which would explode the series."""
    for prefix, name in _ROUTE_CLASSES:
        if path.startswith(prefix):
            return name
    return {"/": "page", "/metrics": "metrics", "/download": "download"}.get(path, "other")


class Metrics:
    """What the proxy counts; handlers call the ``count_*``/``observe_*`` methods."""

    def __init__(self, *, in_flight: Callable[[], float]) -> None:
        """``in_flight`` counts the requests being handled; it is read at each scrape,
        so the hot path pays nothing for the gauge."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "zoom_proxy_requests",
            "Requests answered, by route class, method and status class.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        Gauge(
            "zoom_proxy_in_flight_requests", "Requests being handled.", registry=self.registry
        ).set_function(in_flight)
        self.upstream_latency = Histogram(
            "zoom_proxy_upstream_latency_seconds",
            "Time from sending a request to Zoom's API to its response headers.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.refreshes = Counter(
            "zoom_proxy_refreshes",
            "Token refreshes by outcome: ok, rotated_grace_hit, shared (another replica's),"
            " invalid_grant, error.",
            ("outcome",),
            registry=self.registry,
        )
        self.sign_ins = Counter(
            "zoom_proxy_sign_ins",
            "Sign-ins by outcome.",
            ("outcome",),
            registry=self.registry,
        )
        self.session_decode_failures = Counter(
            "zoom_proxy_session_decode_failures",
            "Session cookies that could not be decrypted (tampered, expired, old key).",
            registry=self.registry,
        )

        self.redis_failures = Counter(
            "zoom_proxy_redis_failures",
            "Redis commands that failed (unreachable, timed out, refused).",
            registry=self.registry,
        )
        self.caller_requests = Counter(
            "zoom_proxy_caller_requests",
            "Service callers' requests answered, by caller name (from the config, so a"
            " bounded set) and status class.",
            ("caller", "status"),
            registry=self.registry,
        )
        self.account_token_mints = Counter(
            "zoom_proxy_account_token_mints",
            "Account tokens minted for service callers, by outcome: ok,"
            " service_credentials_rejected, token_endpoint_unavailable, token_endpoint_invalid.",
            ("outcome",),
            registry=self.registry,
        )
        self.webhook_events = Counter(
            "zoom_proxy_webhook_events",
            "Zoom's webhook events by event (a known set, else other; unverified when"
            " refused before it was read) and outcome: validated, forwarded, accepted"
            " (no forward_to), duplicate, not_delivered, refused.",
            ("event", "outcome"),
            registry=self.registry,
        )
        #: ``requests.labels(...)`` takes a lock and builds a key; the label set is
        #: small and fixed, so each child is looked up once.
        self._request_counters: dict[tuple[str, str, str], Counter] = {}
        self._caller_counters: dict[tuple[str, str], Counter] = {}

    def count_refresh(self, outcome: str) -> None:
        self.refreshes.labels(outcome).inc()

    def count_account_token_mint(self, outcome: str) -> None:
        self.account_token_mints.labels(outcome).inc()

    def count_caller_answer(self, caller: str, status: int) -> None:
        key = (caller, _STATUS_CLASSES[status // 100])
        counter = self._caller_counters.get(key)
        if counter is None:  # the names come from the config: a small, fixed set
            counter = self._caller_counters[key] = self.caller_requests.labels(*key)
        counter.inc()

    def count_webhook_event(self, event: str, outcome: str) -> None:
        self.webhook_events.labels(event, outcome).inc()

    def count_sign_in(self, outcome: str) -> None:
        self.sign_ins.labels(outcome).inc()

    def count_decode_failure(self) -> None:
        self.session_decode_failures.inc()

    def count_redis_failure(self) -> None:
        self.redis_failures.inc()

    def observe_upstream_latency(self, started: float) -> None:
        """Time since ``started`` (a ``time.perf_counter()``) until Zoom's headers."""
        self.upstream_latency.observe(time.perf_counter() - started)

    def _count_request(self, route: str, method: str, status: str) -> None:
        key = (route, method, status)
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self._request_counters[key] = self.requests.labels(*key)
        counter.inc()

    def count_request(self, request: web.Request, status: int) -> None:
        self.count_answer(request.method, request.path, status)

    def count_answer(self, method: str, path: str, status: int) -> None:
        method = method if method in API_METHODS else "other"
        self._count_request(route_class(path), method, _STATUS_CLASSES[status // 100])

    async def handle(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the Prometheus text format."""
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


METRICS = web.AppKey("metrics", Metrics)
