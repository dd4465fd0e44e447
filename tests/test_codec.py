"""The shared backend's byte format from Python (issue 15): exact round trips, which values
get tags of their own and which are pickled, canonical keys, and no wrong hit ever."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import functools
import pickle
import sys
import threading
import uuid
from typing import Any

import pytest
from _exact import describe, differences
from hypothesis import given
from hypothesis import strategies as st
from warp_cache import cache

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no shared backend on Windows")

if sys.platform != "win32":
    from warp_cache._warp_cache import codec_decode, codec_encode

PICKLE_TAG = 0x08
MAX_DEPTH = 32
_dumps = functools.partial(pickle.dumps, protocol=5)


def encode(value: object, *, key: bool = False) -> bytes:
    return codec_encode(value, key, _dumps)


def round_trip(value: object) -> object:
    return codec_decode(encode(value), pickle.loads)


def round_trip_bytes(data: bytes) -> Any:
    return codec_decode(data, pickle.loads)


def tagged(value: object) -> bool:
    """Whether the codec wrote `value` with its own tags (not as one pickle)."""
    return encode(value)[0] != PICKLE_TAG


# --- what the codec is expected to tag: the rules, restated independently -------------------

_SCALARS = (type(None), bool, int, float, bytes, bytearray, decimal.Decimal, uuid.UUID)
_TEMPORAL = (datetime.date, datetime.datetime, datetime.time, datetime.timedelta)


def expected_tagged(value: object) -> bool:
    """The codec's rules: exact builtin and standard types only, str without lone
    surrogates, tzinfo None or an exact `datetime.timezone`, at most 32 containers deep,
    no list, dict, set or bytearray met twice."""
    seen: set[int] = set()

    def ok(x: object, depth: int) -> bool:
        kind = type(x)
        if kind in (list, dict, set, bytearray):
            if id(x) in seen:
                return False
            seen.add(id(x))
        if kind is str:
            try:
                x.encode("utf-8")  # type: ignore[attr-defined]
            except UnicodeEncodeError:
                return False
            return True
        if kind in _SCALARS or kind in _TEMPORAL:
            tz = getattr(x, "tzinfo", None)
            return tz is None or type(tz) is datetime.timezone
        if kind in (tuple, list, set, frozenset):
            return depth < MAX_DEPTH and all(ok(e, depth + 1) for e in x)  # type: ignore[attr-defined]
        if kind is dict:
            items = x.items()  # type: ignore[attr-defined]
            inside = depth + 1
            return depth < MAX_DEPTH and all(ok(k, inside) and ok(v, inside) for k, v in items)
        return False

    return ok(value, 0)


# --- strategies ----------------------------------------------------------------------------

offsets = st.timedeltas(
    min_value=-datetime.timedelta(hours=23, minutes=59, seconds=59),
    max_value=datetime.timedelta(hours=23, minutes=59, seconds=59),
)
timezones = st.one_of(
    st.none(),
    st.just(datetime.UTC),
    st.builds(datetime.timezone, offsets),
    st.builds(datetime.timezone, offsets, st.text(max_size=8)),
)
folds = st.sampled_from([0, 1])
datetimes = st.builds(
    lambda d, fold: d.replace(fold=fold), st.datetimes(timezones=timezones), folds
)
times = st.builds(lambda t, fold: t.replace(fold=fold), st.times(timezones=timezones), folds)
uuids = st.builds(
    uuid.UUID,
    int=st.integers(0, 2**128 - 1),
    is_safe=st.sampled_from(list(uuid.SafeUUID)),
)
ints = st.one_of(
    st.integers(),
    st.integers(-(2**300), 2**300),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 127, 128, -129, 2**31]),
)
decimals = st.decimals(allow_nan=True, allow_infinity=True)
hashable_leaves = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(),
    st.text(),
    st.text(st.characters(blacklist_categories=()), max_size=4),  # lone surrogates too
    st.binary(),
    st.binary(min_size=256, max_size=300),
    st.dates(),
    datetimes,
    times,
    st.timedeltas(),
    decimals.filter(lambda d: not d.is_snan()),
    uuids,
)
leaves = st.one_of(hashable_leaves, st.builds(bytearray, st.binary()), decimals)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.lists(inner, max_size=4).map(tuple) | st.frozensets(inner, max_size=4),
    max_leaves=8,
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(hashables, inner, max_size=5),
        st.sets(hashables, max_size=5),
        st.frozensets(hashables, max_size=5),
    ),
    max_leaves=24,
)


# --- round trips ---------------------------------------------------------------------------


def test_the_exactness_check_catches_what_equality_misses():
    shared = [1]
    assert differences([1, 2.0], [True, 2.0])
    assert differences({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert differences(-0.0, 0.0)
    assert differences([shared, shared], [[1], [1]])
    assert differences(decimal.Decimal("1.1"), decimal.Decimal("1.10"))
    utc = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    named = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(0), "UTC"))
    assert differences(utc, named)
    assert differences(datetime.time(1, fold=0), datetime.time(1, fold=1))
    assert differences(uuid.UUID(int=1), uuid.UUID(int=1, is_safe=uuid.SafeUUID.safe))
    assert not differences({float("nan"): [float("nan")]}, {float("nan"): [float("nan")]})


@given(values)
def test_every_value_round_trips_exactly(value):
    assert not differences(value, round_trip(value))


@given(values)
def test_exactly_the_covered_values_get_tags(value):
    assert tagged(value) == expected_tagged(value)


@given(decimals)
def test_every_decimal_str_is_accepted_as_is(value):
    assert tagged(value)
    assert str(round_trip(value)) == str(value)


def test_decimals_printed_with_a_lower_case_exponent_are_tagged_the_same():
    value = decimal.Decimal("1.5E+7")
    expected = encode(value)
    with decimal.localcontext() as context:
        context.capitals = 0
        assert str(value) == "1.5e+7"
        assert encode(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        [1, [2, 3], "x", b"y", None, True, 2.5],
        {"z": 1, "a": [], 3: {"nested": (1, 2)}, (1, "t"): frozenset({1})},
        {1, 2.5, "s", b"b", None, (1, 2), frozenset({3})},
        (1, (2, (3, (4,)))),
        [2**63, -(2**63) - 1, 10**100, 2**64],
        bytearray(b"\x00\xff"),
        ["x" * 300, b"y" * 300],
        datetime.datetime(2026, 11, 1, 1, 30, fold=1),
        datetime.datetime(1, 1, 1, tzinfo=datetime.UTC),
        datetime.time(12, tzinfo=datetime.timezone(datetime.timedelta(seconds=-1, microseconds=7))),
        datetime.timedelta.min,
        [decimal.Decimal("-sNaN7"), decimal.Decimal("-0E-10"), decimal.Decimal("Infinity")],
        uuid.UUID(int=2**128 - 1, is_safe=uuid.SafeUUID.unsafe),
    ],
    ids=repr,
)
def test_standard_values_are_tagged_and_exact(value):
    assert tagged(value)
    assert not differences(value, round_trip(value))


class _Sub(list):  # type: ignore[type-arg]
    pass


class _OwnTz(datetime.tzinfo):
    def utcoffset(self, dt: object) -> datetime.timedelta:
        return datetime.timedelta(hours=1)

    def tzname(self, dt: object) -> str:
        return "OWN"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _OwnTz)

    def __hash__(self) -> int:
        return 1


def _shared() -> list[object]:
    inner = [1]
    return [inner, inner]


def _cycle() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        _Sub([1]),
        [_Sub([1])],
        {"k": complex(1, 2)},
        datetime.datetime(2020, 1, 1, tzinfo=_OwnTz()),
        ["\ud800"],
        _shared(),
        _cycle(),
        _nested(MAX_DEPTH + 1),
    ],
    ids=[
        "subclass",
        "subclass inside",
        "complex inside",
        "own tzinfo",
        "surrogate",
        "shared",
        "cycle",
        "too deep",
    ],
)
def test_the_rest_is_pickled_whole_and_kept_exact(value):
    assert not tagged(value)
    assert not differences(value, round_trip(value))


def test_nesting_up_to_the_bound_is_tagged():
    assert tagged(_nested(MAX_DEPTH))
    assert tagged((1, _nested(MAX_DEPTH - 1)))
    assert not tagged((1, _nested(MAX_DEPTH)))


def test_timezone_utc_comes_back_as_the_singleton_and_names_are_kept():
    back = round_trip(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    assert back.tzinfo is datetime.UTC
    named = datetime.timezone(datetime.timedelta(hours=2), "UTC+02:00")
    assert round_trip(datetime.time(tzinfo=named)).tzinfo.__getinitargs__() == (
        datetime.timedelta(hours=2),
        "UTC+02:00",
    )


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash_the_decoder(data):
    with contextlib.suppress(Exception):
        codec_decode(data, pickle.loads)


@given(values, st.data())
def test_damaged_encodings_never_crash_the_decoder(value, data):
    encoded = bytearray(encode(value))
    at = data.draw(st.integers(0, len(encoded) - 1))
    encoded[at] = data.draw(st.integers(0, 255))
    with contextlib.suppress(Exception):
        codec_decode(bytes(encoded), pickle.loads)


def test_short_ascii_dict_keys_are_shared_between_decodes_and_always_right():
    encoded = encode({"name": 1, "clé": 2, "k" * 40: 3})
    first, second = round_trip_bytes(encoded), round_trip_bytes(encoded)
    names = [[k for k in d if k == "name"][0] for d in (first, second)]
    assert names[0] is names[1], "a short ASCII key was built twice"
    for built_each_time in ("clé", "k" * 40):
        assert [k for k in first if k == built_each_time][0] is not [
            k for k in second if k == built_each_time
        ][0]
    # Thousands of keys (far more than the cache's slots, so they evict each other).
    records = [{f"field{i}": i, f"other{i % 7}": None} for i in range(5000)]
    for record in records:
        assert not differences(record, round_trip(record))


def test_threads_decoding_at_once_build_right_values():
    values = [{f"k{i % 50}": [i, f"v{i}"], "shared": (i, {"x": i})} for i in range(200)]
    encoded = [encode(v) for v in values]
    failures: list[str] = []

    def work() -> None:
        for _ in range(20):
            for value, data in zip(values, encoded, strict=True):
                problems = differences(value, codec_decode(data, pickle.loads))
                if problems:
                    failures.extend(problems)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


# --- keys ----------------------------------------------------------------------------------


@given(st.sets(hashables, max_size=8))
def test_set_keys_are_canonical_whatever_the_insertion_order(value):
    backwards = set(reversed(list(value)))
    # The same elements in a table grown and shrunk again: another iteration order.
    extras = [object() for _ in range(100)]
    grown = set(value) | set(extras)
    grown.difference_update(extras)
    assert grown == value
    for other in (backwards, grown, frozenset(value)):
        same_kind = type(value)(other)
        assert encode(same_kind, key=True) == encode(value, key=True)


# Large generated values may exceed max_value_size: returned uncached (right all the same),
# with a RuntimeWarning where the backend warns of it.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_hit_is_never_another_arguments_result():
    # One cache for every example: a key that two different arguments share would return
    # the first one's description for the second.
    @cache(max_size=1024, backend="shared", max_key_size=4096, max_value_size=16384)
    def described(arg):
        return describe(arg)

    @given(values)
    def check(value):
        assert described(value) == describe(value)
        assert described(value) == describe(value)

    check()
    info = described.cache_info()
    assert info.hits > 100 and info.current_size > 100, info


def test_dict_arguments_hit_only_in_the_same_order_and_sets_in_any():
    @cache(backend="shared")
    def order(arg):
        return list(arg)

    assert order({"a": 1, "b": 2}) == ["a", "b"]
    assert order({"b": 2, "a": 1}) == ["b", "a"]  # equal dicts, another order: a miss
    assert order.cache_info().misses == 2
    assert order({"a": 1, "b": 2}) == ["a", "b"]
    assert order.cache_info().hits == 1

    @cache(backend="shared")
    def members(arg):
        return sorted(arg)

    many = set(range(50))
    assert members(many) == sorted(many)
    assert members(set(reversed(range(50)))) == sorted(many)
    assert members(frozenset(many)) == sorted(many)  # a frozenset is another key
    assert (members.cache_info().hits, members.cache_info().misses) == (1, 2)


# --- values changed while they are encoded --------------------------------------------------


def test_a_list_mutated_while_it_is_encoded_encodes_some_state_of_it():
    items: list[Any] = list(range(1000))
    stop = threading.Event()

    def mutate() -> None:
        while not stop.is_set():
            items.append(-1)
            items.pop()
            items[:10] = [[i] for i in range(10)]
            items[:10] = list(range(10))

    thread = threading.Thread(target=mutate)
    thread.start()
    try:
        for _ in range(300):
            back = round_trip(items)
            assert type(back) is list and len(back) in (1000, 1001)
            assert back[10:999] == list(range(10, 999))
    finally:
        stop.set()
        thread.join()
