"""Decoration-time validation of every `cache()` parameter."""

from __future__ import annotations

import pytest
from warp_cache import Backend, cache


def target(x):
    return x


def decorate(*args, **kwargs):
    """Build the decorator and apply it: validation may happen in either step."""
    return cache(*args, **kwargs)(target)


def assert_rejected(error, name, *args, **kwargs):
    with pytest.raises(error) as excinfo:
        decorate(*args, **kwargs)
    assert name in str(excinfo.value), f"message should name {name!r}: {excinfo.value!r}"


# --- max_size ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, -128])
def test_negative_max_size_is_value_error(bad):
    assert_rejected(ValueError, "max_size", max_size=bad)
    assert_rejected(ValueError, "max_size", bad)


@pytest.mark.parametrize("bad", [True, False, 1.0, 1.5, "10", None, [10]])
def test_non_int_max_size_is_type_error(bad):
    assert_rejected(TypeError, "max_size", max_size=bad)


@pytest.mark.parametrize("bad", [True, 2.0, "10"])
def test_non_int_positional_max_size_is_type_error(bad):
    assert_rejected(TypeError, "max_size", bad)


@pytest.mark.parametrize("good", [0, 1, 1024, 10**6])
def test_valid_max_size(good):
    wrapped = decorate(max_size=good)
    assert wrapped(3) == 3
    assert wrapped.cache_info().max_size == good


# --- ttl -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 0.0, -1, -0.5, float("nan"), float("-inf")])
def test_non_positive_or_nan_ttl_is_value_error(bad):
    assert_rejected(ValueError, "ttl", ttl=bad)


@pytest.mark.parametrize("bad", ["1", b"1", True, False, [1], 1j])
def test_non_number_ttl_is_type_error(bad):
    assert_rejected(TypeError, "ttl", ttl=bad)


@pytest.mark.parametrize("good", [None, 1, 0.5, 1e-3, 3600])
def test_valid_ttl(good):
    wrapped = decorate(ttl=good)
    assert wrapped(3) == 3
    assert wrapped(3) == 3


# --- max_key_size / max_value_size -----------------------------------------------------------


@pytest.mark.parametrize("name", ["max_key_size", "max_value_size"])
@pytest.mark.parametrize("bad", [0, -1])
def test_size_limits_below_one_are_value_error(name, bad):
    assert_rejected(ValueError, name, **{name: bad})


@pytest.mark.parametrize("name", ["max_key_size", "max_value_size"])
@pytest.mark.parametrize("bad", [1.5, 8.0, "8", None])
def test_non_int_size_limits_are_type_error(name, bad):
    assert_rejected(TypeError, name, **{name: bad})


@pytest.mark.parametrize("name", ["max_key_size", "max_value_size"])
def test_size_limit_of_one_is_valid(name):
    wrapped = decorate(**{name: 1})
    assert wrapped(3) == 3


# --- backend -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["disk", "", "memory ", "valkey", 7, -1, 3])
def test_unknown_backend_is_value_error(bad):
    assert_rejected(ValueError, "backend", backend=bad)


@pytest.mark.parametrize("bad", [1.5, 0.0, None, b"memory", [0]])
def test_wrong_type_backend_is_type_error(bad):
    assert_rejected(TypeError, "backend", backend=bad)


@pytest.mark.parametrize("good", [Backend.MEMORY, 0, "memory", "MEMORY", "mEmOrY"])
def test_valid_memory_backend(good):
    wrapped = decorate(backend=good)
    assert wrapped(3) == 3
    assert wrapped(3) == 3
    assert wrapped.cache_info().hits == 1


def test_errors_are_raised_before_the_function_runs():
    calls = []

    def f(x):
        calls.append(x)
        return x

    with pytest.raises(ValueError):
        cache(max_size=-1)(f)
    assert calls == []
