"""Keep-alive pools to many origins, for requests whose host is only known at run time
(a recording's download hops: Zoom's web hosts, then the storage hosts they redirect to).

One :class:`~proxy.http.client.Pool` per origin, so that a resumed or repeated download
reuses its connection. At most :data:`MAX_ORIGINS` are kept: beyond that, the least
recently used pool with nothing lent out is closed.
"""

from __future__ import annotations

import ssl
from collections import OrderedDict

from yarl import URL

from proxy.http.client import Pool

#: Origins kept open at once.
MAX_ORIGINS = 64
#: Connections to one origin at once.
CONNECTIONS_PER_ORIGIN = 256


class Pools:
    """A :class:`Pool` per origin, made when first needed."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        buffer_limit: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._buffer_limit = buffer_limit
        self._ssl_context = ssl_context
        self._pools: OrderedDict[str, Pool] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pools)

    @property
    def in_use(self) -> int:
        """Connections lent out, over every origin (a leak check)."""
        return sum(pool.in_use for pool in self._pools.values())

    def for_url(self, url: URL) -> Pool:
        """The pool for ``url``'s origin (an absolute http(s) URL; its userinfo, if any,
        plays no part)."""
        origin = str(url.origin()).lower()  # scheme and host are case-blind
        pool = self._pools.get(origin)
        if pool is not None:
            self._pools.move_to_end(origin)
            return pool
        self._make_room()
        pool = self._pools[origin] = Pool(
            origin,
            limit=CONNECTIONS_PER_ORIGIN,
            connect_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
            buffer_limit=self._buffer_limit,
            ssl_context=self._ssl_context,
        )
        return pool

    def _make_room(self) -> None:
        if len(self._pools) < MAX_ORIGINS:
            return
        # A pool that has a connection lent out is in use: closing it would cut a
        # download off. Should every pool be busy, the cap waits for one to be free.
        for origin, pool in self._pools.items():
            if not pool.in_use:
                del self._pools[origin]
                pool.close()
                return

    def close(self) -> None:
        pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool in pools:
            pool.close()
