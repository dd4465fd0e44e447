"""A loop of cache hits (or, `shared-miss`, of misses) for instruction counting (see
docs/profile-notes.md).

valgrind --tool=callgrind python benches/callgrind_hit.py {plain,lru,memory,shared,shared-miss} N

Compare builds by the inclusive cost of `cached_vectorcall` (`callgrind_annotate
--inclusive=yes`) divided by the calls, which leaves the loop and start-up out.
"""

import functools
import sys

import warp_cache


def identity(x: object) -> object:
    return x


def main() -> None:
    kind, n = sys.argv[1], int(sys.argv[2])
    if kind == "lru":
        fn = functools.lru_cache(256)(identity)
    elif kind == "plain":
        fn = identity
    else:
        backend = kind.removesuffix("-miss")
        fn = warp_cache.cache(256, backend=backend, version=1)(lambda x: x * 3)
    for key in range(256):
        fn(key)
    if kind.endswith("-miss"):
        for key in range(1_000, 1_000 + n):
            fn(key)
        return
    for _ in range(n):
        fn(5)


if __name__ == "__main__":
    main()
