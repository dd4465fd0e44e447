"""A process that uses shared-backend caches, driven by tests/test_shared*.py.

Run as ``python shared_worker.py COMMAND [ARGS]``; results go to stdout as one base64 pickle.
The cached functions' bodies are the same in every process (so they share one cache); what
differs is the environment: ``WC_ROLE=reader`` makes a body return a marker instead of
computing, so a test can tell a value read from the cache from a recomputed one.
"""

from __future__ import annotations

import base64
import collections
import datetime
import decimal
import enum
import os
import pickle
import sys
import time
import uuid
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


class Tagged(list):  # type: ignore[type-arg]
    """A list subclass: pickled (by reference to this module), never taken for a list."""


class Eastern(datetime.tzinfo):
    """A tzinfo of our own: the codec leaves such datetimes to pickle."""

    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(hours=-5)

    def dst(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(0)

    def tzname(self, dt: datetime.datetime | None) -> str:
        return "EST"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Eastern)

    def __hash__(self) -> int:
        return 5


def tz(hours: float, name: str | None = None) -> datetime.timezone:
    offset = datetime.timedelta(hours=hours)
    return datetime.timezone(offset) if name is None else datetime.timezone(offset, name)


def sample_values() -> dict[str, object]:
    """Values whose exact type and value must survive a trip through another process."""
    shared = [1, 2]
    cycle: list[object] = ["head"]
    cycle.append(cycle)
    deep: list[object] = []
    for _ in range(40):
        deep = [deep]
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
        # Tagged by the codec (issue 15): containers, nesting, every standard type.
        "list_of_ints": list(range(-300, 70_000, 701)),
        "nested": {"a": [1, (2, frozenset({3})), {"b": {4.5, None}}], "c": (), 7: [[]]},
        "dict_order": {"z": 1, "a": 2, "m": 3, 0: None},
        "dict_keys": {1: "int", "1": "str", (1, 2): "tuple", None: "none", 2.5: "f", b"k": 0},
        "bool_int_float_keys": {True: "bool", 2: "int", 3.0: "float"},
        "set_of_str": {"alpha", "beta", "gamma", "delta"},
        "set_mixed": {1, "1", 2.5, None, (1, 2), frozenset({3}), b"b", -0.0},
        "empty_containers": [[], {}, set(), frozenset(), (), bytearray(), ""],
        "nan_and_zero_inside": [float("nan"), -0.0, {"x": -0.0}, (float("inf"),)],
        "bools_inside": [True, False, 1, 0, (True, 1)],
        "big_ints": [2**63, -(2**63) - 1, 2**64, -(2**200) + 3, 10**100, 2**63 - 1],
        "huge_int": 7**2000,
        "bytearray_inside": [bytearray(b"x"), b"y", bytearray()],
        "long_text_inside": ["x" * 300, b"y" * 300, "é" * 200],
        "date": datetime.date(2024, 2, 29),
        "time": datetime.time(23, 59, 58, 999_999, fold=1),
        "time_tz": datetime.time(1, 2, tzinfo=tz(5.5)),
        "datetime_utc": datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC),
        "datetime_offset": datetime.datetime(1, 1, 1, tzinfo=tz(-7)),
        "datetime_named": datetime.datetime(9999, 12, 31, 23, 59, tzinfo=tz(1.002, "Here")),
        "datetime_utc_named": datetime.datetime(2000, 1, 1, tzinfo=tz(0, "UTC")),
        "datetime_fold": datetime.datetime(2026, 11, 1, 1, 30, fold=1),
        "datetime_own_tzinfo": datetime.datetime(2026, 1, 1, tzinfo=Eastern()),
        "timedelta": datetime.timedelta(days=-3, seconds=5, microseconds=7),
        "timedeltas": [datetime.timedelta.max, datetime.timedelta.min, datetime.timedelta()],
        "decimals": [
            decimal.Decimal(text)
            for text in ("NaN", "-sNaN12", "-Infinity", "-0", "1.00E+5", "-0E-10", "123.4560")
        ],
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "uuid_safe": uuid.UUID(int=2**128 - 1, is_safe=uuid.SafeUUID.safe),
        "uuids_inside": {uuid.UUID(int=0): [uuid.UUID(int=1, is_safe=uuid.SafeUUID.unsafe)]},
        # Left to pickle, which keeps what the tags cannot.
        "shared_structure": [shared, shared],
        "cycle": cycle,
        "deep": deep,
        "list_subclass": Tagged([1, 2]),
        "ordered_dict": collections.OrderedDict(b=1, a=2),
        "object_inside": [Point(1, 2), 3],
        "surrogate_inside": ["ok", "\ud800"],
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


def container_args() -> list[object]:
    """Arguments whose key must be the same in every process, whatever its hash seed: sets
    of str iterate in a different order under each seed."""
    words = {"alpha", "beta", "gamma", "delta", "epsilon"}
    return [
        words,
        frozenset(words),
        {"by": frozenset(words), "n": [1, 2]},
        (words, {"x": {"y", "z"}}),
        [datetime.date(2024, 1, 1), decimal.Decimal("2.50"), uuid.UUID(int=7)],
    ]


@cache(max_size=64, backend="shared")
def sized(arg):
    if role_is_reader():
        return RECOMPUTED
    return repr(sorted(map(repr, arg))) if isinstance(arg, (set, frozenset)) else repr(arg)


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
    elif command == "container_args":
        emit([sized(arg) for arg in container_args()])
    elif command == "hash_seed_check":
        emit((os.environ.get("PYTHONHASHSEED"), value_of("frozenset"), square(12)))
    elif command == "sleep":
        time.sleep(float(args[0]))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
