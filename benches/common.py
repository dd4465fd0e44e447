"""Helpers shared by the benchmark scripts: traces, the machine line, JSON results."""

from __future__ import annotations

import bisect
import json
import os
import platform
import random
import shlex
import sys
import sysconfig
from itertools import accumulate
from typing import Any

# Cache size of the throughput workloads (and of the Rust microbenchmarks' hit tests).
MAX_SIZE = 256
# Keys of the Zipf throughput workloads.
DISTINCT_KEYS = 2_000


def identity(x: object) -> object:
    return x


def zipf_trace(n_keys: int, alpha: float, calls: int, seed: int) -> list[int]:
    """`calls` keys drawn from a Zipf(alpha) distribution over `n_keys` keys."""
    rng = random.Random(seed)
    weights = [1.0 / (rank**alpha) for rank in range(1, n_keys + 1)]
    cumulative = list(accumulate(weights))
    total = cumulative[-1]
    ranks = [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(calls)]
    # Keys are shuffled ranks so that popularity is not correlated with the key's value.
    keys = list(range(n_keys))
    rng.shuffle(keys)
    return [keys[r] for r in ranks]


def free_threaded() -> bool:
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def machine() -> dict[str, Any]:
    """Interpreter, build, CPU and load: the line every table is printed under."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "build": "free-threaded" if free_threaded() else "GIL",
        "gil": "on" if gil_enabled() else "off",
        "machine": platform.machine(),
        "system": platform.system(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load": round(load, 2),
        "command": " ".join([os.path.relpath(sys.executable)] + [shlex.quote(a) for a in sys.argv]),
    }


def machine_line(meta: dict[str, Any]) -> str:
    return (
        f"{meta['implementation']} {meta['python']} ({meta['build']} build, GIL {meta['gil']}), "
        f"{meta['system']} {meta['machine']}, {meta['cpu']}, {meta['cores']} cores, "
        f"1-minute load {meta['load']} at start"
    )


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        with open(path, "w") as out:
            json.dump(data, out, indent=1, sort_keys=True)
            out.write("\n")
