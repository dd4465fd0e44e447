"""Static types of cached callables (imported only by type checkers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from warp_cache._api import CacheInfo

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
S = TypeVar("S")


class CachedFunction(Generic[P, R]):
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


class BoundCachedFunction(Generic[P, R]):
    """A cached method bound to an instance."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
