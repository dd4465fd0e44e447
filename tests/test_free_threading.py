"""Free-threaded CPython: importing and using warp_cache must leave the GIL off."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

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
