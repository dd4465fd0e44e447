"""The cached callable as a method: binds self, stacks with classmethod/staticmethod."""

from __future__ import annotations

import asyncio
import inspect

from warp_cache import cache


class Calculator:
    def __init__(self, factor):
        self.factor = factor
        self.calls = []

    @cache(max_size=64)
    def scale(self, x):
        """Scale x."""
        self.calls.append(x)
        return x * self.factor

    @classmethod
    @cache()
    def describe(cls, x):
        CLASS_CALLS.append((cls, x))
        return f"{cls.__name__}:{x}"

    @staticmethod
    @cache()
    def double(x):
        STATIC_CALLS.append(x)
        return 2 * x

    @property
    @cache()
    def label(self):
        self.calls.append("label")
        return f"calculator x{self.factor}"

    @cache()
    async def fetch(self, x):
        self.calls.append(("fetch", x))
        await asyncio.sleep(0)
        return x + self.factor


class SubCalculator(Calculator):
    pass


CLASS_CALLS: list = []
STATIC_CALLS: list = []


def setup_function():
    for cached in (Calculator.scale, Calculator.__dict__["describe"].__func__):
        cached.cache_clear()
    Calculator.double.cache_clear()
    CLASS_CALLS.clear()
    STATIC_CALLS.clear()


def test_method_binds_self():
    calc = Calculator(3)
    assert calc.scale(2) == 6
    assert calc.scale(2) == 6
    assert calc.calls == [2]


def test_instances_are_part_of_the_key():
    a, b = Calculator(2), Calculator(5)
    assert a.scale(10) == 20
    assert b.scale(10) == 50
    assert a.scale(10) == 20
    assert b.scale(10) == 50
    assert a.calls == [10]
    assert b.calls == [10]
    info = Calculator.scale.cache_info()
    assert (info.hits, info.misses, info.current_size) == (2, 2, 2)


def test_access_through_the_class_gives_the_cached_callable():
    cached = Calculator.__dict__["scale"]
    assert Calculator.scale is cached
    assert Calculator.scale.__name__ == "scale"
    assert Calculator.scale.__qualname__ == "Calculator.scale"
    assert Calculator.scale.__doc__ == "Scale x."


def test_unbound_call_shares_entries_with_bound_call():
    calc = Calculator(4)
    assert Calculator.scale(calc, 1) == 4
    assert calc.scale(1) == 4
    assert calc.calls == [1]
    assert Calculator.scale.cache_info().hits == 1


def test_bound_method_exposes_cache_methods():
    calc = Calculator(2)
    calc.scale(1)
    calc.scale(1)
    assert calc.scale.cache_info().hits == 1
    calc.scale.cache_clear()
    assert Calculator.scale.cache_info().current_size == 0


def test_bound_method_signature_drops_self():
    calc = Calculator(2)
    assert list(inspect.signature(calc.scale).parameters) == ["x"]
    assert list(inspect.signature(Calculator.scale).parameters) == ["self", "x"]


def test_classmethod_stacked_above_cache():
    assert Calculator.describe(1) == "Calculator:1"
    assert Calculator.describe(1) == "Calculator:1"
    assert Calculator(1).describe(1) == "Calculator:1"
    assert SubCalculator.describe(1) == "SubCalculator:1"
    assert CLASS_CALLS == [(Calculator, 1), (SubCalculator, 1)]


def test_staticmethod_stacked_above_cache():
    assert Calculator.double(4) == 8
    assert Calculator(1).double(4) == 8
    assert SubCalculator.double(4) == 8
    assert STATIC_CALLS == [4]
    assert Calculator.double.cache_info().hits == 2


def test_property_stacked_above_cache():
    calc = Calculator(7)
    assert calc.label == "calculator x7"
    assert calc.label == "calculator x7"
    assert calc.calls == ["label"]


def test_async_method():
    calc = Calculator(10)

    async def main():
        return [await calc.fetch(1), await calc.fetch(1), await calc.fetch(2)]

    assert asyncio.run(main()) == [11, 11, 12]
    assert calc.calls == [("fetch", 1), ("fetch", 2)]
    assert inspect.iscoroutinefunction(Calculator.fetch)


def test_equal_instances_share_entries():
    class Point:
        def __init__(self, x):
            self.x = x
            self.calls = 0

        def __eq__(self, other):
            return isinstance(other, Point) and self.x == other.x

        def __hash__(self):
            return hash(self.x)

        @cache()
        def norm(self):
            self.calls += 1
            return abs(self.x)

    first, second = Point(-3), Point(-3)
    assert first.norm() == 3
    assert second.norm() == 3
    assert (first.calls, second.calls) == (1, 0)


def test_unhashable_instance_raises_type_error():
    class Unhashable:
        __hash__ = None

        @cache()
        def value(self):
            return 1

    obj = Unhashable()
    try:
        obj.value()
    except TypeError:
        pass
    else:
        raise AssertionError("an unhashable self must raise TypeError")


def test_cache_is_shared_by_all_instances_and_bounded():
    class Small:
        @cache(max_size=4)
        def ident(self, x):
            return (id(self), x)

    objects = [Small() for _ in range(10)]
    for obj in objects:
        assert obj.ident(1) == (id(obj), 1)
    assert Small.ident.cache_info().current_size == 4
