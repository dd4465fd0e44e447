//! The shared backend behind a cached callable: encoded bytes in memory-mapped files that
//! every process running the same function opens (`crate::shared`).

use super::buffers::PooledBuf;
use super::cached::{raise, Backend, Exc};
use super::convert::Pickler;
use super::flight::Flights;
use super::memory_backend::info_tuple;
use super::object::{PyObj, PyResult};
use crate::clock;
use crate::shared::{InsertOutcome, SharedStore};
use pyo3::ffi;

/// Hashes flight keys (this process only, so any fixed seeds do).
static FLIGHT_HASHER: ahash::RandomState = ahash::RandomState::with_seeds(1, 2, 3, 4);

/// Cross-process entries; counters live in the file, shared by every process.
pub struct SharedBackend {
    store: SharedStore,
    pickler: Pickler,
    ttl_nanos: Option<u64>,
    /// Single-flight among this process's threads (other processes compute on their own).
    flights: Flights<Vec<u8>>,
}

impl SharedBackend {
    /// Wraps an opened store.
    pub fn new(store: SharedStore, pickler: Pickler, ttl_nanos: Option<u64>) -> Self {
        Self {
            store,
            pickler,
            ttl_nanos,
            flights: Flights::default(),
        }
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

impl Backend for SharedBackend {
    type Key = PooledBuf;

    unsafe fn key(
        &self,
        args: *const *mut ffi::PyObject,
        nargs: usize,
        kwnames: *mut ffi::PyObject,
        _kw_mark: *mut ffi::PyObject,
    ) -> PyResult<PooledBuf> {
        let mut key = PooledBuf::for_key();
        // SAFETY: vectorcall arguments, as the caller promises.
        unsafe { self.pickler.encode_key(args, nargs, kwnames, key.vec())? };
        Ok(key)
    }

    fn lookup(&self, key: &mut PooledBuf) -> PyResult<Option<PyObj>> {
        let mut value = PooledBuf::for_value();
        if !self.store.get_into(key.bytes(), self.now(), value.vec()) {
            return Ok(None);
        }
        match self.pickler.decode(value.bytes()) {
            Ok(value) => Ok(Some(value)),
            Err(_) => {
                // An entry this process cannot rebuild (say, its class is not importable
                // here) is a miss: the function computes the value instead.
                // SAFETY: an exception is set; we are attached.
                unsafe { ffi::PyErr_Clear() };
                Ok(None)
            }
        }
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

    fn flight_key(&self, key: &PooledBuf) -> (Vec<u8>, u64) {
        let bytes = key.bytes();
        (bytes.to_vec(), FLIGHT_HASHER.hash_one(bytes))
    }

    fn store(&self, key: PooledBuf, value: &PyObj) -> PyResult<()> {
        let mut bytes = PooledBuf::for_value();
        // SAFETY: `value` is a valid object.
        if unsafe { self.pickler.encode(value.as_ptr(), bytes.vec()) }.is_err() {
            // A result that cannot be serialized is returned uncached.
            // SAFETY: an exception is set; we are attached.
            unsafe { ffi::PyErr_Clear() };
            return Ok(());
        }
        self.insert(key.bytes(), bytes.bytes());
        Ok(())
    }

    fn key_object(&self, key: PooledBuf) -> PyResult<PyObj> {
        let key = key.bytes();
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
    ) -> PyResult<PooledBuf> {
        // SAFETY: `obj` is valid, as the caller promises; only bytes are accepted.
        unsafe {
            if ffi::PyBytes_Check(obj) == 0 {
                return Err(raise(Exc::Type, c"shared cache keys are bytes"));
            }
            let data = ffi::PyBytes_AsString(obj) as *const u8;
            let mut key = PooledBuf::for_key();
            key.vec().extend_from_slice(std::slice::from_raw_parts(
                data,
                ffi::PyBytes_Size(obj) as usize,
            ));
            Ok(key)
        }
    }

    fn info(&self, info_type: *mut ffi::PyObject) -> PyResult<PyObj> {
        let i = self.store.info();
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
        if self.store.clear() {
            Ok(())
        } else {
            Err(raise(
                Exc::Runtime,
                c"shared cache is locked by another live process; cache_clear() gave up",
            ))
        }
    }
}
