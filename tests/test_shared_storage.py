"""Shared storage that grows with what it holds: small at decoration, entries of any size up
to the limits, a byte budget, and a full filesystem that costs entries, never a crash."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from warp_cache import cache

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no shared backend on Windows")


def allocated(directory: Path) -> int:
    """Bytes the cache files hold on their file system (sparse parts excluded)."""
    return sum(p.stat().st_blocks * 512 for p in directory.iterdir() if p.is_file())


def test_a_large_cache_allocates_little_at_decoration(private_shared_cache_dir):
    @cache(backend="shared", max_size=100_000, max_value_size=65_536, version=1)
    def big(x):
        return x

    assert big(1) == 1
    used = allocated(private_shared_cache_dir)
    assert used < 16 << 20, f"{used} bytes allocated for an empty cache of 100,000"


def test_ten_thousand_small_entries_occupy_under_3_mb(private_shared_cache_dir):
    @cache(backend="shared", max_size=10_000, version=1)
    def small(x):
        return x * 2

    for x in range(10_000):
        small(x)
    assert small.cache_info().current_size == 10_000
    used = allocated(private_shared_cache_dir)
    assert used < 3 << 20, f"{used} bytes for 10,000 int entries"
    per_entry = used / 10_000
    print(f"10,000 int -> int entries: {used} bytes allocated, {per_entry:.0f} per entry")


SCRIPT = textwrap.dedent(
    """
    import hashlib, os, random, sys
    from warp_cache import cache

    @cache(backend="shared", max_size=100_000, max_value_size=1 << 21, version=1)
    def blob(key, size):
        # A value that says which key and size it was made for.
        seed = hashlib.sha256(f"{key}/{size}".encode()).digest()
        return seed * (size // 32) + seed[: size % 32]

    def expected(key, size):
        seed = hashlib.sha256(f"{key}/{size}".encode()).digest()
        return seed * (size // 32) + seed[: size % 32]

    role = sys.argv[1]
    if role == "one_mb":
        value = blob("big", 1 << 20)
        print(blob.cache_info().hits, len(value), value == expected("big", 1 << 20))
    elif role == "grow":
        rng = random.Random(int(sys.argv[2]))
        for _ in range(int(sys.argv[3])):
            key = rng.randrange(400)
            size = rng.choice([10, 100, 1000, 10_000, 60_000])
            if blob(key, size) != expected(key, size):
                print("wrong", key, size)
                sys.exit(3)
        print("ok")
    """
)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "storage_script.py"
    path.write_text(SCRIPT)
    return path


def run(script: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout.strip()


def test_a_one_megabyte_value_round_trips_through_another_process(script, private_shared_cache_dir):
    assert run(script, "one_mb") == f"0 {1 << 20} True"
    # Another process hits it.
    assert run(script, "one_mb") == f"1 {1 << 20} True"


def test_four_processes_growing_one_region_at_once_never_see_a_wrong_value(
    script, private_shared_cache_dir
):
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), "grow", str(seed), "1500"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0 and out.strip() == "ok", out + err


def test_the_byte_budget_holds_under_a_mix_of_sizes():
    rng = random.Random(5)

    @cache(backend="shared", max_size=1_000, max_value_size=20_000, max_bytes=50_000, version=1)
    def sized(key, size):
        return bytes([key % 251]) * size

    for _ in range(3_000):
        key, size = rng.randrange(300), rng.randrange(0, 6_000)
        assert sized(key, size) == bytes([key % 251]) * size
        info = sized.cache_info()
        assert info.current_bytes <= 50_000, info
    assert 5 <= sized.cache_info().current_size < 1_000


def test_max_bytes_is_validated():
    with pytest.raises(ValueError, match="max_bytes must be >= 1"):
        cache(backend="shared", max_bytes=0)
    with pytest.raises(TypeError, match="max_bytes must be an int"):
        cache(backend="shared", max_bytes=1.5)
    with pytest.raises(ValueError, match="max_bytes applies to backend='shared' only"):
        cache(max_bytes=1000)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A 2 MiB tmpfs (root only); skipped with the reason elsewhere."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_filesystem_filled_mid_run_costs_entries_not_the_process(tiny_tmpfs, monkeypatch):
    monkeypatch.setenv("WARP_CACHE_DIR", str(tiny_tmpfs / "warp_cache"))
    calls: list[int] = []

    @cache(backend="shared", max_size=1_000, max_value_size=4 << 20, version=1)
    def payload(key, size=100_000):
        calls.append(key)
        return bytes([key % 251]) * size

    # 40 values of 100 KB cannot all fit 2 MiB: the file stops growing, older entries make
    # room, and every call still returns its right value.
    for key in range(40):
        assert payload(key) == bytes([key % 251]) * 100_000
    assert len(calls) == 40
    info = payload.cache_info()
    assert 5 <= info.current_size < 40, info
    # What fits keeps hitting.
    assert payload(39) == bytes([39 % 251]) * 100_000
    assert len(calls) == 40, "the newest entry was not kept"
    # A value larger than the filesystem is skipped and counted, and the call still works.
    before = payload.cache_info().oversize_skips
    assert payload(1000, 3 << 20) == bytes([1000 % 251]) * (3 << 20)
    assert payload.cache_info().oversize_skips == before + 1
    assert payload(39) == bytes([39 % 251]) * 100_000
