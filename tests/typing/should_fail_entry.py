"""Must NOT type-check: tests/test_typing.py expects exactly the one error below.

If the per-entry methods lose the wrapped function's parameters, mypy accepts this file and
the test fails.
"""

from warp_cache import cache


class Repo:
    @cache()
    def get(self, key: int) -> str:
        return str(key)


Repo().get.cache_invalidate("not an int")  # expected error: incompatible type "str"
