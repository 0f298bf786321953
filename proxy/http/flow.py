"""Write flow control, implemented once: pause, resume, drain, loss; and the shortcut of
writing straight through while the other side keeps up.

Used by the upstream client's connection (:class:`proxy.http.client._Connection`: its
request body waits for Zoom), by the front's :class:`proxy.http.front.Reply` (an answer
waits for the client) and, for the shortcut alone, by a request body streamed to Zoom
(:class:`proxy.http.body.BodyStream`) and a response body streamed to the client
(:meth:`proxy.http.client.Response.stream_to`).

A protocol holds one :class:`WriteFlow` and forwards to it::

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self.flow.lose()

and a writer writes, then ``if flow.paused: await flow.drain()``: nothing is awaited,
and no future made, while the other side keeps up.
"""

from __future__ import annotations

import asyncio


class WriteFlow:
    """Whether the other side keeps up with what is written to it, and a wait until it does."""

    __slots__ = ("_waiter", "lost", "paused")

    def __init__(self) -> None:
        #: The other side has fallen behind (the transport's ``pause_writing``), until
        #: :meth:`resume`.
        self.paused = False
        #: The connection is gone: every :meth:`drain` from now on raises.
        self.lost = False
        #: What waiting drains await; made by the first of them, not by :meth:`pause`.
        self._waiter: asyncio.Future[None] | None = None

    def pause(self) -> None:
        """The other side has fallen behind (``pause_writing``)."""
        self.paused = True

    def resume(self, exc: BaseException | None = None) -> None:
        """The other side caught up (``resume_writing``): waiting drains return, or
        raise ``exc`` if given."""
        self.paused = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            _wake(waiter, exc)

    def fail(self, exc: BaseException) -> None:
        """Waiting drains raise ``exc`` (their wait timed out, say); the flow stays
        paused, so a later drain waits again."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            _wake(waiter, exc)

    def lose(self, exc: BaseException | None = None) -> None:
        """The connection is gone (``connection_lost``): waiting drains raise ``exc``
        (a :class:`ConnectionResetError` if none), and so does every later one."""
        self.lost = True
        if self._waiter is not None and exc is None:
            exc = ConnectionResetError("the connection is lost")
        self.resume(exc)

    async def drain(self) -> None:
        """Until the other side has caught up; at once if it keeps up.

        Any number of writers may wait; one cancelled leaves the others waiting.
        Raises :class:`ConnectionResetError` once the connection is lost.
        """
        if self.lost:
            raise ConnectionResetError("the connection is lost")
        if self.paused:
            waiter = self._waiter
            if waiter is None:
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(waiter)


def keeps_up(sink: asyncio.Transport, limit: int) -> bool:
    """Whether a piece may be written straight to ``sink``: it is open and holds less
    than ``limit`` bytes unsent. The caller checks first that none of its pieces wait
    to be written (they go first)."""
    return not sink.is_closing() and sink.get_write_buffer_size() < limit


def _wake(waiter: asyncio.Future[None], exc: BaseException | None) -> None:
    if waiter.done():
        return
    if exc is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(exc)
        waiter.exception()  # retrieved: a waiter may have gone, cancelled
