//! The memory backend behind a cached callable: Python objects in a sharded SIEVE store.

use super::cached::{call_owned, Backend, Core, Lookup};
use super::counters::Counters;
use super::flight::Flights;
use super::key::{CallKey, PyKey};
use super::object::{ErrSet, PyObj, PyResult};
use crate::clock;
use crate::memory::{Candidate, Get, Insert, Remove, Shard, Store, Verdict};
use crate::py::ffi;

#[cfg(not(Py_GIL_DISABLED))]
type Guard<T> = super::gil_lock::GilLock<T>;
#[cfg(Py_GIL_DISABLED)]
type Guard<T> = crate::sync::ShardedLock<T>;

type MemoryStore = Store<PyKey, PyObj, Guard<Shard<PyKey, PyObj>>>;

/// Rounds of "compare outside the lock, probe again" before a call gives up and treats the
/// lookup as a miss (each round only happens when a foreign `__eq__` changed the cache).
const COMPARE_ROUNDS: usize = 8;

/// Caches up to this size are one shard, so their eviction order is exact SIEVE.
const SINGLE_SHARD_MAX: usize = 1024;

/// Shards for a cache of `max_size`. With the GIL there is no parallelism to gain, so one
/// shard keeps SIEVE exact; free-threaded builds split large caches so writers to
/// different shards do not wait on each other.
fn shard_count(max_size: usize) -> usize {
    if cfg!(Py_GIL_DISABLED) && max_size > SINGLE_SHARD_MAX {
        (max_size / SINGLE_SHARD_MAX).clamp(1, 16)
    } else {
        1
    }
}

/// In-process entries and counters.
pub struct MemoryBackend {
    store: MemoryStore,
    ttl_nanos: Option<u64>,
    /// `serve_stale` in nanoseconds (0: off): how long past its expiry an entry is still
    /// returned while one caller refreshes it.
    stale_nanos: u64,
    counters: Counters,
    flights: Flights<PyKey>,
}

/// A memory-backend key: the key object, its hash, and equality verdicts already reached.
pub struct MemoryKey {
    key: CallKey,
    hash: u64,
    verdicts: Vec<Verdict>,
}

impl MemoryBackend {
    /// An empty cache of at most `max_size` entries living `ttl_nanos` each, served stale
    /// for `stale_nanos` more (0: not at all).
    pub fn new(max_size: usize, ttl_nanos: Option<u64>, stale_nanos: u64) -> Self {
        Self {
            store: Store::new(max_size, shard_count(max_size)),
            ttl_nanos,
            stale_nanos,
            counters: Counters::default(),
            flights: Flights::default(),
        }
    }

    #[inline]
    fn now(&self) -> u64 {
        clock::now_for(self.ttl_nanos)
    }

    /// Drops the entry of the key object `obj` (built like a call's key), if any: a near
    /// cache's answer to an invalidation. Counters are left alone.
    ///
    /// # Safety
    /// `obj` and `kw_mark` are valid objects alive for the whole call.
    pub unsafe fn forget(
        &self,
        obj: *mut ffi::PyObject,
        kw_mark: *mut ffi::PyObject,
    ) -> PyResult<bool> {
        // SAFETY: as the caller promises.
        let key = unsafe { self.key_from_object(obj, kw_mark)? };
        Backend::invalidate(self, key)
    }

    /// Drops every entry but keeps the counters (a near cache whose remote tier changed).
    pub fn flush(&self) {
        // Dropped after every shard lock is released: finalizers may call back in.
        drop(self.store.clear());
    }

    /// Every stored key and value not being written right now (GC traversal).
    pub fn for_each_unlocked(&self, f: impl FnMut(&PyKey, &PyObj)) {
        self.store.for_each_unlocked(f);
    }
}

impl MemoryBackend {
    /// The key of a call ([`Backend::call_key`]).
    ///
    /// # Safety
    /// The arguments are as the vectorcall protocol delivers them.
    #[inline(always)]
    unsafe fn key(
        &self,
        args: *const *mut ffi::PyObject,
        nargs: usize,
        kwnames: *mut ffi::PyObject,
        kw_mark: *mut ffi::PyObject,
    ) -> PyResult<MemoryKey> {
        // SAFETY: vectorcall arguments, as the caller promises.
        let key = unsafe { CallKey::build(args, nargs, kwnames, kw_mark)? };
        let hash = key.hash()?;
        Ok(MemoryKey {
            key,
            hash,
            verdicts: Vec::new(),
        })
    }

    /// Probes with `look` (a get or a peek) until decided, comparing foreign keys outside
    /// every lock; counts nothing.
    #[inline(always)]
    fn decide(
        &self,
        key: &mut MemoryKey,
        look: impl Fn(&MemoryKey) -> Get<PyKey, PyObj>,
    ) -> PyResult<Option<PyObj>> {
        for _ in 0..COMPARE_ROUNDS {
            match look(key) {
                Get::Hit(value) => return Ok(Some(value)),
                Get::Miss => break,
                Get::Undecided(candidates) => {
                    compare_outside(candidates, key.key.probe(), &mut key.verdicts)?
                }
            }
        }
        Ok(None)
    }

    /// A missed key's entry if it expired less than `serve_stale` ago: served stale (the
    /// miss becomes a hit) while the caller starts a refresh. Off the hit path.
    #[cold]
    #[inline(never)]
    fn stale(&self, mut key: MemoryKey) -> PyResult<Lookup<MemoryKey>> {
        // Live at `now - serve_stale` means expired less than `serve_stale` ago.
        let then = self.now().saturating_sub(self.stale_nanos);
        Ok(match self.peek_at(&mut key, then)? {
            Some(value) => {
                self.counters.miss_to_hit();
                Lookup::Stale(value, key)
            }
            None => Lookup::Miss(key),
        })
    }

    fn peek_at(&self, key: &mut MemoryKey, now: u64) -> PyResult<Option<PyObj>> {
        self.decide(key, |k| {
            self.store.peek(k.hash, k.key.probe(), &k.verdicts, now)
        })
    }
}

impl Backend for MemoryBackend {
    #[inline(always)]
    fn of(core: &Core) -> Option<&Self> {
        match core {
            Core::Memory(backend) => Some(backend),
            #[cfg(unix)]
            _ => None,
        }
    }

    type Key = MemoryKey;

    /// The hit path has its own inlined copy ([`MemoryBackend::key`]).
    #[inline(never)]
    unsafe fn call_key(
        &self,
        args: *const *mut ffi::PyObject,
        nargs: usize,
        kwnames: *mut ffi::PyObject,
        kw_mark: *mut ffi::PyObject,
    ) -> PyResult<MemoryKey> {
        // SAFETY: vectorcall arguments, as the caller promises.
        unsafe { self.key(args, nargs, kwnames, kw_mark) }
    }

    #[inline(always)]
    unsafe fn lookup_call(
        &self,
        args: *const *mut ffi::PyObject,
        nargs: usize,
        kwnames: *mut ffi::PyObject,
        kw_mark: *mut ffi::PyObject,
    ) -> PyResult<Lookup<MemoryKey>> {
        // SAFETY: vectorcall arguments, as the caller promises.
        let mut key = unsafe { self.key(args, nargs, kwnames, kw_mark)? };
        Ok(match self.lookup(&mut key)? {
            Some(value) => Lookup::Hit(value),
            None if self.stale_nanos == 0 => Lookup::Miss(key),
            None => self.stale(key)?,
        })
    }

    /// The call key's word and the hash. Verdicts are dropped: they only spare the insert
    /// comparisons with entries of an equal hash, which it then makes again (keys with a
    /// foreign `__eq__` whose hash collides with a stored key's: rare).
    #[inline(always)]
    fn key_into_words(key: MemoryKey) -> [usize; 2] {
        [key.key.into_word(), key.hash as usize]
    }

    #[inline(always)]
    unsafe fn key_from_words([key, hash]: [usize; 2]) -> MemoryKey {
        MemoryKey {
            // SAFETY: a word of `into_word`, used once, as the caller promises.
            key: unsafe { CallKey::from_word(key) },
            hash: hash as u64,
            verdicts: Vec::new(),
        }
    }

    /// Probes until decided, comparing foreign keys outside every lock. Always inlined:
    /// the hit path and a flight leader's second look each get their own copy.
    #[inline(always)]
    fn lookup(&self, key: &mut MemoryKey) -> PyResult<Option<PyObj>> {
        let now = self.now();
        let found = self.decide(
            key,
            #[inline(always)]
            |k| self.store.get(k.hash, k.key.probe(), &k.verdicts, now),
        )?;
        match found {
            Some(_) => self.counters.hit(),
            None => self.counters.miss(),
        }
        Ok(found)
    }

    fn peek(&self, key: &mut MemoryKey) -> PyResult<Option<PyObj>> {
        self.peek_at(key, self.now())
    }

    fn invalidate(&self, key: MemoryKey) -> PyResult<bool> {
        let now = self.now();
        let MemoryKey {
            key,
            hash,
            mut verdicts,
        } = key;
        for _ in 0..COMPARE_ROUNDS {
            match self.store.remove(hash, key.probe(), &verdicts, now) {
                Remove::Removed(entry, live) => {
                    // Dropped here, after the shard lock: finalizers may call back in.
                    drop(entry);
                    return Ok(live);
                }
                Remove::Absent => return Ok(false),
                Remove::Undecided(candidates) => {
                    compare_outside(candidates, key.probe(), &mut verdicts)?
                }
            }
        }
        Ok(false)
    }

    fn uncount_miss(&self) -> bool {
        self.counters.uncount_miss();
        true
    }

    fn miss_to_hit(&self) {
        self.counters.miss_to_hit();
    }

    type FlightKey = PyKey;

    fn flights(&self) -> &Flights<PyKey> {
        &self.flights
    }

    fn flight_key(&self, key: &MemoryKey) -> (PyKey, u64) {
        (key.key.probe().clone(), key.hash)
    }

    fn store(&self, key: MemoryKey, value: &PyObj, replace: bool) -> PyResult<()> {
        let now = self.now();
        let expires_at = clock::deadline(now, self.ttl_nanos);
        let MemoryKey {
            key,
            hash,
            mut verdicts,
        } = key;
        let (mut key, mut value) = (key.into_owned(), value.clone());
        for _ in 0..COMPARE_ROUNDS {
            match self
                .store
                .put(hash, key, value, &verdicts, now, expires_at, replace)
            {
                Insert::Done(garbage) => {
                    // Dropped here, after the shard lock: finalizers may call back in.
                    drop(garbage);
                    return Ok(());
                }
                Insert::NotCached(..) => return Ok(()),
                Insert::Undecided(candidates, k, v) => {
                    compare_outside(candidates, &k, &mut verdicts)?;
                    (key, value) = (k, v);
                }
            }
        }
        Ok(())
    }

    fn key_object(&self, key: MemoryKey) -> PyResult<PyObj> {
        Ok(key.key.into_owned().into_object())
    }

    unsafe fn key_from_object(
        &self,
        obj: *mut ffi::PyObject,
        kw_mark: *mut ffi::PyObject,
    ) -> PyResult<MemoryKey> {
        // SAFETY: as the caller promises, `obj` outlives the key.
        let key = unsafe { CallKey::existing(obj, kw_mark) };
        let hash = key.hash()?;
        Ok(MemoryKey {
            key,
            hash,
            verdicts: Vec::new(),
        })
    }

    fn info(&self, info_type: *mut ffi::PyObject) -> PyResult<PyObj> {
        let (hits, misses) = self.counters.read();
        let size = if self.ttl_nanos.is_some() {
            self.store.live_len(self.now())
        } else {
            self.store.len()
        };
        info_tuple(
            info_type,
            &[hits, misses, self.store.max_size() as u64, size as u64],
        )
    }

    fn clear(&self) -> PyResult<()> {
        let entries = self.store.clear();
        self.counters.reset();
        // Dropped here, after every shard lock is released: finalizers may call back in.
        drop(entries);
        Ok(())
    }
}

/// `info_type(*fields)` with int fields.
pub fn info_tuple(info_type: *mut ffi::PyObject, fields: &[u64]) -> PyResult<PyObj> {
    let mut objs = Vec::with_capacity(fields.len());
    for &n in fields {
        // SAFETY: plain int construction.
        objs.push(unsafe { PyObj::from_owned(ffi::PyLong_FromUnsignedLongLong(n))? });
    }
    let ptrs: Vec<*mut ffi::PyObject> = objs.iter().map(PyObj::as_ptr).collect();
    call_owned(info_type, &ptrs, &[])
}

/// Runs `==` for each candidate with no lock held and records the answers.
fn compare_outside(
    candidates: Vec<Candidate<PyKey>>,
    key: &PyKey,
    verdicts: &mut Vec<Verdict>,
) -> PyResult<()> {
    for c in candidates {
        // SAFETY: both keys are valid objects we hold references to; this may run Python code.
        let r = unsafe { ffi::PyObject_RichCompareBool(c.key.as_ptr(), key.as_ptr(), ffi::Py_EQ) };
        if r < 0 {
            return Err(ErrSet);
        }
        verdicts.push(Verdict {
            slot: c.slot,
            stamp: c.stamp,
            equal: r == 1,
        });
    }
    Ok(())
}
