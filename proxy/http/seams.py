"""Every use of aiohttp's internals, in one place, each with why.

aiohttp is pinned to one minor version (``pyproject.toml``); ``tests/test_seams.py``
fails when a release changes any of these. Nothing else in the package imports a
private name from aiohttp or touches a private attribute of its objects: a module
that needs one comes here.

* :func:`http_date`: the ``Date`` value aiohttp's own answers carry.
* :data:`SINGLETON_HEADERS`: the headers aiohttp's parser refuses to see twice.
* :func:`line_limit`: which limit a :class:`LineTooLong` broke.
* :class:`Handler`: aiohttp's protocol for a connection, with the state a subclass that
  screens what aiohttp parses needs (its queue of parsed requests, their count, the
  wait of the connection's task, an upgrade's remains) given names.
* :class:`HandlerRunner`: an ``AppRunner`` whose connections use a protocol of its
  choosing (a :class:`Handler` subclass).
* :func:`set_site_server`: what a site that binds its own sockets listens with.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http_exceptions import LineTooLong
from aiohttp.http_parser import SINGLETON_HEADERS as _PARSER_SINGLETONS
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler, _ErrInfo

__all__ = [
    "SINGLETON_HEADERS",
    "Handler",
    "HandlerRunner",
    "Parsed",
    "http_date",
    "line_limit",
    "set_site_server",
]

#: The ``Date`` header's value now, cached per second as aiohttp's own answers use it
#: (``aiohttp.helpers``, not public): the front's answers carry the same value
#: aiohttp's would, at no cost per answer.
http_date = rfc822_formatted_time

#: Lower-case names of the headers aiohttp's request parser refuses to see twice
#: (``aiohttp.http_parser``, not public): the front hands such a request to aiohttp, to
#: refuse as aiohttp does. The compiled parser, the one that runs, keeps its own copy
#: out of reach; ``tests/test_seams.py`` checks it refuses exactly these.
SINGLETON_HEADERS: frozenset[str] = _PARSER_SINGLETONS

#: A request aiohttp parsed on a connection, with its body: the request, or the refusal
#: (``_ErrInfo``, private) aiohttp answers in its place through ``handle_error``.
Parsed = tuple[RawRequestMessage | _ErrInfo, StreamReader]


def line_limit(exc: LineTooLong) -> object:
    """The limit the line that raised ``exc`` broke (``max_line_size`` for the request
    line, ``max_field_size`` for a header): aiohttp's parsers raise
    ``LineTooLong(line, limit)``, and nothing else tells which line it was."""
    return exc.args[1]


class Handler(RequestHandler):
    """aiohttp's protocol for a connection, with the private state a subclass needs to
    screen the requests aiohttp parses before its task handles them: aiohttp has no hook
    between parsing a request (``data_received``) and handling it.

    Each member is one attribute access; none runs per byte.
    """

    __slots__ = ()

    @property
    def queued(self) -> deque[Parsed]:
        """The requests parsed and not yet taken by the connection's task, oldest first:
        ``data_received`` appends what it parses (``_messages``), the task takes from
        the left. What is removed is never answered; what is added is, in turn."""
        return self._messages

    @property
    def parsed(self) -> int:
        """aiohttp's count of the requests parsed on this connection
        (``_request_count``): ``data_received`` adds one per request it queues. Whoever
        adds to or removes from :attr:`queued` keeps it in step."""
        return self._request_count

    @parsed.setter
    def parsed(self, count: int) -> None:
        self._request_count = count

    def queue_refusal(self, status: int, exc: BaseException, message: str) -> None:
        """Queue a refusal, answered in its turn as aiohttp answers what its parser
        refuses: ``handle_error(request, status, exc, message)`` (an ``_ErrInfo`` with
        no body queued). The caller counts it in :attr:`parsed`."""
        self._messages.append((_ErrInfo(status, exc, message), EMPTY_PAYLOAD))

    def wake(self) -> None:
        """Have the connection's task take what was queued outside ``data_received``:
        while nothing is queued it awaits ``_waiter``, which only ``data_received``
        sets."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def forget_upgrade(self) -> None:
        """Drop what follows a request with ``Upgrade``: aiohttp stops parsing after one
        (``_upgraded``), keeps the bytes after it (``_message_tail``) for the protocol
        switched to, and parses them as requests once it is answered without a switch.
        """
        self._upgraded = False
        self._message_tail = b""


class _HandlerServer(web.Server):
    """aiohttp's server, whose protocol factory (its call) asks the runner."""

    runner: HandlerRunner

    def __call__(self) -> RequestHandler:
        # web.Server keeps its loop and the protocol's options (the runner's keyword
        # arguments) private, and builds a plain RequestHandler with them.
        return self.runner.connection_handler(self, self._loop, self._kwargs)


class HandlerRunner(web.AppRunner):
    """An ``AppRunner`` whose connections' protocol :meth:`connection_handler` builds:
    aiohttp has no option for it, its ``web.Server`` builds a ``RequestHandler``."""

    def connection_handler(
        self, server: web.Server, loop: asyncio.AbstractEventLoop, options: dict[str, Any]
    ) -> RequestHandler:
        """A new connection's protocol, for ``server``; ``options`` are the runner's
        keyword arguments. aiohttp's own by default."""
        return RequestHandler(server, loop=loop, **options)

    # BaseRunner._make_server, private: aiohttp builds the server itself (it starts the
    # app first); only its protocol factory differs, so its class is swapped.
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _HandlerServer
        cast(_HandlerServer, server).runner = self
        return server


def set_site_server(site: web.BaseSite, server: asyncio.AbstractServer) -> None:
    """``site`` listens with ``server``, sockets it bound itself: aiohttp's runner reads
    its addresses from a site's ``_server`` (``runner.addresses``), and
    ``BaseSite.stop`` closes it. A site has no other way to say what it listens with."""
    site._server = server
