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

SHARED_FORMAT: int

def make_shared_cache(
    func: Callable[..., Any],
    max_size: int,
    ttl: float | None,
    max_key_size: int,
    max_value_size: int,
    max_bytes: int | None,
    module: str,
    qualname: str,
    identity: int | None,
    settle: Callable[[], int] | None,
    info_type: type,
    kw_mark: object,
    async_fill: Callable[..., Any] | None,
    dumps: Callable[[object], bytes],
    loads: Callable[[bytes], object],
    directory: str | None,
    strict: bool,
) -> CachedFunction: ...
def default_shared_dir() -> str: ...
def shared_caches(directory: str | None = None) -> list[dict[str, Any]]: ...
def clear_shared_cache(stem: str, directory: str | None = None) -> bool: ...
def purge_shared_caches(all: bool, directory: str | None = None) -> list[str]: ...
