"""SIEVE eviction: a single-shard cache must match a reference model exactly."""

from __future__ import annotations

import functools
import random
from collections.abc import Hashable, Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from warp_cache import cache

# Any max_size <= 1024 is guaranteed to be a single shard, so eviction order is exact SIEVE.
SINGLE_SHARD_MAX = 1024


class _Node:
    __slots__ = ("key", "visited", "newer", "older")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.visited = False
        self.newer: _Node | None = None
        self.older: _Node | None = None


class ReferenceSieve:
    """SIEVE over a doubly linked queue: new entries at the head (newest end).

    The hand walks from the tail (oldest) toward the head, clearing visited bits; the first
    unvisited entry is evicted. The hand then rests on the next-newer entry; past the head
    it wraps to the tail.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.nodes: dict[Hashable, _Node] = {}
        self.head: _Node | None = None  # newest
        self.tail: _Node | None = None  # oldest
        self.hand: _Node | None = None

    def access(self, key: Hashable) -> bool:
        """Look `key` up, inserting it on a miss. Returns True on a hit."""
        node = self.nodes.get(key)
        if node is not None:
            node.visited = True
            return True
        if self.max_size == 0:
            return False
        if len(self.nodes) >= self.max_size:
            self._evict()
        self._push_head(_Node(key))
        return False

    def keys(self) -> list[Hashable]:
        """Keys from newest to oldest."""
        out, node = [], self.head
        while node is not None:
            out.append(node.key)
            node = node.older
        return out

    def _push_head(self, node: _Node) -> None:
        node.older = self.head
        if self.head is not None:
            self.head.newer = node
        self.head = node
        if self.tail is None:
            self.tail = node
        self.nodes[node.key] = node

    def _evict(self) -> None:
        node = self.hand or self.tail
        assert node is not None
        while node.visited:
            node.visited = False
            node = node.newer or self.tail
            assert node is not None
        self.hand = node.newer  # None: wrap to the tail next time
        if node.newer is not None:
            node.newer.older = node.older
        else:
            self.head = node.older
        if node.older is not None:
            node.older.newer = node.newer
        else:
            self.tail = node.newer
        del self.nodes[node.key]


def model_trace(max_size: int, trace: Iterable[Hashable]) -> list[bool]:
    model = ReferenceSieve(max_size)
    return [model.access(k) for k in trace]


def cache_trace(max_size: int, trace: Iterable[Hashable]) -> list[bool]:
    """Hit/miss sequence of a fresh warp_cache, detected by a side-effect counter."""
    calls = 0

    @cache(max_size=max_size)
    def f(key):
        nonlocal calls
        calls += 1
        return key

    hits = []
    for key in trace:
        before = calls
        assert f(key) == key
        hits.append(calls == before)
        assert f.cache_info().current_size <= max_size
    info = f.cache_info()
    assert info.hits == sum(hits)
    assert info.misses == len(hits) - sum(hits)
    return hits


# --- the reference model itself -------------------------------------------------------------


def test_reference_model_worked_example():
    model = ReferenceSieve(3)
    assert [model.access(k) for k in "ABCA"] == [False, False, False, True]
    # D: the hand starts at the tail, clears A's bit, passes it and evicts B.
    assert model.access("D") is False
    assert model.keys() == ["D", "C", "A"]
    assert model.hand is not None and model.hand.key == "C"
    # B: the hand goes on from C (next-newer than B), which is unvisited.
    assert model.access("B") is False
    assert model.keys() == ["B", "D", "A"]
    assert model.access("A") is True
    assert model.access("E") is False  # D evicted, the hand rests on B
    assert model.keys() == ["E", "B", "A"]
    assert [model.access(k) for k in "BE"] == [True, True]
    # F: everything is visited; the hand clears B and E, wraps past the head to the tail,
    # clears A and evicts B on its second visit.
    assert model.access("F") is False
    assert model.keys() == ["F", "E", "A"]
    assert model.hand is not None and model.hand.key == "E"
    assert model.access("E") is True
    # G: E is passed over, F (the head) is evicted, so the hand wraps to the tail.
    assert model.access("G") is False
    assert model.keys() == ["G", "E", "A"]
    assert model.hand is None
    assert model.access("H") is False  # A (bit cleared by the sweep for F) goes
    assert model.keys() == ["H", "G", "E"]
    assert model.hand is not None and model.hand.key == "E"


def test_reference_model_all_visited_evicts_the_oldest_after_a_full_sweep():
    model = ReferenceSieve(3)
    for k in "ABCABC":
        model.access(k)
    assert model.access("D") is False
    assert model.keys() == ["D", "C", "B"]


# --- warp_cache against the model --------------------------------------------------------


def test_worked_example_on_the_cache():
    trace = list("ABCADBAEBEFEGH") + list("ABCDEFGH")
    assert cache_trace(3, trace) == model_trace(3, trace)


@given(
    max_size=st.integers(min_value=1, max_value=12),
    trace=st.lists(st.integers(min_value=0, max_value=24), max_size=300),
)
def test_matches_reference_sieve_on_random_traces(max_size, trace):
    assert cache_trace(max_size, trace) == model_trace(max_size, trace)


@given(
    max_size=st.integers(min_value=1, max_value=SINGLE_SHARD_MAX),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_matches_reference_sieve_on_skewed_traces_for_any_single_shard_size(max_size, seed):
    rng = random.Random(seed)
    universe = max(2, int(max_size * rng.uniform(1.1, 3.0)))
    # Skewed popularity: a few keys are hot, most are cold.
    trace = [int(universe * rng.random() ** 2) for _ in range(4 * max_size + 50)]
    assert cache_trace(max_size, trace) == model_trace(max_size, trace)


@given(trace=st.lists(st.text(alphabet="abcdefgh", max_size=2), max_size=200))
def test_matches_reference_sieve_with_string_keys(trace):
    assert cache_trace(5, trace) == model_trace(5, trace)


@pytest.mark.parametrize("max_size", [2048, 10_000])
def test_large_sharded_cache_hit_ratio_is_close_to_exact_sieve(max_size):
    rng = random.Random(max_size)
    universe = 4 * max_size
    trace = [int(universe * rng.random() ** 3) for _ in range(8 * max_size)]
    hits = cache_trace(max_size, trace)
    reference = model_trace(max_size, trace)
    ratio, reference_ratio = sum(hits) / len(trace), sum(reference) / len(trace)
    assert abs(ratio - reference_ratio) <= 0.02, (ratio, reference_ratio)


def test_max_size_zero_matches_model():
    trace = [1, 1, 2, 1]
    assert cache_trace(0, trace) == model_trace(0, trace) == [False] * 4


def test_sieve_keeps_a_hot_entry_through_a_scan_where_lru_does_not():
    max_size = 10
    trace = ["hot", "hot"] + [f"scan{i}" for i in range(max_size)] + ["hot"]

    hits = cache_trace(max_size, trace)
    assert hits[1] is True
    assert hits[-1] is True, "SIEVE keeps the visited entry through a one-pass scan"
    assert hits == model_trace(max_size, trace)

    lru_calls = []

    @functools.lru_cache(maxsize=max_size)
    def lru(key):
        lru_calls.append(key)
        return key

    for key in trace:
        lru(key)
    assert lru_calls[-1] == "hot", "LRU evicts the hot entry during the same scan"


def test_unvisited_entries_are_evicted_in_insertion_order():
    max_size = 8
    trace = list(range(max_size)) + list(range(max_size, 2 * max_size))
    trace += list(range(max_size))  # all misses: the first batch was evicted, oldest first
    hits = cache_trace(max_size, trace)
    assert not any(hits)


def test_hits_never_reorder_entries():
    # Visiting 0 does not move it; its bit only buys it one more pass of the hand.
    trace = [0, 1, 2, 0, 3, 4, 5, 0]
    assert cache_trace(3, trace) == model_trace(3, trace)
