"""Opening a shared cache: credentials after fork/setuid, unusable directories, creation races.

Every test runs its scenario in fresh processes (subprocesses, forked children), because
what is checked is what one process can see of another's files and mappings.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
NOBODY = 65534
# A uid no account uses: its default directory /dev/shm/warp_cache-<uid> is ours to play with.
SPARE_UID = 54321

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no shared backend on Windows")


def need_root() -> None:
    if os.geteuid() != 0:
        print("skipped: needs root (chown, setuid, mount)")
        pytest.skip("needs root (chown, setuid, mount)")


def run_py(code: str, *args: str, timeout: float = 120, **env: str | None) -> dict:
    """Runs `code` in a new interpreter; returns the JSON object it printed last. `env`
    values of None remove the variable."""
    full = {**os.environ}
    for name, value in env.items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# A cached function and a value whose unpickling leaves a trace: `Evil()` unpickles as
# open(MARKER, "w"), the harmless stand-in for os.system.
PRELUDE = """
import json, os, sys, warnings
from warp_cache import cache

MARKER = sys.argv[1]
calls = []

class Evil:
    def __reduce__(self):
        return (open, (MARKER, "w"))

@cache(backend="shared", max_size=16)
def cred_probe(x):
    calls.append(x)
    if os.geteuid() == 0:
        return ["root", x]
    return Evil() if x == 2 else ["nobody", x]

def drop_to_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
"""


def test_setuid_child_never_reads_or_writes_the_parents_mapping(tmp_path):
    need_root()
    marker = tmp_path / "unpickled-by-root"
    code = (
        PRELUDE
        + """
assert cred_probe(1) == ["root", 1]

def mapped():
    with open("/proc/self/maps") as maps:
        return [line.split()[-1] for line in maps if "cred_probe" in line]

parent_maps = mapped()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    inherited = mapped()  # MADV_DONTFORK: root's files are not in the child at all
    drop_to_nobody()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen = cred_probe(1)          # root stored this: the child must compute its own
        cred_probe(2)                 # the child's "os.system" value
        cred_probe(3)
        info = list(cred_probe.cache_info())
    os.write(w, json.dumps({
        "seen": seen, "calls": calls, "info": info, "inherited": inherited,
        "warnings": [(w_.category.__name__, str(w_.message)) for w_ in caught],
    }).encode())
    os._exit(0)
os.close(w)
child = json.loads(os.read(r, 65536))
os.waitpid(pid, 0)
# Root again: nothing the child did reached root's file.
info_after_child = list(cred_probe.cache_info())
root_2 = cred_probe(2)
print(json.dumps({"child": child, "info": info_after_child, "root_2": repr(root_2),
                  "parent_maps": parent_maps,
                  "marker": os.path.exists(MARKER)}))
"""
    )
    out = run_py(code, str(marker))
    child = out["child"]
    if sys.platform == "linux":
        assert len(out["parent_maps"]) == 2, out["parent_maps"]  # .lock and .data
        assert child["inherited"] == [], "the child inherited root's mappings"
    assert child["seen"] == ["nobody", 1], "the setuid child read root's mapping"
    assert child["calls"] == [1, 1, 2, 3], "the child got values it did not compute"
    # Root's directory is closed to nobody: the child degrades to an in-process cache, once.
    assert [c for c, _ in child["warnings"]] == ["RuntimeWarning"], child["warnings"]
    assert "cred_probe" in child["warnings"][0][1]
    assert child["info"][:4] == [0, 3, 16, 3]
    # Root's counters show only root's own call; root computes f(2) itself.
    assert out["info"][:5] == [0, 1, 16, 1, 0], "the child wrote into root's mapping"
    assert out["root_2"] == repr(["root", 2])
    assert not out["marker"] and not marker.exists(), "root unpickled what nobody wrote"
    # A later root process sees root's values only.
    later = run_py(
        PRELUDE + "print(json.dumps([cred_probe(1), cred_probe(2), calls]))", str(marker)
    )
    assert later == [["root", 1], ["root", 2], []]
    assert not marker.exists()


def test_forked_child_with_the_same_user_reopens_and_shares(tmp_path):
    code = (
        PRELUDE
        + """
import multiprocessing
assert cred_probe(1) == ["root" if os.geteuid() == 0 else "nobody", 1]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen = [cred_probe(1), cred_probe(3)]
    os.write(w, json.dumps({"seen": seen, "calls": calls, "warnings": len(caught)}).encode())
    os._exit(0)
os.close(w)
child = json.loads(os.read(r, 65536))
os.waitpid(pid, 0)
before = list(calls)
cred_probe(3)
with multiprocessing.get_context("fork").Pool(2) as pool:
    pooled = pool.map(cred_probe, [1, 3, 1, 3])
print(json.dumps({"child": child, "parent_calls": calls, "before": before,
                  "pooled": pooled, "info": list(cred_probe.cache_info())}))
"""
    )
    out = run_py(code, str(tmp_path / "marker"))
    who = "root" if os.geteuid() == 0 else "nobody"
    # The child computed only what the parent had not stored, and warned about nothing.
    assert out["child"] == {"seen": [[who, 1], [who, 3]], "calls": [1, 3], "warnings": 0}
    # The parent hits what the child stored; the pool's workers hit everything.
    assert out["parent_calls"] == [1] and out["before"] == [1]
    assert out["pooled"] == [[who, 1], [who, 3]] * 2
    assert out["info"][:4] == [6, 2, 16, 2]


def test_setuid_in_place_never_writes_the_mapping_it_opened_as_root(tmp_path):
    need_root()
    marker = tmp_path / "unpickled-by-root"
    code = (
        PRELUDE
        + """
assert cred_probe(1) == ["root", 1]
drop_to_nobody()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    cred_probe(2)   # a miss: the store must not land in root's file
    cred_probe(2)
    cred_probe(4)
print(json.dumps({"calls": calls, "warnings": [str(w.message) for w in caught]}))
"""
    )
    out = run_py(code, str(marker))
    assert len(out["warnings"]) == 1 and "cred_probe" in out["warnings"][0], out
    later = run_py(
        PRELUDE + "print(json.dumps([cred_probe(2), calls, list(cred_probe.cache_info())]))",
        str(marker),
    )
    assert later[:2] == [["root", 2], [2]], "root read an entry stored after setuid"
    assert later[2][3] == 2, "an entry was stored after setuid"
    assert not marker.exists(), "root unpickled what nobody wrote"


def test_setuid_child_reopens_in_its_own_default_directory(tmp_path):
    need_root()
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    mine = Path(f"/dev/shm/warp_cache-{NOBODY}")
    existed = mine.exists()
    marker = tmp_path / "marker"
    code = (
        PRELUDE
        + """
import glob
assert cred_probe(1) == ["root", 1]

def mapped():
    with open("/proc/self/maps") as maps:
        return [line.split()[-1] for line in maps if "cred_probe" in line]

parent_maps = mapped()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    inherited = mapped()  # MADV_DONTFORK: root's files are not in the child at all
    drop_to_nobody()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, again = cred_probe(1), cred_probe(1)
        info = list(cred_probe.cache_info())
    files = glob.glob("/dev/shm/warp_cache-65534/__main__.cred_probe-*")
    os.write(w, json.dumps({"values": [first, again], "calls": calls, "info": info,
                            "files": files, "warnings": [str(x.message) for x in caught]}).encode())
    os._exit(0)
os.close(w)
child = json.loads(os.read(r, 65536))
os.waitpid(pid, 0)
root_files = glob.glob(f"/dev/shm/warp_cache-0/__main__.cred_probe-*")
print(json.dumps({"child": child, "root_files": root_files}))
"""
    )
    out: dict = {}
    try:
        out = run_py(code, str(marker), WARP_CACHE_DIR=None)
        child = out["child"]
        assert child["warnings"] == []
        assert child["values"] == [["nobody", 1], ["nobody", 1]]
        assert child["calls"] == [1, 1], "the child computed once, then hit its own file"
        assert child["info"][:2] == [1, 1]
        assert len(child["files"]) == 2 and all(f.startswith(str(mine)) for f in child["files"])
        assert all(os.stat(f).st_uid == NOBODY for f in child["files"])
    finally:
        for path in out.get("root_files", []) + out.get("child", {}).get("files", []):
            Path(path).unlink(missing_ok=True)
        if not existed and mine.exists():
            shutil.rmtree(mine)


# The squatter's planted object at the cache directory's path.
def plant(path: Path, kind: str, tmp_path: Path) -> None:
    if kind == "other_owner":
        need_root()
        path.mkdir(mode=0o700)
        os.chown(path, NOBODY, NOBODY)
    elif kind == "open_to_others":
        path.mkdir()
        os.chmod(path, 0o777)
    elif kind == "file":
        path.write_bytes(b"squatter")
    elif kind == "symlink":
        real = tmp_path / "elsewhere"
        real.mkdir(mode=0o700)
        path.symlink_to(real)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        raise AssertionError(kind)


USE_CACHE = """
import json, os, warnings
from warp_cache import cache, SharedCacheInfo

calls = []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")

    @cache(backend="shared", max_size=int(os.environ.get("WC_SIZE", "8")))
    def squatted(x):
        calls.append(x)
        return [x, "v"]

    results = [squatted(1), squatted(1), squatted([2]), squatted([2])]
    info = squatted.cache_info()
assert type(info) is SharedCacheInfo
print(json.dumps({"results": results, "calls": calls, "info": list(info),
                  "warnings": [(w.category.__name__, str(w.message)) for w in caught]}))
"""


def assert_degraded(out: dict, reason: str = "", max_size: int = 8) -> None:
    assert out["results"] == [[1, "v"], [1, "v"], [[2], "v"], [[2], "v"]]
    assert out["calls"] == [1, [2]], "the fallback cache did not cache"
    assert out["info"][:5] == [2, 2, max_size, 2, 0]
    assert out["info"][5] > 0, "current_bytes counts the two entries"
    assert len(out["warnings"]) == 1, out["warnings"]
    category, message = out["warnings"][0]
    assert category == "RuntimeWarning"
    assert "squatted" in message and reason in message, message


def assert_strict_refuses(directory: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", USE_CACHE],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WARP_CACHE_DIR": str(directory), "WARP_CACHE_STRICT": "1"},
    )
    assert done.returncode != 0
    assert "OSError" in done.stderr and "squatted" in done.stderr, done.stderr


@pytest.mark.parametrize("kind", ["other_owner", "open_to_others", "file", "symlink", "fifo"])
def test_unusable_directory_degrades_to_an_in_process_cache(tmp_path, kind):
    directory = tmp_path / "warp_cache"
    plant(directory, kind, tmp_path)
    before = os.lstat(directory)
    out = run_py(USE_CACHE, timeout=60, WARP_CACHE_DIR=str(directory))
    assert_degraded(out)
    assert_strict_refuses(directory)
    # Nothing was followed or changed.
    after = os.lstat(directory)
    assert (after.st_mode, after.st_uid, after.st_ino) == (
        before.st_mode,
        before.st_uid,
        before.st_ino,
    )
    if kind == "symlink":
        assert list((tmp_path / "elsewhere").iterdir()) == []


def mount_tmpfs(where: Path, options: str) -> None:
    need_root()
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(f"skipped: cannot mount a tmpfs: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")


@pytest.mark.parametrize(
    ("options", "reason"), [("size=1m,mode=0700", "No space"), ("ro,size=1m", "Read-only")]
)
def test_full_or_read_only_filesystem_degrades_to_an_in_process_cache(tmp_path, options, reason):
    mount = tmp_path / "mnt"
    mount_tmpfs(mount, options)
    try:
        directory = mount / "warp_cache"
        # 20,000 slot heads alone are 2.5 MB: more than the 1 MB filesystem holds.
        out = run_py(USE_CACHE, timeout=60, WARP_CACHE_DIR=str(directory), WC_SIZE="20000")
        assert_degraded(out, reason, max_size=20000)
        done = subprocess.run(
            [sys.executable, "-c", USE_CACHE],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "WARP_CACHE_DIR": str(directory),
                "WARP_CACHE_STRICT": "1",
                "WC_SIZE": "20000",
            },
        )
        assert done.returncode != 0 and "OSError" in done.stderr, done.stderr
        # A failed creation leaves no temporary file holding the filesystem's space.
        leftovers = list(directory.iterdir()) if directory.exists() else []
        assert not [p for p in leftovers if p.name.endswith(".tmp")], leftovers
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# Run as a child of root with uid/gid SPARE_UID and no WARP_CACHE_DIR: where do the files go?
DEFAULT_LOCATION = """
import glob, json, os, sys, warnings
import warp_cache

os.setgroups([])
os.setgid(int(sys.argv[1]))
os.setuid(int(sys.argv[1]))
calls = []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")

    @warp_cache.cache(backend="shared")
    def located(x):
        calls.append(x)
        return x

    located(1), located(1)
files = [p for p in glob.glob("/dev/shm/**/*located*", recursive=True)]
xdg = os.environ.get("XDG_RUNTIME_DIR")
if xdg:
    files += glob.glob(os.path.join(xdg, "**", "*located*"), recursive=True)
print(json.dumps({"calls": calls, "files": sorted(files), "hits": located.cache_info().hits,
                  "warnings": [str(w.message) for w in caught]}))
"""


@pytest.mark.parametrize("situation", ["free", "squatted_with_xdg", "squatted_no_xdg", "bad_xdg"])
def test_default_location_cannot_be_squatted(situation):
    need_root()
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    default = Path(f"/dev/shm/warp_cache-{SPARE_UID}")
    assert not default.exists(), f"{default} left over from an earlier run"
    # Outside pytest's private tmp tree, which the spare user cannot enter.
    xdg = Path(tempfile.mkdtemp(prefix="warp-cache-xdg-"))
    os.chown(xdg, SPARE_UID, SPARE_UID)
    env: dict[str, str | None] = {"WARP_CACHE_DIR": None, "XDG_RUNTIME_DIR": None}
    if situation != "free":
        default.mkdir(mode=0o700)  # root's: the spare user cannot use it
    if situation == "squatted_with_xdg":
        env["XDG_RUNTIME_DIR"] = str(xdg)
    if situation == "bad_xdg":
        os.chmod(xdg, 0o755)  # not private: never used
        env["XDG_RUNTIME_DIR"] = str(xdg)
    try:
        out = run_py(DEFAULT_LOCATION, str(SPARE_UID), timeout=60, **env)
        assert out["calls"] == [1]
        assert out["hits"] == 1
        if situation == "free":
            assert out["warnings"] == []
            assert [Path(f).parent for f in out["files"]] == [default, default]
        elif situation == "squatted_with_xdg":
            assert out["warnings"] == []
            assert [Path(f).parent for f in out["files"]] == [xdg / "warp_cache"] * 2
            assert stat.S_IMODE(os.stat(xdg / "warp_cache").st_mode) == 0o700
        else:
            assert len(out["warnings"]) == 1 and "located" in out["warnings"][0]
            assert out["files"] == []
    finally:
        shutil.rmtree(default, ignore_errors=True)
        shutil.rmtree(xdg, ignore_errors=True)


RACER = """
import json, os, sys, time
from warp_cache import cache

start = float(sys.argv[1])
me = int(sys.argv[2])
while time.time() < start:
    time.sleep(0.0005)

@cache(backend="shared", max_size=1_000_000, max_key_size=16, max_value_size=512)
def raced(x):
    return x * 3

raced(me)
print(json.dumps({"me": me}))
"""


def test_many_processes_creating_one_large_cache_at_once_all_succeed():
    # On tmpfs, where creating the file means zeroing all of its memory (about 600 MB).
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    directory = Path(tempfile.mkdtemp(prefix="warp-cache-race-", dir=base))
    racers = 4
    try:
        for round_ in range(2):
            for leftover in directory.iterdir():
                leftover.unlink()
            start = time.time() + 1.5
            env = {**os.environ, "WARP_CACHE_DIR": str(directory), "WARP_CACHE_STRICT": "1"}
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", RACER, str(start), str(i)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                for i in range(racers)
            ]
            for proc in procs:
                out, err = proc.communicate(timeout=120)
                assert proc.returncode == 0, f"round {round_}: {err}"
            names = sorted(p.name.rsplit(".", 1)[-1] for p in directory.iterdir())
            assert names == ["data", "lock"], names  # one cache, no temporary files left
            check = run_py(
                RACER.replace("raced(me)", "[raced(i) for i in range(4)]").replace(
                    '{"me": me}', '{"hits": raced.cache_info().hits}'
                ),
                "0",
                "0",
                WARP_CACHE_DIR=str(directory),
                WARP_CACHE_STRICT="1",
            )
            assert check == {"hits": racers}, "the racers did not all use one file"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_racers_short_of_space_wait_for_the_peer_creating_the_file(tmp_path):
    # Room for one data file (about 1.5 MB) but not for two: a racer whose allocation fails
    # while a peer's temporary file holds the space must wait for the peer's file.
    mount = tmp_path / "mnt"
    mount_tmpfs(mount, "size=2m,mode=0700")
    racer = RACER.replace("max_size=1_000_000", "max_size=10_000").replace(
        "max_value_size=512", "max_value_size=16"
    )
    try:
        for round_ in range(4):
            directory = mount / f"round{round_}"
            start = time.time() + 1.0
            env = {**os.environ, "WARP_CACHE_DIR": str(directory), "WARP_CACHE_STRICT": "1"}
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", racer, str(start), str(i)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                for i in range(4)
            ]
            for proc in procs:
                _, err = proc.communicate(timeout=120)
                assert proc.returncode == 0, f"round {round_}: {err}"
            names = sorted(p.name.rsplit(".", 1)[-1] for p in directory.iterdir())
            assert names == ["data", "lock"], names
            shutil.rmtree(directory)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_fork_while_another_thread_hits_never_hangs_the_child():
    # The child must re-open the files; the hitting thread is not there to release anything.
    code = """
import json, os, threading, time, warnings
from warp_cache import cache

warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)

@cache(backend="shared", max_size=64)
def hot(x):
    return x * 2

hot(1)
stop = False
def spin():
    while not stop:
        hot(1)
thread = threading.Thread(target=spin, daemon=True)
thread.start()
time.sleep(0.05)
ok = 0
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        os._exit(0 if hot(1) == 2 and hot(5) == 10 else 1)
    _, status = os.waitpid(pid, 0)
    ok += status == 0
stop = True
thread.join()
print(json.dumps({"ok": ok}))
"""
    assert run_py(code, timeout=60) == {"ok": 20}
