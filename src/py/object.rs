//! Owned references to Python objects, and the "a Python exception is set" error.

use crate::py::ffi;
use std::ptr::NonNull;

/// A Python exception has been set on this thread; return NULL to the interpreter.
#[derive(Debug)]
pub struct ErrSet;

/// Result of an FFI-level step.
pub type PyResult<T> = Result<T, ErrSet>;

/// An owned strong reference. Cloning increfs, dropping decrefs: both require a thread
/// attached to the interpreter, which is true wherever this crate runs Python-facing code.
pub struct PyObj(NonNull<ffi::PyObject>);

// SAFETY: CPython reference counts are safe to change from any attached thread (atomic or
// biased on free-threaded builds, serialized by the GIL otherwise); the store only moves
// these between threads that are attached.
unsafe impl Send for PyObj {}
// SAFETY: as for Send: shared `&PyObj` only reads the pointer or increfs.
unsafe impl Sync for PyObj {}

impl PyObj {
    /// Takes ownership of a new reference; NULL means an exception is set.
    ///
    /// # Safety
    /// `ptr` is NULL or a new (owned) reference.
    #[inline]
    pub unsafe fn from_owned(ptr: *mut ffi::PyObject) -> PyResult<Self> {
        NonNull::new(ptr).map(PyObj).ok_or(ErrSet)
    }

    /// Takes a new reference to a borrowed object.
    ///
    /// # Safety
    /// `ptr` is a valid, non-NULL object pointer.
    #[inline]
    pub unsafe fn from_borrowed(ptr: *mut ffi::PyObject) -> Self {
        // SAFETY: the caller promises a valid object.
        unsafe { ffi::Py_INCREF(ptr) };
        // SAFETY: the caller promises non-NULL.
        PyObj(unsafe { NonNull::new_unchecked(ptr) })
    }

    /// Views a borrowed pointer as a `PyObj` without taking a reference; the wrapper must
    /// never be dropped.
    ///
    /// # Safety
    /// `ptr` is a valid, non-NULL object that outlives the returned value.
    #[inline]
    pub unsafe fn borrow_raw(ptr: *mut ffi::PyObject) -> std::mem::ManuallyDrop<Self> {
        // SAFETY: the caller promises non-NULL.
        std::mem::ManuallyDrop::new(PyObj(unsafe { NonNull::new_unchecked(ptr) }))
    }

    /// The raw pointer, still owned by `self`.
    #[inline]
    pub fn as_ptr(&self) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }

    /// Gives up ownership, returning the new reference.
    #[inline]
    pub fn into_ptr(self) -> *mut ffi::PyObject {
        let ptr = self.0.as_ptr();
        std::mem::forget(self);
        ptr
    }
}

impl Clone for PyObj {
    #[inline]
    fn clone(&self) -> Self {
        // SAFETY: `self` keeps the object alive, so it is valid to incref.
        unsafe { PyObj::from_borrowed(self.as_ptr()) }
    }
}

impl Drop for PyObj {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own one reference. Dropping can run a finalizer, which is why the store
        // hands entries back to be dropped only after its locks are released.
        unsafe { ffi::Py_DECREF(self.as_ptr()) };
    }
}
