//! Cache keys built from a call's arguments, like `lru_cache` does.
//!
//! One positional argument of a plain scalar type (int, str, float, bytes, bool, None) is its
//! own key: no tuple. Otherwise the key is the argument tuple, with keyword arguments
//! appended, sorted by name, after a private marker: `(*args, MARK, k1, v1, k2, v2)`. The
//! scalar fast path cannot collide with a tuple key because none of those types ever
//! compares equal to a tuple.

use super::flight::FlightKey;
use super::object::{ErrSet, PyObj, PyResult};
use crate::memory::CacheKey;
use crate::py::ffi;
use std::mem::ManuallyDrop;

/// The low bits of an object's address that [`CallKey::into_word`] uses for flags.
const FLAG_BITS: usize = 0b11;
const _: () = assert!(std::mem::align_of::<ffi::PyObject>() > FLAG_BITS);

/// How deep nested tuples are inspected when deciding whether comparison is "quick".
const QUICK_DEPTH: u32 = 3;

/// A stored or probing key: the object, and whether comparing it can run no foreign code.
pub struct PyKey {
    obj: PyObj,
    quick: bool,
}

impl PyKey {
    /// The key object.
    #[inline]
    pub fn as_ptr(&self) -> *mut ffi::PyObject {
        self.obj.as_ptr()
    }
}

impl PyKey {
    /// The key object itself.
    pub fn into_object(self) -> PyObj {
        self.obj
    }
}

impl Clone for PyKey {
    fn clone(&self) -> Self {
        PyKey {
            obj: self.obj.clone(),
            quick: self.quick,
        }
    }
}

impl CacheKey for PyKey {
    #[inline]
    fn quick_eq(&self, other: &Self) -> Option<bool> {
        if self.as_ptr() == other.as_ptr() {
            return Some(true);
        }
        if !(self.quick && other.quick) {
            return None;
        }
        // SAFETY: both are valid objects whose types compare without calling Python code,
        // releasing the GIL or taking locks, so this is safe under a shard lock.
        let r = unsafe { ffi::PyObject_RichCompareBool(self.as_ptr(), other.as_ptr(), ffi::Py_EQ) };
        if r < 0 {
            // Only MemoryError is possible here; "not equal" is a safe answer for a cache.
            // SAFETY: an exception is set and we are attached.
            unsafe { ffi::PyErr_Clear() };
        }
        Some(r == 1)
    }
}

impl FlightKey for PyKey {
    fn quick_eq(&self, other: &Self) -> Option<bool> {
        CacheKey::quick_eq(self, other)
    }

    fn foreign_eq(&self, other: &Self) -> PyResult<bool> {
        // SAFETY: both keys are valid objects we hold references to; this may run Python code.
        match unsafe { ffi::PyObject_RichCompareBool(self.as_ptr(), other.as_ptr(), ffi::Py_EQ) } {
            r if r < 0 => Err(ErrSet),
            r => Ok(r == 1),
        }
    }
}

/// True for objects whose equality with any other quick object is decided by CPython's
/// own code: exact builtin scalars, the keyword marker, and tuples of those.
fn is_quick(obj: *mut ffi::PyObject, depth: u32, mark: *mut ffi::PyObject) -> bool {
    // SAFETY: `obj` is a valid object; the type checks only read its type pointer.
    unsafe {
        if is_scalar(obj) || obj == mark {
            return true;
        }
        if depth == 0 || ffi::PyTuple_CheckExact(obj) == 0 {
            return false;
        }
        let n = ffi::PyTuple_GET_SIZE(obj);
        (0..n).all(|i| is_quick(ffi::PyTuple_GET_ITEM(obj, i), depth - 1, mark))
    }
}

/// Exact int, str, float, bytes, bool or None.
///
/// # Safety
/// `obj` is a valid object.
#[inline]
unsafe fn is_scalar(obj: *mut ffi::PyObject) -> bool {
    // SAFETY: the caller promises a valid object; these only compare type pointers.
    unsafe {
        ffi::PyLong_CheckExact(obj) != 0
            || ffi::PyUnicode_CheckExact(obj) != 0
            || ffi::PyFloat_CheckExact(obj) != 0
            || ffi::PyBytes_CheckExact(obj) != 0
            || obj == ffi::Py_True()
            || obj == ffi::Py_False()
            || obj == ffi::Py_None()
    }
}

/// How many keyword arguments a vectorcall carries.
///
/// # Safety
/// `kwnames` is NULL or a tuple, as the vectorcall protocol delivers it.
#[inline]
pub unsafe fn keyword_count(kwnames: *mut ffi::PyObject) -> usize {
    if kwnames.is_null() {
        0
    } else {
        // SAFETY: a non-NULL kwnames is a tuple, as the caller promises.
        unsafe { ffi::PyTuple_GET_SIZE(kwnames) as usize }
    }
}

/// `(index, name)` of every keyword argument, sorted by name, so that keyword order never
/// changes a key.
///
/// # Safety
/// `kwnames` is a tuple of str, as the vectorcall protocol delivers it.
pub unsafe fn keywords_by_name(kwnames: *mut ffi::PyObject) -> Vec<(usize, *mut ffi::PyObject)> {
    // SAFETY: as the caller promises.
    let n = unsafe { keyword_count(kwnames) };
    let name = |k: usize| {
        // SAFETY: `k < n`, in range of the tuple.
        unsafe { ffi::PyTuple_GET_ITEM(kwnames, k as ffi::Py_ssize_t) }
    };
    let mut order: Vec<(usize, *mut ffi::PyObject)> = (0..n).map(|k| (k, name(k))).collect();
    // SAFETY: keyword names are exact str, whose comparison cannot fail.
    order.sort_by(|a, b| unsafe { ffi::PyUnicode_Compare(a.1, b.1) }.cmp(&0));
    order
}

/// The key of one call: borrowed from the arguments, or a tuple made for it.
pub struct CallKey {
    key: ManuallyDrop<PyKey>,
    owned: bool,
}

impl CallKey {
    /// Builds the key for a vectorcall's arguments.
    ///
    /// # Safety
    /// `args` holds `nargs` valid objects followed by one per name in `kwnames` (a tuple of
    /// str, or NULL), exactly as the vectorcall protocol delivers them.
    #[inline(always)] // the hit path's copy, inlined as it is with a single caller
    pub unsafe fn build(
        args: *const *mut ffi::PyObject,
        nargs: usize,
        kwnames: *mut ffi::PyObject,
        mark: *mut ffi::PyObject,
    ) -> PyResult<Self> {
        // SAFETY: kwnames as the protocol delivers it.
        let nkw = unsafe { keyword_count(kwnames) };
        if nkw == 0 && nargs == 1 {
            // SAFETY: there is one positional argument.
            let arg = unsafe { *args };
            // SAFETY: arguments are valid objects.
            if unsafe { is_scalar(arg) } {
                // SAFETY: borrowed, not owned: the caller's argument outlives the call, and
                // `CallKey` never drops a borrowed key.
                let obj = ManuallyDrop::into_inner(unsafe { PyObj::borrow_raw(arg) });
                return Ok(CallKey {
                    key: ManuallyDrop::new(PyKey { obj, quick: true }),
                    owned: false,
                });
            }
        }
        let len = nargs + if nkw > 0 { 1 + 2 * nkw } else { 0 };
        // SAFETY: allocating a tuple; NULL is handled.
        let tuple = unsafe { PyObj::from_owned(ffi::PyTuple_New(len as ffi::Py_ssize_t))? };
        let put = |i: usize, item: *mut ffi::PyObject| {
            // SAFETY: `tuple` is fresh with `len` empty slots and `i < len`; SET_ITEM steals
            // the new reference made here.
            unsafe {
                ffi::Py_INCREF(item);
                ffi::PyTuple_SET_ITEM(tuple.as_ptr(), i as ffi::Py_ssize_t, item);
            }
        };
        for i in 0..nargs {
            // SAFETY: `i < nargs`.
            put(i, unsafe { *args.add(i) });
        }
        if nkw > 0 {
            put(nargs, mark);
            // SAFETY: kwnames is a tuple of nkw str objects.
            let order = unsafe { keywords_by_name(kwnames) };
            for (slot, &(k, name)) in order.iter().enumerate() {
                put(nargs + 1 + 2 * slot, name);
                // SAFETY: keyword values follow the positional arguments.
                put(nargs + 2 + 2 * slot, unsafe { *args.add(nargs + k) });
            }
        }
        let quick = is_quick(tuple.as_ptr(), QUICK_DEPTH, mark);
        Ok(CallKey {
            key: ManuallyDrop::new(PyKey { obj: tuple, quick }),
            owned: true,
        })
    }

    /// A key object built earlier by [`CallKey::build`] (borrowed).
    ///
    /// # Safety
    /// `obj` is a valid object that outlives the returned value.
    pub unsafe fn existing(obj: *mut ffi::PyObject, mark: *mut ffi::PyObject) -> Self {
        let quick = is_quick(obj, QUICK_DEPTH, mark);
        // SAFETY: borrowed and never dropped, as the caller promises it outlives us.
        let obj = ManuallyDrop::into_inner(unsafe { PyObj::borrow_raw(obj) });
        CallKey {
            key: ManuallyDrop::new(PyKey { obj, quick }),
            owned: false,
        }
    }

    /// The key as one word: the object's address with the `quick` and `owned` flags in its
    /// two low bits (objects are at least 4-byte aligned). The reference it may own goes
    /// with the word.
    #[inline(always)]
    pub fn into_word(self) -> usize {
        let word =
            self.key.as_ptr() as usize | usize::from(self.key.quick) | usize::from(self.owned) << 1;
        std::mem::forget(self);
        word
    }

    /// The key [`CallKey::into_word`] made `word` of.
    ///
    /// # Safety
    /// `word` came from `into_word` and is used once; a borrowed key's object is still alive.
    #[inline(always)]
    pub unsafe fn from_word(word: usize) -> Self {
        let ptr = (word & !FLAG_BITS) as *mut ffi::PyObject;
        // SAFETY: the object `into_word` held; whether we own a reference is in the word, and
        // `CallKey` only releases an owned one.
        let obj = ManuallyDrop::into_inner(unsafe { PyObj::borrow_raw(ptr) });
        CallKey {
            key: ManuallyDrop::new(PyKey {
                obj,
                quick: word & 1 != 0,
            }),
            owned: word & 2 != 0,
        }
    }

    /// The key, to probe with.
    #[inline]
    pub fn probe(&self) -> &PyKey {
        &self.key
    }

    /// `hash(key)`, which may run `__hash__` and raise.
    pub fn hash(&self) -> PyResult<u64> {
        // SAFETY: the key is a valid object.
        let h = unsafe { ffi::PyObject_Hash(self.key.as_ptr()) };
        if h == -1 {
            return Err(ErrSet);
        }
        Ok(crate::memory::spread_hash(h as u64))
    }

    /// An owned key to store.
    pub fn into_owned(mut self) -> PyKey {
        let owned = self.owned;
        // SAFETY: `self.key` is not used again: `self` is forgotten right after.
        let key = unsafe { ManuallyDrop::take(&mut self.key) };
        std::mem::forget(self);
        if owned {
            key
        } else {
            let stored = key.clone();
            std::mem::forget(key); // borrowed: no reference of ours to release
            stored
        }
    }
}

impl Drop for CallKey {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: the tuple is ours and not used after this.
            unsafe { ManuallyDrop::drop(&mut self.key) };
        }
    }
}
