"""``python -m warp_cache``: list, clear and purge this user's shared caches.

Exit status: 0 done, 1 nothing matched (or a cache could not be cleared), 2 usage error.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from warp_cache import _warp_cache

COLUMNS = (
    ("function", "FUNCTION"),
    ("identity", "IDENTITY"),
    ("max_size", "MAX_SIZE"),
    ("entries", "ENTRIES"),
    ("hits", "HITS"),
    ("misses", "MISSES"),
    ("oversize_skips", "OVERSIZE"),
    ("held_bytes", "HELD"),
    ("bytes", "ON_DISK"),
    ("in_use", "IN_USE"),
    ("last_use", "LAST_USE"),
)


def cache_dir() -> str:
    """Where this user's shared caches live: `$WARP_CACHE_DIR`, else the default."""
    return os.environ.get("WARP_CACHE_DIR") or str(_warp_cache.default_shared_dir())


def caches() -> list[dict[str, Any]]:
    return list(_warp_cache.shared_caches(cache_dir()))


def _cell(row: dict[str, Any], key: str) -> str:
    value = row[key]
    if key == "function":
        return str(value) or row["stem"]
    if key == "identity":
        return str(value)[:8]
    if key == "in_use":
        return "yes" if value else "no"
    if key == "last_use":
        if not value:
            return "-"
        moment = datetime.datetime.fromtimestamp(value, datetime.UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if not row["valid"] and key in (
        "max_size",
        "entries",
        "hits",
        "misses",
        "oversize_skips",
        "held_bytes",
    ):
        return "?"
    if key in ("bytes", "held_bytes"):
        return _human(int(value))
    return str(value)


def _human(n: int) -> str:
    size, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


def cmd_list(args: argparse.Namespace) -> int:
    rows = caches()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [[title for _, title in COLUMNS]]
    table += [[_cell(row, key) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    pattern = args.function
    matched = [row for row in caches() if fnmatch.fnmatchcase(row["function"], pattern)]
    if not matched:
        print(f"no shared cache matches {pattern!r} in {cache_dir()}", file=sys.stderr)
        return 1
    status = 0
    for row in matched:
        if _warp_cache.clear_shared_cache(row["stem"], cache_dir()):
            print(f"cleared {row['function']} ({row['identity'][:8]})")
        else:
            print(f"could not clear {row['stem']} (damaged, or locked)", file=sys.stderr)
            status = 1
    return status


def cmd_purge(args: argparse.Namespace) -> int:
    removed = _warp_cache.purge_shared_caches(args.all, cache_dir())
    for stem in removed:
        print(f"removed {stem}")
    kind = "unused" if args.all else "stale"
    print(f"{len(removed)} {kind} cache(s) removed from {cache_dir()}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m warp_cache",
        description="Inspect and manage this user's shared (backend='shared') caches. "
        "The directory is $WARP_CACHE_DIR, else the default location.",
    )
    commands = top.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="one row per cache")
    listing.add_argument("--json", action="store_true", help="print a JSON list of objects")
    listing.set_defaults(run=cmd_list)
    clear = commands.add_parser("clear", help="clear a function's caches for every process")
    clear.add_argument("function", help="module.qualname, or a glob such as 'app.*'")
    clear.set_defaults(run=cmd_clear)
    purge = commands.add_parser("purge", help="delete caches no live process uses")
    which = purge.add_mutually_exclusive_group()
    which.add_argument(
        "--stale",
        action="store_true",
        help="only old identities of a function and damaged files (the default)",
    )
    which.add_argument("--all", action="store_true", help="every cache no live process uses")
    purge.set_defaults(run=cmd_purge)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except OSError as err:
        print(f"python -m warp_cache: {err}", file=sys.stderr)
        return 1
