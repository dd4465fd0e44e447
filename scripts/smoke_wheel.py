"""Smoke test of an installed warp_cache wheel (scripts/build-wheel.sh runs it in a fresh
venv, from outside the checkout): it imports, caches in both backends, reports the
interpreter it was built for, and leaves the GIL off on free-threaded builds."""

import sys
import sysconfig

import warp_cache
from warp_cache import _warp_cache, cache

assert "site-packages" in warp_cache.__file__, warp_cache.__file__
calls = []


@cache(max_size=4)
def square(x):
    calls.append(x)
    return x * x


assert [square(3), square(3)] == [9, 9] and calls == [3]
assert square.cache_info()[:2] == (1, 1), square.cache_info()


@cache(max_size=4, backend="shared")
def cube(x):
    return x**3


assert [cube(2), cube(2)] == [8, 8]
cube.cache_clear()

expected = "{}.{}".format(*sys.version_info[:2])
if sysconfig.get_config_var("Py_GIL_DISABLED"):
    expected += "t"
    assert not sys._is_gil_enabled(), "importing warp_cache turned the GIL on"
assert _warp_cache.BUILT_FOR == expected, (_warp_cache.BUILT_FOR, expected)
print(f"smoke test ok: {warp_cache.__file__} on {sys.version.split()[0]} ({expected})")
