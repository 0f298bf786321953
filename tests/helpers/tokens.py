"""Token sets made up on the spot, and a Zoom token endpoint the test answers by hand:
what a ``Refresher`` needs, without an emulator.
"""

from __future__ import annotations

import asyncio
import time

from proxy.tokens.model import Tokens


def tokens(name: str, *, expires_in: float = 3600) -> Tokens:
    """Tokens named after ``name`` (``access-<name>``, ``refresh-<name>``)."""
    return Tokens(
        access_token=f"access-{name}",
        refresh_token=f"refresh-{name}",
        expires_at=time.time() + expires_in,
        scope="s",
    )


class FakeZoom:
    """A token endpoint whose answers the test releases by hand."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.error: Exception | None = None

    async def refresh(self, refresh_token: str) -> Tokens:
        self.calls.append(refresh_token)
        self.entered.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return tokens(f"{refresh_token}+1")
