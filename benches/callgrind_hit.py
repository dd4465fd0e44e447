"""A loop of cache hits for instruction counting (see docs/profile-notes.md).

valgrind --tool=callgrind python benches/callgrind_hit.py {plain,lru,memory,shared} N
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
        fn = warp_cache.cache(256, backend=kind)(identity)
    for key in range(256):
        fn(key)
    for _ in range(n):
        fn(5)


if __name__ == "__main__":
    main()
