"""The shared backend across real processes: results, types, limits, clearing, TTL."""

from __future__ import annotations

import base64
import os
import pickle
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import shared_worker
from _exact import differences
from warp_cache import SharedCacheInfo, cache

TESTS_DIR = Path(__file__).resolve().parent
# Imported by name (not run as __main__) so its classes pickle by reference to it.
WORKER_CMD = [sys.executable, "-c", "import shared_worker; shared_worker.main()"]


def worker_env(**env: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **env}


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no shared backend on Windows")


def run_worker(*args: str, timeout: float = 60, **env: str) -> object:
    """Runs shared_worker.py in a new process and returns what it emitted."""
    done = subprocess.run(
        [*WORKER_CMD, *args], capture_output=True, text=True, timeout=timeout, env=worker_env(**env)
    )
    assert done.returncode == 0, done.stderr
    return pickle.loads(base64.b64decode(done.stdout.strip().splitlines()[-1]))


def run_workers_at_once(commands: list[list[str]], timeout: float = 120, **env: str) -> list:
    """Runs one shared_worker.py process per command, all at once; what each emitted."""
    procs = [
        subprocess.Popen(
            [*WORKER_CMD, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=worker_env(**env),
        )
        for args in commands
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, (out, err)
        results.append(pickle.loads(base64.b64decode(out.strip())))
    return results


def test_two_processes_with_different_hash_seeds_share_results():
    first = run_worker("hash_seed_check", PYTHONHASHSEED="1")
    second = run_worker("hash_seed_check", PYTHONHASHSEED="2", WC_ROLE="reader")
    assert first[1:] == (frozenset({"x", "y"}), 144)
    assert second[1:] == first[1:], "the reader recomputed instead of sharing"


def test_set_and_container_arguments_hit_across_hash_seeds():
    """Keys with sets of str in them (at any depth) are canonical: a process with another
    PYTHONHASHSEED, whose sets iterate in another order, finds the same entries."""
    first = run_worker("container_args", PYTHONHASHSEED="1")
    second = run_worker("container_args", PYTHONHASHSEED="2", WC_ROLE="reader")
    third = run_worker("container_args", PYTHONHASHSEED="random", WC_ROLE="reader")
    assert shared_worker.RECOMPUTED not in first
    assert second == first and third == first, "a key changed with the hash seed"


def test_every_value_type_round_trips_exactly_through_another_process():
    names = list(shared_worker.sample_values())
    room = str(2 * len(names))  # no entry evicted before the reader looks
    run_worker("values", *names, WC_MAX_SIZE=room)
    got = run_worker("values", *names, WC_ROLE="reader", WC_MAX_SIZE=room)
    expected = shared_worker.sample_values()
    for name in names:
        assert got[name] != shared_worker.RECOMPUTED, f"{name} was not shared"
        assert not differences(expected[name], got[name], name)


def test_results_are_shared_with_this_process_too():
    run_worker("square", "5", "6")

    @cache(max_size=64, backend="shared")
    def square(x):
        return x * x

    # A different function body (and module) never shares with the worker's square.
    assert square(5) == 25
    assert square.cache_info().misses == 1


def test_an_oversize_result_warns_once_naming_its_size_and_the_parameter():
    @cache(backend="shared", max_value_size=64)
    def payload(n):
        return "r" * n

    with pytest.warns(
        RuntimeWarning,
        match=r"result serialized to 2\d\d bytes, above max_value_size=64.*raise max_value_size",
    ) as seen:
        for n in (200, 250, 200):
            assert payload(n) == "r" * n
    assert len(seen) == 1
    assert payload.cache_info().oversize_skips == 3
    assert payload(10) == "r" * 10 and payload(10) == "r" * 10
    assert payload.cache_info().hits == 1


def test_oversize_values_are_not_cached_and_are_counted():
    run_worker("values", "str", "big_int", WC_MAX_VALUE="12")
    info = SharedCacheInfo(*run_worker("info", "value_of", WC_MAX_VALUE="12"))
    assert info.oversize_skips == 2
    assert info.current_size == 0
    got = run_worker("values", "str", WC_MAX_VALUE="12", WC_ROLE="reader")
    assert got["str"] == shared_worker.RECOMPUTED


def test_oversize_keys_are_not_cached_but_the_function_runs():
    @cache(backend="shared", max_key_size=16)
    def echo(text):
        return len(text)

    with pytest.warns(
        RuntimeWarning,
        match=r"echo: a call's arguments serialized to \d+ bytes, above max_key_size=16",
    ) as seen:
        assert echo("x" * 100) == 100
        assert echo("x" * 100) == 100
    assert len(seen) == 1, "warned once per function"
    info = echo.cache_info()
    assert (info.hits, info.misses, info.current_size) == (0, 2, 0)
    assert info.oversize_skips == 2
    assert echo("short") == 5
    assert echo("short") == 5
    assert echo.cache_info().hits == 1


def test_a_parameter_change_recreates_the_cache():
    run_worker("square", "3", WC_MAX_SIZE="64")
    got = run_worker("square", "3", WC_MAX_SIZE="32", WC_ROLE="reader")
    assert got == [shared_worker.RECOMPUTED], "a file with other parameters was reused"
    info = SharedCacheInfo(*run_worker("info", "square", WC_MAX_SIZE="32"))
    assert info.max_size == 32


def test_ttl_holds_across_processes():
    run_worker("square", "7", WC_TTL="1.0")
    fresh = run_worker("square", "7", WC_TTL="1.0", WC_ROLE="reader")
    assert fresh == [49]
    time.sleep(1.5)
    expired = run_worker("square", "7", WC_TTL="1.0", WC_ROLE="reader")
    assert expired == [shared_worker.RECOMPUTED]


def test_cache_clear_clears_for_every_process():
    run_worker("square", "4", "5")
    run_worker("clear", "square")
    info = SharedCacheInfo(*run_worker("info", "square"))
    assert (info.hits, info.misses, info.current_size) == (0, 0, 0)
    assert run_worker("square", "4", WC_ROLE="reader") == [shared_worker.RECOMPUTED]


def test_four_processes_hammering_one_small_cache_see_only_right_values():
    commands = [["hammer", str(seed), "3000", "40"] for seed in range(4)]
    for result in run_workers_at_once(commands, WC_MAX_SIZE="8"):
        assert result == ("ok", 3000)
    info = SharedCacheInfo(*run_worker("info", "hammered", WC_MAX_SIZE="8"))
    assert info.current_size <= 8
    assert info.hits + info.misses >= 1


def test_files_are_private(private_shared_cache_dir):
    @cache(backend="shared")
    def private(x):
        return x

    private(1)
    directory = private_shared_cache_dir
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert files, "no cache files were made"
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert path.stat().st_uid == os.getuid()


def test_file_names_tell_which_function_they_belong_to(private_shared_cache_dir):
    @cache(backend="shared")
    def a_recognisable_name(x):
        return x

    a_recognisable_name(1)
    names = [p.name for p in private_shared_cache_dir.iterdir()]
    assert any("a_recognisable_name" in n for n in names), names
    assert any(__name__.split(".")[-1] in n for n in names), names


def test_changed_function_body_does_not_read_old_results():
    def make(body_adds):
        namespace: dict[str, object] = {"cache": cache}
        exec(
            f"@cache(backend='shared')\ndef versioned(x):\n    return x + {body_adds}\n",
            namespace,
        )
        return namespace["versioned"]

    old = make(1)
    assert old(1) == 2
    new = make(100)
    assert new(1) == 101


def test_two_scripts_main_functions_do_not_share(tmp_path):
    script = (
        "from warp_cache import cache\n"
        "@cache(backend='shared')\n"
        "def f():\n"
        "    return {}\n"
        "print(f())\n"
    )
    for name, value in (("one.py", "1"), ("two.py", "2")):
        (tmp_path / name).write_text(script.replace("{}", value))
    outputs = [
        subprocess.run(
            [sys.executable, str(tmp_path / name)], capture_output=True, text=True, timeout=60
        )
        for name in ("one.py", "two.py", "one.py")
    ]
    assert [o.stdout.strip() for o in outputs] == ["1", "2", "1"], [o.stderr for o in outputs]


def test_unpicklable_arguments_raise_and_unpicklable_results_are_returned_uncached():
    import threading

    @cache(backend="shared")
    def describe(obj):
        return type(obj).__name__

    with pytest.raises((TypeError, pickle.PicklingError)):
        describe(threading.Lock())

    @cache(backend="shared")
    def make_lock(n):
        return threading.Lock()

    assert make_lock(1) is not None
    assert make_lock(1) is not None
    assert make_lock.cache_info().current_size == 0


def test_shared_keys_are_serialized_so_lists_are_fine():
    @cache(backend="shared")
    def total(values, *, scale=1):
        return sum(values) * scale

    assert total([1, 2, 3]) == 6
    assert total([1, 2, 3]) == 6
    assert total([1, 2, 3], scale=2) == 12
    info = total.cache_info()
    assert (info.hits, info.misses) == (1, 2)


def test_positional_and_keyword_shapes_are_distinct_keys():
    @cache(backend="shared")
    def shape(*args, **kwargs):
        return (args, kwargs)

    assert shape(1, 2) == ((1, 2), {})
    assert shape((1, 2)) == (((1, 2),), {})
    assert shape(1) == ((1,), {})
    assert shape((1,)) == (((1,),), {})
    assert shape(1, x=2) == ((1,), {"x": 2})
    assert shape(1, "x", 2) == ((1, "x", 2), {})
    assert shape(b=1, a=2) == shape(a=2, b=1)
    assert shape.cache_info().misses == 7


def test_windows_refuses_the_shared_backend(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(RuntimeError, match="Windows"):
        cache(backend="shared")


def test_spawned_pool_workers_share_with_the_main_script(tmp_path):
    # Spawn re-runs the script as __mp_main__: it must still be the same function's cache.
    script = tmp_path / "spawner.py"
    script.write_text(
        "import multiprocessing, os\n"
        "from warp_cache import cache\n"
        "@cache(backend='shared')\n"
        "def whose(x):\n"
        "    return os.getpid()\n"
        "if __name__ == '__main__':\n"
        "    whose.cache_clear()\n"
        "    with multiprocessing.get_context('spawn').Pool(1) as pool:\n"
        "        worker = pool.apply(whose, (7,))\n"
        "    print(worker != os.getpid(), whose(7) == worker)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"], "the main script did not see the worker's entry"


def test_hits_from_concurrent_processes_are_all_counted():
    # Each process counts in a stripe of its own; the totals must still be exact.
    assert run_worker("square", "3") == [9]
    for result in run_workers_at_once([["square", *["3"] * 2000]] * 4, WC_ROLE="reader"):
        assert result == [9] * 2000
    info = SharedCacheInfo(*run_worker("info", "square"))
    assert (info.hits, info.misses) == (4 * 2000, 1)
