//! The CPython C API as this crate sees it: PyO3's `ffi` module, plus what the PyO3 in use
//! does not carry. The extension builds against two PyO3 lines (the newest for CPython
//! 3.11-3.15, 0.28 for free-threaded 3.13t, which 0.29 dropped: see docs/architecture.md,
//! "Interpreters and the two PyO3 lines"); every difference between them, or between
//! interpreters, that the code meets is absorbed here, so the rest of `src/py/` imports
//! `ffi` from this module only.

pub use pyo3::ffi::*;

#[cfg(not(Py_3_13))]
extern "C" {
    /// The number of bits of `|v|`, or `usize::MAX` with an exception set (CPython 3.11 and
    /// 3.12 export it; PyO3 0.30 dropped the declaration of this private function). 3.13
    /// has the public `PyLong_AsNativeBytes` instead.
    pub fn _PyLong_NumBits(v: *mut PyObject) -> usize;
}

/// Whether the exact str `op` keeps one byte per character, so that `PyUnicode_1BYTE_DATA`
/// reads its text: its compact-ASCII bits (the C macro, inline).
///
/// # Safety
/// `op` is a valid exact `str`; the thread is attached.
#[cfg(not(Py_3_14))]
#[inline]
pub unsafe fn str_is_one_byte(op: *mut PyObject) -> bool {
    // SAFETY: as the caller promises; reads the str's state bits.
    unsafe { PyUnicode_IS_COMPACT_ASCII(op) != 0 }
}

/// As above, from 3.14, whose str `state` bitfield neither PyO3 line lays out: the kind
/// CPython reports (a call).
///
/// # Safety
/// `op` is a valid exact `str`; the thread is attached.
#[cfg(Py_3_14)]
#[inline]
pub unsafe fn str_is_one_byte(op: *mut PyObject) -> bool {
    // SAFETY: as the caller promises; `PyUnicode_KIND` only reads the str.
    unsafe { PyUnicode_KIND(op) == PyUnicode_1BYTE_KIND }
}
