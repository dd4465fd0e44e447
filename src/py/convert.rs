//! Python objects to and from the shared backend's byte format (`crate::codec`).
//!
//! Exact builtin and standard library types the format has tags for (scalars, containers,
//! the datetime family, `Decimal`, `UUID`) are walked into items ([`walk`]) and built back
//! from the checked items of a [`Parser`] ([`build`]); a value with any other part is
//! pickled (protocol 5) whole by the functions the Python package hands us. A key's bytes
//! start with a kind byte, so a call with keyword arguments can never share bytes with a
//! positional-only call; a call with keywords then records how many arguments were
//! positional, so no two splits of one list of items share a key.

mod build;
mod ints;
mod key_cache;
mod stdtypes;
mod walk;

use super::key::{keyword_count, keywords_by_name};
use super::object::{ErrSet, PyObj, PyResult};
use crate::codec::{self, Container, Form, Item, Leaf, Parser};
use crate::inline_buf::ByteSink;
use crate::py::ffi;
use std::ptr;
use walk::{Unsupported, Walker};

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

/// The leaf `obj` is if it is an exact builtin scalar (None, bool, int fitting `i64`,
/// float, str, bytes): the one-argument key's fast path.
///
/// # Safety
/// `obj` is a valid object that outlives the returned value.
#[inline(always)]
unsafe fn scalar<'a>(obj: *mut ffi::PyObject) -> Option<Leaf<'a>> {
    // SAFETY: as the caller promises; every call below only reads `obj`.
    unsafe {
        if obj == ffi::Py_None() {
            Some(Leaf::None)
        } else if obj == ffi::Py_True() {
            Some(Leaf::Bool(true))
        } else if obj == ffi::Py_False() {
            Some(Leaf::Bool(false))
        } else if ffi::PyLong_CheckExact(obj) != 0 {
            let mut overflow = 0;
            let n = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
            // Big ints take the general path.
            (overflow == 0).then_some(Leaf::Int(n))
        } else if ffi::PyFloat_CheckExact(obj) != 0 {
            Some(Leaf::Float(ffi::PyFloat_AS_DOUBLE(obj)))
        } else if ffi::PyUnicode_CheckExact(obj) != 0 {
            let mut len: ffi::Py_ssize_t = 0;
            let data = ffi::PyUnicode_AsUTF8AndSize(obj, &mut len);
            if data.is_null() {
                // Lone surrogates have no UTF-8 form: pickle keeps them.
                ffi::PyErr_Clear();
                return None;
            }
            let bytes = std::slice::from_raw_parts(data as *const u8, len as usize);
            // The str object owns its UTF-8 buffer for as long as it lives. Over 4 GiB: the
            // general path pickles it (and pickle refuses it).
            (u32::try_from(bytes.len()).is_ok())
                .then(|| Leaf::Str(std::str::from_utf8_unchecked(bytes)))
        } else if ffi::PyBytes_CheckExact(obj) != 0 {
            let data = ffi::PyBytes_AsString(obj) as *const u8;
            let len = ffi::PyBytes_Size(obj) as usize;
            (u32::try_from(len).is_ok()).then(|| Leaf::Bytes(std::slice::from_raw_parts(data, len)))
        } else {
            None
        }
    }
}

impl Pickler {
    /// Appends the encoding of `obj` to `out`: tagged if every part of it has a tag,
    /// else pickled whole.
    ///
    /// # Safety
    /// `obj` is a valid object.
    pub unsafe fn encode(
        &self,
        obj: *mut ffi::PyObject,
        out: &mut (impl ByteSink + ?Sized),
    ) -> PyResult<()> {
        // SAFETY: as the caller promises.
        unsafe { encode_value(Walker::value(), obj, &self.dumps, out) }
    }

    fn encode_pickled(
        &self,
        obj: *mut ffi::PyObject,
        out: &mut (impl ByteSink + ?Sized),
    ) -> PyResult<()> {
        encode_pickled(obj, &self.dumps, out)
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
                Some(Leaf::Int(n)) => {
                    codec::encode_int_after(KEY_POSITIONAL, n, out);
                    return Ok(());
                }
                Some(leaf) => {
                    out.push(KEY_POSITIONAL);
                    codec::put(&Item::Leaf(leaf), Form::Top, out);
                    return Ok(());
                }
                None => {}
            }
        }
        // SAFETY: as the caller promises.
        unsafe { self.encode_key_in_general(args, nargs, kwnames, out) }
    }

    /// [`Pickler::encode_key`] for every call but one positional scalar (which
    /// `encode_key` has already encoded): the arguments as one tuple (then keyword names
    /// and values by name), walked as a key (sets in canonical order), or pickled.
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
        let mut items: Vec<*mut ffi::PyObject> = Vec::new();
        if nkw == 0 {
            out.push(KEY_POSITIONAL);
        } else {
            // Where positional arguments end: `f(1, "a", 2, b=3)` and `f(1, a=2, b=3)` list
            // the same items, split in different places.
            out.push(KEY_WITH_KEYWORDS);
            out.extend_from_slice(&(nargs as u32).to_le_bytes());
            items.extend((0..nargs).map(arg));
            // SAFETY: kwnames holds nkw str objects.
            for (k, name) in unsafe { keywords_by_name(kwnames) } {
                items.push(name);
                items.push(arg(nargs + k));
            }
        }
        let start = out.written();
        let count = if nkw == 0 { nargs } else { items.len() };
        let item = |i: usize| if nkw == 0 { arg(i) } else { items[i] };
        let mut walker = Walker::key();
        codec::put(&Item::Open(Container::Tuple, count), Form::Top, out);
        for i in 0..count {
            // SAFETY: arguments and keyword names are valid objects alive for the call.
            if unsafe { walker.put(out, item(i), Form::Nested, 1) }.is_err() {
                out.truncate(start);
                let all: Vec<_> = (0..count).map(item).collect();
                return self.encode_pickled_tuple(&all, out);
            }
        }
        Ok(())
    }

    /// Pickles `items` as one tuple.
    fn encode_pickled_tuple(
        &self,
        items: &[*mut ffi::PyObject],
        out: &mut (impl ByteSink + ?Sized),
    ) -> PyResult<()> {
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

    /// The object encoded in `bytes` (a new one each time); a decoding failure is a
    /// `ValueError`. May run Python code: unpickling, or the first import of `decimal`,
    /// `uuid` or `datetime` in this process.
    #[inline(always)]
    pub fn decode(&self, bytes: &[u8]) -> PyResult<PyObj> {
        if let Some(n) = codec::decode_int(bytes) {
            // SAFETY: a new reference or NULL with an exception set.
            return unsafe { PyObj::from_owned(ffi::PyLong_FromLongLong(n)) };
        }
        self.decode_in_general(bytes)
    }

    /// [`Pickler::decode`] for any encoding.
    #[inline(never)]
    fn decode_in_general(&self, bytes: &[u8]) -> PyResult<PyObj> {
        decode_value(bytes, &self.loads)
    }
}

/// Appends the encoding of `obj` as `walker` finds it, or its pickle (by `dumps`) if the
/// walk gives up.
///
/// # Safety
/// `obj` is a valid object.
unsafe fn encode_value(
    mut walker: Walker,
    obj: *mut ffi::PyObject,
    dumps: &PyObj,
    out: &mut (impl ByteSink + ?Sized),
) -> PyResult<()> {
    let start = out.written();
    // SAFETY: `obj` is valid for this whole function.
    match unsafe { walker.put(out, obj, Form::Top, 0) } {
        Ok(()) => Ok(()),
        Err(Unsupported) => {
            out.truncate(start);
            encode_pickled(obj, dumps, out)
        }
    }
}

fn encode_pickled(
    obj: *mut ffi::PyObject,
    dumps: &PyObj,
    out: &mut (impl ByteSink + ?Sized),
) -> PyResult<()> {
    let args = [obj];
    // SAFETY: `dumps` and `obj` are valid objects.
    let pickled = unsafe {
        PyObj::from_owned(ffi::PyObject_Vectorcall(
            dumps.as_ptr(),
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
    codec::put(&Item::Pickle(data), Form::Top, out);
    Ok(())
}

/// The object encoded in `bytes`, unpickling with `loads` if it is pickled.
fn decode_value(bytes: &[u8], loads: &PyObj) -> PyResult<PyObj> {
    let mut parser = Parser::new(bytes);
    let obj = parser.visit(&mut build::Builder { loads })?;
    parser.finish().map_err(|_| build::undecodable())?;
    Ok(obj)
}

/// Tests' and benchmarks' view of the codec: the bytes the shared backend stores for
/// `obj` as a value (`canonical`: as inside a key, sets in canonical order), pickling with
/// `dumps` what the tags do not cover.
#[pyo3::pyfunction]
pub fn codec_encode(
    obj: pyo3::Bound<'_, pyo3::PyAny>,
    canonical: bool,
    dumps: pyo3::Bound<'_, pyo3::PyAny>,
) -> pyo3::PyResult<pyo3::Py<pyo3::types::PyBytes>> {
    let py = obj.py();
    let walker = if canonical {
        Walker::key()
    } else {
        Walker::value()
    };
    // SAFETY: a borrowed reference to a live object, never dropped by us.
    let dumps = unsafe { PyObj::borrow_raw(dumps.as_ptr()) };
    let mut out = Vec::new();
    // SAFETY: `obj` is a live object.
    unsafe { encode_value(walker, obj.as_ptr(), &dumps, &mut out) }
        .map_err(|_| pyo3::PyErr::fetch(py))?;
    Ok(pyo3::types::PyBytes::new(py, &out).unbind())
}

/// Tests' and benchmarks' view of the codec: the object encoded in `data`, a new one each
/// call (what a process pays the first time it reads an entry), unpickling with `loads`.
#[pyo3::pyfunction]
pub fn codec_decode(
    data: &[u8],
    loads: pyo3::Bound<'_, pyo3::PyAny>,
) -> pyo3::PyResult<pyo3::Py<pyo3::PyAny>> {
    let py = loads.py();
    // SAFETY: a borrowed reference to a live object, never dropped by us.
    let loads = unsafe { PyObj::borrow_raw(loads.as_ptr()) };
    let obj = decode_value(data, &loads).map_err(|_| pyo3::PyErr::fetch(py))?;
    // SAFETY: `into_ptr` hands over a new reference.
    Ok(unsafe { pyo3::Bound::from_owned_ptr(py, obj.into_ptr()) }.unbind())
}
