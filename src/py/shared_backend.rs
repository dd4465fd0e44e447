//! The shared backend behind a cached callable: encoded bytes in memory-mapped files that
//! every process running the same function opens (`crate::shared`).

use super::across;
use super::cached::{raise, step_tuple, Backend, Core, Exc, Lookup};
use super::convert::Pickler;
use super::decoded::Decoded;
use super::flight::{detached, Flights};
use super::memory_backend::info_tuple;
use super::object::{ErrSet, PyObj, PyResult};
use crate::clock;
use crate::codec::key_hash;
use crate::inline_buf::InlineBytes;
use crate::py::ffi;
use crate::shared::flights::Outcome;
use crate::shared::{
    file_stem, function_prefix, remove_stale, Current, Found, InsertOutcome, Params, ProcessOwner,
    SharedStore, ValueBuf,
};
use crate::sync::{AtomicBool, Ordering};
use std::path::PathBuf;
use std::ptr;
use std::sync::OnceLock;

/// Hashes flight keys (this process only, so any fixed seeds do).
static FLIGHT_HASHER: ahash::RandomState = ahash::RandomState::with_seeds(1, 2, 3, 4);

/// Guards this process's mapping of the files. GIL builds: a borrow flag (the interpreter
/// lock serializes every call, and nothing inside a store operation can release it).
/// Free-threaded builds: a reader-sharded lock, so hits from many threads never write one
/// shared cache line.
#[cfg(not(Py_GIL_DISABLED))]
pub type MappingGuard = super::gil_lock::GilLock<Current>;
#[cfg(Py_GIL_DISABLED)]
pub type MappingGuard = crate::sync::ShardedLock<Current>;

/// The store as this layer opens it.
pub type Store = SharedStore<ProcessOwner, MappingGuard>;

/// Where a cache's files are and how its identity is found.
pub struct Location {
    /// The directory of the files; `None`: the first usable default
    /// (`crate::shared::default_dirs`).
    pub dir: Option<PathBuf>,
    /// The function's module (`__main__` for scripts and their spawned workers).
    pub module: String,
    /// The function's qualified name.
    pub qualname: String,
    /// The file format's parameters.
    pub params: Params,
    /// Files that cannot be opened are an error; else the cache serves from private memory
    /// of this process (and warns once).
    pub strict: bool,
}

impl Location {
    /// `module.qualname`.
    pub fn function(&self) -> String {
        format!("{}.{}", self.module, self.qualname)
    }

    /// Opens the files of identity `identity` (detached: creating a file may take a while)
    /// and removes the files of the function's older identities that no process uses. Not
    /// `strict`: files that cannot be opened leave the store in private memory, and
    /// [`Store::take_unusable`] says why.
    pub fn open(&self, identity: u64) -> std::io::Result<Store> {
        let stem = file_stem(&self.module, &self.qualname, identity);
        let function = self.function();
        let (dir, params) = (self.dir.as_deref(), self.params);
        detached(|| {
            let store = if self.strict {
                Store::open_named(dir, &stem, &function, params, ProcessOwner)?
            } else {
                Store::open_or_private(dir, &stem, &function, params, ProcessOwner)?
            };
            if let Some(dir) = store.created_in() {
                let prefix = function_prefix(&self.module, &self.qualname);
                // Best effort: a file that cannot be removed now goes on a later creation.
                let _ = remove_stale(&dir, &prefix, Some(&stem));
            }
            Ok(store)
        })
    }

    /// The error `open` failed with, as Python's `OSError`.
    pub fn error(&self, err: std::io::Error) -> ErrSet {
        let message = format!(
            "cannot open the shared cache for {}: {err}",
            self.function()
        );
        let text = std::ffi::CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: a valid exception type and a NUL-terminated message; we are attached.
        unsafe { ffi::PyErr_SetString(ffi::PyExc_OSError, text.as_ptr()) };
        ErrSet
    }
}

/// Cross-process entries; counters live in the file, shared by every process.
pub struct SharedBackend {
    /// Set once the identity is known: at decoration, or at the first call when the
    /// function read module globals that were not bound yet ([`SharedBackend::settle`]).
    store: OnceLock<Store>,
    location: Location,
    /// `settle() -> int`: the identity, computed again once the module has run.
    settle: Option<PyObj>,
    /// Opening at the first call failed (strict mode): calls compute, uncached.
    unusable: AtomicBool,
    pickler: Pickler,
    ttl_nanos: Option<u64>,
    /// `serve_stale` in nanoseconds (0: off). Not in the files: it only decides how this
    /// process treats entries that expired (their deadline in the file is `ttl`'s).
    stale_nanos: u64,
    /// Single-flight among this process's threads (`crate::py::across` extends it to
    /// other processes).
    flights: Flights<Vec<u8>>,
    /// Values this process has decoded, returned again while their entries are unchanged.
    decoded: Decoded,
    /// Set once this process warned that a result or key was too large to cache.
    warned_oversize: AtomicBool,
    /// Single-flight across processes (`WARP_CACHE_CROSS_FLIGHT=0` at decoration turns it
    /// off: each process then computes its own misses, as before it existed).
    across: bool,
}

impl SharedBackend {
    /// A backend over an opened store, or (with `store` `None`) one that opens its files at
    /// the first call, with the identity `settle()` returns then.
    pub fn new(
        store: Option<Store>,
        location: Location,
        settle: Option<PyObj>,
        pickler: Pickler,
        ttl_nanos: Option<u64>,
        stale_nanos: u64,
    ) -> Self {
        let cell = OnceLock::new();
        if let Some(store) = store {
            let _ = cell.set(store);
        }
        let decoded = Decoded::new(location.params.capacity);
        Self {
            store: cell,
            location,
            settle,
            unusable: AtomicBool::new(false),
            pickler,
            ttl_nanos,
            stale_nanos,
            flights: Flights::default(),
            decoded,
            warned_oversize: AtomicBool::new(false),
            across: std::env::var_os("WARP_CACHE_CROSS_FLIGHT").is_none_or(|v| v != "0"),
        }
    }

    #[inline]
    fn now(&self) -> u64 {
        clock::now_for(self.ttl_nanos)
    }

    /// The store, settling it first if need be; `None` when its files cannot be used.
    #[inline(always)]
    fn store(&self) -> PyResult<Option<&Store>> {
        match self.store.get() {
            Some(store) => Ok(Some(store)),
            None => self.settle(),
        }
    }

    /// Computes the identity now that the function's module has run, and opens its files.
    /// Two threads may both get here: the first store set wins, the other is dropped.
    #[cold]
    #[inline(never)]
    fn settle(&self) -> PyResult<Option<&Store>> {
        if self.unusable.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let Some(settle) = &self.settle else {
            return Ok(None);
        };
        // SAFETY: `settle` is a valid callable; no arguments.
        let identity = unsafe {
            PyObj::from_owned(ffi::PyObject_Vectorcall(
                settle.as_ptr(),
                ptr::null(),
                0,
                ptr::null_mut(),
            ))?
        };
        // SAFETY: a valid object; -1 with an exception set on failure.
        let identity = unsafe { ffi::PyLong_AsUnsignedLongLongMask(identity.as_ptr()) };
        // SAFETY: checking this thread's exception state.
        if !unsafe { ffi::PyErr_Occurred() }.is_null() {
            return Err(ErrSet);
        }
        match self.location.open(identity) {
            Ok(store) => {
                let _ = self.store.set(store);
                self.warn_if_unusable()?;
                Ok(self.store.get())
            }
            Err(err) => {
                // Strict mode, or not even private memory: this call raises, later calls
                // compute without caching.
                self.unusable.store(true, Ordering::Relaxed);
                Err(self.location.error(err))
            }
        }
    }

    /// Warns once if the files could not be (re)opened and the cache now serves from this
    /// process's memory (at the first call, after a fork or a change of credentials). Off
    /// the hit path: checked when opening, storing, clearing or reading the info.
    pub fn warn_if_unusable(&self) -> PyResult<()> {
        let Some(err) = self.store.get().and_then(Store::take_unusable) else {
            return Ok(());
        };
        warn(&format!(
            "cannot open the shared cache for {}: {err}; caching in this process only",
            self.location.function()
        ))
    }

    /// Stores encoded bytes with this cache's TTL, and `object` as this process's decoded
    /// copy of the new entry (later hits return it, as a memory cache would). A live equal
    /// entry is replaced: this process computed the value because it found none it could
    /// use.
    fn insert(
        &self,
        key: &[u8],
        value: &[u8],
        object: &PyObj,
        clears: Option<u64>,
    ) -> InsertOutcome {
        let Ok(Some(store)) = self.store() else {
            return InsertOutcome::NotCached;
        };
        let now = self.now();
        let deadline = clock::deadline(now, self.ttl_nanos);
        let (outcome, found) = store.replace_found(key, value, now, deadline, clears);
        if let Some(found) = found {
            self.decoded.put(found, object.clone());
        }
        outcome
    }
}

impl SharedBackend {
    /// The value another process's flight stored for `key`, uncounted; if found, this
    /// call's miss becomes a hit (it was served without running the function).
    fn served(&self, store: &Store, key: &[u8]) -> PyResult<Option<PyObj>> {
        let value = self.read(key, self.now(), false)?;
        if value.is_some() {
            store.recount(true);
        }
        Ok(value)
    }

    /// Encodes and stores `value` under `key`: whether it is in the cache now (not if it
    /// cannot be serialized, is too large, the files are unusable, or the cache was cleared
    /// since `clears` was read, when the value's computation began).
    fn store_bytes(&self, key: &[u8], value: &PyObj, clears: Option<u64>) -> PyResult<bool> {
        let mut bytes = Vec::new();
        // SAFETY: `value` is a valid object.
        if unsafe { self.pickler.encode(value.as_ptr(), &mut bytes) }.is_err() {
            // A result that cannot be serialized is returned uncached.
            // SAFETY: an exception is set; we are attached.
            unsafe { ffi::PyErr_Clear() };
            return Ok(false);
        }
        let outcome = self.insert(key, &bytes, value, clears);
        if outcome == InsertOutcome::Oversize {
            self.warn_oversize(key.len(), bytes.len())?;
        }
        self.warn_if_unusable()?;
        Ok(outcome == InsertOutcome::Stored)
    }

    /// Warns, the first time in this process, that a call's key or result is larger than
    /// the cache stores (counted in `oversize_skips` every time).
    #[cold]
    fn warn_oversize(&self, key_len: usize, value_len: usize) -> PyResult<()> {
        if self.warned_oversize.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let params = self.location.params;
        let (what, size, limit, parameter) = if key_len > params.max_key_size as usize {
            ("arguments", key_len, params.max_key_size, "max_key_size")
        } else {
            ("result", value_len, params.max_value_size, "max_value_size")
        };
        warn(&format!(
            "{}: a call's {what} serialized to {size} bytes, above {parameter}={limit}, and \
             was not cached (this warning is shown once; oversize_skips counts every time): \
             raise {parameter} to cache it",
            self.location.function()
        ))
    }
}

/// Issues a `RuntimeWarning` (an error if warnings are turned into errors), attributed to
/// the caller of the cached function.
fn warn(message: &str) -> PyResult<()> {
    let text = std::ffi::CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: a valid category and NUL-terminated text; we are attached.
    match unsafe { ffi::PyErr_WarnEx(ffi::PyExc_RuntimeWarning, text.as_ptr(), 1) } {
        0 => Ok(()),
        _ => Err(ErrSet),
    }
}

/// A key encoded on the stack: keys up to this many bytes never touch the heap on a hit.
type KeyBuf = InlineBytes<120>;

impl SharedBackend {
    /// The value stored under `key`, or `None` on a miss (counted either way). An entry
    /// this process decoded before, unchanged since, is returned as the same object.
    #[inline(always)]
    fn get(&self, key: &[u8]) -> PyResult<Option<PyObj>> {
        self.read(key, self.now(), true)
    }

    /// The value stored under `key` if live at `now`; a lookup counted as a hit or a miss
    /// and marking the entry visited when `count`, else a peek that touches neither.
    #[inline(always)]
    fn read(&self, key: &[u8], now: u64, count: bool) -> PyResult<Option<PyObj>> {
        let Some(store) = self.store()? else {
            return Ok(None);
        };
        let mut value = ValueBuf::new();
        let known = |found| self.decoded.holds(found);
        let Some((found, copied)) = store.get_found(key, now, &mut value, known, count) else {
            return Ok(None);
        };
        if !copied {
            if let Some(value) = self.decoded.get(found) {
                return Ok(Some(value));
            }
            // Another thread replaced the copy since (a newer version of the slot): read
            // the entry again, copying it this time (already counted).
            let Some((again, _)) = store.get_found(key, now, &mut value, |_| false, false) else {
                if count {
                    store.recount(false);
                }
                return Ok(None);
            };
            return self.decode(store, again, &value, count);
        }
        self.decode(store, found, &value, count)
    }

    /// Decodes the value of entry `found` (copied into `value`) and keeps the object. A
    /// value that cannot be decoded turns the lookup's hit into a miss (if it `counted`).
    fn decode(
        &self,
        store: &Store,
        found: Found,
        value: &ValueBuf,
        counted: bool,
    ) -> PyResult<Option<PyObj>> {
        match self.pickler.decode(value.bytes()) {
            Ok(value) => {
                self.decoded.put(found, value.clone());
                Ok(Some(value))
            }
            Err(_) => {
                // An entry this process cannot rebuild (say, its class is not importable
                // here) is a miss: the function computes the value, which replaces it.
                // SAFETY: an exception is set; we are attached.
                unsafe { ffi::PyErr_Clear() };
                if counted {
                    store.recount(false);
                }
                Ok(None)
            }
        }
    }

    /// A missed key's entry if it expired less than `serve_stale` ago: served stale (the
    /// miss becomes a hit) while the caller starts a refresh. Off the hit path.
    #[cold]
    #[inline(never)]
    fn stale(&self, key: &[u8]) -> PyResult<Lookup<Vec<u8>>> {
        // Live at `now - serve_stale` means expired less than `serve_stale` ago.
        let then = self.now().saturating_sub(self.stale_nanos);
        Ok(match self.read(key, then, false)? {
            Some(value) => {
                self.miss_to_hit();
                Lookup::Stale(value, key.to_vec())
            }
            None => Lookup::Miss(key.to_vec()),
        })
    }

    /// Visits this process's decoded values (garbage collector traversal).
    pub fn for_each_decoded(&self, f: impl FnMut(&PyObj)) {
        self.decoded.for_each_unlocked(f);
    }

    /// Drops this process's decoded values (they may be part of a reference cycle).
    pub fn forget_decoded(&self) {
        self.decoded.clear();
    }
}

impl Backend for SharedBackend {
    #[inline(always)]
    fn of(core: &Core) -> Option<&Self> {
        match core {
            Core::Shared(backend) => Some(backend),
            _ => None,
        }
    }

    type Key = Vec<u8>;

    unsafe fn call_key(
        &self,
        args: *const *mut ffi::PyObject,
        nargs: usize,
        kwnames: *mut ffi::PyObject,
        _kw_mark: *mut ffi::PyObject,
    ) -> PyResult<Vec<u8>> {
        let mut key = KeyBuf::new();
        // SAFETY: vectorcall arguments, as the caller promises.
        unsafe { self.pickler.encode_key(args, nargs, kwnames, &mut key)? };
        Ok(key.bytes().to_vec())
    }

    /// Encodes the key and copies the value into buffers on this frame's stack; only a
    /// miss copies the key out (before any Python code runs: the function itself may
    /// call this cache again).
    #[inline(always)]
    unsafe fn lookup_call(
        &self,
        args: *const *mut ffi::PyObject,
        nargs: usize,
        kwnames: *mut ffi::PyObject,
        _kw_mark: *mut ffi::PyObject,
    ) -> PyResult<Lookup<Vec<u8>>> {
        let mut key = KeyBuf::new();
        // SAFETY: vectorcall arguments, as the caller promises.
        unsafe { self.pickler.encode_key(args, nargs, kwnames, &mut key)? };
        Ok(match self.get(key.bytes())? {
            Some(value) => Lookup::Hit(value),
            None if self.stale_nanos == 0 => Lookup::Miss(key.bytes().to_vec()),
            None => self.stale(key.bytes())?,
        })
    }

    /// The bytes as a boxed slice's pointer and length (no copy: a miss's key is allocated
    /// to its exact length).
    #[inline(always)]
    fn key_into_words(key: Vec<u8>) -> [usize; 2] {
        let len = key.len();
        let bytes = Box::into_raw(key.into_boxed_slice());
        [bytes as *mut u8 as usize, len]
    }

    #[inline(always)]
    unsafe fn key_from_words([bytes, len]: [usize; 2]) -> Vec<u8> {
        let slice = ptr::slice_from_raw_parts_mut(bytes as *mut u8, len);
        // SAFETY: the boxed slice `key_into_words` gave up, taken back once.
        unsafe { Box::from_raw(slice) }.into_vec()
    }

    fn lookup(&self, key: &mut Vec<u8>) -> PyResult<Option<PyObj>> {
        self.get(key)
    }

    fn peek(&self, key: &mut Vec<u8>) -> PyResult<Option<PyObj>> {
        self.read(key, self.now(), false)
    }

    fn invalidate(&self, key: Vec<u8>) -> PyResult<bool> {
        let Some(store) = self.store()? else {
            return Ok(false);
        };
        let removed = store.remove(&key, self.now());
        self.warn_if_unusable()?;
        removed.ok_or_else(|| {
            raise(
                Exc::Runtime,
                c"shared cache is locked by another live process that made no progress (stopped or stuck?); cache_invalidate() gave up, nothing was removed",
            )
        })
    }

    /// A new leader does not look again here: taking back a miss in the shared counters
    /// could race with another process's clear. A flight landing between a call's lookup
    /// and its joining is then computed twice (cached once).
    fn uncount_miss(&self) -> bool {
        false
    }

    /// A waiter served by this process's flight: its miss becomes a hit in this process's
    /// stripe of the shared counters.
    fn miss_to_hit(&self) {
        if let Some(store) = self.store.get() {
            store.recount(true);
        }
    }

    type FlightKey = Vec<u8>;

    fn flights(&self) -> &Flights<Vec<u8>> {
        &self.flights
    }

    fn flight_key(&self, key: &Vec<u8>) -> (Vec<u8>, u64) {
        (key.clone(), FLIGHT_HASHER.hash_one(key))
    }

    /// Always replaces a live equal entry (see [`SharedBackend::insert`]).
    fn store(&self, key: Vec<u8>, value: &PyObj, _replace: bool) -> PyResult<()> {
        self.store_bytes(&key, value, None).map(drop)
    }

    fn store_reporting(&self, key: Vec<u8>, value: &PyObj, _replace: bool) -> PyResult<bool> {
        self.store_bytes(&key, value, None)
    }

    /// Another process may lead the key's flight: wait for it (`crate::py::across`).
    fn lead_across(&self, key: &Vec<u8>) -> PyResult<Option<PyObj>> {
        let Some(store) = self.store.get() else {
            return Ok(None);
        };
        across::lead(store, key_hash(key), self.across, &|| {
            self.served(store, key)
        })
    }

    fn across_step(
        &self,
        key: Vec<u8>,
        token: *mut ffi::PyObject,
        nested: bool,
    ) -> PyResult<PyObj> {
        match self.store.get().filter(|_| self.across) {
            Some(store) => across::step(store, &key, token, nested, &|| self.served(store, &key)),
            None => step_tuple(0, None),
        }
    }

    fn across_land(&self, _key: Vec<u8>, token: *mut ffi::PyObject, outcome: u64) -> PyResult<()> {
        match self.store.get() {
            Some(store) => across::land_token(store, token, outcome),
            None => Ok(()),
        }
    }

    /// Stores the value, then lands the flight this call led on the board, if any: its
    /// waiters read the value, or learn that they must compute (not stored) or retry (an
    /// exception).
    fn finish(&self, key: Vec<u8>, result: PyResult<PyObj>, led: bool) -> PyResult<PyObj> {
        let computing = match (led, self.store.get()) {
            (true, Some(store)) => across::done(store, || key_hash(&key)),
            _ => None,
        };
        let clears = computing.as_ref().and_then(|c| c.clears);
        let (result, outcome) = match result {
            Ok(value) => match self.store_bytes(&key, &value, clears) {
                Ok(true) => (Ok(value), Outcome::Stored),
                Ok(false) => (Ok(value), Outcome::Alone),
                Err(err) => (Err(err), Outcome::Alone),
            },
            Err(err) => (Err(err), Outcome::Retry),
        };
        if let (Some(ticket), Some(store)) = (computing.and_then(|c| c.ticket), self.store.get()) {
            across::land(store, ticket, outcome);
        }
        result
    }

    fn key_object(&self, key: Vec<u8>) -> PyResult<PyObj> {
        // SAFETY: copies `key` into a new bytes object.
        unsafe {
            PyObj::from_owned(ffi::PyBytes_FromStringAndSize(
                key.as_ptr() as *const _,
                key.len() as ffi::Py_ssize_t,
            ))
        }
    }

    unsafe fn key_from_object(
        &self,
        obj: *mut ffi::PyObject,
        _kw_mark: *mut ffi::PyObject,
    ) -> PyResult<Vec<u8>> {
        // SAFETY: `obj` is valid, as the caller promises; only bytes are accepted.
        unsafe {
            if ffi::PyBytes_Check(obj) == 0 {
                return Err(raise(Exc::Type, c"shared cache keys are bytes"));
            }
            let data = ffi::PyBytes_AsString(obj) as *const u8;
            Ok(std::slice::from_raw_parts(data, ffi::PyBytes_Size(obj) as usize).to_vec())
        }
    }

    fn info(&self, info_type: *mut ffi::PyObject) -> PyResult<PyObj> {
        let i = match self.store()? {
            Some(store) => store.info(),
            None => crate::shared::Info {
                max_size: u64::from(self.location.params.capacity),
                ..Default::default()
            },
        };
        self.warn_if_unusable()?;
        info_tuple(
            info_type,
            &[
                i.hits,
                i.misses,
                i.max_size,
                i.current_size,
                i.oversize_skips,
                i.current_bytes,
            ],
        )
    }

    fn clear(&self) -> PyResult<()> {
        let Some(store) = self.store()? else {
            return Ok(());
        };
        let cleared = store.clear();
        self.decoded.clear();
        self.warn_if_unusable()?;
        if cleared {
            Ok(())
        } else {
            Err(raise(
                Exc::Runtime,
                c"shared cache is locked by another live process that made no progress for 100 ms (stopped or stuck?); cache_clear() gave up, nothing was cleared",
            ))
        }
    }
}
