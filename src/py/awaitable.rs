//! The awaitable a cached coroutine function returns on a hit: already complete, so
//! `await` yields the value at once without scheduling anything.

use super::object::{self, ErrSet, PyObj};
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

/// A completed awaitable holding a cached value. Like a finished future it may be awaited
/// more than once.
#[pyclass(module = "warp_cache._warp_cache", frozen)]
pub struct ReadyValue {
    value: Py<PyAny>,
}

impl ReadyValue {
    /// Wraps `value` in a new completed awaitable.
    pub fn wrap(value: PyObj) -> object::PyResult<PyObj> {
        // SAFETY: called only from Python-facing code, on an attached thread.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: `into_ptr` hands over our reference.
        let value = unsafe { Bound::from_owned_ptr(py, value.into_ptr()) }.unbind();
        match Bound::new(py, ReadyValue { value }) {
            // SAFETY: `into_ptr` hands over a new reference.
            Ok(obj) => unsafe { PyObj::from_owned(obj.into_any().into_ptr()) },
            Err(err) => {
                err.restore(py);
                Err(ErrSet)
            }
        }
    }

    fn finish(&self, py: Python<'_>) -> PyErr {
        PyStopIteration::new_err((self.value.clone_ref(py),))
    }
}

#[pymethods]
impl ReadyValue {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Always finishes: raises `StopIteration(value)`.
    fn __next__(&self, py: Python<'_>) -> PyResult<()> {
        Err(self.finish(py))
    }

    fn send(&self, py: Python<'_>, _value: Bound<'_, PyAny>) -> PyResult<()> {
        Err(self.finish(py))
    }

    #[pyo3(signature = (exc, *_rest))]
    fn throw(&self, exc: Bound<'_, PyAny>, _rest: Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        Err(PyErr::from_value(exc))
    }

    fn close(&self) {}
}
