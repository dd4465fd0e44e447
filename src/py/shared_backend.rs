//! The shared backend behind a cached callable: encoded bytes in memory-mapped files that
//! every process running the same function opens (`crate::shared`).

use super::cached::{raise, Backend, Exc, Lookup};
use super::convert::Pickler;
use super::flight::Flights;
use super::memory_backend::info_tuple;
use super::object::{PyObj, PyResult};
use crate::clock;
use crate::inline_buf::InlineBytes;
use crate::shared::{Current, InsertOutcome, ProcessOwner, SharedStore, ValueBuf};
use pyo3::ffi;

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

/// Cross-process entries; counters live in the file, shared by every process.
pub struct SharedBackend {
    store: Store,
    pickler: Pickler,
    ttl_nanos: Option<u64>,
    /// Single-flight among this process's threads (other processes compute on their own).
    flights: Flights<Vec<u8>>,
    /// `module.qualname`, for warnings.
    name: String,
}

impl SharedBackend {
    /// Wraps an opened store.
    pub fn new(store: Store, pickler: Pickler, ttl_nanos: Option<u64>, name: String) -> Self {
        Self {
            store,
            pickler,
            ttl_nanos,
            flights: Flights::default(),
            name,
        }
    }

    /// Warns once if the files could not be (re)opened and the cache now serves from this
    /// process's memory (after a fork or a change of credentials). Off the hit path: checked
    /// when storing, clearing or reading the info.
    fn warn_if_unusable(&self) -> PyResult<()> {
        let Some(e) = self.store.take_unusable() else {
            return Ok(());
        };
        let message = format!(
            "cannot open the shared cache for {}: {e}; caching in this process only",
            self.name
        );
        let message = std::ffi::CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: we are attached; the category is a valid exception type and the message a
        // NUL-terminated string that outlives the call.
        if unsafe { ffi::PyErr_WarnEx(ffi::PyExc_RuntimeWarning, message.as_ptr(), 1) } < 0 {
            return Err(super::object::ErrSet);
        }
        Ok(())
    }

    #[inline]
    fn now(&self) -> u64 {
        clock::now_for(self.ttl_nanos)
    }

    /// Stores encoded bytes with this cache's TTL.
    fn insert(&self, key: &[u8], value: &[u8]) -> InsertOutcome {
        let now = self.now();
        self.store
            .insert(key, value, now, clock::deadline(now, self.ttl_nanos))
    }
}

/// A key encoded on the stack: keys up to this many bytes never touch the heap on a hit.
type KeyBuf = InlineBytes<120>;

impl SharedBackend {
    /// The value stored under `key`, or `None` on a miss (counted either way).
    #[inline(always)]
    fn get(&self, key: &[u8]) -> Option<PyObj> {
        let mut value = ValueBuf::new();
        if !self.store.get_into(key, self.now(), &mut value) {
            return None;
        }
        match self.pickler.decode(value.bytes()) {
            Ok(value) => Some(value),
            Err(_) => {
                // An entry this process cannot rebuild (say, its class is not importable
                // here) is a miss: the function computes the value instead.
                // SAFETY: an exception is set; we are attached.
                unsafe { ffi::PyErr_Clear() };
                None
            }
        }
    }
}

impl Backend for SharedBackend {
    type Key = Vec<u8>;

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
        Ok(match self.get(key.bytes()) {
            Some(value) => Lookup::Hit(value),
            None => Lookup::Miss(key.bytes().to_vec()),
        })
    }

    fn lookup(&self, key: &mut Vec<u8>) -> PyResult<Option<PyObj>> {
        Ok(self.get(key))
    }

    /// The counters live in the shared file, which offers no way back: a new leader does
    /// not look again, so a flight landing between a call's lookup and its joining is
    /// computed twice (cached once).
    fn uncount_miss(&self) -> bool {
        false
    }

    fn miss_to_hit(&self) {}

    type FlightKey = Vec<u8>;

    fn flights(&self) -> &Flights<Vec<u8>> {
        &self.flights
    }

    fn flight_key(&self, key: &Vec<u8>) -> (Vec<u8>, u64) {
        (key.clone(), FLIGHT_HASHER.hash_one(key))
    }

    fn store(&self, key: Vec<u8>, value: &PyObj) -> PyResult<()> {
        let mut bytes = Vec::new();
        // SAFETY: `value` is a valid object.
        if unsafe { self.pickler.encode(value.as_ptr(), &mut bytes) }.is_err() {
            // A result that cannot be serialized is returned uncached.
            // SAFETY: an exception is set; we are attached.
            unsafe { ffi::PyErr_Clear() };
            return Ok(());
        }
        self.insert(&key, &bytes);
        self.warn_if_unusable()
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
        let i = self.store.info();
        self.warn_if_unusable()?;
        info_tuple(
            info_type,
            &[
                i.hits,
                i.misses,
                i.max_size,
                i.current_size,
                i.oversize_skips,
            ],
        )
    }

    fn clear(&self) -> PyResult<()> {
        let cleared = self.store.clear();
        self.warn_if_unusable()?;
        if cleared {
            Ok(())
        } else {
            Err(raise(
                Exc::Runtime,
                c"shared cache is locked by another live process; cache_clear() gave up",
            ))
        }
    }
}
