"""warp_cache: a thread-safe SIEVE caching decorator with a Rust engine.

>>> from warp_cache import cache
>>> @cache(max_size=256)
... def square(x):
...     return x * x
"""

from warp_cache._api import Backend, CacheInfo, RedisCacheInfo, SharedCacheInfo, cache

__all__ = ["Backend", "CacheInfo", "RedisCacheInfo", "SharedCacheInfo", "cache"]
