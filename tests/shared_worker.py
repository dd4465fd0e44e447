"""A process that uses shared-backend caches, driven by tests/test_shared*.py.

Run as ``python shared_worker.py COMMAND [ARGS]``; results go to stdout as one base64 pickle.
The cached functions' bodies are the same in every process (so they share one cache); what
differs is the environment: ``WC_ROLE=reader`` makes a body return a marker instead of
computing, so a test can tell a value read from the cache from a recomputed one.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import enum
import os
import pickle
import sys
import time
from fractions import Fraction

from warp_cache import cache

RECOMPUTED = "recomputed in this process"


class Color(enum.IntEnum):
    RED = 1


class Point:
    """A user class: pickled by reference to this module."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __repr__(self) -> str:
        return f"Point({self.x}, {self.y})"


def sample_values() -> dict[str, object]:
    """Values whose exact type and value must survive a trip through another process."""
    return {
        "none": None,
        "true": True,
        "false": False,
        "zero": 0,
        "int_max": 2**63 - 1,
        "int_min": -(2**63),
        "big_int": 2**100 + 7,
        "neg_big_int": -(2**64),
        "float": 1.25,
        "neg_zero": -0.0,
        "nan": float("nan"),
        "inf": float("-inf"),
        "str": "héllo wörld ✓",
        "empty_str": "",
        "surrogate": "\ud800x",
        "bytes": b"\x00\xffabc",
        "flat_tuple": (1, "a", None, 2.5, b"z", True),
        "nested_tuple": (1, (2, (3,))),
        "empty_tuple": (),
        "list": [1, [2, 3], "x"],
        "dict": {"a": [1, {"b": 2}], 3: None},
        "set": {1, 2, 3},
        "frozenset": frozenset({"x", "y"}),
        "bytearray": bytearray(b"mutable"),
        "complex": complex(1, -2),
        "decimal": decimal.Decimal("1.10"),
        "fraction": Fraction(3, 7),
        "datetime": datetime.datetime(2026, 11, 24, 5, 4, 3),
        "intenum": Color.RED,
        "object": Point(3, 4),
    }


def role_is_reader() -> bool:
    return os.environ.get("WC_ROLE") == "reader"


def int_env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


TTL = float(os.environ["WC_TTL"]) if os.environ.get("WC_TTL") else None


@cache(
    max_size=int_env("WC_MAX_SIZE", 64),
    ttl=TTL,
    backend="shared",
    max_value_size=int_env("WC_MAX_VALUE", 4096),
)
def value_of(name):
    if role_is_reader():
        return RECOMPUTED
    return sample_values()[name]


@cache(max_size=int_env("WC_MAX_SIZE", 64), ttl=TTL, backend="shared")
def square(x):
    if role_is_reader():
        return RECOMPUTED
    return x * x


def payload(key: int) -> tuple[int, str]:
    """The value a hammer or writer stores for `key`: checkable from the key alone."""
    return (key, "v" * (key % 50) + str(key * 7919))


@cache(max_size=int_env("WC_MAX_SIZE", 8), backend="shared", max_value_size=256)
def hammered(key):
    return payload(key)


def emit(result: object) -> None:
    sys.stdout.write(base64.b64encode(pickle.dumps(result)).decode() + "\n")


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "values":
        emit({name: value_of(name) for name in args})
    elif command == "square":
        emit([square(int(a)) for a in args])
    elif command == "info":
        emit(tuple(globals()[args[0]].cache_info()))
    elif command == "clear":
        globals()[args[0]].cache_clear()
        emit(None)
    elif command == "hammer":
        seed, calls, keys = (int(a) for a in args)
        import random

        rng = random.Random(seed)
        for _ in range(calls):
            key = rng.randrange(keys)
            got = hammered(key)
            if got != payload(key):
                emit(("wrong", key, got))
                sys.exit(1)
        emit(("ok", calls))
    elif command == "write_forever":
        key = int(args[0])
        while True:
            key = (key * 1103515245 + 12345) % 64
            if hammered(key) != payload(key):
                sys.exit(3)
            if key == 0:
                hammered.cache_clear()
    elif command == "hash_seed_check":
        emit((os.environ.get("PYTHONHASHSEED"), value_of("frozenset"), square(12)))
    elif command == "sleep":
        time.sleep(float(args[0]))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
