"""What identifies a shared cache: everything that decides a function's results and can be seen.

Two processes share a cache file only when their identities are equal, so the identity covers
the function's code (through every ``__wrapped__`` layer, nested code objects included), its
defaults, its closure's contents, the module-level values and same-module functions it reads,
the arguments a ``functools.partial`` binds, the instance behind a bound method or callable
instance, the cache's parameters and ``version=``. It is a digest of a canonical encoding,
so it is the same in every process whatever its ``PYTHONHASHSEED``.

State that decides results but has no deterministic encoding (a lock, an open file) is
refused with :class:`IdentityError` -- unless ``version=`` is given, by which the user vouches
for what cannot be seen. Module-level objects of that kind (a logger, a session) are named
by their type only: they are read by so many functions that refusing them would refuse
most real code, and they rarely decide a result.
"""

from __future__ import annotations

import dis
import enum
import functools
import hashlib
import inspect
import io
import os
import socket
import struct
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

# Bump when the encoding below changes: every identity changes with it.
SCHEME = 1
# How many same-module functions deep a function's identity follows what it reads.
MAX_FUNCTION_DEPTH = 8
# How deep values nest before the encoding gives up on them.
MAX_VALUE_DEPTH = 48

_MISSING = object()
_BUILTINS = vars(__import__("builtins"))
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
# Types whose instances are handles on the outside world, never values.
_HANDLES: tuple[type, ...] = (io.IOBase, socket.socket, types.GeneratorType)


class IdentityError(TypeError):
    """Part of what decides a function's results cannot be encoded deterministically."""


class Identity(NamedTuple):
    """A shared cache's identity."""

    digest: int  # 64 bits
    complete: bool  # False: some global the code reads was not yet bound


class _Opaque(Exception):
    """A value with no deterministic encoding; `path` names where it was met."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def module_of(obj: Any) -> str | None:
    """`obj.__module__`; a script's spawned workers re-run it as ``__mp_main__``: the same
    module as ``__main__``."""
    module = getattr(obj, "__module__", None)
    return "__main__" if module == "__mp_main__" else module


def qualified_name(obj: Any) -> str:
    return f"{module_of(obj)}.{getattr(obj, '__qualname__', None)}"


class _Encoder:
    """Streams a canonical encoding of functions and values into a hash."""

    def __init__(self, module: str | None, strict: bool) -> None:
        self._hash = hashlib.blake2b(digest_size=8)
        self._module = module
        self._strict = strict
        self._depth = 0  # same-module functions followed to get here
        self._active: dict[int, int] = {}  # id -> position, for cycles
        self._functions: dict[int, int] = {}  # id(function) -> number, encoded once
        self._keep: list[object] = []  # keeps those ids from being reused meanwhile
        self.complete = True

    def digest(self) -> int:
        return int.from_bytes(self._hash.digest(), "little")

    # -- framing ---------------------------------------------------------------------------

    def token(self, tag: bytes, body: bytes = b"") -> None:
        self._hash.update(tag + struct.pack("<Q", len(body)) + body)

    def text(self, tag: bytes, text: str) -> None:
        self.token(tag, text.encode("utf-8", "surrogatepass"))

    def _count(self, tag: bytes, n: int) -> None:
        self.token(tag, struct.pack("<Q", n))

    # -- callables -------------------------------------------------------------------------

    def decorated(self, func: Any, path: str) -> None:
        """The identity of anything `cache()` can decorate."""
        if isinstance(func, functools.partial):
            self.text(b"partial", path)
            self.decorated(func.func, f"{path}.func")
            self.value(func.args, f"the arguments {path} binds")
            self.value(func.keywords, f"the keywords {path} binds")
        elif isinstance(func, types.MethodType):
            self.text(b"method", path)
            self.decorated(func.__func__, f"{path}.__func__")
            self.value(func.__self__, f"the instance {path} is bound to")
        elif isinstance(func, types.FunctionType):
            self.function(func, path)
        elif _is_cached_function(func):
            self.decorated(func.__wrapped__, f"{path}.__wrapped__")
        elif isinstance(func, (types.BuiltinFunctionType, type)) or not callable(func):
            self.text(b"named", qualified_name(func))
        else:
            # A callable instance: its class's __call__ and its own state.
            self.text(b"instance", qualified_name(type(func)))
            call = inspect.getattr_static(type(func), "__call__", None)
            if isinstance(call, types.FunctionType):
                self.function(call, f"{path}.__call__")
            self.value(func, f"the state of {path}")

    def function(self, func: types.FunctionType, path: str) -> None:
        number = self._functions.get(id(func))
        if number is not None:
            self._count(b"seen-function", number)
            return
        self._functions[id(func)] = len(self._functions)
        self._keep.append(func)
        code = func.__code__
        self.text(b"function", qualified_name(func))
        self.code(code)
        positional = code.co_varnames[: code.co_argcount]
        defaults = func.__defaults__ or ()
        named = positional[len(positional) - len(defaults) :]
        for name, default in zip(named, defaults, strict=True):
            self.text(b"default", name)
            self.value(default, f"the default of {name!r} in {func.__qualname__}")
        for name, default in sorted((func.__kwdefaults__ or {}).items()):
            self.text(b"kwdefault", name)
            self.value(default, f"the default of {name!r} in {func.__qualname__}")
        for name, cell in zip(code.co_freevars, func.__closure__ or (), strict=True):
            self.text(b"cell", name)
            try:
                contents = cell.cell_contents
            except ValueError:  # not assigned yet
                self.token(b"empty-cell")
                continue
            self.value(contents, f"the variable {name!r} that {func.__qualname__} closes over")
        self._globals(func)
        wrapped = getattr(func, "__wrapped__", None)
        if wrapped is not None:
            self.token(b"wrapped")
            self.decorated(wrapped, f"{path}.__wrapped__")

    def code(self, code: types.CodeType) -> None:
        """What a code object does, not where it is (no file names or line numbers)."""
        self.token(b"code", code.co_code)
        counts = (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount)
        self.token(b"shape", struct.pack("<QQQQ", *counts, code.co_flags))
        for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
            self.text(b"names", "\0".join(names))
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self.code(const)
            else:
                self.value(const, f"a constant of {code.co_qualname}")

    def _globals(self, func: types.FunctionType) -> None:
        namespace = func.__globals__
        for name in sorted(_global_names(func.__code__)):
            self.text(b"global", name)
            value = namespace.get(name, _MISSING)
            if value is not _MISSING:
                self._global_value(value, name)
            elif name in _BUILTINS:
                self.token(b"builtin")
            else:
                self.token(b"unbound")
                self.complete = False

    def _global_value(self, value: Any, name: str) -> None:
        if isinstance(value, types.ModuleType):
            self.text(b"module", value.__name__)
            return
        follow = module_of(value) == self._module and self._depth < MAX_FUNCTION_DEPTH
        if isinstance(value, types.FunctionType) or _is_cached_function(value):
            if follow:
                self._depth += 1
                try:
                    self.decorated(value, name)
                finally:
                    self._depth -= 1
            else:
                self.text(b"named", qualified_name(value))
            return
        if isinstance(value, type):
            self.text(b"class", qualified_name(value))
            if follow:
                self._depth += 1
                try:
                    for attr, member in sorted(vars(value).items()):
                        inner = getattr(member, "__func__", member)
                        if isinstance(inner, types.FunctionType):
                            self.text(b"member", attr)
                            self.function(inner, f"{name}.{attr}")
                finally:
                    self._depth -= 1
            return
        # Any other module-level object: by value where it has a deterministic encoding,
        # else by its type (a logger, a session: see the module docstring).
        saved = self._hash.copy(), self.complete
        try:
            self.value(value, name)
        except _Opaque:
            self._hash, self.complete = saved
            self.text(b"opaque", qualified_name(type(value)))

    # -- values ----------------------------------------------------------------------------

    def value(self, value: Any, path: str) -> None:
        """A canonical encoding of `value`; raises _Opaque where there is none."""
        self._value(value, path, 0)

    def _value(self, value: Any, path: str, depth: int) -> None:
        if depth > MAX_VALUE_DEPTH:
            self._opaque(value, path, "it nests too deeply to fingerprint")
            return
        kind = type(value)
        if value is None or value is Ellipsis or value is NotImplemented:
            self.text(b"singleton", repr(value))
        elif kind is bool or kind is int:
            self.text(kind.__name__.encode(), repr(value))
        elif kind is float:
            self.text(b"float", value.hex())
        elif kind is complex:
            self.text(b"complex", f"{value.real.hex()},{value.imag.hex()}")
        elif kind is str:
            self.text(b"str", value)
        elif kind is bytes or kind is bytearray:
            self.token(kind.__name__.encode(), bytes(value))
        elif isinstance(value, types.CodeType):
            self.code(value)
        elif isinstance(value, (types.FunctionType, functools.partial, types.MethodType)):
            self.decorated(value, path)
        elif isinstance(value, (type, types.BuiltinFunctionType, types.ModuleType)):
            self.text(b"named", f"{kind.__name__}:{getattr(value, '__name__', '')}")
            self.text(b"of", qualified_name(value))
        elif isinstance(value, enum.Enum):
            self.text(b"enum", f"{qualified_name(kind)}.{value.name}")
        else:
            self._container(value, path, depth)

    def _opaque(self, value: Any, path: str, reason: str) -> None:
        """State without a deterministic encoding: refused, or named by its type where the
        user gave a version."""
        if self._strict:
            raise _Opaque(path, reason)
        self.text(b"opaque", qualified_name(type(value)))

    def _container(self, value: Any, path: str, depth: int) -> None:
        kind = type(value)
        if id(value) in self._active:
            self._count(b"cycle", self._active[id(value)])
            return
        self._active[id(value)] = len(self._active)
        self._keep.append(value)
        try:
            if kind is tuple or kind is list:
                self._count(kind.__name__.encode(), len(value))
                for i, item in enumerate(value):
                    self._value(item, f"{path}[{i}]", depth + 1)
            elif kind is dict:
                self._count(b"dict", len(value))
                self._unordered(iter(value.items()), path, depth)
            elif kind is set or kind is frozenset:
                self._count(kind.__name__.encode(), len(value))
                self._unordered(((item, None) for item in value), path, depth)
            else:
                self._object(value, path, depth)
        finally:
            del self._active[id(value)]

    def _unordered(self, pairs: Iterator[tuple[Any, Any]], path: str, depth: int) -> None:
        """Pairs in the order of their encodings, which no hash seed changes."""
        encoded = []
        for key, item in pairs:
            sub = _Encoder(self._module, self._strict)
            sub._depth, sub._active, sub._functions = self._depth, self._active, self._functions
            sub._value(key, f"a key of {path}", depth + 1)
            sub._value(item, f"{path}[{key!r}]", depth + 1)
            self.complete &= sub.complete
            self._keep.append(sub._keep)
            encoded.append(sub._hash.digest())
        for digest in sorted(encoded):
            self.token(b"item", digest)

    def _object(self, value: Any, path: str, depth: int) -> None:
        """Any other object, by what pickle would save of it: its class and its state."""
        kind = type(value)
        if isinstance(value, (*_HANDLES, Iterator)):
            self._opaque(value, path, f"a {qualified_name(kind)} is a handle, not a value")
            return
        try:
            reduced = value.__reduce_ex__(4)
        except Exception as exc:
            reason = f"a {qualified_name(kind)} has no deterministic encoding: {exc}"
            self._opaque(value, path, reason)
            return
        if isinstance(reduced, str):  # a global, pickled by name
            self.text(b"named", f"{kind.__module__}.{reduced}")
            return
        self.text(b"object", qualified_name(kind))
        constructor, args, state, list_items, dict_items = (*reduced, None, None, None, None)[:5]
        self.text(b"by", qualified_name(constructor))
        self._value(args, f"{path} (constructor arguments)", depth + 1)
        self._value(state, f"{path} (state)", depth + 1)
        if list_items is not None:
            self._value(list(list_items), f"{path} (items)", depth + 1)
        if dict_items is not None:
            self._value(dict(dict_items), f"{path} (items)", depth + 1)


def _is_cached_function(value: object) -> bool:
    return type(value).__module__ == "warp_cache._warp_cache" and hasattr(value, "__wrapped__")


def _global_names(code: types.CodeType) -> set[str]:
    """Names that `code` and the code nested in it read from the module namespace."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in _GLOBAL_LOADS}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _innermost_module(func: Any) -> str | None:
    while True:
        inner = getattr(func, "func", None) if isinstance(func, functools.partial) else None
        inner = inner or getattr(func, "__func__", None) or getattr(func, "__wrapped__", None)
        if inner is None:
            break
        func = inner
    return module_of(func)


def main_script(func: Any) -> str:
    """The script a ``__main__`` function comes from. Its code's file name, when it has one:
    multiprocessing's spawn runs the script again as ``__mp_main__``, with ``sys.modules``
    not yet pointing at it while the script's decorators run."""
    code = getattr(getattr(func, "__func__", func), "__code__", None)
    path = code.co_filename if isinstance(code, types.CodeType) else None
    if not path or path.startswith("<"):
        path = getattr(sys.modules.get("__main__"), "__file__", None)
    return os.path.abspath(path) if path else "<interactive>"


def identity(
    func: Callable[..., Any],
    module: str,
    qualname: str,
    parameters: tuple[object, ...],
    version: str | int | None,
) -> Identity:
    """The identity of a shared cache of `func` with `parameters` (which include the file
    format's version). Raises IdentityError for state that cannot be seen, unless `version`
    is given (then such state is named by its type: the version stands for it)."""
    encoder = _Encoder(_innermost_module(func), strict=version is None)
    encoder.text(b"scheme", str(SCHEME))
    encoder.text(b"name", f"{module}\0{qualname}")
    encoder.value(parameters, "the cache's parameters")
    encoder.text(b"version", repr(version))
    if module == "__main__":
        encoder.text(b"script", main_script(func))
    try:
        encoder.decorated(func, qualname)
    except _Opaque as opaque:
        raise IdentityError(
            f"cannot share the cache of {module}.{qualname} between processes: "
            f"{opaque.path} is not a value ({opaque.reason}); pass version= to say what "
            f"decides its results, or use the memory backend"
        ) from None
    return Identity(encoder.digest(), encoder.complete)
