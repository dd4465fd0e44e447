//! Python objects to codec items: a walk that puts each object as it meets it (no tree in
//! between), or gives up on the whole value ([`Unsupported`]) for the caller to pickle it.
//!
//! Only exact types are encoded (`type(x) is list`, never a subclass, whose pickling may
//! carry state or a custom `__reduce__`). The walk also gives up on a value nested deeper
//! than [`MAX_DEPTH`], on one that holds a mutable container (list, dict, set, bytearray)
//! twice or inside itself (pickle keeps that sharing; the codec would make copies), and
//! on a container that changes size while it is read (another thread, or a finalizer run
//! by an allocation): the count already written would no longer match. No item is ever
//! written with a count it does not have.
//!
//! Keys are walked `canonical`: set and frozenset elements are written in the order of
//! their encoded bytes, so equal sets of the same elements give the same key in every
//! process, whatever the hash seed. Dicts keep their insertion order in keys as in values:
//! a function can see that order, so two orders are two keys (a miss, never a wrong hit).

use super::super::object::PyObj;
use super::ints;
use super::stdtypes;
use crate::codec::{
    decimal_is_canonical, put, Clock, Container, Date, DateTime, Form, Item, Leaf, Time, TimeDelta,
    Tz, Uuid, UuidSafety, MAX_DEPTH,
};
use crate::inline_buf::ByteSink;
use crate::py::ffi;
use std::ops::Range;

/// The value has a part the codec does not cover (or changed while it was read): the
/// caller pickles it whole. No Python exception is left set.
pub struct Unsupported;

type Walked = Result<(), Unsupported>;

/// Mutable containers met so far, by address: a second meeting means shared structure.
/// The first few are kept inline (most values have fewer), the rest in a hash set.
struct Seen {
    few: [usize; 8],
    count: usize,
    many: hashbrown::HashSet<usize>,
}

impl Seen {
    fn new() -> Self {
        Self {
            few: [0; 8],
            count: 0,
            many: hashbrown::HashSet::new(),
        }
    }

    /// Records `obj`; false if it was recorded before.
    fn first_meeting(&mut self, obj: *mut ffi::PyObject) -> bool {
        let address = obj as usize;
        if self.few[..self.count].contains(&address) {
            return false;
        }
        if self.count < self.few.len() {
            self.few[self.count] = address;
            self.count += 1;
            true
        } else {
            self.many.insert(address)
        }
    }
}

/// One walk over one value (or one key's arguments).
pub struct Walker {
    canonical: bool,
    seen: Seen,
}

/// Clears the exception a failed call set, and gives up.
fn clear() -> Unsupported {
    // SAFETY: we are attached; clearing is harmless if nothing is set.
    unsafe { ffi::PyErr_Clear() };
    Unsupported
}

/// Gives up on a length the format cannot write (a `u32`): pickle then refuses the value
/// with an `OverflowError`, where writing it would panic.
#[inline(always)]
fn fits(len: usize) -> Walked {
    if u32::try_from(len).is_ok() {
        Ok(())
    } else {
        Err(Unsupported)
    }
}

/// A new reference, or give up (clearing the error).
///
/// # Safety
/// `ptr` is NULL or a new reference.
unsafe fn owned(ptr: *mut ffi::PyObject) -> Result<PyObj, Unsupported> {
    // SAFETY: as the caller promises.
    unsafe { PyObj::from_owned(ptr) }.map_err(|_| clear())
}

/// Runs `f` with `obj` locked against other threads (free-threaded builds: a critical
/// section, which a nested one may suspend while it waits, so `f` must re-check what it
/// reads at each step). With the GIL, only this thread runs and `f` just runs.
#[inline(always)]
fn locked<R>(obj: *mut ffi::PyObject, f: impl FnOnce() -> R) -> R {
    #[cfg(Py_GIL_DISABLED)]
    {
        let mut section = std::mem::MaybeUninit::<ffi::PyCriticalSection>::uninit();
        // SAFETY: `section` lives on this frame, does not move, and is ended below on the
        // only path out (`f` does not panic: every length is checked to fit the format
        // before it is written); `obj` is a valid object.
        unsafe { ffi::PyCriticalSection_Begin(section.as_mut_ptr(), obj) };
        let result = f();
        // SAFETY: begun above, ended once.
        unsafe { ffi::PyCriticalSection_End(section.as_mut_ptr()) };
        result
    }
    #[cfg(not(Py_GIL_DISABLED))]
    {
        let _ = obj;
        f()
    }
}

impl Walker {
    /// A walk for a value: containers in their own order.
    pub fn value() -> Self {
        Self {
            canonical: false,
            seen: Seen::new(),
        }
    }

    /// A walk for a key: sets in canonical order.
    pub fn key() -> Self {
        Self {
            canonical: true,
            seen: Seen::new(),
        }
    }

    /// Puts `obj`, at nesting `depth` (how many containers enclose it), in `form`: the
    /// common scalars inline (so in every container's loop), the rest out of line.
    ///
    /// # Safety
    /// `obj` is a valid object that stays alive for the call.
    #[inline(always)]
    pub unsafe fn put(
        &mut self,
        out: &mut (impl ByteSink + ?Sized),
        obj: *mut ffi::PyObject,
        form: Form,
        depth: usize,
    ) -> Walked {
        // SAFETY: as the caller promises.
        match unsafe { put_scalar(out, obj, form) } {
            Some(done) => done,
            // SAFETY: as the caller promises.
            None => unsafe { self.put_composite(out, obj, form, depth) },
        }
    }

    /// [`Walker::put`] for everything but the common scalars: containers, big ints,
    /// bytearray, and the standard library types.
    ///
    /// # Safety
    /// As for [`Walker::put`].
    #[inline(never)]
    unsafe fn put_composite(
        &mut self,
        out: &mut (impl ByteSink + ?Sized),
        obj: *mut ffi::PyObject,
        form: Form,
        depth: usize,
    ) -> Walked {
        // SAFETY: `obj` is valid (the caller's promise); the checks read its type, and each
        // branch reads it as the type just checked.
        unsafe {
            if ffi::PyTuple_CheckExact(obj) != 0 {
                self.put_tuple(out, obj, form, depth)
            } else if ffi::PyList_CheckExact(obj) != 0 {
                self.put_list(out, obj, form, depth)
            } else if ffi::PyDict_CheckExact(obj) != 0 {
                self.put_dict(out, obj, form, depth)
            } else if ffi::PySet_CheckExact(obj) != 0 {
                self.put_set(out, obj, Container::Set, form, depth)
            } else if ffi::PyFrozenSet_CheckExact(obj) != 0 {
                self.put_set(out, obj, Container::FrozenSet, form, depth)
            } else if ffi::PyLong_CheckExact(obj) != 0 {
                // An int outside i64 (put_scalar took the others).
                let bytes = ints::to_le_bytes(obj).ok_or(Unsupported)?;
                fits(bytes.len())?;
                put(&Item::Leaf(Leaf::BigInt(&bytes)), form, out);
                Ok(())
            } else if ffi::PyByteArray_CheckExact(obj) != 0 {
                if !self.seen.first_meeting(obj) {
                    return Err(Unsupported);
                }
                locked(obj, || {
                    let data = ffi::PyByteArray_AsString(obj) as *const u8;
                    let len = ffi::PyByteArray_Size(obj) as usize;
                    fits(len)?;
                    // An empty bytearray may have no buffer at all.
                    let data = if len == 0 {
                        &[][..]
                    } else {
                        std::slice::from_raw_parts(data, len)
                    };
                    put(&Item::Leaf(Leaf::ByteArray(data)), form, out);
                    Ok(())
                })
            } else {
                put_other(out, obj, form)
            }
        }
    }

    /// Puts a container's item, after checking its depth (and, for a mutable one, that it
    /// is met for the first time).
    fn open(
        &mut self,
        out: &mut (impl ByteSink + ?Sized),
        obj: *mut ffi::PyObject,
        container: Container,
        count: isize,
        form: Form,
        depth: usize,
    ) -> Walked {
        let mutable = matches!(
            container,
            Container::List | Container::Dict | Container::Set
        );
        if depth >= MAX_DEPTH || (mutable && !self.seen.first_meeting(obj)) {
            return Err(Unsupported);
        }
        let count = usize::try_from(count).map_err(|_| clear())?;
        fits(count)?;
        put(&Item::Open(container, count), form, out);
        Ok(())
    }

    /// # Safety
    /// `obj` is a valid exact tuple.
    unsafe fn put_tuple(
        &mut self,
        out: &mut (impl ByteSink + ?Sized),
        obj: *mut ffi::PyObject,
        form: Form,
        depth: usize,
    ) -> Walked {
        // SAFETY: a tuple's size and items never change; the tuple (alive for the call)
        // holds its items.
        unsafe {
            let n = ffi::PyTuple_GET_SIZE(obj);
            self.open(out, obj, Container::Tuple, n, form, depth)?;
            for i in 0..n {
                self.put(out, ffi::PyTuple_GET_ITEM(obj, i), Form::Nested, depth + 1)?;
            }
        }
        Ok(())
    }

    /// # Safety
    /// `obj` is a valid exact list.
    unsafe fn put_list(
        &mut self,
        out: &mut (impl ByteSink + ?Sized),
        obj: *mut ffi::PyObject,
        form: Form,
        depth: usize,
    ) -> Walked {
        // SAFETY: `obj` is a list. Each item is taken as a new reference, by index, from a
        // list checked to still hold it: a list that shrank meanwhile (a finalizer run by an
        // allocation, or another thread) ends the walk instead of yielding a dangling item.
        unsafe {
            let n = ffi::PyList_GET_SIZE(obj);
            self.open(out, obj, Container::List, n, form, depth)?;
            out.reserve(2 * n as usize);
            for i in 0..n {
                let item = list_item(obj, i).ok_or(Unsupported)?;
                self.put(out, item.as_ptr(), Form::Nested, depth + 1)?;
            }
        }
        Ok(())
    }

    /// # Safety
    /// `obj` is a valid exact dict.
    unsafe fn put_dict(
        &mut self,
        out: &mut (impl ByteSink + ?Sized),
        obj: *mut ffi::PyObject,
        form: Form,
        depth: usize,
    ) -> Walked {
        locked(obj, || {
            // SAFETY: `obj` is a dict, locked against other threads while each entry is
            // read; the entry's key and value are taken as new references before anything
            // else runs. PyDict_Next bounds-checks its position against the current table.
            unsafe {
                let n = ffi::PyDict_Size(obj);
                self.open(out, obj, Container::Dict, n, form, depth)?;
                let (mut pos, mut written) = (0, 0);
                let (mut key, mut value) = (std::ptr::null_mut(), std::ptr::null_mut());
                while ffi::PyDict_Next(obj, &mut pos, &mut key, &mut value) != 0 {
                    let (key, value) = (PyObj::from_borrowed(key), PyObj::from_borrowed(value));
                    written += 1;
                    if written > n {
                        return Err(Unsupported); // it grew
                    }
                    self.put(out, key.as_ptr(), Form::Nested, depth + 1)?;
                    self.put(out, value.as_ptr(), Form::Nested, depth + 1)?;
                }
                if written == n {
                    Ok(())
                } else {
                    Err(Unsupported) // it shrank
                }
            }
        })
    }

    /// # Safety
    /// `obj` is a valid exact set or frozenset (as `container` says).
    unsafe fn put_set(
        &mut self,
        out: &mut (impl ByteSink + ?Sized),
        obj: *mut ffi::PyObject,
        container: Container,
        form: Form,
        depth: usize,
    ) -> Walked {
        // SAFETY: `obj` is a set; its iterator hands out new references and raises (NULL)
        // if the set changes size while it iterates.
        unsafe {
            let n = ffi::PySet_Size(obj);
            self.open(out, obj, container, n, form, depth)?;
            let iterator = owned(ffi::PyObject_GetIter(obj))?;
            if !self.canonical {
                let mut written = 0;
                while let Ok(item) = PyObj::from_owned(ffi::PyIter_Next(iterator.as_ptr())) {
                    written += 1;
                    if written > n {
                        return Err(Unsupported);
                    }
                    self.put(out, item.as_ptr(), Form::Nested, depth + 1)?;
                }
                return if written == n && ffi::PyErr_Occurred().is_null() {
                    Ok(())
                } else {
                    Err(clear())
                };
            }
            // Canonical: each element's bytes apart, then all of them in byte order.
            let mut scratch = Vec::new();
            let mut ranges: Vec<Range<usize>> = Vec::with_capacity(n as usize);
            while let Ok(item) = PyObj::from_owned(ffi::PyIter_Next(iterator.as_ptr())) {
                let start = scratch.len();
                self.put(&mut scratch, item.as_ptr(), Form::Nested, depth + 1)?;
                ranges.push(start..scratch.len());
            }
            if ranges.len() != n as usize || !ffi::PyErr_Occurred().is_null() {
                return Err(clear());
            }
            ranges.sort_unstable_by(|a, b| scratch[a.clone()].cmp(&scratch[b.clone()]));
            for range in ranges {
                out.extend_from_slice(&scratch[range]);
            }
        }
        Ok(())
    }
}

/// Item `i` of a list, as a new reference, if the list still has one there.
///
/// # Safety
/// `list` is a valid list.
#[inline(always)]
unsafe fn list_item(list: *mut ffi::PyObject, i: isize) -> Option<PyObj> {
    // With the GIL, nothing else runs between the size check and the incref. Free-threaded,
    // another thread could: PyList_GetItemRef does both under the list's lock.
    #[cfg(not(Py_GIL_DISABLED))]
    // SAFETY: `list` is a list and `i` is checked against its current size.
    unsafe {
        (i < ffi::PyList_GET_SIZE(list))
            .then(|| PyObj::from_borrowed(ffi::PyList_GET_ITEM(list, i)))
    }
    #[cfg(Py_GIL_DISABLED)]
    // SAFETY: `list` is a list; a new reference, or NULL (IndexError, cleared) past its end.
    unsafe {
        PyObj::from_owned(ffi::PyList_GetItemRef(list, i))
            .map_err(|_| clear())
            .ok()
    }
}

/// The common scalars: an int fitting `i64`, str, float, None, bool, bytes. `None` if
/// `obj` is none of them (a big int included).
///
/// # Safety
/// `obj` is a valid object that stays alive for the call.
#[inline(always)]
unsafe fn put_scalar(
    out: &mut (impl ByteSink + ?Sized),
    obj: *mut ffi::PyObject,
    form: Form,
) -> Option<Walked> {
    // SAFETY: `obj` is valid; each branch reads it as the exact type it just checked.
    let leaf = unsafe {
        if ffi::PyLong_CheckExact(obj) != 0 {
            let mut overflow = 0;
            let n = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
            if overflow != 0 {
                return None;
            }
            Leaf::Int(n)
        } else if ffi::PyUnicode_CheckExact(obj) != 0 {
            match str_of(obj) {
                Ok(text) if fits(text.len()).is_ok() => Leaf::Str(text),
                Ok(_) => return Some(Err(Unsupported)),
                Err(unsupported) => return Some(Err(unsupported)),
            }
        } else if ffi::PyFloat_CheckExact(obj) != 0 {
            Leaf::Float(ffi::PyFloat_AS_DOUBLE(obj))
        } else if obj == ffi::Py_None() {
            Leaf::None
        } else if obj == ffi::Py_True() || obj == ffi::Py_False() {
            Leaf::Bool(obj == ffi::Py_True())
        } else if ffi::PyBytes_CheckExact(obj) != 0 {
            let data = bytes_of(obj);
            if fits(data.len()).is_err() {
                return Some(Err(Unsupported));
            }
            Leaf::Bytes(data)
        } else {
            return None;
        }
    };
    put(&Item::Leaf(leaf), form, out);
    Some(Ok(()))
}

/// The UTF-8 of an exact str; lone surrogates have none (pickle keeps them).
///
/// # Safety
/// `obj` is a valid exact str, alive as long as the result is used.
unsafe fn str_of<'a>(obj: *mut ffi::PyObject) -> Result<&'a str, Unsupported> {
    let mut len: ffi::Py_ssize_t = 0;
    // SAFETY: `obj` is a str; its UTF-8 buffer lives as long as the object, and is UTF-8.
    unsafe {
        let data = ffi::PyUnicode_AsUTF8AndSize(obj, &mut len);
        if data.is_null() {
            return Err(clear());
        }
        let bytes = std::slice::from_raw_parts(data as *const u8, len as usize);
        Ok(std::str::from_utf8_unchecked(bytes))
    }
}

/// The contents of an exact bytes object.
///
/// # Safety
/// `obj` is a valid exact bytes object, alive as long as the result is used.
unsafe fn bytes_of<'a>(obj: *mut ffi::PyObject) -> &'a [u8] {
    // SAFETY: as the caller promises; a bytes object's contents never change.
    unsafe {
        let data = ffi::PyBytes_AsString(obj) as *const u8;
        std::slice::from_raw_parts(data, ffi::PyBytes_Size(obj) as usize)
    }
}

/// The datetime family, `Decimal` and `UUID`; anything else is unsupported.
///
/// # Safety
/// `obj` is a valid object.
unsafe fn put_other(
    out: &mut (impl ByteSink + ?Sized),
    obj: *mut ffi::PyObject,
    form: Form,
) -> Walked {
    // SAFETY: `obj` is valid; each branch reads it as the exact type it just checked.
    unsafe {
        let tp = ffi::Py_TYPE(obj);
        if let Some(api) = stdtypes::datetime(false) {
            if tp == api.DateTimeType {
                let date = date_of(obj);
                let clock = Clock {
                    hour: ffi::PyDateTime_DATE_GET_HOUR(obj) as u8,
                    minute: ffi::PyDateTime_DATE_GET_MINUTE(obj) as u8,
                    second: ffi::PyDateTime_DATE_GET_SECOND(obj) as u8,
                    microsecond: ffi::PyDateTime_DATE_GET_MICROSECOND(obj) as u32,
                    fold: ffi::PyDateTime_DATE_GET_FOLD(obj) as u8,
                };
                return with_tz(api, ffi::PyDateTime_DATE_GET_TZINFO(obj), |tz| {
                    put(
                        &Item::Leaf(Leaf::DateTime(DateTime { date, clock, tz })),
                        form,
                        out,
                    )
                });
            }
            if tp == api.DateType {
                put(&Item::Leaf(Leaf::Date(date_of(obj))), form, out);
                return Ok(());
            }
            if tp == api.TimeType {
                let clock = Clock {
                    hour: ffi::PyDateTime_TIME_GET_HOUR(obj) as u8,
                    minute: ffi::PyDateTime_TIME_GET_MINUTE(obj) as u8,
                    second: ffi::PyDateTime_TIME_GET_SECOND(obj) as u8,
                    microsecond: ffi::PyDateTime_TIME_GET_MICROSECOND(obj) as u32,
                    fold: ffi::PyDateTime_TIME_GET_FOLD(obj) as u8,
                };
                return with_tz(api, ffi::PyDateTime_TIME_GET_TZINFO(obj), |tz| {
                    put(&Item::Leaf(Leaf::Time(Time { clock, tz })), form, out)
                });
            }
            if tp == api.DeltaType {
                put(&Item::Leaf(Leaf::TimeDelta(delta_of(obj))), form, out);
                return Ok(());
            }
        }
        if let Some(decimal) = stdtypes::decimal(false) {
            if tp.cast() == decimal.as_ptr() {
                return put_decimal(out, obj, form);
            }
        }
        if let Some(uuid) = stdtypes::uuid(false) {
            if tp.cast() == uuid.class.as_ptr() {
                return put_uuid(out, obj, uuid, form);
            }
        }
    }
    Err(Unsupported)
}

/// # Safety
/// `obj` is a valid `date` or `datetime`.
unsafe fn date_of(obj: *mut ffi::PyObject) -> Date {
    // SAFETY: as the caller promises; a date's fields are in range by construction.
    unsafe {
        Date {
            year: ffi::PyDateTime_GET_YEAR(obj) as u16,
            month: ffi::PyDateTime_GET_MONTH(obj) as u8,
            day: ffi::PyDateTime_GET_DAY(obj) as u8,
        }
    }
}

/// # Safety
/// `obj` is a valid `timedelta`.
unsafe fn delta_of(obj: *mut ffi::PyObject) -> TimeDelta {
    // SAFETY: as the caller promises; a timedelta's fields are normalized by construction.
    unsafe {
        TimeDelta {
            days: ffi::PyDateTime_DELTA_GET_DAYS(obj),
            seconds: ffi::PyDateTime_DELTA_GET_SECONDS(obj) as u32,
            microseconds: ffi::PyDateTime_DELTA_GET_MICROSECONDS(obj) as u32,
        }
    }
}

/// Runs `f` with the codec's view of a `tzinfo`: none, or an exact `datetime.timezone`
/// (its offset, and its name if the constructor was given one); other tzinfos are
/// unsupported (their state is not ours to read).
///
/// # Safety
/// `tzinfo` is a valid object (`None` for naive), alive for the call.
unsafe fn with_tz(
    api: &ffi::PyDateTime_CAPI,
    tzinfo: *mut ffi::PyObject,
    f: impl FnOnce(Tz<'_>),
) -> Walked {
    // SAFETY: `tzinfo` is valid; `TimeZone_UTC` is the live `timezone.utc`.
    unsafe {
        if tzinfo == ffi::Py_None() {
            f(Tz::Naive);
            return Ok(());
        }
        if tzinfo == api.TimeZone_UTC {
            f(Tz::Fixed {
                offset_us: 0,
                name: None,
            });
            return Ok(());
        }
        if ffi::Py_TYPE(tzinfo) != ffi::Py_TYPE(api.TimeZone_UTC) {
            return Err(Unsupported);
        }
        // What pickle rebuilds a timezone from: `(offset,)` or `(offset, name)`.
        let method = owned(ffi::PyUnicode_InternFromString(c"__getinitargs__".as_ptr()))?;
        let args = owned(ffi::PyObject_CallMethodNoArgs(tzinfo, method.as_ptr()))?;
        let args = args.as_ptr();
        if ffi::PyTuple_CheckExact(args) == 0 {
            return Err(Unsupported);
        }
        let (offset, name) = match ffi::PyTuple_GET_SIZE(args) {
            1 => (ffi::PyTuple_GET_ITEM(args, 0), None),
            2 => (
                ffi::PyTuple_GET_ITEM(args, 0),
                Some(ffi::PyTuple_GET_ITEM(args, 1)),
            ),
            _ => return Err(Unsupported),
        };
        if ffi::Py_TYPE(offset) != api.DeltaType {
            return Err(Unsupported);
        }
        let delta = delta_of(offset);
        let offset_us = i64::from(delta.days) * 86_400_000_000
            + i64::from(delta.seconds) * 1_000_000
            + i64::from(delta.microseconds);
        let name = match name {
            Some(name) if ffi::PyUnicode_CheckExact(name) != 0 => {
                let name = str_of(name)?;
                fits(name.len())?;
                Some(name)
            }
            Some(_) => return Err(Unsupported),
            None => None,
        };
        let tz = Tz::Fixed { offset_us, name };
        if !tz.is_valid() {
            return Err(Unsupported);
        }
        f(tz);
        Ok(())
    }
}

/// A `Decimal` as its `str()`, the exponent's `e` upper-cased (a context with
/// `capitals=0` prints it lower-case).
///
/// # Safety
/// `obj` is a valid exact `decimal.Decimal`.
unsafe fn put_decimal(
    out: &mut (impl ByteSink + ?Sized),
    obj: *mut ffi::PyObject,
    form: Form,
) -> Walked {
    // SAFETY: `obj` is valid; `text` is a new str kept alive while its UTF-8 is used.
    unsafe {
        let text = owned(ffi::PyObject_Str(obj))?;
        if ffi::PyUnicode_CheckExact(text.as_ptr()) == 0 {
            return Err(Unsupported);
        }
        let printed = str_of(text.as_ptr())?;
        let upper;
        let printed = if printed.contains('e') {
            upper = printed.replace('e', "E");
            &upper
        } else {
            printed
        };
        if !decimal_is_canonical(printed) {
            return Err(Unsupported);
        }
        fits(printed.len())?;
        put(&Item::Leaf(Leaf::Decimal(printed)), form, out);
    }
    Ok(())
}

/// A `UUID` as its `int` and `is_safe`.
///
/// # Safety
/// `obj` is a valid exact `uuid.UUID`.
unsafe fn put_uuid(
    out: &mut (impl ByteSink + ?Sized),
    obj: *mut ffi::PyObject,
    uuid: &stdtypes::UuidTypes,
    form: Form,
) -> Walked {
    // SAFETY: `obj` is valid; both attributes are slots of the exact UUID type, read as new
    // references.
    unsafe {
        let int = owned(ffi::PyObject_GetAttr(obj, uuid.int_name.as_ptr()))?;
        if ffi::PyLong_CheckExact(int.as_ptr()) == 0 {
            return Err(Unsupported);
        }
        let int = ints::to_u128(int.as_ptr()).ok_or(Unsupported)?;
        let safe = owned(ffi::PyObject_GetAttr(obj, uuid.is_safe_name.as_ptr()))?;
        let safety = match uuid.safety.iter().position(|m| m.as_ptr() == safe.as_ptr()) {
            Some(0) => UuidSafety::Unknown,
            Some(1) => UuidSafety::Safe,
            Some(2) => UuidSafety::Unsafe,
            _ => return Err(Unsupported),
        };
        put(&Item::Leaf(Leaf::Uuid(Uuid { int, safety })), form, out);
    }
    Ok(())
}
