//! A stale entry's refresh, run by a background thread (`serve_stale`).
//!
//! The caller that finds an entry expired less than `serve_stale` ago returns the stale
//! value at once. If it also won the key's flight ([`super::flight::Flights::try_lead`]:
//! of the threads that find the entry stale at once, exactly one does), it packs the call
//! into a [`RefreshJob`] and `warp_cache._api._refresh_in_background` runs the job in a new
//! daemon thread: the function is called there with the same arguments, its value replaces
//! the entry, and the flight lands. The thread adopts the flight, so a call that meanwhile
//! waits for it (the entry went past `ttl + serve_stale`) waits for that thread, and a call
//! from inside the function that would wait on its own flight computes instead.
//!
//! The job holds references to the cached function (which owns the flight table the lead
//! points into) and to every argument (which a borrowed key points at), so its words stay
//! valid until it runs or is dropped. Dropped without running (the thread could not
//! start), it releases the key and lands the flight as "retry": the next caller that finds
//! the entry stale claims it again.

use super::cached::{backend_of, this, Backend};
use super::flight::Lead;
use super::object::{ErrSet, PyObj};
use crate::py::ffi;
use crate::sync::Mutex;
use pyo3::prelude::*;
use std::sync::PoisonError;

/// One pending refresh: call, store, land.
#[pyclass(module = "warp_cache._warp_cache", frozen)]
pub struct RefreshJob {
    /// The cached function whose entry it refreshes (named in a failure's log record).
    #[pyo3(get)]
    cached: Py<PyAny>,
    work: Mutex<Option<Work>>,
}

/// What a job runs with. The words are a key of the backend and a lead of its flights
/// (`Backend::key_into_words`, `Lead::into_words`), owned by the job.
struct Work {
    cached: PyObj,
    /// Positional arguments, then keyword values: a vectorcall's argument array.
    args: Vec<PyObj>,
    nargs: usize,
    kwnames: Option<PyObj>,
    key: [usize; 2],
    lead: [usize; 2],
    /// `run_with::<B>` for the cached function's backend.
    run: unsafe fn(&Work) -> Result<PyObj, ErrSet>,
    /// `abandon::<B>`: releases the words of a job that never ran.
    abandon: unsafe fn([usize; 2], [usize; 2]),
    ran: bool,
}

impl RefreshJob {
    /// A job refreshing `key` of `cached` (backend `B`), leading `lead`, with the call's
    /// arguments.
    ///
    /// Out of line, and given the object as a pointer: its callers hold it as a shared
    /// reference, under which the compiler may assume the object's memory (its reference
    /// count too) never changes, and drop an inlined count increment.
    ///
    /// # Safety
    /// `cached` is a live cached function of backend `B`; the arguments are as the
    /// vectorcall protocol delivers them.
    #[inline(never)]
    pub unsafe fn create<B: Backend>(
        cached: *mut ffi::PyObject,
        key: B::Key,
        lead: Lead<'_, B::FlightKey>,
        args: *const *mut ffi::PyObject,
        nargsf: usize,
        kwnames: *mut ffi::PyObject,
    ) -> Result<PyObj, ErrSet> {
        // SAFETY: as the caller promises.
        let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf) } as usize;
        // SAFETY: as the caller promises: NULL or a tuple.
        let count = nargs + unsafe { super::key::keyword_count(kwnames) };
        let work = Work {
            // SAFETY: a live object, as the caller promises.
            cached: unsafe { PyObj::from_borrowed(cached) },
            // SAFETY: `count` valid argument objects, as the caller promises.
            args: (0..count)
                .map(|i| unsafe { PyObj::from_borrowed(*args.add(i)) })
                .collect(),
            nargs,
            // SAFETY: NULL or a valid tuple.
            kwnames: (!kwnames.is_null()).then(|| unsafe { PyObj::from_borrowed(kwnames) }),
            key: B::key_into_words(key),
            lead: Lead::into_words(Some(lead)),
            run: run_with::<B>,
            abandon: abandon::<B>,
            ran: false,
        };
        // SAFETY: called from Python-facing code, on an attached thread.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: `work.cached` is a valid object; a new reference for the job.
        let cached = unsafe { Bound::from_borrowed_ptr(py, work.cached.as_ptr()) }.unbind();
        let job = RefreshJob {
            cached,
            work: Mutex::new(Some(work)),
        };
        match Bound::new(py, job) {
            // SAFETY: `into_ptr` hands over a new reference.
            Ok(obj) => unsafe { PyObj::from_owned(obj.into_any().into_ptr()) },
            Err(err) => {
                err.restore(py);
                Err(ErrSet)
            }
        }
    }
}

#[pymethods]
impl RefreshJob {
    /// Runs the refresh in this thread (once; later calls do nothing): the function's
    /// value, or its exception (the stale value stays until `ttl + serve_stale`).
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let work = self
            .work
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut work) = work else {
            return Ok(py.None());
        };
        work.ran = true;
        // SAFETY: `run` was made for this job's backend; the words are used once (`ran`).
        match unsafe { (work.run)(&work) } {
            // SAFETY: `into_ptr` hands over a new reference.
            Ok(value) => Ok(unsafe { Bound::from_owned_ptr(py, value.into_ptr()) }.unbind()),
            Err(ErrSet) => Err(PyErr::fetch(py)),
        }
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if !self.ran {
            // SAFETY: the words were never used; `abandon` matches their backend.
            unsafe { (self.abandon)(self.key, self.lead) };
        }
    }
}

/// Calls the function, stores its value over the stale entry, lands the flight.
///
/// # Safety
/// `work`'s words are a key of `B` and a lead of the flights of `work.cached` (whose
/// backend is `B`), used once.
unsafe fn run_with<B: Backend>(work: &Work) -> Result<PyObj, ErrSet> {
    // SAFETY: `cached` is our cached type, kept alive by the job.
    let this = unsafe { this(work.cached.as_ptr()) };
    // SAFETY: as the caller promises; the flights live as long as `cached`.
    let lead = unsafe { Lead::<B::FlightKey>::from_words(work.lead) };
    // SAFETY: as the caller promises (a borrowed key's object is one of `args`).
    let key = unsafe { B::key_from_words(work.key) };
    let backend = match backend_of::<B>(this) {
        Ok(backend) => backend,
        Err(err) => {
            drop((key, lead));
            return Err(err);
        }
    };
    if let Some(lead) = &lead {
        lead.adopt();
    }
    let args: Vec<*mut ffi::PyObject> = work.args.iter().map(PyObj::as_ptr).collect();
    let kwnames = work
        .kwnames
        .as_ref()
        .map_or(std::ptr::null_mut(), PyObj::as_ptr);
    // SAFETY: the call's own arguments, kept alive by the job, laid out as a vectorcall's.
    unsafe { this.compute_replacing(backend, key, lead, args.as_ptr(), work.nargs, kwnames) }
}

/// Releases a job's words without running it: the key is dropped, the flight lands as
/// "retry".
///
/// # Safety
/// As for [`run_with`].
unsafe fn abandon<B: Backend>(key: [usize; 2], lead: [usize; 2]) {
    // SAFETY: as the caller promises.
    unsafe {
        drop(B::key_from_words(key));
        drop(Lead::<B::FlightKey>::from_words(lead));
    }
}
