"""The extension each interpreter of the matrix imports is the build made for it."""

from __future__ import annotations

import sys
import sysconfig

from warp_cache import _warp_cache


def test_extension_reports_the_interpreter_it_was_built_for():
    expected = "{}.{}".format(*sys.version_info[:2])
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        expected += "t"
    assert _warp_cache.BUILT_FOR == expected
