"""Must NOT type-check: tests/test_typing.py expects exactly the one error below.

If the stubs lose the wrapped function's parameters (ParamSpec), mypy accepts this file and
the test fails.
"""

from warp_cache import cache


@cache()
def double(x: int) -> int:
    return 2 * x


double("not an int")  # expected error: incompatible type "str"; expected "int"
