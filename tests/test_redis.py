"""backend="redis": a near cache in front of a real redis-server started by these tests.

Hosts of a fleet are processes here, each with its own near cache (tests/redis_worker.py);
the test process is one more host. A missing redis-server fails these tests (``make test``
installs it: scripts/ensure-redis.sh); nothing here is skipped.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from warp_cache import Backend, RedisCacheInfo, _redis, cache
from warp_cache._warp_cache import codec_encode

TESTS_DIR = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server of our own on a free loopback port, restartable on that port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run scripts/ensure-redis.sh")
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--logfile", str(self.workdir / "redis.log"),
                "--hz", "50",  # active expiry 50 times a second: TTL invalidations sooner
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        self.stopped = False

    def kill(self) -> None:
        assert self.proc is not None
        self.cont()
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stopped = True

    def cont(self) -> None:
        if self.proc is not None and self.stopped:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.stopped = False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    # Hosts (worker processes, and redis_worker imported here) find it by the default.
    os.environ["WARP_CACHE_REDIS_URL"] = server.url
    yield server
    if server.proc is not None:
        server.kill()


@pytest.fixture
def server(redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The session's server, running and empty; a fresh computation log per test."""
    redis_server.cont()
    if redis_server.proc is None:
        redis_server.start()
    redis_server.client().flushall()
    monkeypatch.setenv("WARP_CACHE_TEST_LOG", str(tmp_path / "computed.log"))
    monkeypatch.setenv("WARP_CACHE_TEST_DELAY", "0")
    yield redis_server
    redis_server.cont()
    if redis_server.proc is None:
        redis_server.start()


def record(x: object) -> None:
    """Logs a computation. Imported late: redis_worker's cache reads the server's URL from
    the environment when it is imported, once the session's server runs."""
    import redis_worker

    redis_worker.record(x)


def computations() -> list[object]:
    """What every host computed during this test, in order (redis_worker.record)."""
    log = Path(os.environ["WARP_CACHE_TEST_LOG"])
    if not log.exists():
        return []
    return [ast.literal_eval(line.split(" ", 1)[1]) for line in log.read_text().splitlines()]


def host(*command: str, env: dict[str, str] | None = None) -> dict:
    """Runs one command in a new host process and returns its JSON answer."""
    out = subprocess.run(
        [sys.executable, "-c", "import redis_worker; redis_worker.main()", *command],
        cwd=TESTS_DIR,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_host(*command: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "import redis_worker; redis_worker.main()", *command],
        cwd=TESTS_DIR,
        env={**os.environ, **(env or {})},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, timeout: float = 5.0, step: float = 0.002) -> float:
    """Seconds until `predicate()` held; fails after `timeout`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not reached within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


def connected(func) -> None:
    wait_for(lambda: func.cache_info().connected)


def entry_key(func, *args, **kwargs) -> str:
    """The Redis key of a call's entry (as the tier names it)."""
    import hashlib

    tier = func._redis_tier
    key_bytes = tier.key_bytes(args, kwargs)
    digest = hashlib.blake2b(key_bytes, digest_size=16).hexdigest()
    return f"{tier.prefix}{tier.generation()}:{digest}"


# -- the API ------------------------------------------------------------------------------


def test_backend_redis_is_2_and_accepts_the_string(server: RedisServer) -> None:
    assert Backend.REDIS == 2

    @cache(backend="redis", url=server.url)
    def f(x):
        return x + 1

    @cache(backend=2, url=server.url)
    def g(x):
        return x + 2

    assert (f(1), g(1)) == (2, 3)


def test_url_and_secret_belong_to_the_redis_backend() -> None:
    with pytest.raises(ValueError, match="url applies to backend='redis' only"):
        cache(url="redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="secret applies to backend='redis' only"):
        cache(backend="shared", secret="s")
    with pytest.raises(ValueError, match="url must start with redis://"):
        cache(backend="redis", url="http://127.0.0.1:6379")
    with pytest.raises(TypeError, match="secret must be bytes, a str or None"):
        cache(backend="redis", secret=12)
    with pytest.raises(ValueError, match="secret must not be empty"):
        cache(backend="redis", secret=b"")
    with pytest.raises(ValueError, match="'memory', 'shared' or 'redis'"):
        cache(backend="memcached")


def test_default_url_comes_from_the_environment(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARP_CACHE_REDIS_URL", "ftp://nowhere")
    with pytest.raises(ValueError, match="WARP_CACHE_REDIS_URL must start with"):
        cache(backend="redis")
    monkeypatch.setenv("WARP_CACHE_REDIS_URL", server.url)

    @cache(backend="redis")
    def f(x):
        return x

    assert f(5) == 5
    assert server.client().dbsize() > 0, "the entry went to the server the variable names"


def test_near_hit_remote_hit_and_info(server: RedisServer) -> None:
    @cache(max_size=8, backend="redis", url=server.url)
    def f(x, *, scale=1):
        record(x)
        return [x * scale]

    connected(f)
    assert f(3) == [3] and f(3) == [3]
    assert f(3, scale=2) == [6]
    info = f.cache_info()
    assert isinstance(info, RedisCacheInfo)
    assert (info.hits, info.misses, info.max_size, info.current_size) == (1, 2, 8, 2)
    assert (info.remote_hits, info.remote_misses, info.connected) == (0, 2, True)
    assert computations() == [3, 3]
    # Another near cache of the same function (a second decoration: same identity) reads
    # Redis instead of computing.
    f2 = cache(max_size=8, backend="redis", url=server.url)(f.__wrapped__)
    assert f2(3) == [3] and f2(3, scale=2) == [6]
    assert computations() == [3, 3]
    assert f2.cache_info().remote_hits == 2


def test_sharing_across_hosts(server: RedisServer) -> None:
    import redis_worker

    first = host("call", "1", "2", "3")
    assert [r["double"] for r in first["results"]] == [2, 4, 6]
    second = host("call", "1", "2", "3", "4")
    assert second["results"][:3] == first["results"], "values computed by the first host"
    assert computations() == [1, 2, 3, 4]
    info = RedisCacheInfo(*second["info"])
    assert (info.remote_hits, info.remote_misses) == (3, 1)
    # This process is a host too.
    assert redis_worker.work(4) == second["results"][3]
    assert computations() == [1, 2, 3, 4]


def test_fleet_wide_clear_reaches_other_near_caches_within_100_ms(server: RedisServer) -> None:
    import redis_worker

    work = redis_worker.work
    connected(work)
    assert work(7)["double"] == 14
    assert work.cache_info().current_size == 1
    seen: list[float] = []

    def watch() -> None:  # notes when the entry left this near cache
        deadline = time.monotonic() + 10
        while work.cache_info().current_size and time.monotonic() < deadline:
            time.sleep(0.001)
        seen.append(time.time())

    watcher = threading.Thread(target=watch)
    watcher.start()
    cleared_at = host("clear")["cleared_at"]
    watcher.join()
    seen_after = seen[0] - cleared_at
    assert seen_after < 0.1, f"the clear reached this near cache {seen_after:.3f} s later"
    work(7)
    assert computations() == [7, 7], "the clear dropped the entry fleet-wide"


def test_overwrite_elsewhere_drops_the_near_entry(server: RedisServer) -> None:
    @cache(backend="redis", url=server.url)
    def f(x):
        return ("computed", x)

    connected(f)
    assert f(1) == ("computed", 1)
    # Another host writes a new value for the same key (as after an expiry and a recompute).
    tier = f._redis_tier
    key = entry_key(f, 1)
    entry = tier.entry(tier.key_bytes((1,), {}), tier._encode(("elsewhere", 1), False))
    written = time.monotonic()
    server.client().set(key, entry)
    wait_for(lambda: f(1) == ("elsewhere", 1), timeout=2, step=0.001)
    assert time.monotonic() - written < 0.1


def test_ttl_expires_entries_everywhere(server: RedisServer) -> None:
    @cache(backend="redis", url=server.url, ttl=0.3)
    def f(x):
        record(x)
        return x * 10

    connected(f)
    assert f(1) == 10
    pttl = server.client().pttl(entry_key(f, 1))
    assert 0 < pttl <= 300
    assert f(1) == 10 and computations() == [1]
    time.sleep(0.4)
    assert server.client().exists(entry_key(f, 1)) == 0
    assert f(1) == 10
    assert computations() == [1, 1]


def test_eight_hosts_missing_one_key_compute_it_once(server: RedisServer) -> None:
    start = time.time() + 1.5
    env = {"WARP_CACHE_TEST_DELAY": "0.3"}
    procs = [start_host("call-at", str(start), "42", env=env) for _ in range(8)]
    answers = [json.loads(p.communicate(timeout=60)[0].strip()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    results = [a["results"][0] for a in answers]
    assert all(r == results[0] for r in results), "every host got the leader's value"
    assert computations() == [42]


def test_a_killed_leader_lets_another_host_compute(server: RedisServer) -> None:
    env = {"WARP_CACHE_TEST_DELAY": "30", "WARP_CACHE_TEST_LEASE": "0.6"}
    leader = start_host("call", "5", env=env)
    client = server.client()
    wait_for(lambda: computations() == [5], timeout=20)
    assert any(k.endswith(b":lock") for k in client.keys("warp_cache:*"))
    leader.kill()
    leader.wait()
    started = time.monotonic()
    answer = host("call", "5", env={"WARP_CACHE_TEST_DELAY": "0", "WARP_CACHE_TEST_LEASE": "0.6"})
    assert answer["results"][0]["double"] == 10
    assert computations() == [5, 5]
    assert time.monotonic() - started < 5


def test_a_slow_leader_keeps_its_flight(server: RedisServer) -> None:
    """The leader renews its lock: a computation longer than the lease is not duplicated."""
    env = {"WARP_CACHE_TEST_DELAY": "1.0", "WARP_CACHE_TEST_LEASE": "0.3"}
    leader = start_host("call", "6", env=env)
    wait_for(lambda: computations() == [6], timeout=20)
    follower = host("call", "6", env=env)
    assert leader.communicate(timeout=30)[0]
    assert follower["results"][0]["double"] == 12
    assert computations() == [6]


def test_redis_killed_mid_run_then_restarted(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    @cache(max_size=16, backend="redis", url=server.url)
    def f(x):
        record(x)
        return x * 3

    connected(f)
    caplog.set_level(logging.WARNING, logger="warp_cache")
    started = time.monotonic()
    for i in range(200):
        if i == 50:
            server.kill()
        assert f(i % 40) == (i % 40) * 3
    elapsed = time.monotonic() - started
    assert elapsed < 2, f"200 calls took {elapsed:.2f} s with Redis gone"
    warnings = [r for r in caplog.records if "unusable" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    wait_for(lambda: not f.cache_info().connected, timeout=2)  # the channel is found lost
    # Sharing resumes once the server is back: a value computed here reaches another host.
    server.start()
    connected(f)
    keys = iter(range(1000, 2000))
    wait_for(lambda: f(next(keys)) and server.client().dbsize() > 0, timeout=5)
    g = cache(max_size=16, backend="redis", url=server.url)(f.__wrapped__)
    before = len(computations())
    shared = computations()[-1]
    assert g(shared) == shared * 3
    assert len(computations()) == before, "the other near cache read the value from Redis"


def test_a_stopped_server_does_not_stop_the_calls(server: RedisServer) -> None:
    @cache(max_size=16, backend="redis", url=server.url)
    def f(x):
        return -x

    connected(f)
    assert f(1) == -1
    server.stop()
    try:
        started = time.monotonic()
        slowest = 0.0
        for i in range(100):
            t = time.monotonic()
            assert f(i) == -i
            slowest = max(slowest, time.monotonic() - t)
        assert time.monotonic() - started < 2
        assert slowest < 0.5
    finally:
        server.cont()
    # Once the channel is found again, the near cache is coherent again.
    connected(f)
    assert f(2) == -2


def test_a_dropped_channel_flushes_the_near_cache(server: RedisServer) -> None:
    @cache(backend="redis", url=server.url)
    def f(x):
        return x

    connected(f)
    f(1)
    assert f.cache_info().current_size == 1
    server.client().client_kill_filter(_type="pubsub")
    wait_for(lambda: f.cache_info().current_size == 0, timeout=2)
    connected(f)


class _Planted:
    """Unpickling this creates the file it names: proof that a value was decoded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _plant(server: RedisServer, func, marker: Path, tag: bytes | None) -> None:
    tier = func._redis_tier
    key_bytes = tier.key_bytes((1,), {})
    evil = codec_encode(_Planted(str(marker)), False, lambda o: pickle.dumps(o, protocol=5))
    if tag is None:
        head = _redis._ENTRY_MAGIC + bytes([_redis._TAG_NONE])
    else:
        head = _redis._ENTRY_MAGIC + bytes([_redis._TAG_HMAC]) + tag
    raw = head + struct.pack("<I", len(key_bytes)) + key_bytes + evil
    server.client().set(entry_key(func, 1), raw)


def test_a_planted_pickle_is_never_decoded_with_a_secret(
    server: RedisServer, tmp_path: Path
) -> None:
    def make(secret):
        @cache(backend="redis", url=server.url, secret=secret)
        def f(x):
            return {"honest": x}

        return f

    # Control: without a secret the planted bytes are trusted (documented), so this test
    # would see the marker if the secret did not protect it.
    trusting = make(None)
    marker = tmp_path / "decoded-without-secret"
    _plant(server, trusting, marker, None)
    trusting(1)
    assert marker.exists()

    server.client().flushall()
    guarded = make("s3cret")
    for tag in (None, b"\0" * 32):
        marker = tmp_path / f"decoded-{tag is None}"
        _plant(server, guarded, marker, tag)
        guarded.cache_clear()  # a near miss again
        _plant(server, guarded, marker, tag)  # under the new generation
        assert guarded(1) == {"honest": 1}
        assert not marker.exists(), "a value without a valid tag was decoded"
        assert guarded.cache_info().rejected == 1  # counters start again at each clear
        # The honest value replaced the planted one, with a valid tag.
        raw = server.client().get(entry_key(guarded, 1))
        assert guarded._redis_tier.parse(raw, guarded._redis_tier.key_bytes((1,), {}))[0]


def test_a_wrong_secret_is_a_miss(server: RedisServer) -> None:
    def f(x):
        record(x)
        return x

    one = cache(backend="redis", url=server.url, secret="one")(f)
    two = cache(backend="redis", url=server.url, secret="two")(f)
    assert one(1) == 1 and two(1) == 1
    assert computations() == [1, 1]
    assert two.cache_info().rejected == 1


def test_oversize_keys_and_values_are_not_shared(server: RedisServer) -> None:
    @cache(backend="redis", url=server.url, max_key_size=32, max_value_size=64)
    def f(x):
        return x * 2

    connected(f)
    assert f("k" * 100) == "k" * 200
    assert f("v" * 40) == "v" * 80
    assert f("ok") == "okok"
    assert f.cache_info().oversize_skips == 2
    assert len(server.client().keys("warp_cache:*:*:*")) == 1


def test_unpicklable_arguments_and_results_are_cached_near_only(server: RedisServer) -> None:
    lock = threading.Lock()

    @cache(backend="redis", url=server.url)
    def f(x):
        record("f")
        return x if isinstance(x, int) else threading.Lock()

    assert f(lock) is f(lock)  # the key cannot be serialized: near cache only
    assert f(1) == 1
    g = cache(backend="redis", url=server.url)(f.__wrapped__)
    assert g(1) == 1
    assert computations() == ["f", "f"], "the int result was shared"
    result = f(2.5)  # the result cannot be serialized: computed, kept near, not shared
    assert f(2.5) is result
    assert f.cache_info().oversize_skips == 2


def test_exceptions_are_not_cached_and_release_the_flight(server: RedisServer) -> None:
    @cache(backend="redis", url=server.url)
    def f(x):
        record(x)
        if len(computations()) == 1:
            raise KeyError(x)
        return x

    with pytest.raises(KeyError):
        f(1)
    started = time.monotonic()
    assert f(1) == 1
    assert time.monotonic() - started < 0.5, "the failed leader's lock was released"
    assert not server.client().keys("*:lock")


def test_async_functions_use_the_tier(server: RedisServer) -> None:
    async def fetch(x):
        record(x)
        await asyncio.sleep(0.05)
        return {"x": x}

    one = cache(backend="redis", url=server.url)(fetch)
    two = cache(backend="redis", url=server.url)(fetch)

    async def scenario():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        first = await asyncio.gather(*(one(i % 3) for i in range(9)))
        second = await asyncio.gather(*(two(i) for i in range(3)))
        task.cancel()
        return first, second, ticks

    first, second, ticks = asyncio.run(scenario())
    assert first == [{"x": i % 3} for i in range(9)]
    assert second == [{"x": i} for i in range(3)]
    assert sorted(computations()) == [0, 1, 2], "the second near cache read Redis"
    assert ticks > 5, "the event loop kept running"
    assert two.cache_info().remote_hits == 3


def test_async_calls_keep_returning_when_redis_is_stopped(server: RedisServer) -> None:
    @cache(backend="redis", url=server.url)
    async def f(x):
        return x + 1

    connected(f)
    server.stop()
    try:

        async def run():
            return [await f(i) for i in range(30)]

        started = time.monotonic()
        assert asyncio.run(run()) == list(range(1, 31))
        assert time.monotonic() - started < 2
    finally:
        server.cont()
