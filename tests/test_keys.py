"""How the memory backend builds and compares keys: hash() and ==, like lru_cache."""

from __future__ import annotations

import pytest
from warp_cache import cache


def recorder():
    """A cached function returning a fresh object per real call, plus its call log."""
    calls: list = []

    @cache(max_size=1000)
    def f(*args, **kwargs):
        calls.append((args, kwargs))
        return [args, kwargs]

    return f, calls


class CustomError(Exception):
    pass


class BadHash:
    def __hash__(self):
        raise CustomError("hash")


class BadEq:
    """Equal hashes, but comparing two distinct instances raises."""

    def __hash__(self):
        return 42

    def __eq__(self, other):
        raise CustomError("eq")


def test_equal_numbers_share_one_key():
    f, calls = recorder()
    first = f(1)
    assert f(1.0) is first
    assert f(True) is first
    assert len(calls) == 1
    assert f.cache_info().current_size == 1


def test_equal_keys_in_tuples_and_kwargs():
    f, calls = recorder()
    first = f(1, x=2)
    assert f(1.0, x=2.0) is first
    assert f(True, x=2) is first
    assert len(calls) == 1
    pair = f(1, 2)
    assert f(True, 2.0) is pair
    assert f(1.0, 2) is pair


def test_same_hash_different_values_are_different_keys():
    assert hash(-1) == hash(-2)  # CPython maps -1 to -2
    f, calls = recorder()
    a = f(-1)
    b = f(-2)
    assert a is not b
    assert f(-1) is a
    assert f(-2) is b
    assert len(calls) == 2


def test_several_args_differ_from_one_tuple_arg():
    f, calls = recorder()
    spread = f(1, 2)
    packed = f((1, 2))
    assert spread is not packed
    assert f(1, 2) is spread
    assert f((1, 2)) is packed
    assert len(calls) == 2


def test_one_arg_differs_from_one_element_tuple():
    f, calls = recorder()
    single = f(1)
    packed = f((1,))
    assert single is not packed
    assert f(1) is single
    assert f((1,)) is packed
    assert len(calls) == 2


def test_no_args_differs_from_empty_tuple_arg():
    f, calls = recorder()
    none = f()
    empty = f(())
    assert none is not empty
    assert f() is none
    assert f(()) is empty


def test_argument_count_matters():
    f, calls = recorder()
    results = [f(*range(n)) for n in range(6)]
    assert len({id(r) for r in results}) == 6
    assert [f(*range(n)) for n in range(6)] == results
    assert len(calls) == 6


def test_kwargs_order_does_not_matter():
    f, calls = recorder()
    first = f(a=1, b=2)
    assert f(b=2, a=1) is first
    assert len(calls) == 1
    assert f.cache_info().hits == 1


def test_kwargs_names_matter():
    f, calls = recorder()
    a = f(a=1)
    b = f(b=1)
    assert a is not b
    assert f(a=1) is a
    assert f(b=1) is b


def test_kwargs_values_matter():
    f, calls = recorder()
    one = f(1, k=1)
    two = f(1, k=2)
    assert one is not two
    assert f(1, k=2) is two


def test_kwargs_differ_from_positional_tuple_lookalikes():
    f, calls = recorder()
    kw = f(a=1)
    assert f(("a", 1)) is not kw
    assert f((("a", 1),)) is not kw
    assert f("a", 1) is not kw
    assert f((), (("a", 1),)) is not kw
    assert f((), ("a",), (1,)) is not kw
    assert f((), ("a", 1)) is not kw
    assert f(a=1) is kw


@pytest.mark.parametrize(
    "key",
    [None, "text", b"bytes", 2**100, -0.5, frozenset({1, 2}), (1, ("nested", None)), range(3)],
)
def test_hashable_values_of_many_types_are_keys(key):
    f, calls = recorder()
    first = f(key)
    assert f(key) is first
    assert len(calls) == 1


def test_values_that_are_not_equal_are_different_keys():
    f, calls = recorder()
    keys = [0, 1, "1", b"1", (1,), None, "", (), frozenset(), 1.5]
    results = [f(k) for k in keys]
    assert len({id(r) for r in results}) == len(keys)
    assert [f(k) for k in keys] == results
    assert len(calls) == len(keys)


def test_identity_compared_objects_are_distinct_keys():
    class Token:
        pass

    f, calls = recorder()
    a, b = Token(), Token()
    ra = f(a)
    rb = f(b)
    assert ra is not rb
    assert f(a) is ra


def test_equal_custom_objects_share_a_key():
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __hash__(self):
            return hash((self.x, self.y))

        def __eq__(self, other):
            return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    f, calls = recorder()
    first = f(Point(1, 2))
    assert f(Point(1, 2)) is first
    assert f(Point(2, 1)) is not first
    assert len(calls) == 2


def test_same_nan_object_is_a_hit():
    nan = float("nan")
    f, calls = recorder()
    first = f(nan)
    assert f(nan) is first  # identity before equality, as dict and lru_cache do
    assert len(calls) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda f: f([1]),
        lambda f: f({}),
        lambda f: f({1}),
        lambda f: f(1, [2]),
        lambda f: f((1, [2])),
        lambda f: f(1, k=[2]),
        lambda f: f(k={"a": 1}),
    ],
)
def test_unhashable_arguments_raise_type_error(call):
    f, calls = recorder()
    with pytest.raises(TypeError):
        call(f)
    assert calls == []
    info = f.cache_info()
    assert info.hits == 0
    assert info.current_size == 0


def test_cache_works_after_unhashable_argument():
    f, calls = recorder()
    with pytest.raises(TypeError):
        f([1])
    first = f(1)
    assert f(1) is first
    assert f.cache_info().hits == 1


def test_exception_from_hash_propagates():
    f, calls = recorder()
    with pytest.raises(CustomError, match="hash"):
        f(BadHash())
    with pytest.raises(CustomError, match="hash"):
        f(1, BadHash())
    with pytest.raises(CustomError, match="hash"):
        f(k=BadHash())
    assert calls == []
    assert f.cache_info().hits == 0


def test_exception_from_eq_propagates():
    f, calls = recorder()
    first_key = BadEq()
    f(first_key)
    assert f(first_key) is not None  # same object: identity, no __eq__ needed
    with pytest.raises(CustomError, match="eq"):
        f(BadEq())
    assert len(calls) == 1


def test_exception_from_eq_inside_tuple_key_propagates():
    f, calls = recorder()
    f(1, BadEq())
    with pytest.raises(CustomError, match="eq"):
        f(1, BadEq())
