"""Module-level cached functions that pickle by reference (used by test_pickle.py)."""

from __future__ import annotations

from warp_cache import cache


@cache(max_size=64)
def square(x: int) -> int:
    return x * x


@cache()
async def async_double(x: int) -> int:
    return 2 * x


class Holder:
    @cache()
    def triple(self, x: int) -> int:
        return 3 * x
