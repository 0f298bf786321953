"""Code the tests share. Test modules import it from here (and the code under test from
``proxy``), never from one another nor from ``tests/conftest.py``, which holds only
fixtures; ``tests/test_test_layout.py`` checks that.

:mod:`tests.helpers.proxies`
    The emulator and in-process proxies: ``Zoom``, ``Proxy``, ``ProxyFactory`` (the
    ``make_proxy`` fixture's type), ``SESSION_KEY``, ``proxy_config`` and
    ``start_proxy``; signing in (``signed_in_cookie``, ``sign_in_with_expiring_token``)
    and asking with exactly one cookie (``fetch_with_cookie``, ``get_me``,
    ``set_session_cookie``).
:mod:`tests.helpers.processes`
    A real ``python -m proxy`` child process: ``ROOT``, ``TIMEOUT``, ``child_env``,
    ``write_config``, ``good_config``, ``running``, ``first_line`` and ``demo_banner``.
:mod:`tests.helpers.raw_http`
    HTTP/1.1 over a raw socket: ``connection``, ``connection_to``, ``request``,
    ``read_answers`` (into ``Answer``) and ``raw_request``.
:mod:`tests.helpers.tokens`
    ``tokens`` made up by name, and ``FakeZoom``, a token endpoint released by hand.
:mod:`tests.helpers.stores`
    ``CountingStore``: the Redis store, counting attempts to take a lock.
:mod:`tests.helpers.redisserver`
    ``RedisServer``: a real ``redis-server`` on a free loopback port.
:mod:`tests.helpers.redirect_corpus`
    Open-redirect payloads for ``next``, family by family.
"""
