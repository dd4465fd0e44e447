//! The PyO3 layer: the only code that touches Python.

mod awaitable;
mod cached;
mod counters;
#[cfg(not(Py_GIL_DISABLED))]
mod gil_lock;
mod key;
mod object;

use cached::{CachedObject, Settings};
use object::PyObj;
use pyo3::prelude::*;

fn fetch(py: Python<'_>) -> PyErr {
    PyErr::fetch(py)
}

/// Wraps `func` in a memory-backend cached callable. Arguments are validated by the Python
/// package (`warp_cache._api`), which is the public entry point.
#[pyfunction]
#[pyo3(signature = (func, max_size, ttl, info_type, kw_mark, async_fill))]
fn make_memory_cache(
    py: Python<'_>,
    func: Bound<'_, PyAny>,
    max_size: usize,
    ttl: Option<f64>,
    info_type: Bound<'_, PyAny>,
    kw_mark: Bound<'_, PyAny>,
    async_fill: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let own = |obj: Bound<'_, PyAny>| {
        // SAFETY: `into_ptr` hands over a new reference.
        unsafe { PyObj::from_owned(obj.into_ptr()) }.map_err(|_| fetch(py))
    };
    let ttl_nanos = ttl.map(|seconds| (seconds * 1e9).min(u64::MAX as f64) as u64);
    let settings = Settings {
        func: own(func)?,
        max_size,
        ttl_nanos,
        info_type: own(info_type)?,
        kw_mark: own(kw_mark)?,
        async_fill: async_fill.map(own).transpose()?,
    };
    let obj = CachedObject::create(settings).map_err(|_| fetch(py))?;
    // SAFETY: `into_ptr` hands over a new reference to a valid object.
    Ok(unsafe { Bound::from_owned_ptr(py, obj.into_ptr()) }.unbind())
}

#[pymodule(gil_used = false)]
fn _warp_cache(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let tp = cached::init_type().map_err(|_| fetch(py))?;
    // SAFETY: `init_type` returns a borrowed reference to the immortal type object.
    let tp = unsafe { Bound::from_borrowed_ptr(py, tp) };
    m.add("CachedFunction", tp)?;
    m.add_class::<awaitable::ReadyValue>()?;
    m.add_function(wrap_pyfunction!(make_memory_cache, m)?)?;
    Ok(())
}
