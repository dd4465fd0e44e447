"""Time-to-live: entries older than `ttl` seconds are misses."""

from __future__ import annotations

import time

from warp_cache import CacheInfo, cache

SHORT_TTL = 0.05
EXPIRED = 3 * SHORT_TTL  # generous margin for slow machines
LONG_TTL = 60.0


def make_counted(ttl, max_size=128):
    calls: list = []

    @cache(max_size=max_size, ttl=ttl)
    def f(x):
        calls.append(x)
        return (x, len(calls))

    return f, calls


def test_hit_within_ttl():
    f, calls = make_counted(LONG_TTL)
    first = f(1)
    assert f(1) is first
    assert calls == [1]
    assert f.cache_info() == CacheInfo(hits=1, misses=1, max_size=128, current_size=1)


def test_integer_ttl_is_honoured():
    f, calls = make_counted(3600)
    f(1)
    f(1)
    assert calls == [1]


def test_expired_entry_is_a_miss_and_is_refreshed():
    f, calls = make_counted(SHORT_TTL)
    assert f(1) == (1, 1)
    time.sleep(EXPIRED)
    assert f(1) == (1, 2), "expired entry must call the function again"
    assert calls == [1, 1]


def test_expired_lookups_do_not_count_as_hits():
    f, calls = make_counted(SHORT_TTL)
    f(1)
    time.sleep(EXPIRED)
    f(1)
    info = f.cache_info()
    assert info.hits == 0
    assert info.misses == 2
    assert info.current_size <= 1


def test_refreshed_entry_gets_a_new_lifetime():
    f, calls = make_counted(SHORT_TTL)
    f(1)
    time.sleep(EXPIRED)
    refreshed = f(1)
    assert f(1) is refreshed
    time.sleep(EXPIRED)
    assert f(1) is not refreshed
    assert len(calls) == 3


def test_each_entry_expires_on_its_own_clock():
    f, calls = make_counted(0.1)
    f("old")
    time.sleep(0.3)
    f("new")
    assert f("new") == ("new", 2), "a fresh entry is a hit"
    assert f("old") == ("old", 3), "an entry older than ttl is a miss"
    assert calls == ["old", "new", "old"]


def test_size_bound_holds_with_ttl():
    f, _ = make_counted(LONG_TTL, max_size=8)
    for i in range(100):
        f(i)
        assert f.cache_info().current_size <= 8
    assert f(99) == (99, 100)
    assert f.cache_info().hits == 1


def test_expired_entries_are_replaced_under_a_full_cache():
    f, calls = make_counted(SHORT_TTL, max_size=4)
    for i in range(4):
        f(i)
    time.sleep(EXPIRED)
    for i in range(4, 8):
        f(i)
    for i in range(4, 8):
        f(i)
    info = f.cache_info()
    assert info.current_size <= 4
    assert info.hits == 4
    assert len(calls) == 8


def test_cache_clear_with_ttl():
    f, calls = make_counted(LONG_TTL)
    f(1)
    f.cache_clear()
    f(1)
    assert calls == [1, 1]
    assert f.cache_info() == CacheInfo(hits=0, misses=1, max_size=128, current_size=1)
