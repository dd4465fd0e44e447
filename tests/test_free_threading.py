"""Free-threaded CPython: importing and using warp_cache must leave the GIL off."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import sysconfig
import textwrap
import weakref

import pytest
from warp_cache import cache as warp_cache_cache

GIL_DISABLED_BUILD = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

CHILD = textwrap.dedent(
    """
    import sys
    import warp_cache

    @warp_cache.cache(max_size=8)
    def square(x):
        return x * x

    assert [square(i % 4) for i in range(16)] == [(i % 4) ** 2 for i in range(16)]
    print(sys._is_gil_enabled())
    """
)


@pytest.mark.skipif(
    not GIL_DISABLED_BUILD,
    reason="needs a free-threaded build (Py_GIL_DISABLED); this interpreter always has a GIL",
)
def test_import_does_not_re_enable_the_gil():
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", CHILD],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", "importing warp_cache turned the GIL back on"
    assert "GIL" not in result.stderr, result.stderr


@pytest.mark.skipif(
    not GIL_DISABLED_BUILD,
    reason="needs a free-threaded build (Py_GIL_DISABLED); this interpreter always has a GIL",
)
def test_gil_still_disabled_in_this_process():
    import warp_cache

    assert warp_cache.cache is not None
    assert sys._is_gil_enabled() is False


FREE_THREADED_313 = GIL_DISABLED_BUILD and sys.version_info[:2] == (3, 13)


@pytest.mark.skipif(
    not FREE_THREADED_313,
    reason="only free-threaded 3.13 immortalizes top-level functions (gh-117696)",
)
def test_top_level_cached_function_is_immortal_like_a_top_level_function():
    import _pool_helpers

    # Threads hitting it never write a shared reference count.
    assert sys.getrefcount(_pool_helpers.square) >= 2**32 - 1
    assert _pool_helpers.square(3) == 9

    # A cached closure stays mortal: it and its cached values are freed as usual.
    def make():
        @warp_cache_cache(max_size=4)
        def inner(x):
            return [x]

        return inner

    inner = make()
    value = inner(1)
    ref = weakref.ref(inner)
    assert sys.getrefcount(inner) < 100
    del inner
    gc.collect()
    assert ref() is None
    assert value == [1]
