"""The account's access token for service callers (Server-to-Server OAuth), minted with
the ``account_credentials`` grant and kept in memory only.

Zoom's account tokens live an hour, have no refresh token, and several may be valid at
once, so nothing here rotates or needs a grace: the process keeps one token, mints a new
one when it expires within ``margin`` (or when Zoom refuses it), and lets concurrent
callers share one mint. A failed mint answers every caller that waited on it and is
not retried for each of them; the next request after it tries again.

The mint runs in a task of its own, as a refresh does: a caller that disconnects cannot
cancel the call the others wait on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from proxy.tokens.model import Tokens

#: Mints a new account token (``ZoomOAuth.account_token``, bound to the account).
MintCall = Callable[[], Awaitable[Tokens]]


class AccountTokens:
    """One account token for the process, minted lazily with single flight.

    >>> account = AccountTokens(mint, margin=60)
    >>> tokens = await account.fresh()            # before forwarding
    >>> tokens = await account.renew(tokens)      # Zoom refused it with a 401
    """

    def __init__(
        self,
        mint: MintCall,
        *,
        margin: float,
        on_outcome: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self._mint = mint
        self._margin = margin
        self._on_outcome = on_outcome
        self._current: Tokens | None = None
        self._minting: asyncio.Future[Tokens] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def fresh(self) -> Tokens:
        """A token that does not expire within ``margin``: the one kept, or a new one."""
        current = self._current
        if current is not None and not current.expires_within(self._margin):
            return current
        return await self._shared_mint()

    async def renew(self, refused: Tokens) -> Tokens:
        """A token in place of ``refused``, which Zoom answered 401 code 124: a new one,
        unless another request has minted one since."""
        current = self._current
        if current is not None and current.access_token != refused.access_token:
            return current
        self._current = None
        return await self._shared_mint()

    async def _shared_mint(self) -> Tokens:
        minting = self._minting
        if minting is None:
            minting = self._minting = asyncio.get_running_loop().create_future()
            task = asyncio.get_running_loop().create_task(self._run_mint(minting))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # Shielded: one caller's cancellation must not cancel the others' mint.
        return await asyncio.shield(minting)

    async def _run_mint(self, minting: asyncio.Future[Tokens]) -> None:
        try:
            tokens = await self._mint()
        except BaseException as exc:  # every waiter gets the failure, then it is forgotten
            self._on_outcome(getattr(exc, "code", "error"))
            minting.set_exception(exc)
            # Marked as seen: every waiter may have left, and asyncio would warn of it.
            minting.exception()
            if not isinstance(exc, Exception):
                raise
        else:
            self._current = tokens
            self._on_outcome("ok")
            minting.set_result(tokens)
        finally:
            self._minting = None

    async def close(self) -> None:
        """Let a mint in flight finish."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
