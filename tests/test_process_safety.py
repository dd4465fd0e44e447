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


# A cached function that one thread of the parent is inside of (it waits for `release`)
# while the main thread forks. Children never wait in it; `runs` records the pids it ran in.
PRELUDE = """
import json, os, sys, threading, time, warnings
from warp_cache import cache

warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
BACKEND = sys.argv[1]
PARENT = os.getpid()
entered, release = threading.Event(), threading.Event()
runs = []

@cache(backend=BACKEND, max_size=64)
def slow(x):
    runs.append(os.getpid())
    if os.getpid() == PARENT:
        entered.set()
        release.wait()
    return x * 10

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

leader = threading.Thread(target=slow, args=(1,), daemon=True)
leader.start()
entered.wait()
"""


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
