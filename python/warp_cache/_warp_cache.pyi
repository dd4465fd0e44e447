"""The Rust extension module (built by maturin)."""

from collections.abc import Callable, Generator
from typing import Any

class CachedFunction:
    """A function wrapped by warp_cache.cache()."""

    __wrapped__: Callable[..., Any]
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None) -> Any: ...
    def cache_info(self) -> Any: ...
    def cache_clear(self) -> None: ...
    def _store_result(self, key: object, value: object) -> None: ...
    def _served_by_flight(self) -> None: ...

class ReadyValue:
    """An already-completed awaitable returned by a cached coroutine function on a hit."""

    def __await__(self) -> Generator[Any, None, Any]: ...
    def __iter__(self) -> ReadyValue: ...
    def __next__(self) -> Any: ...
    def send(self, value: object) -> Any: ...
    def throw(self, exc: BaseException, *rest: object) -> Any: ...
    def close(self) -> None: ...

def make_memory_cache(
    func: Callable[..., Any],
    max_size: int,
    ttl: float | None,
    info_type: type,
    kw_mark: object,
    async_fill: Callable[..., Any] | None,
) -> CachedFunction: ...
def make_shared_cache(
    func: Callable[..., Any],
    max_size: int,
    ttl: float | None,
    max_key_size: int,
    max_value_size: int,
    module: str,
    qualname: str,
    fingerprint: int,
    info_type: type,
    kw_mark: object,
    async_fill: Callable[..., Any] | None,
    dumps: Callable[[Any], bytes],
    loads: Callable[[bytes], Any],
    directory: str | None,
    strict: bool,
) -> CachedFunction: ...
