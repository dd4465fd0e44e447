//! Python ints to and from little-endian bytes, of any size: CPython 3.13 has a public API
//! for it (`PyLong_AsNativeBytes`); 3.11 and 3.12 have only the private one pickle uses.

use super::super::object::{PyObj, PyResult};
use crate::py::ffi;

/// The int `obj` as little-endian two's complement in the fewest bytes, or `None` (with no
/// exception set) if that fails.
///
/// # Safety
/// `obj` is a valid exact `int`.
pub unsafe fn to_le_bytes(obj: *mut ffi::PyObject) -> Option<Vec<u8>> {
    #[cfg(Py_3_13)]
    // SAFETY: `obj` is an int; a NULL buffer of size 0 asks only for the size needed, and
    // the second call writes at most `needed` bytes into a buffer of that size.
    let bytes = unsafe {
        let flags = ffi::Py_ASNATIVEBYTES_LITTLE_ENDIAN;
        let needed = ffi::PyLong_AsNativeBytes(obj, std::ptr::null_mut(), 0, flags);
        let mut bytes = vec![0u8; usize::try_from(needed).ok()?.max(1)];
        let len = bytes.len() as ffi::Py_ssize_t;
        let wrote = ffi::PyLong_AsNativeBytes(obj, bytes.as_mut_ptr().cast(), len, flags);
        (needed >= 0 && wrote >= 0 && wrote <= len).then_some(bytes)
    };
    #[cfg(not(Py_3_13))]
    // SAFETY: `obj` is an int (a `PyLongObject`); `_PyLong_NumBits` counts the bits of its
    // magnitude, one more byte holds the sign, and `_PyLong_AsByteArray` fills exactly that
    // many bytes.
    let bytes = unsafe {
        let bits = ffi::_PyLong_NumBits(obj);
        if bits == usize::MAX {
            None
        } else {
            let mut bytes = vec![0u8; bits / 8 + 1];
            let status =
                ffi::_PyLong_AsByteArray(obj.cast(), bytes.as_mut_ptr(), bytes.len(), 1, 1);
            (status == 0).then_some(bytes)
        }
    };
    if bytes.is_none() {
        // SAFETY: clearing whatever error the failed conversion set; we are attached.
        unsafe { ffi::PyErr_Clear() };
    }
    let mut bytes = bytes?;
    let len = crate::codec::trim_big_int(&bytes).len();
    bytes.truncate(len);
    Some(bytes)
}

/// The int `obj` if it lies in `0..2**128`, or `None` (with no exception set).
///
/// # Safety
/// `obj` is a valid exact `int`.
pub unsafe fn to_u128(obj: *mut ffi::PyObject) -> Option<u128> {
    // SAFETY: as the caller promises.
    let bytes = unsafe { to_le_bytes(obj) }?;
    // Two's complement: a sign byte of 0 may follow the 16 value bytes.
    let (value, sign) = match bytes.len() {
        0..=16 => (&bytes[..], bytes.last().copied().unwrap_or(0)),
        17 if bytes[16] == 0 => (&bytes[..16], 0),
        _ => return None,
    };
    if bytes.len() <= 16 && sign & 0x80 != 0 {
        return None; // negative
    }
    let mut raw = [0u8; 16];
    raw[..value.len()].copy_from_slice(value);
    Some(u128::from_le_bytes(raw))
}

/// A new int from little-endian two's complement `bytes` (`signed`), or unsigned.
pub fn from_le_bytes(bytes: &[u8], signed: bool) -> PyResult<PyObj> {
    #[cfg(Py_3_13)]
    // SAFETY: reads `bytes.len()` bytes from a live slice; a new reference or NULL.
    let obj = unsafe {
        let flags = ffi::Py_ASNATIVEBYTES_LITTLE_ENDIAN;
        if signed {
            ffi::PyLong_FromNativeBytes(bytes.as_ptr().cast(), bytes.len(), flags)
        } else {
            ffi::PyLong_FromUnsignedNativeBytes(bytes.as_ptr().cast(), bytes.len(), flags)
        }
    };
    #[cfg(not(Py_3_13))]
    // SAFETY: reads `bytes.len()` bytes from a live slice; a new reference or NULL.
    let obj = unsafe { ffi::_PyLong_FromByteArray(bytes.as_ptr(), bytes.len(), 1, signed.into()) };
    // SAFETY: a new reference or NULL with an exception set.
    unsafe { PyObj::from_owned(obj) }
}
