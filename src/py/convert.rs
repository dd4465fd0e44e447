//! Python objects to and from the shared backend's byte format (`crate::codec`).
//!
//! Exact builtin scalars and flat tuples of them use the compact tags; anything else is
//! pickled (protocol 5) by the functions the Python package hands us. A key's bytes start
//! with a kind byte, so a call with keyword arguments can never share bytes with a
//! positional-only call; a call with keywords then records how many arguments were
//! positional, so no two splits of one list of items share a key.

use super::key::{keyword_count, keywords_by_name};
use super::object::{ErrSet, PyObj, PyResult};
use crate::codec::{self, Scalar, Value};
use crate::inline_buf::ByteSink;
use pyo3::ffi;
use std::ptr;

/// First byte of a key: positional arguments only.
const KEY_POSITIONAL: u8 = 0;
/// First byte of a key: the number of positional arguments (`u32`), then the positional
/// arguments, keyword names and values by name.
const KEY_WITH_KEYWORDS: u8 = 1;

/// The pickle functions of the Python package.
pub struct Pickler {
    /// `dumps(obj) -> bytes` (protocol 5).
    pub dumps: PyObj,
    /// `loads(bytes) -> obj`.
    pub loads: PyObj,
}

/// A scalar view of `obj` if it is an exact builtin the compact format covers.
///
/// # Safety
/// `obj` is a valid object that outlives the returned value.
#[inline(always)]
unsafe fn scalar<'a>(obj: *mut ffi::PyObject) -> Option<Scalar<'a>> {
    // SAFETY: as the caller promises; every call below only reads `obj`.
    unsafe {
        if obj == ffi::Py_None() {
            Some(Scalar::None)
        } else if obj == ffi::Py_True() {
            Some(Scalar::Bool(true))
        } else if obj == ffi::Py_False() {
            Some(Scalar::Bool(false))
        } else if ffi::PyLong_CheckExact(obj) != 0 {
            let mut overflow = 0;
            let n = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
            // Big ints go to pickle.
            (overflow == 0).then_some(Scalar::Int(n))
        } else if ffi::PyFloat_CheckExact(obj) != 0 {
            Some(Scalar::Float(ffi::PyFloat_AsDouble(obj)))
        } else if ffi::PyUnicode_CheckExact(obj) != 0 {
            let mut len: ffi::Py_ssize_t = 0;
            let data = ffi::PyUnicode_AsUTF8AndSize(obj, &mut len);
            if data.is_null() {
                // Lone surrogates have no UTF-8 form: pickle keeps them.
                ffi::PyErr_Clear();
                return None;
            }
            let bytes = std::slice::from_raw_parts(data as *const u8, len as usize);
            // The str object owns its UTF-8 buffer for as long as it lives.
            Some(Scalar::Str(std::str::from_utf8_unchecked(bytes)))
        } else if ffi::PyBytes_CheckExact(obj) != 0 {
            let data = ffi::PyBytes_AsString(obj) as *const u8;
            let len = ffi::PyBytes_Size(obj) as usize;
            Some(Scalar::Bytes(std::slice::from_raw_parts(data, len)))
        } else {
            None
        }
    }
}

/// Scalars for every item, or `None` if any needs pickle.
///
/// # Safety
/// Every pointer is a valid object outliving the result.
unsafe fn scalars<'a>(items: impl Iterator<Item = *mut ffi::PyObject>) -> Option<Vec<Scalar<'a>>> {
    // SAFETY: as the caller promises.
    items.map(|item| unsafe { scalar(item) }).collect()
}

impl Pickler {
    /// Appends the encoding of `obj` to `out`.
    ///
    /// # Safety
    /// `obj` is a valid object.
    pub unsafe fn encode(
        &self,
        obj: *mut ffi::PyObject,
        out: &mut (impl ByteSink + ?Sized),
    ) -> PyResult<()> {
        // SAFETY: `obj` is valid for this whole function.
        unsafe {
            if let Some(s) = scalar(obj) {
                codec::encode(&Value::Scalar(s), out);
                return Ok(());
            }
            if ffi::PyTuple_CheckExact(obj) != 0 {
                let n = ffi::PyTuple_GET_SIZE(obj);
                if let Some(items) = scalars((0..n).map(|i| ffi::PyTuple_GET_ITEM(obj, i))) {
                    codec::encode(&Value::Tuple(items), out);
                    return Ok(());
                }
            }
        }
        self.encode_pickled(obj, out)
    }

    fn encode_pickled(
        &self,
        obj: *mut ffi::PyObject,
        out: &mut (impl ByteSink + ?Sized),
    ) -> PyResult<()> {
        let args = [obj];
        // SAFETY: `dumps` and `obj` are valid objects.
        let pickled = unsafe {
            PyObj::from_owned(ffi::PyObject_Vectorcall(
                self.dumps.as_ptr(),
                args.as_ptr(),
                1,
                ptr::null_mut(),
            ))?
        };
        // SAFETY: `dumps` returns bytes.
        let data = unsafe {
            let p = pickled.as_ptr();
            if ffi::PyBytes_Check(p) == 0 {
                ffi::PyErr_SetString(
                    ffi::PyExc_TypeError,
                    c"pickle.dumps did not return bytes".as_ptr(),
                );
                return Err(ErrSet);
            }
            std::slice::from_raw_parts(
                ffi::PyBytes_AsString(p) as *const u8,
                ffi::PyBytes_Size(p) as usize,
            )
        };
        if u32::try_from(data.len()).is_err() {
            // SAFETY: setting an exception.
            unsafe {
                ffi::PyErr_SetString(
                    ffi::PyExc_OverflowError,
                    c"object pickles to over 4 GiB".as_ptr(),
                )
            };
            return Err(ErrSet);
        }
        codec::encode(&Value::Pickle(data), out);
        Ok(())
    }

    /// The key bytes of a vectorcall's arguments. One positional scalar (the common case)
    /// is encoded inline; everything else out of line.
    ///
    /// # Safety
    /// The arguments are as the vectorcall protocol delivers them.
    #[inline(always)]
    pub unsafe fn encode_key(
        &self,
        args: *const *mut ffi::PyObject,
        nargs: usize,
        kwnames: *mut ffi::PyObject,
        out: &mut (impl ByteSink + ?Sized),
    ) -> PyResult<()> {
        // SAFETY: kwnames as the protocol delivers it.
        if nargs == 1 && unsafe { keyword_count(kwnames) } == 0 {
            // SAFETY: `args` holds one valid object, alive for the whole call.
            match unsafe { scalar(*args) } {
                Some(Scalar::Int(n)) => {
                    codec::encode_int_after(KEY_POSITIONAL, n, out);
                    return Ok(());
                }
                Some(s) => {
                    out.push(KEY_POSITIONAL);
                    codec::encode(&Value::Scalar(s), out);
                    return Ok(());
                }
                None => {}
            }
        }
        // SAFETY: as the caller promises.
        unsafe { self.encode_key_in_general(args, nargs, kwnames, out) }
    }

    /// [`Pickler::encode_key`] for every call but one positional scalar (which
    /// `encode_key` has already encoded).
    ///
    /// # Safety
    /// As for [`Pickler::encode_key`].
    #[inline(never)]
    unsafe fn encode_key_in_general(
        &self,
        args: *const *mut ffi::PyObject,
        nargs: usize,
        kwnames: *mut ffi::PyObject,
        out: &mut (impl ByteSink + ?Sized),
    ) -> PyResult<()> {
        // SAFETY: kwnames as the protocol delivers it.
        let nkw = unsafe { keyword_count(kwnames) };
        // SAFETY: `args` holds nargs + nkw valid objects.
        let arg = |i: usize| unsafe { *args.add(i) };
        if nkw == 0 {
            out.push(KEY_POSITIONAL);
            let items: Vec<_> = (0..nargs).map(arg).collect();
            return self.encode_sequence(&items, out);
        }
        // Where positional arguments end: `f(1, "a", 2, b=3)` and `f(1, a=2, b=3)` list the
        // same items, split in different places.
        out.push(KEY_WITH_KEYWORDS);
        out.extend_from_slice(&(nargs as u32).to_le_bytes());
        let mut items: Vec<_> = (0..nargs).map(arg).collect();
        // SAFETY: kwnames holds nkw str objects.
        for (k, name) in unsafe { keywords_by_name(kwnames) } {
            items.push(name);
            items.push(arg(nargs + k));
        }
        self.encode_sequence(&items, out)
    }

    /// Encodes `items` as one flat tuple, or pickles them as a tuple.
    fn encode_sequence(
        &self,
        items: &[*mut ffi::PyObject],
        out: &mut (impl ByteSink + ?Sized),
    ) -> PyResult<()> {
        // SAFETY: the items are argument objects alive for the whole call.
        if let Some(scalars) = unsafe { scalars(items.iter().copied()) } {
            codec::encode(&Value::Tuple(scalars), out);
            return Ok(());
        }
        // SAFETY: building a tuple of valid objects; SET_ITEM steals the new references.
        let tuple = unsafe {
            let t = PyObj::from_owned(ffi::PyTuple_New(items.len() as ffi::Py_ssize_t))?;
            for (i, &item) in items.iter().enumerate() {
                ffi::Py_INCREF(item);
                ffi::PyTuple_SET_ITEM(t.as_ptr(), i as ffi::Py_ssize_t, item);
            }
            t
        };
        self.encode_pickled(tuple.as_ptr(), out)
    }

    /// The object encoded in `bytes`; a decoding failure is a `ValueError`.
    #[inline(always)]
    pub fn decode(&self, bytes: &[u8]) -> PyResult<PyObj> {
        if let Some(n) = codec::decode_int(bytes) {
            return scalar_object(Scalar::Int(n));
        }
        self.decode_in_general(bytes)
    }

    /// [`Pickler::decode`] for any encoding.
    #[inline(never)]
    fn decode_in_general(&self, bytes: &[u8]) -> PyResult<PyObj> {
        match codec::decode(bytes) {
            Ok(Value::Scalar(s)) => scalar_object(s),
            Ok(Value::Tuple(items)) => {
                // SAFETY: a fresh tuple filled with new references below.
                let tuple =
                    unsafe { PyObj::from_owned(ffi::PyTuple_New(items.len() as ffi::Py_ssize_t))? };
                for (i, s) in items.into_iter().enumerate() {
                    let item = scalar_object(s)?;
                    // SAFETY: index in range of the fresh tuple; SET_ITEM steals `item`.
                    unsafe {
                        ffi::PyTuple_SET_ITEM(tuple.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr())
                    };
                }
                Ok(tuple)
            }
            Ok(Value::Pickle(data)) => {
                let blob = bytes_object(data)?;
                let args = [blob.as_ptr()];
                // SAFETY: `loads` and the bytes object are valid.
                unsafe {
                    PyObj::from_owned(ffi::PyObject_Vectorcall(
                        self.loads.as_ptr(),
                        args.as_ptr(),
                        1,
                        ptr::null_mut(),
                    ))
                }
            }
            Err(_) => {
                // SAFETY: setting an exception.
                unsafe {
                    ffi::PyErr_SetString(
                        ffi::PyExc_ValueError,
                        c"undecodable shared cache entry".as_ptr(),
                    )
                };
                Err(ErrSet)
            }
        }
    }
}

fn bytes_object(data: &[u8]) -> PyResult<PyObj> {
    // SAFETY: copies `data` into a new bytes object.
    unsafe {
        PyObj::from_owned(ffi::PyBytes_FromStringAndSize(
            data.as_ptr() as *const _,
            data.len() as ffi::Py_ssize_t,
        ))
    }
}

fn scalar_object(s: Scalar<'_>) -> PyResult<PyObj> {
    // SAFETY: each constructor returns a new reference or NULL with an exception set.
    unsafe {
        match s {
            Scalar::None => Ok(PyObj::from_borrowed(ffi::Py_None())),
            Scalar::Bool(b) => PyObj::from_owned(ffi::PyBool_FromLong(b.into())),
            Scalar::Int(n) => PyObj::from_owned(ffi::PyLong_FromLongLong(n)),
            Scalar::Float(x) => PyObj::from_owned(ffi::PyFloat_FromDouble(x)),
            Scalar::Str(text) => PyObj::from_owned(ffi::PyUnicode_FromStringAndSize(
                text.as_ptr() as *const _,
                text.len() as ffi::Py_ssize_t,
            )),
            Scalar::Bytes(data) => bytes_object(data),
        }
    }
}
