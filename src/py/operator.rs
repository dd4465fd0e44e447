//! The operator CLI's view of shared caches (`python -m warp_cache`): thin wrappers over
//! [`crate::shared::inventory`].

use crate::shared::{default_dir, inventory};
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;

fn dir_or_default(directory: Option<PathBuf>) -> PathBuf {
    directory.unwrap_or_else(default_dir)
}

fn os_error(dir: &std::path::Path, err: std::io::Error) -> PyErr {
    PyOSError::new_err(format!("{}: {err}", dir.display()))
}

/// The directory shared caches use when `WARP_CACHE_DIR` is not set.
#[pyfunction]
pub fn default_shared_dir() -> PathBuf {
    default_dir()
}

/// One dict per cache in `directory`: stem, function, identity, valid, max_size, entries,
/// hits, misses, oversize_skips, bytes (on disk), held_bytes (keys and values held),
/// in_use, last_use.
#[pyfunction]
#[pyo3(signature = (directory=None))]
pub fn shared_caches(py: Python<'_>, directory: Option<PathBuf>) -> PyResult<Vec<Py<PyDict>>> {
    let dir = dir_or_default(directory);
    let rows = py
        .detach(|| inventory::list(&dir))
        .map_err(|e| os_error(&dir, e))?;
    rows.into_iter()
        .map(|row| {
            let d = PyDict::new(py);
            d.set_item("stem", row.stem)?;
            d.set_item("function", row.function)?;
            d.set_item("identity", row.identity)?;
            d.set_item("valid", row.valid)?;
            d.set_item("max_size", row.max_size)?;
            d.set_item("entries", row.entries)?;
            d.set_item("hits", row.hits)?;
            d.set_item("misses", row.misses)?;
            d.set_item("oversize_skips", row.oversize_skips)?;
            d.set_item("bytes", row.bytes)?;
            d.set_item("held_bytes", row.held_bytes)?;
            d.set_item("in_use", row.in_use)?;
            d.set_item("last_use", row.last_use)?;
            Ok(d.unbind())
        })
        .collect()
}

/// Clears cache `stem` for every process; False if it is not a valid cache or stayed locked.
#[pyfunction]
#[pyo3(signature = (stem, directory=None))]
pub fn clear_shared_cache(
    py: Python<'_>,
    stem: String,
    directory: Option<PathBuf>,
) -> PyResult<bool> {
    let dir = dir_or_default(directory);
    py.detach(|| inventory::clear(&dir, &stem))
        .map_err(|e| os_error(&dir, e))
}

/// Removes caches no live process uses (all, or only stale ones); the stems removed.
#[pyfunction]
#[pyo3(signature = (all, directory=None))]
pub fn purge_shared_caches(
    py: Python<'_>,
    all: bool,
    directory: Option<PathBuf>,
) -> PyResult<Vec<String>> {
    let dir = dir_or_default(directory);
    py.detach(|| inventory::purge(&dir, all))
        .map_err(|e| os_error(&dir, e))
}
