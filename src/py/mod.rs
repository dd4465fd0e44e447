//! The PyO3 layer: the only code that touches Python.

#[cfg(unix)]
mod across;
mod awaitable;
#[cfg(unix)]
mod bound;
#[cfg(unix)]
mod cached;
#[cfg(unix)]
mod convert;
mod counters;
#[cfg(unix)]
mod decoded;
mod ffi;
mod flight;
#[cfg(not(Py_GIL_DISABLED))]
mod gil_lock;
mod key;
mod memory_backend;
mod object;
#[cfg(unix)]
mod operator;
#[cfg(all(Py_GIL_DISABLED, not(Py_3_14)))]
mod refcount;
#[cfg(unix)]
mod refresh;
#[cfg(unix)]
mod shared_backend;
mod stack;

use cached::{CachedObject, Core, Settings};
use memory_backend::MemoryBackend;
use object::PyObj;
use pyo3::prelude::*;

fn fetch(py: Python<'_>) -> PyErr {
    PyErr::fetch(py)
}

/// Wraps `func` in a memory-backend cached callable. Arguments are validated by the Python
/// package (`warp_cache._api`), which is the public entry point.
#[pyfunction]
#[pyo3(signature = (func, max_size, ttl, serve_stale, info_type, kw_mark, async_fill))]
#[allow(clippy::too_many_arguments)]
fn make_memory_cache(
    py: Python<'_>,
    func: Bound<'_, PyAny>,
    max_size: usize,
    ttl: Option<f64>,
    serve_stale: Option<f64>,
    info_type: Bound<'_, PyAny>,
    kw_mark: Bound<'_, PyAny>,
    async_fill: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let own = |obj| own(py, obj);
    let settings = Settings {
        func: own(func)?,
        core: Core::Memory(MemoryBackend::new(
            max_size,
            ttl_nanos(ttl),
            ttl_nanos(serve_stale).unwrap_or(0),
        )),
        info_type: own(info_type)?,
        kw_mark: own(kw_mark)?,
        async_fill: async_fill.map(own).transpose()?,
    };
    create(py, settings)
}

fn own(py: Python<'_>, obj: Bound<'_, PyAny>) -> PyResult<PyObj> {
    // SAFETY: `into_ptr` hands over a new reference.
    unsafe { PyObj::from_owned(obj.into_ptr()) }.map_err(|_| fetch(py))
}

fn ttl_nanos(ttl: Option<f64>) -> Option<u64> {
    ttl.map(|seconds| (seconds * 1e9).min(u64::MAX as f64) as u64)
}

fn create(py: Python<'_>, settings: Settings) -> PyResult<Py<PyAny>> {
    let obj = CachedObject::create(settings).map_err(|_| fetch(py))?;
    // SAFETY: `into_ptr` hands over a new reference to a valid object.
    Ok(unsafe { Bound::from_owned_ptr(py, obj.into_ptr()) }.unbind())
}

/// Wraps `func` in a shared-backend cached callable whose files live in `directory`
/// (default: the first usable of `crate::shared::default_dirs`). With an `identity`, the
/// files are opened now; without one, at the first call, with the identity `settle()`
/// returns then (the function reads module globals not bound yet). Files that cannot be
/// opened raise `OSError` when `strict`; otherwise the cache warns once and serves from
/// memory of this process.
#[cfg(unix)]
#[pyfunction]
#[pyo3(signature = (func, max_size, ttl, serve_stale, max_key_size, max_value_size, max_bytes, module, qualname,
                    identity, settle, info_type, kw_mark, async_fill, dumps, loads, directory,
                    strict))]
#[allow(clippy::too_many_arguments)]
fn make_shared_cache(
    py: Python<'_>,
    func: Bound<'_, PyAny>,
    max_size: u32,
    ttl: Option<f64>,
    serve_stale: Option<f64>,
    max_key_size: u32,
    max_value_size: u32,
    max_bytes: Option<u64>,
    module: String,
    qualname: String,
    identity: Option<u64>,
    settle: Option<Bound<'_, PyAny>>,
    info_type: Bound<'_, PyAny>,
    kw_mark: Bound<'_, PyAny>,
    async_fill: Option<Bound<'_, PyAny>>,
    dumps: Bound<'_, PyAny>,
    loads: Bound<'_, PyAny>,
    directory: Option<std::path::PathBuf>,
    strict: bool,
) -> PyResult<Py<PyAny>> {
    use crate::shared::Params;
    let ttl_ns = ttl_nanos(ttl);
    let location = shared_backend::Location {
        dir: directory,
        module,
        qualname,
        params: Params {
            capacity: max_size,
            max_key_size,
            max_value_size,
            ttl_ns,
            max_bytes,
        },
        strict,
    };
    let store = match identity {
        Some(identity) => Some(location.open(identity).map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!(
                "cannot open the shared cache for {}: {e}",
                location.function()
            ))
        })?),
        None => None,
    };
    if let Some(e) = store.as_ref().and_then(|s| s.take_unusable()) {
        // Attributed to the line that decorates: _make_shared, _decorate, the decorator.
        let message = std::ffi::CString::new(format!(
            "cannot open the shared cache for {}: {e}; caching in this process only",
            location.function()
        ))?;
        let category = py.get_type::<pyo3::exceptions::PyRuntimeWarning>();
        PyErr::warn(py, &category, &message, 4)?;
    }
    let pickler = convert::Pickler {
        dumps: own(py, dumps)?,
        loads: own(py, loads)?,
    };
    let settle = settle.map(|f| own(py, f)).transpose()?;
    let stale_ns = ttl_nanos(serve_stale).unwrap_or(0);
    let backend =
        shared_backend::SharedBackend::new(store, location, settle, pickler, ttl_ns, stale_ns);
    let settings = Settings {
        func: own(py, func)?,
        core: Core::Shared(backend),
        info_type: own(py, info_type)?,
        kw_mark: own(py, kw_mark)?,
        async_fill: async_fill.map(|f| own(py, f)).transpose()?,
    };
    create(py, settings)
}

/// The versions of the shared-cache file format and of the byte format of its keys and
/// values, as one number: part of every shared cache's identity (so of its file names), so
/// a process never opens a file written in another format, nor decodes its entries.
#[cfg(unix)]
const SHARED_FORMAT: u64 =
    crate::shared::layout::FORMAT_VERSION * 1000 + crate::codec::CODEC_VERSION;

/// The CPython version this extension was built for ("3.13", "3.13t" when free-threaded).
const BUILT_FOR: &str = if cfg!(Py_GIL_DISABLED) {
    concat!(env!("WARP_CACHE_BUILT_FOR"), "t")
} else {
    env!("WARP_CACHE_BUILT_FOR")
};

#[pymodule(gil_used = false)]
fn _warp_cache(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // Forked children start with no flights (`crate::fork`); without the handler (it could
    // not be installed) they share the parent's, as before.
    crate::fork::watch();
    let tp = cached::init_type().map_err(|_| fetch(py))?;
    // SAFETY: `init_type` returns a borrowed reference to the immortal type object.
    let tp = unsafe { Bound::from_borrowed_ptr(py, tp) };
    m.add("CachedFunction", tp)?;
    let tp = bound::init_type().map_err(|_| fetch(py))?;
    // SAFETY: as above.
    let tp = unsafe { Bound::from_borrowed_ptr(py, tp) };
    m.add("BoundCachedMethod", tp)?;
    m.add_class::<awaitable::ReadyValue>()?;
    m.add("BUILT_FOR", BUILT_FOR)?;
    m.add_function(wrap_pyfunction!(make_memory_cache, m)?)?;
    #[cfg(unix)]
    m.add_function(wrap_pyfunction!(make_shared_cache, m)?)?;
    #[cfg(unix)]
    {
        m.add("SHARED_FORMAT", SHARED_FORMAT)?;
        m.add_function(wrap_pyfunction!(convert::codec_encode, m)?)?;
        m.add_function(wrap_pyfunction!(convert::codec_decode, m)?)?;
        m.add_function(wrap_pyfunction!(operator::default_shared_dir, m)?)?;
        m.add_function(wrap_pyfunction!(operator::shared_caches, m)?)?;
        m.add_function(wrap_pyfunction!(operator::clear_shared_cache, m)?)?;
        m.add_function(wrap_pyfunction!(operator::purge_shared_caches, m)?)?;
    }
    Ok(())
}
