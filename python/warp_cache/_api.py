"""The public decorator: argument validation and wiring to the Rust engine."""

from __future__ import annotations

import contextvars
import enum
import functools
import inspect
import logging
import math
import os
import pickle
import sys
import threading
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, overload

from warp_cache import _warp_cache
from warp_cache._identity import identity

if TYPE_CHECKING:
    from warp_cache._types import CachedFunction, P, R


class Backend(enum.IntEnum):
    """Where cached data lives."""

    MEMORY = 0
    SHARED = 1
    REDIS = 2


class CacheInfo(NamedTuple):
    """Statistics of a memory-backend cache."""

    hits: int
    misses: int
    max_size: int
    current_size: int


class SharedCacheInfo(NamedTuple):
    """Statistics of a shared-backend cache."""

    hits: int
    misses: int
    max_size: int
    current_size: int
    oversize_skips: int
    current_bytes: int


class RedisCacheInfo(NamedTuple):
    """Statistics of a redis-backend cache: the near cache, then the remote tier."""

    hits: int  # near-cache hits
    misses: int  # near-cache misses (each one a load from Redis or a computation)
    max_size: int  # the near cache's bound
    current_size: int  # entries in the near cache
    remote_hits: int  # near misses served from Redis
    remote_misses: int  # near misses Redis did not have (computed here or by a leader)
    remote_errors: int  # operations that failed or were skipped by the breaker
    rejected: int  # entries refused: wrong or missing tag, foreign key bytes, bad format
    oversize_skips: int  # keys or values over max_key_size / max_value_size, not shared
    connected: bool  # the invalidation channel is up (the near cache is coherent)


# Separates positional from keyword arguments inside a key tuple.
_KW_MARK = object()

_F = TypeVar("_F")


class _Settings(NamedTuple):
    max_size: int
    ttl: float | None
    backend: Backend
    max_key_size: int
    max_value_size: int
    version: str | int | None
    max_bytes: int | None = None
    serve_stale: float | None = None
    url: str | None = None
    secret: bytes | None = None


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, got {type(value).__name__}")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
    return float(value)


def _check_ttl(ttl: object) -> float | None:
    return _check_seconds("ttl", ttl)


def _check_backend(backend: object) -> Backend:
    if isinstance(backend, Backend):
        return backend
    if isinstance(backend, str):
        try:
            return Backend[backend.upper()]
        except KeyError:
            pass
        raise ValueError(f"backend must be 'memory', 'shared' or 'redis', got {backend!r}")
    if isinstance(backend, int) and not isinstance(backend, bool):
        try:
            return Backend(backend)
        except ValueError:
            message = (
                "backend must be Backend.MEMORY (0), Backend.SHARED (1) or Backend.REDIS (2), "
                f"got {backend}"
            )
            raise ValueError(message) from None
    raise TypeError(f"backend must be a Backend, an int or a str, got {type(backend).__name__}")


def _check_version(version: object) -> str | int | None:
    if version is None or isinstance(version, str):
        return version
    if isinstance(version, int) and not isinstance(version, bool):
        return version
    raise TypeError(f"version must be a str, an int or None, got {type(version).__name__}")


_URL_SCHEMES = ("redis://", "rediss://", "unix://")


def _check_url(url: object, backend: Backend) -> str | None:
    if url is None:
        if backend is not Backend.REDIS:
            return None
        url = os.environ.get("WARP_CACHE_REDIS_URL") or "redis://127.0.0.1:6379/0"
        source = "WARP_CACHE_REDIS_URL"
    else:
        if backend is not Backend.REDIS:
            raise ValueError("url applies to backend='redis' only")
        source = "url"
    if not isinstance(url, str):
        raise TypeError(f"url must be a str or None, got {type(url).__name__}")
    if not url.startswith(_URL_SCHEMES):
        raise ValueError(
            f"{source} must start with redis://, rediss:// or unix://, got {url.split('@')[-1]!r}"
        )
    return url


def _check_secret(secret: object, backend: Backend) -> bytes | None:
    if secret is None:
        if backend is not Backend.REDIS:
            return None
        secret = os.environ.get("WARP_CACHE_SECRET") or None
        if secret is None:
            return None
    elif backend is not Backend.REDIS:
        raise ValueError("secret applies to backend='redis' only")
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes):
        raise TypeError(f"secret must be bytes, a str or None, got {type(secret).__name__}")
    if not secret:
        raise ValueError("secret must not be empty")
    return secret


def _validate(
    max_size: object,
    ttl: object,
    backend: object,
    max_key_size: object,
    max_value_size: object,
    version: object = None,
    max_bytes: object = None,
    serve_stale: object = None,
    url: object = None,
    secret: object = None,
) -> _Settings:
    checked = _check_backend(backend)
    settings = _Settings(
        max_size=_check_int("max_size", max_size, 0),
        ttl=_check_ttl(ttl),
        backend=checked,
        max_key_size=_check_int("max_key_size", max_key_size, 1),
        max_value_size=_check_int("max_value_size", max_value_size, 1),
        version=_check_version(version),
        max_bytes=None if max_bytes is None else _check_int("max_bytes", max_bytes, 1),
        serve_stale=_check_seconds("serve_stale", serve_stale),
        url=_check_url(url, checked),
        secret=_check_secret(secret, checked),
    )
    if settings.serve_stale is not None and settings.ttl is None:
        raise ValueError("serve_stale requires ttl: it is how long past ttl a value is served")
    if settings.serve_stale is not None and checked is Backend.REDIS:
        raise ValueError("serve_stale is not supported with backend='redis' (yet)")
    if settings.max_bytes is not None:
        if settings.backend is not Backend.SHARED:
            raise ValueError("max_bytes applies to backend='shared' only")
        if settings.max_bytes > 2**50:
            raise ValueError(f"max_bytes must be <= 2**50, got {settings.max_bytes}")
    if settings.max_size > 2**32 - 1:
        raise ValueError(f"max_size must be < 2**32, got {settings.max_size}")
    if settings.backend is Backend.SHARED:
        for name in ("max_size", "max_key_size", "max_value_size"):
            if getattr(settings, name) > 2**31:
                raise ValueError(f"{name} must be <= 2**31 for backend='shared'")
    if settings.backend is Backend.SHARED and sys.platform == "win32":
        raise RuntimeError(
            "backend='shared' needs POSIX shared memory; it is not available on Windows"
        )
    return settings


# Single-flight for async functions, per event loop: the first task missing a key leads a
# flight (awaits the coroutine, stores, resolves a future); tasks of the same loop missing an
# equal key meanwhile await that future instead of their own coroutine, which they close
# unstarted. Tasks of another loop never see it: the loop is part of the flight's name.
_RETRY = object()  # a flight's outcome when its leader stopped without a result to share


class _Flight(NamedTuple):
    future: Any  # asyncio.Future of the leader's loop
    owner: Any  # the leading task


# (id(cached function), event loop, key) -> the flight under way
_flights: dict[tuple[int, object, object], _Flight] = {}
# Wait-for graph: a task awaiting a flight -> the task leading it.
_waiting: dict[object, object] = {}


def _forget_flights() -> None:
    """In a forked child: new calls must not wait on the parent's flights, whose leaders
    may run on loops of threads the child does not have. Fresh tables, the old ones left
    untouched (a flight whose loop does run on here still lands for its own followers)."""
    global _flights, _waiting, _refresh_jobs
    _flights, _waiting = {}, {}
    # Stale refreshes the parent's threads were running: not here. Dropping their jobs
    # lands their flights as "retry" without touching the parent's tables.
    _refresh_jobs = set()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_flights)


def _would_deadlock(owner: object, task: object) -> bool:
    """True if `owner` is `task` or (through a chain of waits) waits for it."""
    for _ in range(len(_waiting) + 1):
        if owner is task:
            return True
        owner = _waiting.get(owner)
        if owner is None:
            return False
    return True  # a cycle not through `task`: never recorded, but do not wait on it


async def _compute(cached: Any, key: object, coro: Any, replace: bool) -> Any:
    value = await coro
    cached._store_result(key, value, replace)
    return value


# Flights across processes (shared backend): how many such flights the current task leads
# (a task that leads some waits on another process's flight only briefly: a cycle through
# tasks of several processes cannot be seen from here).
_leading_across: contextvars.ContextVar[int] = contextvars.ContextVar("_leading_across", default=0)
_ACROSS_POLL = (0.001, 0.05)  # first and longest sleep between checks of another process


async def _across(cached: Any, key: object) -> tuple[bool, Any]:
    """Claims `key` on the cache's board of flights across processes, or waits (without
    blocking the loop) for the process that leads it. Returns (True, value) when another
    process computed it, else (False, token): compute, then land the flight with
    `_across_land` (token None: no flight to land)."""
    import asyncio

    kind, payload = cached._across(key, None, _leading_across.get() > 0)
    delay = _ACROSS_POLL[0]
    while kind == 2:
        await asyncio.sleep(delay)
        delay = min(2 * delay, _ACROSS_POLL[1])
        kind, payload = cached._across(key, payload, _leading_across.get() > 0)
    if kind == 3:
        return True, payload
    return False, payload if kind == 1 else None


async def _lead(
    cached: Any,
    name: tuple[int, object, object],
    key: object,
    coro: Any,
    future: Any,
    replace: bool,
    token: Any = None,
) -> Any:
    """Runs the flight `name` (registered with `future`): awaits the coroutine, stores the
    result (over a live entry if `replace`), and resolves the future for the followers.
    With `token` it also leads the key's flight across processes, landed at the end."""
    outcome = 3  # no value for other processes, unless one is stored below
    try:
        value = await coro
        outcome = 1 if cached._store_result(key, value, replace) else 2
    except Exception as exc:
        future.set_exception(exc)
        future.exception()  # marks it retrieved: there may be no follower
        raise
    except BaseException:
        future.set_result(_RETRY)  # cancelled or exiting: a follower takes over
        raise
    finally:
        flight = _flights.get(name)
        if flight is not None and flight.future is future:
            del _flights[name]
        if token is not None:
            cached._across_land(key, token, outcome)
    future.set_result(value)
    return value


async def _fill(cached: Any, key: object, coro: Any, refresh: bool = False) -> Any:
    """Awaits a missed coroutine and caches its result (exceptions are not cached), or the
    result of an equal call already under way on this event loop. `refresh`
    (`cache_refresh`): the result replaces a live entry, and a joined flight's result is
    not counted as a hit."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # driven by another framework: no single-flight
        return await _compute(cached, key, coro, refresh)
    task = asyncio.current_task(loop)
    if task is None:
        return await _compute(cached, key, coro, refresh)
    name = (id(cached), loop, key)
    started = False
    try:
        while (flight := _flights.get(name)) is not None:
            if _would_deadlock(flight.owner, task):
                started = True
                return await _compute(cached, key, coro, refresh)
            _waiting[task] = flight.owner
            try:
                # shield: a cancelled follower must not cancel the leader's future.
                value = await asyncio.shield(flight.future)
            finally:
                _waiting.pop(task, None)  # gone if a fork came between
            if value is not _RETRY:
                if not refresh:
                    cached._served_by_flight()  # a hit: the function did not run for it
                return value
        future = loop.create_future()
        _flights[name] = flight = _Flight(future, task)
        token = None
        if not refresh:  # a refresh computes whatever other processes do
            try:
                served, token = await _across(cached, key)
            except BaseException:
                future.set_result(_RETRY)  # a follower takes over
                if _flights.get(name) is flight:
                    del _flights[name]
                raise
            if served:  # another process computed it (already counted as a hit)
                if _flights.get(name) is flight:
                    del _flights[name]
                future.set_result(token)
                return token
        started = True
        if token is None:
            return await _lead(cached, name, key, coro, future, refresh)
        reset = _leading_across.set(_leading_across.get() + 1)
        try:
            return await _lead(cached, name, key, coro, future, refresh, token)
        finally:
            _leading_across.reset(reset)
    finally:
        if not started:
            coro.close()


_log = logging.getLogger("warp_cache")

# Background refreshes of stale entries (serve_stale) under way: asyncio keeps only weak
# references to tasks, and a thread's job must outlive the call that started it.
_refresh_tasks: set[Any] = set()
_refresh_jobs: set[Any] = set()


def _refresh_failed(cached: Any) -> None:
    name = getattr(cached, "__qualname__", repr(cached))
    _log.warning(
        "serve_stale: refreshing an entry of %s failed; its stale value is served until "
        "ttl + serve_stale, and the next call in that window tries again",
        name,
        exc_info=True,
    )


def _refresh_stale(cached: Any, key: object, coro: Any) -> None:
    """A coroutine function's entry was served stale: refresh it in a task of the running
    event loop, unless a computation of that key is under way there (the claim and the
    task's flight are made here, before any other task can run)."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # awaited outside asyncio: no refresh, the stale value stands
        coro.close()
        return
    name = (id(cached), loop, key)
    if name in _flights:
        coro.close()
        return
    future = loop.create_future()

    async def refresh() -> None:
        try:
            await _lead(cached, name, key, coro, future, True)
        except Exception:
            _refresh_failed(cached)

    task = loop.create_task(refresh())
    _flights[name] = _Flight(future, task)
    _refresh_tasks.add(task)
    task.add_done_callback(_refresh_tasks.discard)


def _refresh_in_background(job: Any) -> None:
    """Runs a stale entry's refresh (`job()`, which leads the key's flight) in a new daemon
    thread. If no thread can be started, the job is dropped: its flight lands as "retry"
    and a later stale call tries again."""

    def run() -> None:
        try:
            job()
        except Exception:
            _refresh_failed(job.cached)
        finally:
            _refresh_jobs.discard(job)

    _refresh_jobs.add(job)
    try:
        threading.Thread(target=run, name="warp_cache-refresh", daemon=True).start()
    except RuntimeError:  # interpreter shutting down, or out of threads
        _refresh_jobs.discard(job)


def _bound_signature(bound: Any) -> inspect.Signature:
    """A bound cached method's signature: that of a bound method of the function."""
    return inspect.signature(types.MethodType(bound.__func__, bound.__self__))


def _bound_reduce(bound: Any) -> tuple[Any, tuple[object, str]]:
    """A bound cached method pickles as `getattr(instance, name)`, as a bound method does."""
    return getattr, (bound.__self__, bound.__func__.__name__)


def _mark_coroutine_function(wrapper: Any, func: Any) -> None:
    """Make `inspect.iscoroutinefunction(wrapper)` true, as it is for `func`."""
    if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
        inspect.markcoroutinefunction(wrapper)
        return
    # Python 3.11 recognises "function-like" objects by their code flags.
    for attr in ("__code__", "__defaults__", "__kwdefaults__"):
        setattr(wrapper, attr, getattr(func, attr, None))
    import asyncio.coroutines

    wrapper._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


_pickle_dumps = functools.partial(pickle.dumps, protocol=5)


class _Named(NamedTuple):
    """Where a shared or remote cache is found: the function's names and identity."""

    module: str
    qualname: str
    found: Any  # the Identity now (not complete: a global it reads is not bound yet)
    settle: Callable[[], int]  # the digest computed again, at the first call


def _named(
    func: Any, parameters: tuple[tuple[str, object], ...], version: str | int | None
) -> _Named:
    module = getattr(func, "__module__", None) or type(func).__module__
    if module == "__mp_main__":
        # multiprocessing's spawn re-imports the main script under this name: same function.
        module = "__main__"
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__

    def settle() -> int:
        return identity(func, module, qualname, parameters, version).digest

    return _Named(module, qualname, identity(func, module, qualname, parameters, version), settle)


def _make_shared(func: Any, settings: _Settings, fill: Any) -> Any:
    # Every parameter that shapes the file or its results selects the file too, so
    # processes with other parameters (a rolling deploy) keep caches of their own.
    parameters = (
        ("format", _warp_cache.SHARED_FORMAT),
        ("max_size", settings.max_size),
        ("ttl", settings.ttl),
        ("max_key_size", settings.max_key_size),
        ("max_value_size", settings.max_value_size),
        ("max_bytes", settings.max_bytes),
    )
    module, qualname, found, settle = _named(func, parameters, settings.version)
    # A global the function reads that is not bound yet (a helper defined further down its
    # module): the identity is computed again, and the files opened, at the first call.
    return _warp_cache.make_shared_cache(
        func,
        settings.max_size,
        settings.ttl,
        settings.serve_stale,
        settings.max_key_size,
        settings.max_value_size,
        settings.max_bytes,
        module,
        qualname,
        found.digest if found.complete else None,
        None if found.complete else settle,
        SharedCacheInfo,
        _KW_MARK,
        fill,
        _pickle_dumps,
        pickle.loads,
        # Tests and unusual deployments may move the files; the default is /dev/shm.
        os.environ.get("WARP_CACHE_DIR") or None,
        # Unusable files are an error here, instead of a warning and an in-process cache.
        os.environ.get("WARP_CACHE_STRICT", "") not in ("", "0"),
    )


def _make_redis(func: Any, settings: _Settings, is_async: bool, fill: Any) -> Any:
    from warp_cache._redis import RedisTier

    # What decides the entries' bytes and lifetime; not max_size (each host's near cache
    # may be sized on its own) nor the URL or secret.
    parameters = (
        ("format", _warp_cache.SHARED_FORMAT),
        ("backend", "redis"),
        ("ttl", settings.ttl),
        ("max_key_size", settings.max_key_size),
        ("max_value_size", settings.max_value_size),
    )
    named = _named(func, parameters, settings.version)
    assert settings.url is not None
    tier = RedisTier(
        func,
        settings.url,
        settings.secret,
        settings.ttl,
        settings.max_size,
        settings.max_key_size,
        settings.max_value_size,
        named.settle,
        named.found.digest if named.found.complete else None,
        _KW_MARK,
    )
    return tier.attach(_warp_cache.make_memory_cache, CacheInfo, is_async, fill)


def _decorate(func: Any, settings: _Settings) -> Any:
    if not callable(func):
        raise TypeError(f"cache() decorates callables, got {type(func).__name__}")
    is_async = inspect.iscoroutinefunction(func)
    fill = _fill if is_async else None
    if settings.backend is Backend.REDIS:
        wrapper = _make_redis(func, settings, is_async, fill)
    elif settings.backend is Backend.SHARED:
        wrapper = _make_shared(func, settings, fill)
    else:
        wrapper = _warp_cache.make_memory_cache(
            func, settings.max_size, settings.ttl, settings.serve_stale, CacheInfo, _KW_MARK, fill
        )
    functools.update_wrapper(wrapper, func)
    if is_async:
        _mark_coroutine_function(wrapper, func)
    return wrapper


@overload
def cache(max_size: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cache(
    max_size: int = 128,
    ttl: float | None = None,
    backend: Backend | int | str = Backend.MEMORY,
    max_key_size: int = 512,
    max_value_size: int = 4096,
    version: str | int | None = None,
    max_bytes: int | None = None,
    serve_stale: float | None = None,
    url: str | None = None,
    secret: str | bytes | None = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


def cache(
    max_size: Any = 128,
    ttl: Any = None,
    backend: Any = Backend.MEMORY,
    max_key_size: Any = 512,
    max_value_size: Any = 4096,
    version: Any = None,
    max_bytes: Any = None,
    serve_stale: Any = None,
    url: Any = None,
    secret: Any = None,
) -> Any:
    """Cache a function's results, keyed by its arguments, with SIEVE eviction.

    Use as ``@cache()``, ``@cache(max_size=256, ttl=60)`` or bare ``@cache``. Arguments
    are checked here, at decoration time. ``version`` is part of a shared cache's identity:
    bump it for what the cache cannot see (other modules, files, the environment).
    ``max_bytes`` (shared backend) bounds the serialized key and value bytes held; by
    default ``max_size * (max_key_size + max_value_size)``. ``serve_stale`` (seconds,
    needs ``ttl``): that long past ``ttl`` a call returns the expired value at once while
    one caller per process refreshes it in the background. ``url`` and ``secret``
    (backend="redis") name the server and the key that authenticates its values; without a
    secret, pickled values read from Redis are trusted (see docs/redis-backend.md).
    """
    rest = (backend, max_key_size, max_value_size, version, max_bytes, serve_stale, url, secret)
    if callable(max_size) and not isinstance(max_size, int):
        return _decorate(max_size, _validate(128, ttl, *rest))
    settings = _validate(max_size, ttl, *rest)

    def decorator(func: Any) -> Any:
        return _decorate(func, settings)

    return decorator
