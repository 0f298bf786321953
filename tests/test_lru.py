"""The bounded caches behind decrypted and parsed sessions."""

from __future__ import annotations

from proxy.session.lru import Lru


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, 3)


def test_reading_an_entry_keeps_it() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), len(cache)) == (1, None, 2)


def test_putting_an_existing_key_replaces_it_without_growing() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), len(cache)) == (10, None, 2)


def test_pop_forgets_and_tolerates_missing_keys() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    cache.pop("a")
    cache.pop("never")
    assert (cache.get("a"), len(cache)) == (None, 0)
