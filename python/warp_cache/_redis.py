"""backend="redis": a near cache (the memory backend) in front of a Redis/Valkey server.

A decorated function's near cache is the Rust memory store, whose misses call
:meth:`RedisTier.load`: it reads the function's entry from Redis, else leads (or waits
for) the fleet-wide computation and writes the result with the TTL. Coherence comes from
Redis's client tracking in broadcast mode: each process keeps one subscriber connection per
server, tracking the key prefix of every function it caches; a write, expiry or clear of one
of those keys anywhere drops the near entry here. A lost channel flushes the near caches.

Keys (``{...}`` is a Redis Cluster hash tag: one function's keys share a slot):

- ``warp_cache:{<identity>}:gen``: the generation, bumped by ``cache_clear()``;
- ``warp_cache:{<identity>}:<generation>:<key hash>``: an entry (``_Entry`` format);
- ``warp_cache:{<identity>}:<generation>:<key hash>:lock``: the fleet-wide flight's lock.

Redis trouble never reaches the caller: every Redis operation has a short timeout, a
circuit breaker (``_Link``) skips Redis while it is unusable, and the function is computed
locally instead. See docs/redis-backend.md.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import os
import pickle
import struct
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from warp_cache._api import RedisCacheInfo

logger = logging.getLogger("warp_cache")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
# Connect and read timeouts of the data connections (seconds); a URL's own
# `socket_timeout` / `socket_connect_timeout` query parameters take precedence.
TIMEOUT = 0.05
# How long the breaker keeps calls away from an unusable server before one call probes it.
BREAKER_OPEN = 0.5
# A fleet-wide flight's lock lives this long unless its leader renews it (every third of it,
# while computing); a leader that died lets the lock expire and another caller computes.
LOCK_LEASE = 3.0
# Sleeps of a flight's waiter between looks at Redis (first, longest): the invalidation of
# the entry or of the lock usually wakes it sooner.
WAIT_POLL = (0.002, 0.05)
# The subscriber pings an idle channel this often, and gives it up when no answer came
# within CHANNEL_DEADLINE; reconnecting backs off up to RECONNECT_MAX.
CHANNEL_PING = 0.25
CHANNEL_DEADLINE = 1.0
RECONNECT_MAX = 1.0

_ENTRY_MAGIC = b"W1"
_TAG_NONE, _TAG_HMAC = 0, 1
_TAG_SIZE = 32  # HMAC-SHA256
_SCALARS = (int, str, float, bytes, bool, type(None))

# Publish a computed entry and release the flight's lock (if still ours) in one step.
_PUBLISH = """
if tonumber(ARGV[2]) > 0 then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('set', KEYS[1], ARGV[1])
end
if redis.call('get', KEYS[2]) == ARGV[3] then redis.call('del', KEYS[2]) end
return 1
"""
# A near miss's look and claim in one round trip: the entry, else the lock if it is free.
_CLAIM = """
local value = redis.call('get', KEYS[1])
if value then return {1, value} end
if redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {3}
"""
_CLAIM_FOUND, _CLAIM_LOCKED = 1, 2
_UNLOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


class _Unavailable(Exception):
    """Redis cannot be used right now (the breaker is open, or the operation failed)."""


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend='redis' needs the redis package: pip install 'warp_cache[redis]'"
        ) from exc
    return redis


class _Link:
    """One process's connections to one server: a pool for data, a circuit breaker, and a
    subscriber thread receiving invalidations for the prefixes of every tier using it."""

    def __init__(self, url: str) -> None:
        redis = _import_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.pid = os.getpid()
        options: dict[str, Any] = {
            "socket_timeout": TIMEOUT,
            "socket_connect_timeout": TIMEOUT,
            # No client-side retries: the breaker decides when to try again.
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
        }
        self.client = redis.Redis.from_url(url, **options)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._connection_errors: tuple[type[BaseException], ...] = (
            redis.ConnectionError,
            redis.TimeoutError,
            OSError,
        )
        self.claim = self.client.register_script(_CLAIM)
        self.publish = self.client.register_script(_PUBLISH)
        self.unlock = self.client.register_script(_UNLOCK)
        self.renew = self.client.register_script(_RENEW)
        self._lock = threading.Lock()
        self._usable = True
        self._retry_at = 0.0
        self._probing = False
        # Tiers by key prefix; the subscriber tracks these prefixes. Weak: a discarded
        # cached function goes (its prefix stays tracked until the process ends).
        self._tiers: dict[str, weakref.WeakSet[RedisTier]] = {}
        self._changed = threading.Event()  # a prefix was added: track it too
        # Prefixes of the tiers whose invalidations arrive now (empty: channel down).
        self.tracked: frozenset[str] = frozenset()
        self.epoch = 0  # bumped each time tracking is established
        self._thread: threading.Thread | None = None
        # Locks of the flights this process leads, renewed until released.
        self._leases: dict[tuple[str, bytes], None] = {}
        self._renewer: threading.Thread | None = None

    # -- the breaker ----------------------------------------------------------------------

    def run(self, op: Callable[[Any], Any]) -> Any:
        """`op(client)`, or `_Unavailable` when Redis cannot be used now."""
        probe = False
        if not self._usable:
            with self._lock:
                if self._probing or time.monotonic() < self._retry_at:
                    raise _Unavailable
                # This call probes; the others keep computing locally meanwhile.
                self._probing = probe = True
        try:
            result = op(self.client)
        except self._connection_errors as exc:
            self._trip(exc)
            raise _Unavailable from exc
        except self._errors as exc:  # a command error: this operation only
            raise _Unavailable from exc
        finally:
            if probe:
                with self._lock:
                    self._probing = False
        if not self._usable:
            with self._lock:
                if not self._usable:
                    self._usable = True
                    logger.info("Redis at %s is usable again", _redacted(self.url))
        return result

    def _trip(self, exc: BaseException) -> None:
        # The pool's other connections are likely broken too (a restarted server): the
        # probe must not fail on one of them.
        self.client.connection_pool.disconnect()
        with self._lock:
            self._retry_at = time.monotonic() + BREAKER_OPEN
            if self._usable:
                self._usable = False
                logger.warning(
                    "Redis at %s is unusable (%s: %s); cached functions compute locally "
                    "until it answers again",
                    _redacted(self.url),
                    type(exc).__name__,
                    exc,
                )

    # -- leases of fleet-wide flights -----------------------------------------------------

    def hold(self, lock: str, token: bytes) -> None:
        """Renews `lock` (ours while it holds `token`) until `release`: a slow computation
        keeps its flight, a dead process's lock expires after LOCK_LEASE."""
        with self._lock:
            self._leases[(lock, token)] = None
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew, name="warp_cache-redis-leases", daemon=True
                )
                self._renewer.start()

    def release(self, lock: str, token: bytes) -> None:
        with self._lock:
            self._leases.pop((lock, token), None)

    def _renew(self) -> None:
        lease = int(LOCK_LEASE * 1000)
        while True:
            time.sleep(LOCK_LEASE / 3)
            with self._lock:
                held = list(self._leases)
            for lock, token in held:
                try:
                    self.run(functools.partial(self._renew_one, lock, token, lease))
                except _Unavailable:
                    break

    def _renew_one(self, lock: str, token: bytes, lease_ms: int, client: Any) -> Any:
        return self.renew([lock], [token, lease_ms], client=client)

    # -- invalidations --------------------------------------------------------------------

    def register(self, tier: RedisTier) -> None:
        with self._lock:
            tiers = self._tiers.get(tier.prefix)
            if tiers is None:
                tiers = self._tiers[tier.prefix] = weakref.WeakSet()
                self._changed.set()
            tiers.add(tier)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._subscribe, name="warp_cache-redis-invalidations", daemon=True
                )
                self._thread.start()

    def _all_tiers(self) -> list[RedisTier]:
        with self._lock:
            return [tier for tiers in self._tiers.values() for tier in tiers]

    def _flush_all(self) -> None:
        for tier in self._all_tiers():
            tier.flush_near()

    def _subscribe(self) -> None:
        """The subscriber thread: keeps a channel tracking every registered prefix and
        dispatches its invalidations. A lost channel flushes the near caches; a prefix
        registered later gets a new channel before the old one is closed, so that no write
        goes unreported meanwhile and the other near caches stay."""
        backoff = 0.05
        channel: Any = None
        while True:
            try:
                fresh, prefixes = self._open_channel()
            except Exception as exc:
                self._lose(channel, exc)
                channel = None
                time.sleep(backoff)
                backoff = min(2 * backoff, RECONNECT_MAX)
                continue
            backoff = 0.05
            if channel is None:
                # Nothing was reported since the channel was lost (or ever): drop what
                # was loaded meanwhile, then serve coherently.
                self.epoch += 1
                self._flush_all()
            else:
                # Both channels report every write made since `fresh` began tracking; what
                # the old one holds came before: take it, then close it.
                try:
                    while channel.can_read(timeout=0):
                        self._dispatch(channel.read_response())
                except Exception:
                    pass
                channel.disconnect()
                for tier in self._all_tiers():
                    if tier.prefix not in self.tracked:
                        tier.flush_near()  # loaded before its prefix was tracked
            self.tracked = frozenset(prefixes)
            self._retry_at = 0.0  # the server answers: let the next call probe it
            channel = fresh
            try:
                self._listen(channel)
            except Exception as exc:
                self._lose(channel, exc)
                channel = None
                time.sleep(backoff)

    def _lose(self, channel: Any, exc: BaseException) -> None:
        if self.tracked:
            logger.debug("invalidation channel to %s lost: %r", _redacted(self.url), exc)
        self.tracked = frozenset()
        if channel is not None:
            channel.disconnect()
        # Never serve beyond a lost channel: whatever the near caches hold now may have
        # been changed elsewhere meanwhile. Flushed again when it is back.
        self._flush_all()

    def _open_channel(self) -> tuple[Any, list[str]]:
        """A connection tracking every registered prefix, redirecting the invalidations
        to itself as pub/sub messages (RESP2)."""
        redis = _import_redis()
        options = redis.connection.parse_url(self.url)
        connection_class = options.pop("connection_class", redis.Connection)
        options.update(
            socket_timeout=CHANNEL_DEADLINE, socket_connect_timeout=CHANNEL_DEADLINE, protocol=2
        )
        conn = connection_class(**options)
        try:
            conn.connect()
            self._changed.clear()
            with self._lock:
                prefixes = sorted(self._tiers)
            conn.send_command("CLIENT", "ID")
            client_id = conn.read_response()
            tracking: list[Any] = ["CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST"]
            for prefix in prefixes:
                tracking += ["PREFIX", prefix]
            conn.send_command(*tracking)
            conn.read_response()
            conn.send_command("SUBSCRIBE", "__redis__:invalidate")
            conn.read_response()
        except BaseException:
            conn.disconnect()
            raise
        return conn, prefixes

    def _listen(self, conn: Any) -> None:
        """Dispatches invalidations until a prefix is added; raises when the channel is
        lost or stops answering its pings."""
        last_heard = time.monotonic()
        ping_sent: float | None = None
        while not self._changed.is_set():
            if conn.can_read(timeout=CHANNEL_PING / 5):
                message = conn.read_response()
                last_heard, ping_sent = time.monotonic(), None
                self._dispatch(message)
                continue
            now = time.monotonic()
            if ping_sent is None and now - last_heard > CHANNEL_PING:
                conn.send_command("PING")
                ping_sent = now
            elif ping_sent is not None and now - ping_sent > CHANNEL_DEADLINE:
                raise TimeoutError("the invalidation channel stopped answering")

    def _dispatch(self, message: Any) -> None:
        if not isinstance(message, list) or len(message) < 3 or message[0] != b"message":
            return  # a pong or a subscription confirmation
        keys = message[2]
        if keys is None:  # FLUSHALL / FLUSHDB: everything is gone
            self._flush_all()
            return
        for raw in keys:
            key = raw.decode("utf-8", "replace")
            end = key.find("}:")
            if end < 0:
                continue
            prefix, rest = key[: end + 2], key[end + 2 :]
            with self._lock:
                tiers = list(self._tiers.get(prefix, ()))
            for tier in tiers:
                try:
                    tier.invalidated(rest)
                except Exception:  # a near cache that cannot drop one entry drops all
                    logger.debug("invalidation of %s failed", key, exc_info=True)
                    tier.flush_near()


def _redacted(url: str) -> str:
    """`url` without its password, for log messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest


_links: dict[str, _Link] = {}
_links_lock = threading.Lock()


def _link_for(url: str) -> _Link:
    with _links_lock:
        link = _links.get(url)
        if link is None or link.pid != os.getpid():
            link = _links[url] = _Link(url)
        return link


def _forget_links() -> None:
    """In a forked child: the parent's subscriber thread and sockets are not ours."""
    global _links, _links_lock
    _links, _links_lock = {}, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_links)


class _Flight(NamedTuple):
    """One near miss under way: where its entry lives and what this caller holds."""

    rest: str  # "<generation>:<key hash>", after the prefix
    key: str  # the entry's Redis key
    lock: str  # the flight's lock key
    key_bytes: bytes
    near_key: object  # the call's key in the near cache
    token: bytes  # the lock's owner token if this caller leads, else b""


_HIT, _LEAD, _WAIT, _LOCAL = range(4)


class RedisTier:
    """The remote tier of one decorated function (see the module docstring)."""

    def __init__(
        self,
        func: Any,
        url: str,
        secret: bytes | None,
        ttl: float | None,
        max_size: int,
        max_key_size: int,
        max_value_size: int,
        settle: Callable[[], int],
        identity: int | None,
        kw_mark: object,
    ) -> None:
        self.func = func
        self.url = url
        self.secret = secret
        self.ttl = ttl
        self.ttl_ms = 0 if ttl is None else max(1, int(ttl * 1000))
        self.max_size = max_size
        self.max_key_size = max_key_size
        self.max_value_size = max_value_size
        self._settle = settle
        self._identity = identity
        self._kw_mark = kw_mark
        self._encode = _encode
        self._decode = _decode
        self.near: Any = None  # the memory-backend cached callable, set by the decorator
        self._link: _Link | None = None
        self._generation: int | None = None
        # Entry name ("<generation>:<hash>") -> near key, for each near entry that came from
        # or went to Redis, so that an invalidation can drop it; bounded (see _remember).
        self._near_keys: dict[str, object] = {}
        # Entries being loaded now -> whether an invalidation arrived meanwhile.
        self._loading: dict[str, bool] = {}
        # Entries this process wrote while tracked -> (the channel's epoch then, how many of
        # their invalidations are still to come back): those leave the near entry alone.
        # Counted only within one epoch of the channel, whose every write it reports.
        self._own_writes: dict[str, tuple[int, int]] = {}
        # Waiters of flights led elsewhere, woken by the entry's or the lock's invalidation.
        self._waiters: dict[str, threading.Event] = {}
        self.remote_hits = 0
        self.remote_misses = 0
        self.remote_errors = 0
        self.rejected = 0
        self.oversize_skips = 0

    # -- identity and connection ----------------------------------------------------------

    @property
    def identity(self) -> str:
        if self._identity is None:
            self._identity = self._settle()
        return f"{self._identity:016x}"

    @property
    def prefix(self) -> str:
        return f"warp_cache:{{{self.identity}}}:"

    def link(self) -> _Link:
        link = self._link
        if link is None or link.pid != os.getpid():
            link = self._link = _link_for(self.url)
            link.register(self)
            self._generation = None
        return link

    def _run(self, op: Callable[[Any], Any]) -> Any:
        try:
            return self.link().run(op)
        except _Unavailable:
            self.remote_errors += 1
            raise

    def generation(self) -> int:
        generation = self._generation
        if generation is None:
            gen_key = self.prefix + "gen"
            raw = self._run(lambda client: client.get(gen_key))
            generation = self._generation = int(raw or 0)
        return generation

    # -- keys and entries -----------------------------------------------------------------

    def near_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
        """The key the memory backend builds for this call (src/py/key.rs)."""
        if not kwargs:
            if len(args) == 1 and type(args[0]) in _SCALARS:
                return args[0]
            return args
        flat: list[object] = [*args, self._kw_mark]
        for name in sorted(kwargs):
            flat += [name, kwargs[name]]
        return tuple(flat)

    def key_bytes(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """The call's key in the shared backend's byte format; keywords sorted by name and
        kept apart from positional arguments."""
        call = (args, tuple(sorted(kwargs.items()))) if kwargs else (args,)
        return self._encode(call, True)

    def _tag(self, key_bytes: bytes, value_bytes: bytes) -> bytes:
        assert self.secret is not None
        mac = hmac.new(self.secret, digestmod=hashlib.sha256)
        mac.update(b"warp_cache\0" + self.identity.encode() + b"\0")
        mac.update(struct.pack("<I", len(key_bytes)) + key_bytes)
        mac.update(value_bytes)
        return mac.digest()

    def entry(self, key_bytes: bytes, value_bytes: bytes) -> bytes:
        """An entry: magic, tag kind, [HMAC-SHA256 tag], key length, key bytes, value."""
        if self.secret is None:
            head = _ENTRY_MAGIC + bytes([_TAG_NONE])
        else:
            head = _ENTRY_MAGIC + bytes([_TAG_HMAC]) + self._tag(key_bytes, value_bytes)
        return head + struct.pack("<I", len(key_bytes)) + key_bytes + value_bytes

    def parse(self, raw: bytes, key_bytes: bytes) -> tuple[bool, Any]:
        """(True, value) if `raw` is a valid entry of exactly this key; (False, None)
        otherwise. With a secret, nothing is decoded before its tag is checked."""
        if raw[:2] != _ENTRY_MAGIC or len(raw) < 3:
            return False, None
        kind, at = raw[2], 3
        tag = b""
        if kind == _TAG_HMAC:
            tag, at = raw[at : at + _TAG_SIZE], at + _TAG_SIZE
        elif kind != _TAG_NONE:
            return False, None
        if self.secret is not None and kind != _TAG_HMAC:
            return False, None
        if len(raw) < at + 4:
            return False, None
        (length,) = struct.unpack_from("<I", raw, at)
        at += 4
        stored_key, value_bytes = raw[at : at + length], raw[at + length :]
        if stored_key != key_bytes:  # another key with the same hash, or a truncated entry
            return False, None
        if self.secret is not None and not hmac.compare_digest(
            tag, self._tag(key_bytes, value_bytes)
        ):
            return False, None
        try:
            return True, self._decode(value_bytes)
        except Exception:  # bytes that do not decode: a miss, overwritten by the leader
            return False, None

    # -- near cache -------------------------------------------------------------------------

    def _remember(self, rest: str, near_key: object) -> None:
        keys = self._near_keys
        keys.pop(rest, None)
        keys[rest] = near_key
        if len(keys) > 2 * self.max_size + 16:
            # The oldest names may still have near entries: drop those too, so that every
            # near entry Redis can change stays reachable by its invalidation.
            for old in list(keys)[: len(keys) // 2]:
                stale = keys.pop(old, None)
                if stale is not None:
                    self.near._forget(stale)

    def flush_near(self) -> None:
        self._generation = None
        self._near_keys.clear()
        self._own_writes.clear()
        for name in list(self._loading):
            self._loading[name] = True
        if self.near is not None:
            self.near._flush()
        for event in list(self._waiters.values()):
            event.set()

    def _own_write_returned(self, rest: str) -> bool:
        epoch, count = self._own_writes.pop(rest, (-1, 0))
        if epoch != self.link().epoch or count == 0:
            return False
        if count > 1:
            self._own_writes[rest] = (epoch, count - 1)
        return True

    def invalidated(self, rest: str) -> None:
        """The subscriber thread: Redis says the key `prefix + rest` changed."""
        if rest == "gen":  # a fleet-wide clear
            self.flush_near()
            return
        if rest.endswith(":lock"):
            rest = rest[: -len(":lock")]
        elif self._own_write_returned(rest):
            # Our own write coming back (messages keep the order of the writes: a write
            # made elsewhere just before ours drops the entry on our write's message).
            pass
        else:
            if rest in self._loading:
                self._loading[rest] = True
            near_key = self._near_keys.pop(rest, None)
            if near_key is not None:
                self.near._forget(near_key)
        event = self._waiters.pop(rest, None)
        if event is not None:
            event.set()

    # -- one near miss, in steps shared by the sync and async paths -------------------------

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, Any]:
        """(HIT, value), (LEAD, flight), (WAIT, flight) or (LOCAL, None)."""
        try:
            key_bytes = self.key_bytes(args, kwargs)
        except Exception:  # arguments pickle cannot take (a lock): cached here only
            self.oversize_skips += 1
            return _LOCAL, None
        if len(key_bytes) > self.max_key_size:
            self.oversize_skips += 1
            return _LOCAL, None
        try:
            generation = self.generation()
        except _Unavailable:
            return _LOCAL, None
        rest = f"{generation}:{hashlib.blake2b(key_bytes, digest_size=16).hexdigest()}"
        key = self.prefix + rest
        flight = _Flight(rest, key, key + ":lock", key_bytes, self.near_key(args, kwargs), b"")
        for attempt in range(3):
            self._loading[rest] = False
            try:
                found, value = self._look(flight)
            except _Unavailable:
                return _LOCAL, None
            finally:
                changed = self._loading.pop(rest, False)
            if not found:
                break
            # An invalidation that came while it was read may be of a newer value: read
            # again (a few times at most; each value read was the latest when read).
            if not changed or attempt == 2:
                self.remote_hits += 1
                self._remember(rest, flight.near_key)
                return _HIT, value
        self.remote_misses += 1
        return self.step(flight)

    def _look(self, flight: _Flight) -> tuple[bool, Any]:
        raw = self._run(lambda client: client.get(flight.key))
        if raw is None:
            return False, None
        found, value = self.parse(raw, flight.key_bytes)
        if not found:
            self.rejected += 1
        return found, value

    def step(self, flight: _Flight) -> tuple[int, Any]:
        """One step of a near miss that Redis did not serve: the entry if it is there now,
        else the flight's lock if it is free (then this caller leads), else wait."""
        token = os.urandom(16)
        lease = int(LOCK_LEASE * 1000)
        try:
            reply = self._run(
                lambda client: self.link().claim([flight.key, flight.lock], [token, lease])
            )
            if int(reply[0]) == _CLAIM_FOUND:
                found, value = self.parse(reply[1], flight.key_bytes)
                if found:
                    self._served(flight)
                    return _HIT, value
                # An entry refused (counted by the first look): the lock decides alone.
                won = self._run(lambda client: client.set(flight.lock, token, nx=True, px=lease))
            else:
                won = int(reply[0]) == _CLAIM_LOCKED
        except _Unavailable:
            return _LOCAL, None
        if not won:
            return _WAIT, flight
        self.link().hold(flight.lock, token)
        return _LEAD, flight._replace(token=token)

    def _served(self, flight: _Flight) -> None:
        """Another caller's computation served this near miss, counted as a remote miss
        when it began: a remote hit after all."""
        self.remote_hits += 1
        self.remote_misses -= 1
        self._remember(flight.rest, flight.near_key)

    def waiter(self, flight: _Flight) -> threading.Event:
        return self._waiters.setdefault(flight.rest, threading.Event())

    def finish(self, flight: _Flight | None, value: object) -> None:
        """Publishes a value computed by this caller (leading `flight`, or alone)."""
        if flight is None:
            return
        self.link().release(flight.lock, flight.token)
        value_bytes: bytes | None = None
        try:
            value_bytes = self._encode(value, False)
        except Exception:  # not encodable (pickle refused it): not shared
            self.oversize_skips += 1
        if value_bytes is not None and len(value_bytes) > self.max_value_size:
            self.oversize_skips += 1
            value_bytes = None
        try:
            if value_bytes is None:
                self._run(lambda client: self.link().unlock([flight.lock], [flight.token]))
                return
            entry = self.entry(flight.key_bytes, value_bytes)
            link = self.link()
            if self.prefix in link.tracked:  # its invalidation will come back on this epoch
                epoch, count = self._own_writes.get(flight.rest, (link.epoch, 0))
                if epoch == link.epoch:
                    self._own_writes[flight.rest] = (epoch, count + 1)
            self._run(
                lambda client: self.link().publish(
                    [flight.key, flight.lock], [entry, self.ttl_ms, flight.token]
                )
            )
            self._remember(flight.rest, flight.near_key)
        except _Unavailable:
            pass

    def abandon(self, flight: _Flight | None) -> None:
        """The leader's computation raised: release the lock for another caller."""
        if flight is None:
            return
        self.link().release(flight.lock, flight.token)
        try:
            self._run(lambda client: self.link().unlock([flight.lock], [flight.token]))
        except _Unavailable:
            pass

    # -- the near cache's loaders -----------------------------------------------------------

    def load(self, *args: Any, **kwargs: Any) -> Any:
        """A near miss of a plain function."""
        state, payload = self.begin(args, kwargs)
        delay = WAIT_POLL[0]
        deadline = time.monotonic() + 4 * LOCK_LEASE
        while state == _WAIT:
            if time.monotonic() > deadline:  # a leader that keeps renewing: do it here
                state, payload = _LOCAL, None
                break
            if not self.waiter(payload).wait(delay):  # not woken: poll less often
                delay = min(2 * delay, WAIT_POLL[1])
            state, payload = self.step(payload)
        if state == _HIT:
            return payload
        flight = payload if state == _LEAD else None
        try:
            value = self.func(*args, **kwargs)
        except BaseException:
            self.abandon(flight)
            raise
        self.finish(flight, value)
        return value

    async def load_async(self, *args: Any, **kwargs: Any) -> Any:
        """A near miss of an async function: Redis is used from worker threads."""
        state, payload = await asyncio.to_thread(self.begin, args, kwargs)
        delay = WAIT_POLL[0]
        deadline = time.monotonic() + 4 * LOCK_LEASE
        while state == _WAIT:
            if time.monotonic() > deadline:
                state, payload = _LOCAL, None
                break
            event = self.waiter(payload)
            waited = 0.0
            while not event.is_set() and waited < delay:
                await asyncio.sleep(WAIT_POLL[0])
                waited += WAIT_POLL[0]
            delay = min(2 * delay, WAIT_POLL[1])
            state, payload = await asyncio.to_thread(self.step, payload)
        if state == _HIT:
            return payload
        flight = payload if state == _LEAD else None
        try:
            value = await self.func(*args, **kwargs)
        except BaseException:
            await asyncio.to_thread(self.abandon, flight)
            raise
        await asyncio.to_thread(self.finish, flight, value)
        return value

    def attach(
        self,
        make_memory_cache: Callable[..., Any],
        info_type: type,
        is_async: bool,
        async_fill: Any,
    ) -> Any:
        """The near cache: a memory-backend cached callable whose misses load through
        this tier; its `cache_clear` and `cache_info` are this tier's."""
        loader = self.load_async if is_async else self.load
        near = make_memory_cache(
            loader, self.max_size, self.ttl, None, info_type, self._kw_mark, async_fill
        )
        self.near = near
        # Instance attributes win over the type's methods: fleet-wide clear, remote fields.
        near.cache_clear = self.cache_clear
        near.cache_info = self.cache_info
        # Per-entry control would act on this host's near cache only: refused until it is
        # fleet-wide.
        for name in ("cache_invalidate", "cache_peek", "cache_set", "cache_refresh"):
            setattr(near, name, _not_fleet_wide(name))
        near._redis_tier = self
        if self._identity is not None:
            self.link()  # track now, so that the first calls can already stay near
        return near

    # -- the decorated function's methods ---------------------------------------------------

    def cache_clear(self) -> None:
        """Clears the function's entries fleet-wide (a new generation) and the near cache."""
        gen_key = self.prefix + "gen"
        try:
            self._generation = int(self._run(lambda client: client.incr(gen_key)))
        except _Unavailable:
            logger.warning(
                "cache_clear() of %s could not reach Redis at %s: only this process's "
                "near cache was cleared",
                getattr(self.func, "__qualname__", self.func),
                _redacted(self.url),
            )
            self._generation = None
        self._near_keys.clear()
        type(self.near).cache_clear(self.near)  # the type's: clears near entries and counters
        self.remote_hits = self.remote_misses = self.remote_errors = 0
        self.rejected = self.oversize_skips = 0

    def cache_info(self) -> RedisCacheInfo:
        near = self.near.__class__.cache_info(self.near)
        link = self._link
        return RedisCacheInfo(
            near.hits,
            near.misses,
            near.max_size,
            near.current_size,
            self.remote_hits,
            self.remote_misses,
            self.remote_errors,
            self.rejected,
            self.oversize_skips,
            bool(link is not None and self.prefix in link.tracked),
        )


def _dumps(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=5)


def _encode(obj: object, canonical: bool) -> bytes:
    """`obj` in the shared backend's byte format (keys: `canonical`)."""
    from warp_cache import _warp_cache

    return _warp_cache.codec_encode(obj, canonical, _dumps)


def _decode(data: bytes) -> object:
    from warp_cache import _warp_cache

    return _warp_cache.codec_decode(data, pickle.loads)


def _not_fleet_wide(name: str) -> Callable[..., Any]:
    def refuse(*args: object, **kwargs: object) -> Any:
        raise NotImplementedError(
            f"{name}() is not supported with backend='redis' yet: it would act on this "
            "host's near cache only (cache_clear() is fleet-wide)"
        )

    return refuse
