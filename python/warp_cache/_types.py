"""Static types of cached callables (imported only by type checkers)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from warp_cache._api import CacheInfo

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")


class _EntryControl(Protocol[P, R]):
    """Per-entry methods, keyed like a call with the same arguments. For a coroutine
    function (R a coroutine of T), entries hold T: `cache_peek` returns it and `cache_set`
    takes it, while `cache_refresh` returns an awaitable like a call."""

    def cache_invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...
    @overload
    def cache_peek(
        self: _EntryControl[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> T: ...
    @overload
    def cache_peek(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    def cache_peek(self, *args: Any, **kwargs: Any) -> Any: ...
    @overload
    def cache_set(
        self: _EntryControl[P, Coroutine[Any, Any, T]],
        value: T,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> None: ...
    @overload
    def cache_set(self, value: R, /, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def cache_set(self, value: Any, /, *args: Any, **kwargs: Any) -> None: ...
    def cache_refresh(self, *args: P.args, **kwargs: P.kwargs) -> R: ...


class CachedFunction(_EntryControl[P, R], Protocol[P, R]):
    """A function wrapped by `warp_cache.cache`: same parameters and result type."""

    __wrapped__: Callable[P, R]
    __name__: str
    __qualname__: str

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    def cache_info(self) -> CacheInfo: ...
    def cache_clear(self) -> None: ...
    @overload
    def __get__(self, instance: None, owner: type[Any]) -> CachedFunction[P, R]: ...
    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, P2], R], instance: S, owner: type[Any]
    ) -> BoundCachedFunction[P2, R]: ...
    def __get__(self, instance: Any, owner: type[Any]) -> Any: ...


class BoundCachedFunction(_EntryControl[P, R], Protocol[P, R]):
    """A cached method bound to an instance: the per-entry methods take the arguments
    after `self` and act on that instance's entries."""

    __self__: Any
    __func__: CachedFunction[..., R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    def cache_info(self) -> CacheInfo: ...
    def cache_clear(self) -> None: ...
