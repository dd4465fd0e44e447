"""Exact equality of values that went through a cache: what `==` misses, checked too."""

from __future__ import annotations

import datetime
import decimal
import math
import uuid
from typing import Any


def differences(a: Any, b: Any, path: str = "value") -> list[str]:
    """Where `b` is not an exact copy of `a`: the same types at every depth (True is not 1,
    a subclass is not its base), -0.0 not 0.0, NaN equal to NaN, dicts in the same order,
    datetimes with the same fold and tzinfo (name included), Decimals with the same digits
    and exponent, UUIDs with the same `is_safe`, and mutable containers shared (or not) in
    the same places. Empty when `b` is exact."""
    return _Compare().run(a, b, path)


def describe(x: Any) -> str:
    """`x` as text that tells apart what its `==` does not (types at every depth, -0.0, NaN,
    dict order, a timezone's name, a UUID's `is_safe`), and is the same for equal sets
    whatever their order."""
    kind = type(x).__name__
    if isinstance(x, (set, frozenset)):
        return f"{kind}{sorted(map(describe, x))!r}"
    if isinstance(x, (tuple, list)):
        return f"{kind}{[describe(e) for e in x]!r}"
    if isinstance(x, dict):
        return f"{kind}{[(describe(k), describe(v)) for k, v in x.items()]!r}"
    if isinstance(x, (datetime.datetime, datetime.time)):
        zone = (x.tzname(), x.utcoffset(), x.tzinfo is datetime.UTC) if x.tzinfo else None
        return f"{kind}{(x.replace(tzinfo=None), x.fold, zone)!r}"
    if isinstance(x, uuid.UUID):
        return f"{kind}{(x.int, x.is_safe)!r}"
    return f"{kind}({x!r})"


class _Compare:
    def __init__(self) -> None:
        self.pairs: dict[int, int] = {}  # id(part of a) -> id(part of b), for sharing
        self.keep: list[object] = []

    def run(self, a: Any, b: Any, path: str) -> list[str]:
        if type(a) is not type(b):
            return [f"{path}: type {type(a).__name__} became {type(b).__name__}"]
        if isinstance(a, (list, dict, set, bytearray)):
            seen = self.pairs.get(id(a))
            if seen is not None:
                return [] if seen == id(b) else [f"{path}: shared structure lost"]
            self.pairs[id(a)] = id(b)
            self.keep += [a, b]
        if isinstance(a, float):
            if math.isnan(a) and math.isnan(b):
                return []
            same = a == b and math.copysign(1, a) == math.copysign(1, b)
            return [] if same else [f"{path}: {a!r} became {b!r}"]
        if isinstance(a, decimal.Decimal):
            return [] if str(a) == str(b) else [f"{path}: {a!r} became {b!r}"]
        if isinstance(a, (list, tuple)):
            if len(a) != len(b):
                return [f"{path}: length {len(a)} became {len(b)}"]
            return [
                d
                for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in self.run(x, y, f"{path}[{i}]")
            ]
        if isinstance(a, dict):
            if [describe(k) for k in a] != [describe(k) for k in b]:
                return [f"{path}: keys {list(a)!r} became {list(b)!r}"]
            return [
                d
                for (k, x), y in zip(a.items(), b.values(), strict=True)
                for d in self.run(x, y, f"{path}[{k!r}]")
            ]
        if isinstance(a, (set, frozenset)):
            same = sorted(map(describe, a)) == sorted(map(describe, b))
            return [] if same else [f"{path}: {a!r} became {b!r}"]
        if isinstance(a, (datetime.datetime, datetime.time)):
            problems = [] if a == b else [f"{path}: {a!r} became {b!r}"]
            if a.fold != b.fold:
                problems.append(f"{path}: fold {a.fold} became {b.fold}")
            if (a.tzinfo, a.tzname() if a.tzinfo else None) != (
                b.tzinfo,
                b.tzname() if b.tzinfo else None,
            ) or (a.tzinfo is datetime.UTC) != (b.tzinfo is datetime.UTC):
                problems.append(f"{path}: tzinfo {a.tzinfo!r} became {b.tzinfo!r}")
            return problems
        if isinstance(a, uuid.UUID):
            same = a == b and a.is_safe is b.is_safe
            return [] if same else [f"{path}: {a!r} ({a.is_safe}) became {b!r} ({b.is_safe})"]
        return [] if a == b else [f"{path}: {a!r} became {b!r}"]
