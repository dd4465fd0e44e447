"""Shared-backend storage per entry, by payload kind, against diskcache.

For each payload (an int, a 100-byte str, a 1 KB dict, a 16 KB blob) a fresh process
decorates a shared cache of max_size=N (max_value_size 32 KiB, so every payload fits),
fills it with N entries, and reports the bytes its files occupy on their file system
(st_blocks: what tmpfs or the disk really holds, sparse parts excluded) at decoration and
after the N entries, and the latter divided by N. diskcache's `memoize` fills a directory
with the same N entries as the control. Run it with another build's interpreter to compare
builds (`--json` then merges by label).

    python benches/shared_storage.py [--quick] [--label NAME] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PAYLOADS = ["int", "100-byte str", "1 KB dict", "16 KB blob"]


def payload(kind: str, k: int) -> object:
    if kind == "int":
        return k * 1_000_003
    if kind == "100-byte str":
        return f"{k:08d}" + "x" * 92
    if kind == "1 KB dict":
        return {f"field{i:02d}": f"{k}-{i}-" + "v" * 24 for i in range(28)}
    return bytes([k % 251]) * 16_384


def allocated(directory: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in directory.rglob("*") if p.is_file())


def one(kind: str, entries: int, cache_kind: str) -> dict[str, float]:
    """Measures one payload in this (fresh) process."""
    directory = Path(tempfile.mkdtemp(prefix="warp_cache_storage-"))
    if cache_kind == "diskcache":
        import diskcache  # type: ignore[import-untyped]

        disk = diskcache.Cache(str(directory))
        fn = disk.memoize()(lambda k: payload(kind, k))
    else:
        os.environ["WARP_CACHE_DIR"] = str(directory / "shm")
        from warp_cache import cache

        fn = cache(max_size=entries, backend="shared", max_value_size=32_768, version=1)(
            lambda k: payload(kind, k)
        )
    fn(0)
    at_decoration = allocated(directory)
    for k in range(1, entries):
        fn(k)
    full = allocated(directory)
    return {"at decoration": at_decoration, "full": full, "per entry": full / entries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer entries")
    parser.add_argument("--label", default="warp_cache (shared)")
    parser.add_argument("--json", help="add the results to this JSON file")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, entries, cache_kind = args.one
        print(json.dumps(one(kind, int(entries), cache_kind)))
        return
    entries = 200 if args.quick else 2_000
    kinds = [(args.label, "warp_cache")]
    try:
        import diskcache  # type: ignore[import-untyped]  # noqa: F401

        kinds.append(("diskcache", "diskcache"))
    except ImportError:
        pass
    results: dict[str, dict[str, dict[str, float]]] = {}
    for label, cache_kind in kinds:
        for kind in PAYLOADS:
            out = subprocess.run(
                [sys.executable, __file__, "--one", kind, str(entries), cache_kind],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results.setdefault(label, {})[kind] = json.loads(out)
    print(f"{entries:,} entries per payload; bytes allocated on the file system")
    print("| cache | payload | at decoration | full | per entry |")
    print("|---|---|---:|---:|---:|")
    for label, rows in results.items():
        for kind, row in rows.items():
            print(
                f"| {label} | {kind} | {row['at decoration']:,.0f} | {row['full']:,.0f} "
                f"| {row['per entry']:,.0f} |"
            )
    if args.json:
        path = Path(args.json)
        merged = json.loads(path.read_text()) if path.exists() else {}
        merged.setdefault("entries", entries)
        merged.setdefault("results", {}).update(results)
        path.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
