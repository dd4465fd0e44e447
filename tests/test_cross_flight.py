"""Single-flight across processes (shared backend): concurrent misses of one key from many
processes run the function once; the others wait for the value and count hits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="shared backend is POSIX")

WORKER = Path(__file__).with_name("flight_worker.py")


class Run:
    """Worker processes of one scenario, released together."""

    def __init__(self, tmp_path: Path) -> None:
        self.log = tmp_path / "log"
        self.go = tmp_path / "go"
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, scenario: str, *args: int, **env: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), scenario, str(self.log), str(self.go)]
            + [str(a) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        self.procs.append(proc)
        return proc

    def events(self, name: str) -> list[int]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [int(line.split()[1]) for line in lines if line.split()[0] == name]

    def wait_for(self, name: str, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events(name)) < count:
            assert time.monotonic() < deadline, f"{count} x {name!r} never logged"
            time.sleep(0.01)

    def release(self) -> None:
        self.wait_for("ready", len(self.procs))
        self.go.touch()

    def results(self, timeout: float = 60) -> list[dict]:  # type: ignore[type-arg]
        out = []
        for proc in self.procs:
            stdout, stderr = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, stderr
            out.append(json.loads(stdout.strip().splitlines()[-1]))
        return out

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    r = Run(tmp_path)
    yield r
    r.kill_all()


def test_eight_processes_of_four_threads_compute_one_key_once(run: Run) -> None:
    for _ in range(8):
        run.start("stampede", 4)
    run.release()
    results = run.results()
    assert len(run.events("start")) == 1, "the function ran more than once"
    for r in results:
        assert r["results"] == [{"key": 7, "double": 14}] * 4
    # Shared counters, read by each process as it finished: the last saw every call.
    final = max((r["info"] for r in results), key=lambda info: info["hits"])
    assert (final["hits"], final["misses"]) == (31, 1), final


def test_a_killed_leader_is_taken_over_within_two_seconds(run: Run) -> None:
    leader = run.start("one", 11, WC_DELAY="60")
    run.release()
    run.wait_for("start", 1)
    waiters = [run.start("one", 11, WC_DELAY="0.2") for _ in range(4)]
    run.wait_for("ready", 5)
    time.sleep(0.3)  # the waiters are parked on the leader's flight
    began = time.monotonic()
    leader.kill()
    leader.wait()
    run.procs.remove(leader)
    for w in waiters:
        stdout, stderr = w.communicate(timeout=30)
        assert w.returncode == 0, stderr
        assert json.loads(stdout)["results"] == [{"key": 11, "double": 22}]
    assert time.monotonic() - began < 2.0
    assert len(run.events("start")) == 2, "the leader, then exactly one taker"


def test_a_failing_leader_lets_one_waiter_retry(run: Run) -> None:
    for _ in range(5):
        run.start("flaky")
    run.release()
    results = [r["results"][0] for r in run.results()]
    assert len(run.events("start")) == 2, "one failure, one retry"
    assert results.count("ValueError: first try fails") == 1
    assert results.count(15) == 4


def test_waiters_get_a_short_lived_value_before_it_expires(run: Run) -> None:
    for _ in range(3):
        run.start("brief")
    run.release()
    results = run.results()
    assert all(r["results"] == [24] * 4 for r in results)
    # Once at the start, once after the entry expired: each time for all 3 x 2 threads.
    assert len(run.events("start")) == 2


def test_processes_waiting_on_each_other_finish(run: Run) -> None:
    run.start("crossed", WC_FIRST="1")
    run.start("crossed", WC_FIRST="2")
    run.release()
    results = run.results(timeout=30)
    # Each process's outer call finished; at least one computed the other's key itself
    # instead of waiting for a leader that waits for it.
    assert all(r["seconds"] < 5 for r in results)
    outer = sorted(r["results"][0] for r in results)
    # Whoever computed the inner key on its own: 10 or 20 inside, plus 100 per level.
    assert all(v in (110, 120, 210, 220) for v in outer), outer


def test_an_oversize_result_releases_the_waiters_at_once(run: Run) -> None:
    for _ in range(3):
        run.start("big")
    run.release()
    results = run.results()
    for r in results:
        assert r["results"] == [100_000, 100_000]
    # Not stored: the waiters compute on their own, together, not one after another.
    assert len(run.events("start")) <= 3
    assert all(r["seconds"] < 0.3 * 3 for r in results)


def test_async_callers_in_two_processes_compute_once(run: Run) -> None:
    for _ in range(2):
        run.start("async", 3)
    run.release()
    results = run.results()
    assert len(run.events("start")) == 1
    assert all(r["results"] == [45, 45, 45] for r in results)


def test_ctrl_c_interrupts_a_waiter(run: Run) -> None:
    run.start("one", 13, WC_DELAY="60")
    run.release()
    run.wait_for("start", 1)
    waiter = run.start("one", 13)
    run.wait_for("ready", 2)
    time.sleep(0.5)
    began = time.monotonic()
    waiter.send_signal(signal.SIGINT)
    _, stderr = waiter.communicate(timeout=10)
    assert time.monotonic() - began < 2.0
    assert "KeyboardInterrupt" in stderr
    run.procs.remove(waiter)


def test_a_child_forked_by_the_leader_does_not_wait_for_it(tmp_path: Path) -> None:
    script = f"""
import os, sys
sys.path.insert(0, {str(WORKER.parent)!r})
import flight_worker as w
from warp_cache import cache

child = False

@cache(max_size=8, backend="shared", version=1)
def outer(key):
    global child
    if child:
        return key + 1
    pid = os.fork()
    if pid == 0:
        # The parent leads `key` and waits for this child: waiting would hang.
        child = True
        os._exit(0 if outer(key) == key + 1 else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    return key + 1

print(outer(4))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "5"


def test_a_clear_during_a_flight_keeps_its_value_out_of_the_cache(tmp_path: Path) -> None:
    import threading

    from warp_cache import cache

    calls = []
    started = threading.Event()
    release = threading.Event()

    @cache(max_size=8, backend="shared", version=1)
    def slow(key: int) -> list[int]:
        calls.append(key)
        started.set()
        release.wait(10)
        return [key, len(calls)]

    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(slow(1))) for _ in range(3)]
    for t in threads:
        t.start()
    assert started.wait(10)
    time.sleep(0.1)  # the other two wait on the flight
    slow.cache_clear()
    release.set()
    for t in threads:
        t.join()
    # The waiters got the leader's value; the cache did not keep it (computed before the
    # clear), so the next call computes again.
    assert results == [[1, 1]] * 3 and calls == [1]
    assert slow.cache_info().current_size == 0
    assert slow(1) == [1, 2]
    assert slow(1) == [1, 2] and calls == [1, 1]


def test_a_clear_from_another_process_during_a_flight_reaches_its_waiters(run: Run) -> None:
    leader = run.start("one", 17, WC_DELAY="4.0")
    run.release()
    run.wait_for("start", 1)
    waiter = run.start("one", 17, WC_DELAY="0.1")
    run.wait_for("ready", 2)
    time.sleep(0.3)
    clearer = run.start("clear", WC_DELAY="5.0")
    run.wait_for("cleared", 1)
    assert run.events("done") == [], "the clear came after the flight landed: too slow"
    results = run.results()
    assert [r["results"] for r in results[:2]] == [[{"key": 17, "double": 34}]] * 2
    # Not stored: the waiter computed on its own once the leader landed.
    assert len(run.events("start")) == 2
    assert results[2]["info"]["current_size"] == 1, "only the waiter's own value"
    assert leader.returncode == waiter.returncode == clearer.returncode == 0
