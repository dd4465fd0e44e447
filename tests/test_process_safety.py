"""A cache never takes the process down: fork while other threads are inside a cached call.

Every scenario runs in a fresh interpreter under a timeout, so a hang or a crash fails its
test instead of stopping the suite. Both backends, the GIL on or off.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

BACKENDS = ["memory", "shared"]
ON_POSIX = sys.platform != "win32"
needs_fork = pytest.mark.skipif(not ON_POSIX, reason="os.fork is POSIX only")


def run_py(code: str, *args: str, timeout: float = 60) -> dict:
    """Runs `code` in a new interpreter; returns the JSON object it printed last. Fails on a
    non-zero exit or after `timeout` seconds."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung for {timeout} s; stderr: {exc.stderr!r}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# Imports, the backend (argv[1]), and `wait_child(pid)`: a forked child's exit code.
FORKING = """
import json, os, sys, threading, time, warnings
from warp_cache import cache

warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
BACKEND = sys.argv[1]
PARENT = os.getpid()
entered, release = threading.Event(), threading.Event()
runs = []

def wait_child(pid, seconds=20):
    # The child's exit code, or "hung" (then killed) after `seconds`.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"
"""

# A cached function that one thread of the parent is inside of (it waits for `release`)
# while the main thread forks. Children never wait in it; `runs` records the pids it ran in.
PRELUDE = (
    FORKING
    + """
@cache(backend=BACKEND, max_size=64)
def slow(x):
    runs.append(os.getpid())
    if os.getpid() == PARENT:
        entered.set()
        release.wait()
    return x * 10

leader = threading.Thread(target=slow, args=(1,), daemon=True)
leader.start()
entered.wait()
"""
)


@needs_fork
@pytest.mark.parametrize("backend", BACKENDS)
def test_child_never_waits_on_a_flight_led_by_a_thread_it_does_not_have(backend):
    code = (
        PRELUDE
        + """
pid = os.fork()
if pid == 0:
    ok = slow(1) == 10 and slow(1) == 10 and slow(2) == 20
    os._exit(0 if ok and runs.count(os.getpid()) == 2 else 1)
status = wait_child(pid)
release.set()
leader.join()
print(json.dumps({"child": status, "parent": slow(1), "runs": len(runs)}))
"""
    )
    assert run_py(code, backend) == {"child": 0, "parent": 10, "runs": 1}


@needs_fork
@pytest.mark.parametrize("backend", BACKENDS)
def test_child_forked_during_a_stale_refresh_serves_stale_and_refreshes_on_its_own(backend):
    # serve_stale: the parent's background refresh is stuck in `release.wait()` when the
    # parent forks; the child has no such thread, so it claims the key and refreshes itself.
    code = (
        FORKING
        + """
@cache(backend=BACKEND, ttl=0.05, serve_stale=60)
def stale(x):
    runs.append(os.getpid())
    if os.getpid() == PARENT and len(runs) > 1:
        entered.set()
        release.wait()
    return len(runs)

def settled(value):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if stale.cache_peek(1) == value:
                return True
        except KeyError:
            pass
        time.sleep(0.01)
    return False

first = stale(1)
time.sleep(0.1)
served = stale(1)  # stale: the refresh starts in a thread and waits for `release`
entered.wait(10)
pid = os.fork()
if pid == 0:
    # The parent's two runs, then the child's own refresh: 3.
    ok = stale(1) == 1 and settled(3) and runs.count(os.getpid()) == 1
    os._exit(0 if ok else 1)
status = wait_child(pid)
release.set()
print(json.dumps({"child": status, "first": first, "served": served, "parent": settled(2)}))
"""
    )
    assert run_py(code, backend) == {"child": 0, "first": 1, "served": 1, "parent": True}


@needs_fork
@pytest.mark.parametrize("backend", BACKENDS)
def test_child_forked_mid_flight_finds_what_the_parent_stored_since(backend):
    # The child asks once the parent's flight has landed: the shared backend hits the
    # parent's entry in the same files; the memory backend (a copy made at fork) computes.
    code = (
        PRELUDE
        + """
go_r, go_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.read(go_r, 1)
    value = slow(1)
    seen = (runs.count(os.getpid()), slow.cache_info().hits)
    os._exit(0 if value == 10 and seen == ((0, 1) if BACKEND == "shared" else (1, 0)) else 1)
release.set()
leader.join()
os.write(go_w, b"x")
print(json.dumps({"child": wait_child(pid)}))
"""
    )
    assert run_py(code, backend) == {"child": 0}


@needs_fork
@pytest.mark.parametrize("backend", BACKENDS)
def test_fork_context_pool_while_a_warm_up_thread_is_inside(backend):
    code = (
        PRELUDE
        + """
import multiprocessing

with multiprocessing.get_context("fork").Pool(2) as pool:
    results = pool.map_async(slow, [1, 1, 2, 3]).get(timeout=20)
release.set()
leader.join()
print(json.dumps({"results": results, "parent": slow(1)}))
"""
    )
    assert run_py(code, backend) == {"results": [10, 10, 20, 30], "parent": 10}


@needs_fork
@pytest.mark.parametrize("backend", BACKENDS)
def test_child_forked_while_a_task_leads_an_async_flight_starts_with_none(backend):
    # A thread's event loop runs a task inside `g(1)`; the main thread forks. The child
    # holds none of the parent's async flights (their loops, tasks and futures are the
    # parent's) and computes on a loop of its own.
    code = """
import asyncio, json, os, sys, threading, time, warnings
from warp_cache import cache, _api

warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
PARENT = os.getpid()
inside = threading.Event()
gate = None

@cache(backend=sys.argv[1])
async def g(x):
    if os.getpid() == PARENT:
        inside.set()
        await gate.wait()
    return x * 10

async def lead():
    global gate
    gate = asyncio.Event()
    return await g(1)

loop = asyncio.new_event_loop()
result = []
thread = threading.Thread(target=lambda: result.append(loop.run_until_complete(lead())))
thread.start()
inside.wait()
flights_before = len(_api._flights)
pid = os.fork()
if pid == 0:
    ok = not _api._flights and not _api._waiting and asyncio.run(g(1)) == 10
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
loop.call_soon_threadsafe(gate.set)
thread.join()
print(json.dumps({"before": flights_before, "child": os.waitstatus_to_exitcode(status),
                  "parent": result}))
"""
    assert run_py(code, backend) == {"before": 1, "child": 0, "parent": [10]}


@needs_fork
@pytest.mark.parametrize("backend", BACKENDS)
def test_fork_while_threads_miss_and_evict_never_hangs_the_child(backend):
    # Threads keep inserting and evicting (shard write locks, flights) while the main thread
    # forks: every child must still miss, store and hit.
    code = """
import json, os, sys, threading, time, warnings
from warp_cache import cache

warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)

@cache(backend=sys.argv[1], max_size=32)
def square(x):
    return x * x

stop = False
def churn(offset):
    i = 0
    while not stop:
        square(offset + i % 200)
        i += 1

threads = [threading.Thread(target=churn, args=(k * 1000,), daemon=True) for k in range(3)]
for t in threads:
    t.start()
time.sleep(0.05)
ok = 0
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        fine = square(-7) == 49 and square(-7) == 49 and square(2) == 4
        os._exit(0 if fine else 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            ok += os.waitstatus_to_exitcode(status) == 0
            break
        time.sleep(0.005)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
stop = True
for t in threads:
    t.join()
print(json.dumps({"ok": ok}))
"""
    assert run_py(code, backend, timeout=120) == {"ok": 20}


# --- deep recursion -------------------------------------------------------------------

# Recurses through a cached function in a thread of STACK_MIB MiB (0: the main thread) under
# a recursion limit of LIMIT, reporting its depth every 100 levels (so a crash still says
# how deep it got), then a last line: [deepest, "returned" | "RecursionError"].
DEPTH_PROBE = """
import functools, json, os, sys, threading

impl, stack_mib, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if impl == "lru_cache":
    decorate = functools.lru_cache(maxsize=None)
else:
    from warp_cache import cache
    decorate = cache(max_size=1 << 20, backend=impl, max_value_size=1 << 16)
deepest = 0

@decorate
def down(n):
    global deepest
    deepest = n
    if n % 100 == 0:
        os.write(1, b"%d\\n" % n)
    return down(n + 1) + 1

def probe():
    try:
        down(0)
        outcome.append("returned")
    except RecursionError:
        outcome.append("RecursionError")

outcome = []
sys.setrecursionlimit(limit)
if stack_mib:
    threading.stack_size(stack_mib << 20)
    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
else:
    probe()
print(json.dumps([deepest, outcome[0]]), flush=True)
"""


def probe_depth(impl: str, stack_mib: int, limit: int) -> tuple[int, str]:
    """How deep `impl` recursed and how it ended ("crashed" if the process died)."""
    done = subprocess.run(
        [sys.executable, "-c", DEPTH_PROBE, impl, str(stack_mib), str(limit)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = done.stdout.splitlines()
    if done.returncode != 0:
        return (int(lines[-1]) if lines else 0), "crashed"
    deepest, outcome = json.loads(lines[-1])
    return deepest, outcome


@pytest.mark.parametrize("backend", BACKENDS)
def test_memoized_fib_10000_never_crashes(backend):
    # The reproduction: a segfault on both backends before. Now the result, or a
    # RecursionError, in the main thread and in a thread with a big stack.
    code = """
import json, sys, threading
from warp_cache import cache

sys.setrecursionlimit(100_000)

@cache(max_size=20_000, backend=sys.argv[1], max_value_size=1 << 16)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def run(out):
    try:
        out.append(fib(10_000) % 1_000_000_007)
    except RecursionError:
        out.append("RecursionError")

main = []
run(main)
fib.cache_clear()
threading.stack_size(512 << 20)
big = []
thread = threading.Thread(target=run, args=(big,))
thread.start()
thread.join()
print(json.dumps({"main": main[0], "big_stack": big[0]}))
"""
    out = run_py(code, backend, timeout=300)
    fib_10000 = 271_496_360  # fib(10_000) % (10**9 + 7)
    assert out["main"] in (fib_10000, "RecursionError")
    # 512 MiB hold 10,000 levels; only the interpreter's own limit can stop it (3.12+).
    assert out["big_stack"] in (fib_10000, "RecursionError")
    if sys.version_info < (3, 12):
        assert out["big_stack"] == fib_10000


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("stack_mib", "limit"),
    [(256, 100_000), (16, 1_000_000), (0, 1_000_000)],
    ids=["limit-bound", "stack-bound-thread", "stack-bound-main"],
)
def test_recursion_goes_as_deep_as_lru_cache_then_raises(backend, stack_mib, limit):
    lru_depth, lru_end = probe_depth("lru_cache", stack_mib, limit)
    depth, end = probe_depth(backend, stack_mib, limit)
    assert end == "RecursionError", f"{backend}: {end} at depth {depth}"
    assert depth >= lru_depth, f"{backend} {depth} < lru_cache {lru_depth} ({lru_end})"
