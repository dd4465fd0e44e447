"""Names for shared caches: which files a decorated function's results live in.

The file name carries the function's module and qualified name; a fingerprint of its code
is folded in too, so a function whose body changed never reads results computed by its old
body, and two different scripts' ``__main__.f`` never share a cache. The fingerprint must be
the same in every process, whatever its ``PYTHONHASHSEED``: it hashes only stable text.
"""

from __future__ import annotations

import hashlib
import os
import sys
import types
from typing import Any


def _stable_repr(value: object) -> str:
    """A repr that does not depend on hash randomization (set order)."""
    if isinstance(value, types.CodeType):
        return code_digest(value).hex()
    if isinstance(value, (frozenset, set)):
        return "{" + ",".join(sorted(_stable_repr(v) for v in value)) + "}"
    if isinstance(value, tuple):
        return "(" + ",".join(_stable_repr(v) for v in value) + ")"
    return repr(value)


def code_digest(code: types.CodeType) -> bytes:
    """A digest of what a code object does (bytecode, constants, names), not where it is."""
    h = hashlib.blake2b(digest_size=16)
    for part in (
        code.co_code,
        _stable_repr(code.co_consts).encode(),
        repr(code.co_names).encode(),
        repr(code.co_varnames).encode(),
        repr((code.co_argcount, code.co_kwonlyargcount, code.co_flags)).encode(),
    ):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def _main_script(code: types.CodeType | None) -> str:
    """The script a ``__main__`` function comes from. Its code's file name, when it has one:
    multiprocessing's spawn runs the script again as ``__mp_main__``, with ``sys.modules``
    not yet pointing at it while the script's decorators run."""
    path = code.co_filename if code is not None else None
    if not path or path.startswith("<"):
        path = getattr(sys.modules.get("__main__"), "__file__", None)
    return os.path.abspath(path) if path else "<interactive>"


def fingerprint(func: Any) -> int:
    """A 64-bit fingerprint of `func`'s code, and of the script for ``__main__`` functions."""
    h = hashlib.blake2b(digest_size=8)
    target = getattr(func, "__func__", func)  # bound methods
    code = getattr(target, "__code__", None)
    if not isinstance(code, types.CodeType):
        code = None
    if code is not None:
        h.update(code_digest(code))
    else:
        h.update(f"{type(func).__module__}.{type(func).__qualname__}".encode())
    if getattr(func, "__module__", None) in ("__main__", "__mp_main__"):
        h.update(_main_script(code).encode())
    return int.from_bytes(h.digest(), "little")
