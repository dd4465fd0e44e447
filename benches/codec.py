"""The shared backend's codec against pickle, on the payloads of issue 15.

For each payload kind (a 10-field dict of str/int/float/bool, a list of 100 ints, a
3-level nested tuple; one value built per key, 256 keys) it measures, side by side in
interleaved rounds (median round reported):

- first decode: the codec's bytes -> a new Python object (what a process pays the first
  time it reads an entry another process wrote), against ``pickle.loads`` of the same value;
- encode: the object -> the codec's bytes, against ``pickle.dumps`` (protocol 5, what the
  shared backend used for these payloads before they had tags of their own);
- a shared-backend miss (always-new keys, the function returns a prebuilt payload) and a
  shared-backend hit, end to end through a cached function; with `--baseline PACKAGE` also
  through another build of warp_cache importable under that name (say, the previous
  release's package copied and renamed), side by side in the same rounds.

Ratios are the median over rounds of each round's ratio.

    python benches/codec.py [--quick] [--rounds 15] [--baseline PACKAGE] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import pickle
import statistics
import time
from collections.abc import Callable
from typing import Any

import warp_cache
from common import MAX_SIZE, machine, machine_line, write_json
from warp_cache import _warp_cache

KEYS = MAX_SIZE
_dumps = functools.partial(pickle.dumps, protocol=5)


def dict10(k: int) -> dict[str, object]:
    return {
        "id": k,
        "name": f"user{k}",
        "email": f"user{k}@example.com",
        "score": k * 0.25,
        "active": k % 2 == 0,
        "age": 20 + k % 60,
        "balance": k * 1.5 - 3.0,
        "admin": k % 7 == 0,
        "team": "blue",
        "visits": k * 3 + 1000,
    }


def list100(k: int) -> list[int]:
    return [k * 100 + i for i in range(100)]


def nested3(k: int) -> tuple[object, ...]:
    return (k, (f"a{k}", k + 0.5, (k * 2, "leaf", None)), (True, b"xy"))


PAYLOADS: dict[str, Callable[[int], object]] = {
    "10-field dict": dict10,
    "list of 100 ints": list100,
    "3-level nested tuple": nested3,
}

# What the shared-backend functions below return: set by main() before they are decorated.
VALUES: list[object] = []


def produce(key: int) -> object:
    return VALUES[key % KEYS]


def per_op(fn: Callable[..., object], args: list[Any], repeat: int, *extra: object) -> float:
    """ns per call of fn(arg, *extra) over args, `repeat` passes."""
    start = time.perf_counter_ns()
    if extra:
        (second,) = extra
        for _ in range(repeat):
            for a in args:
                fn(a, second)
    else:
        for _ in range(repeat):
            for a in args:
                fn(a)
    return (time.perf_counter_ns() - start) / (repeat * len(args))


def measure_kind(
    kind: str, rounds: int, repeat: int, baseline: Any | None
) -> tuple[dict[str, float], dict[str, float]]:
    """Median ns per op of each contender, and the median per-round ratios."""
    values = [PAYLOADS[kind](k) for k in range(KEYS)]
    VALUES[:] = values
    encode = getattr(_warp_cache, "codec_encode", None)
    decode = getattr(_warp_cache, "codec_decode", None)
    pickled = [_dumps(v) for v in values]
    contenders: dict[str, Callable[[], float]] = {
        "pickle.loads": lambda: per_op(pickle.loads, pickled, repeat),
        "pickle.dumps": lambda: per_op(_dumps, values, repeat),
    }
    if encode is not None and decode is not None:
        encoded = [encode(v, False, _dumps) for v in values]
        for v, b in zip(values, encoded, strict=True):
            assert decode(b, pickle.loads) == v
        contenders["codec decode"] = lambda: per_op(decode, encoded, repeat, pickle.loads)
        contenders["codec encode"] = lambda: per_op(
            functools.partial(encode, canonical=False, dumps=_dumps), values, repeat
        )
    fresh = iter(range(KEYS, 1 << 62))
    for label, package in (("", warp_cache), (" (baseline)", baseline)):
        if package is None:
            continue
        miss_fn = package.cache(max_size=KEYS, backend="shared")(produce)
        hit_fn = package.cache(max_size=KEYS, backend="shared")(produce)
        for k in range(KEYS):
            hit_fn(k)

        def misses(miss_fn: Callable[[int], object] = miss_fn) -> float:
            keys = [next(fresh) for _ in range(KEYS * repeat)]
            return per_op(miss_fn, keys, 1)

        def hits(hit_fn: Callable[[int], object] = hit_fn) -> float:
            return per_op(hit_fn, list(range(KEYS)), repeat)

        contenders["shared miss" + label] = misses
        contenders["shared hit" + label] = hits
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    for r in range(rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            samples[name].append(contenders[name]())
    pairs = {
        "first decode vs pickle.loads": ("pickle.loads", "codec decode"),
        "encode vs pickle.dumps": ("pickle.dumps", "codec encode"),
        "shared miss vs baseline": ("shared miss (baseline)", "shared miss"),
        "shared hit vs baseline": ("shared hit (baseline)", "shared hit"),
    }
    ratios = {
        name: statistics.median(a / b for a, b in zip(samples[slow], samples[fast], strict=True))
        for name, (slow, fast) in pairs.items()
        if slow in samples and fast in samples
    }
    return {name: statistics.median(s) for name, s in samples.items()}, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 20x smaller smoke run")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline", default=None, help="another build's package name")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    repeat = 1 if args.quick else 20
    baseline = importlib.import_module(args.baseline) if args.baseline else None
    meta = machine()
    print(machine_line(meta))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for kind in PAYLOADS:
        times, ratios = measure_kind(kind, args.rounds, repeat, baseline)
        results[kind] = {"ns": times, "ratios": ratios}
        print(f"\n{kind} (ns per op, median of {args.rounds} interleaved rounds)")
        for name, ns in times.items():
            print(f"  {name:24} {ns:8.0f}")
        for name, ratio in ratios.items():
            print(f"  {name:30} {ratio:.2f}x")
    write_json(args.json, {"meta": meta, "results": results})


if __name__ == "__main__":
    main()
