"""`python -m warp_cache`: list, clear and purge shared caches, end to end in real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no shared backend on Windows")

WORKER = textwrap.dedent(
    """
    import sys, time
    from warp_cache import cache

    @cache(backend="shared", max_size=50, version=sys.argv[1])
    def report(x):
        return x * 2

    for x in (1, 2, 3, 1, 1):
        report(x)
    if len(sys.argv) > 2 and sys.argv[2] == "hold":
        print("ready", flush=True)
        sys.stdin.readline()
        print(report(1), report.cache_info().hits, flush=True)
    """
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warp_cache", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def worker(tmp_path: Path) -> Path:
    path = tmp_path / "reports.py"
    path.write_text(WORKER)
    return path


def run(worker: Path, version: str) -> None:
    done = subprocess.run([sys.executable, str(worker), version], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr


def hold(worker: Path, version: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(worker), version, "hold"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_list_json_describes_every_cache(worker):
    live = hold(worker, "1")
    try:
        run(worker, "2")  # a new identity while 1 is in use: both stay
        done = cli("list", "--json")
        assert done.returncode == 0, done.stderr
        rows = {row["identity"]: row for row in json.loads(done.stdout)}
        assert len(rows) == 2
        for row in rows.values():
            assert row["function"] == "__main__.report"
            for key in ("max_size", "entries", "hits", "misses", "bytes", "in_use"):
                assert key in row
            assert (row["max_size"], row["entries"], row["hits"], row["misses"]) == (50, 3, 2, 3)
            assert row["bytes"] > 0
        assert sorted(row["in_use"] for row in rows.values()) == [False, True]
        table = cli("list")
        assert table.returncode == 0
        assert "__main__.report" in table.stdout and "yes" in table.stdout
    finally:
        live.kill()
        live.wait()


def test_clear_is_seen_by_a_live_process(worker):
    live = hold(worker, "1")
    try:
        done = cli("clear", "__main__.rep*")
        assert done.returncode == 0, done.stderr
        assert "cleared __main__.report" in done.stdout
        assert live.stdin is not None and live.stdout is not None
        live.stdin.write("\n")
        live.stdin.flush()
        value, hits = live.stdout.readline().split()
        assert (value, hits) == ("2", "0"), "the live process still saw its entries"
    finally:
        live.kill()
        live.wait()


def test_clear_without_a_match_exits_1():
    done = cli("clear", "no.such.function")
    assert done.returncode == 1
    assert "no shared cache matches" in done.stderr


def test_purge_removes_only_what_no_live_process_uses(worker, private_shared_cache_dir):
    def stems() -> set[str]:
        return {p.name.rsplit(".", 1)[0] for p in private_shared_cache_dir.iterdir()}

    run(worker, "1")
    live = hold(worker, "2")
    assert len(stems()) == 1, "decorating identity 2 kept the unused identity 1"
    try:
        time.sleep(1.1)  # last use is kept in seconds
        run(worker, "3")  # newest; identity 2 is in use, so it stays
        assert len(stems()) == 2
        done = cli("purge", "--all")
        assert done.returncode == 0 and "1 unused" in done.stdout, done.stdout
        assert len(stems()) == 1, "the cache in use was purged"
        run(worker, "3")
    finally:
        live.kill()
        live.wait()
    # Identity 2 is no longer used and 3 is newer: 2 is stale, 3 stays.
    done = cli("purge")
    assert done.returncode == 0 and "1 stale" in done.stdout, done.stdout
    assert len(stems()) == 1
    done = cli("purge", "--all")
    assert done.returncode == 0 and "1 unused" in done.stdout
    assert stems() == set()


@pytest.mark.parametrize(
    "args", [[], ["frobnicate"], ["clear"], ["purge", "--stale", "--all"], ["list", "--x"]]
)
def test_usage_errors_exit_2(args):
    assert cli(*args).returncode == 2


@pytest.mark.parametrize("command", ["list", "clear", "purge"])
def test_every_command_has_help(command):
    done = cli(command, "--help")
    assert done.returncode == 0 and "usage" in done.stdout
