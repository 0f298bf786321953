"""One request's record, on either transport: its id, the in-flight count that
shutdown drains, the request metrics, and its access-log line.

aiohttp's middleware (:mod:`proxy.web.middleware`) and the front's lane
(:mod:`proxy.forward.lane`) both open a :class:`RequestRecord` with
:meth:`Requests.begin` and close it with :meth:`Requests.end`; what the record holds is
then the request's access-log line, whoever writes it.
"""

from __future__ import annotations

import logging

from aiohttp import web

from proxy.observe.lifecycle import Lifecycle
from proxy.observe.logs import (
    RequestRecord,
    accepted_request_id,
    client_address,
    current_request_id,
    log_access,
)
from proxy.observe.metrics import Metrics

_access_log = logging.getLogger("aiohttp.access")


class Requests:
    """Opens and closes the records of an app's requests."""

    __slots__ = ("_lifecycle", "_metrics", "trust_forwarded")

    def __init__(self, metrics: Metrics, lifecycle: Lifecycle, *, trust_forwarded: bool) -> None:
        self._metrics = metrics
        self._lifecycle = lifecycle
        #: Whether ``X-Forwarded-For`` names the client (``trust_forwarded_headers``).
        self.trust_forwarded = trust_forwarded

    def begin(self, method: str, raw_target: str, request_id: str | None) -> RequestRecord:
        """A request has arrived whole: name it (the client's sane ``X-Request-ID``, or a
        new id) for every log line while it is handled, and count it in flight."""
        accepted = accepted_request_id(request_id)
        context = current_request_id.set(accepted)
        record = RequestRecord(method, raw_target, accepted, context, self.trust_forwarded)
        self._lifecycle.enter()
        return record

    def end(self, record: RequestRecord, status: int | None) -> None:
        """The request is done: counted by ``status`` (``None``: it was never answered,
        the client having left mid-body)."""
        self._lifecycle.leave()
        if status is not None:
            self._metrics.count_answer(record.method, record.raw_target, status)
            if record.caller is not None:
                self._metrics.count_caller_answer(record.caller, status)
        record.end()

    def log_access(
        self,
        record: RequestRecord,
        *,
        status: int,
        seconds: float,
        peer: str | None,
        forwarded_for: str | None,
    ) -> None:
        """The access-log line for an answer sent."""
        if _access_log.isEnabledFor(logging.INFO):
            log_access(
                _access_log,
                method=record.method,
                raw_target=record.raw_target,
                status=status,
                seconds=seconds,
                user_id=record.user_id,
                caller=record.caller,
                request_id=record.request_id,
                upstream_status=record.upstream_status,
                remote=client_address(peer, forwarded_for, trusted=record.trust_forwarded),
            )


REQUESTS = web.AppKey("requests", Requests)
