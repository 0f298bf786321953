"""A request body too large to read whole, as it arrives (for :mod:`proxy.http.front`)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from proxy.http.flow import keeps_up


class ClientLeft(ConnectionResetError):
    """The client closed its connection before the whole request body arrived."""


class BodyStream:
    """A request body too large to read whole (``Content-Length`` framed), as it arrives.

    Read with :meth:`readany`, or iterated. After :meth:`stream_to`, pieces go straight
    to the sink while it keeps up, and only the others are read: for uploads, a
    coroutine step per piece was the larger part of the proxy's CPU per byte.
    """

    __slots__ = ("_error", "_limit", "_on_taken", "_pieces", "_sink", "_waiter", "queued", "unread")

    def __init__(self, length: int, on_taken: Callable[[], None]) -> None:
        #: Bytes the client has still to send.
        self.unread = length
        #: Bytes arrived and not yet read.
        self.queued = 0
        self._pieces: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._on_taken = on_taken
        self._sink: asyncio.Transport | None = None
        self._limit = 0

    def stream_to(self, sink: asyncio.Transport, limit: int) -> None:
        """From now on, write pieces straight to ``sink`` while its buffer is under
        ``limit`` and none are waiting to be read (they go first)."""
        self._sink, self._limit = sink, limit

    def feed(self, data: bytes) -> bytes:
        """Take this body's part of ``data``; the rest (the next request's) is returned."""
        rest = b""
        if len(data) > self.unread:
            data, rest = data[: self.unread], data[self.unread :]
        if data:
            self.unread -= len(data)
            sink = self._sink
            if sink is not None and not self._pieces and keeps_up(sink, self._limit):
                sink.write(data)
                if self.unread:
                    return rest  # the reader has nothing to do yet
            elif sink is not None and sink.is_closing():
                pass  # Zoom has answered (or gone): the rest is read and dropped
            else:
                self.queued += len(data)
                self._pieces.append(data)
            self._wake()
        return rest

    def fail(self, error: BaseException) -> None:
        """The rest will never come."""
        if self.unread:
            self._error = error
            self._wake()

    @property
    def waiting(self) -> bool:
        """Whether its reader waits for the client."""
        return self._waiter is not None

    async def readany(self) -> bytes:
        """What has arrived since the last read, waiting for some; ``b""`` at the end."""
        while not self._pieces:
            if not self.unread:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        piece = self._pieces.popleft()
        self.queued -= len(piece)
        self._on_taken()
        return piece

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        piece = await self.readany()
        if not piece:
            raise StopAsyncIteration
        return piece

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
