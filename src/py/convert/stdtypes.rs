//! The standard library types the codec encodes exactly (`datetime`'s, `decimal.Decimal`,
//! `uuid.UUID`), found once per process.
//!
//! Encoding only looks them up (`import: false`): an object of one of these types exists
//! only once its module has been imported, so a process that never used them imports
//! nothing. Decoding imports the module if need be (as unpickling would). A lookup runs no
//! lock: two threads may both find a type, and the first to record it wins.

use super::super::object::PyObj;
use crate::py::ffi;
use std::ffi::CStr;
use std::sync::OnceLock;

/// `decimal.Decimal`.
static DECIMAL: OnceLock<PyObj> = OnceLock::new();
/// `uuid.UUID` and what building one needs.
static UUID: OnceLock<UuidTypes> = OnceLock::new();

/// `uuid.UUID`, its `SafeUUID` members, and its two attribute names.
pub struct UuidTypes {
    /// `uuid.UUID`.
    pub class: PyObj,
    /// `SafeUUID.unknown`, `SafeUUID.safe`, `SafeUUID.unsafe`, in the codec's byte order.
    pub safety: [PyObj; 3],
    /// `"int"`, interned.
    pub int_name: PyObj,
    /// `"is_safe"`, interned.
    pub is_safe_name: PyObj,
}

/// The module `name` if it is imported (with `import`, importing it now if it is not).
/// Failures are cleared: the caller then treats the type as unavailable.
fn module(name: &CStr, import: bool) -> Option<PyObj> {
    // SAFETY: `name` is NUL-terminated; each call returns a new reference or NULL, and an
    // error (if any) is cleared before returning.
    unsafe {
        let found = if import {
            ffi::PyImport_ImportModule(name.as_ptr())
        } else {
            let key = PyObj::from_owned(ffi::PyUnicode_FromString(name.as_ptr())).ok();
            key.map_or(std::ptr::null_mut(), |key| {
                ffi::PyImport_GetModule(key.as_ptr())
            })
        };
        let found = PyObj::from_owned(found).ok();
        if found.is_none() {
            ffi::PyErr_Clear();
        }
        found
    }
}

fn attribute(obj: &PyObj, name: &CStr) -> Option<PyObj> {
    // SAFETY: a valid object and a NUL-terminated name; a new reference or NULL.
    let found =
        unsafe { PyObj::from_owned(ffi::PyObject_GetAttrString(obj.as_ptr(), name.as_ptr())) };
    if found.is_err() {
        // SAFETY: an exception is set; we are attached.
        unsafe { ffi::PyErr_Clear() };
    }
    found.ok()
}

fn is_type(obj: &PyObj) -> bool {
    // SAFETY: a valid object; only its type is read.
    unsafe { ffi::PyType_Check(obj.as_ptr()) != 0 }
}

/// `datetime`'s C API (its types and constructors).
pub fn datetime(import: bool) -> Option<&'static ffi::PyDateTime_CAPI> {
    // SAFETY: the API pointer is NULL or points to the capsule's struct, which lives as long
    // as the interpreter. PyDateTime_IMPORT imports `datetime` (a sys.modules lookup when
    // it is already imported) and records the pointer once.
    unsafe {
        if ffi::PyDateTimeAPI().is_null() {
            if !import && module(c"datetime", false).is_none() {
                return None;
            }
            ffi::PyDateTime_IMPORT();
            if ffi::PyDateTimeAPI().is_null() {
                ffi::PyErr_Clear();
                return None;
            }
        }
        Some(&*ffi::PyDateTimeAPI())
    }
}

/// `decimal.Decimal`.
pub fn decimal(import: bool) -> Option<&'static PyObj> {
    if let Some(found) = DECIMAL.get() {
        return Some(found);
    }
    let class = attribute(&module(c"decimal", import)?, c"Decimal").filter(is_type)?;
    let _ = DECIMAL.set(class);
    DECIMAL.get()
}

/// `uuid.UUID` and its helpers.
pub fn uuid(import: bool) -> Option<&'static UuidTypes> {
    if let Some(found) = UUID.get() {
        return Some(found);
    }
    let module = module(c"uuid", import)?;
    let class = attribute(&module, c"UUID").filter(is_type)?;
    let safe_uuid = attribute(&module, c"SafeUUID")?;
    let member = |name| attribute(&safe_uuid, name);
    let interned = |name: &CStr| {
        // SAFETY: a NUL-terminated name; a new reference or NULL.
        let found = unsafe { PyObj::from_owned(ffi::PyUnicode_InternFromString(name.as_ptr())) };
        if found.is_err() {
            // SAFETY: an exception is set; we are attached.
            unsafe { ffi::PyErr_Clear() };
        }
        found.ok()
    };
    let types = UuidTypes {
        class,
        safety: [member(c"unknown")?, member(c"safe")?, member(c"unsafe")?],
        int_name: interned(c"int")?,
        is_safe_name: interned(c"is_safe")?,
    };
    let _ = UUID.set(types);
    UUID.get()
}
