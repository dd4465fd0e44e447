//! Codec items to Python objects. Every item comes from [`Parser::visit`], which has
//! checked it (bounds, lengths, ranges, depth, hashable keys) before handing it out: this
//! module only calls the constructors. A container is built as its elements arrive; if a
//! later element fails (bytes damaged further on, an allocation failure, an import that
//! fails), what was built is dropped and the error returned.

use super::super::object::{ErrSet, PyObj, PyResult};
use super::{ints, key_cache, stdtypes};
use crate::codec::{Clock, Container, DecodeError, Leaf, Parser, Tz, UuidSafety, Visitor};
use crate::py::ffi;
use std::ffi::c_int;
use std::ptr;

/// Raises `ValueError`: stored bytes that are not a value of this format.
#[cold]
pub fn undecodable() -> ErrSet {
    // SAFETY: setting an exception; we are attached.
    unsafe {
        ffi::PyErr_SetString(
            ffi::PyExc_ValueError,
            c"undecodable shared cache entry".as_ptr(),
        )
    };
    ErrSet
}

/// Why building failed: the bytes (no exception set yet), or Python (an exception set).
pub enum Failed {
    /// The parser refused the bytes.
    Bytes,
    /// A constructor raised.
    Raised,
}

impl From<DecodeError> for Failed {
    fn from(_: DecodeError) -> Self {
        Failed::Bytes
    }
}

impl From<ErrSet> for Failed {
    fn from(_: ErrSet) -> Self {
        Failed::Raised
    }
}

impl From<Failed> for ErrSet {
    fn from(failed: Failed) -> Self {
        match failed {
            Failed::Bytes => undecodable(),
            Failed::Raised => ErrSet,
        }
    }
}

/// Builds the object of each item; `loads` unpickles pickle items.
pub struct Builder<'l> {
    /// `pickle.loads`.
    pub loads: &'l PyObj,
}

impl<'a> Visitor<'a> for Builder<'_> {
    type Output = PyObj;
    type Error = Failed;

    /// Inlined into every visit (so into the container loops): see [`leaf_object`].
    #[inline(always)]
    fn leaf(&mut self, leaf: Leaf<'a>) -> Result<PyObj, Failed> {
        Ok(leaf_object(leaf)?)
    }

    /// A container of `count` elements: each element is built by a visit inlined here, so a
    /// leaf element costs no call of its own.
    #[inline(never)]
    fn container(
        &mut self,
        parser: &mut Parser<'a>,
        container: Container,
        count: usize,
    ) -> Result<PyObj, Failed> {
        let n = count as ffi::Py_ssize_t;
        // SAFETY (for each block below): each constructor returns a new reference or NULL
        // with an exception set; the container is fresh (no other code has seen it) while
        // it is filled.
        match container {
            Container::Tuple => {
                // SAFETY: see above.
                let tuple = unsafe { PyObj::from_owned(ffi::PyTuple_New(n))? };
                for i in 0..n {
                    let element = parser.visit(self)?;
                    // SAFETY: see above; SET_ITEM steals the element, `i < n`.
                    unsafe { ffi::PyTuple_SET_ITEM(tuple.as_ptr(), i, element.into_ptr()) };
                }
                Ok(tuple)
            }
            Container::List => {
                // SAFETY: see above; a list's empty slots are NULL until set (and dropping
                // it half-filled is fine).
                let list = unsafe { PyObj::from_owned(ffi::PyList_New(n))? };
                for i in 0..n {
                    let element = parser.visit(self)?;
                    // SAFETY: see above; SET_ITEM steals the element, `i < n`.
                    unsafe { ffi::PyList_SET_ITEM(list.as_ptr(), i, element.into_ptr()) };
                }
                Ok(list)
            }
            Container::Dict => {
                // SAFETY: see above.
                let dict = unsafe { PyObj::from_owned(ffi::PyDict_New())? };
                for _ in 0..n {
                    let key = parser.visit(&mut KeyBuilder(self))?;
                    let element = parser.visit(self)?;
                    // SAFETY: valid objects; the key is of a hashable kind (checked by the
                    // parser), so hashing it runs no user code. It may still fail.
                    let status = unsafe {
                        ffi::PyDict_SetItem(dict.as_ptr(), key.as_ptr(), element.as_ptr())
                    };
                    check(status)?;
                }
                Ok(dict)
            }
            Container::Set | Container::FrozenSet => {
                // SAFETY: see above; PySet_Add may fill a frozenset no other code has seen.
                let set = unsafe {
                    PyObj::from_owned(if container == Container::Set {
                        ffi::PySet_New(ptr::null_mut())
                    } else {
                        ffi::PyFrozenSet_New(ptr::null_mut())
                    })?
                };
                for _ in 0..n {
                    let element = parser.visit(self)?;
                    // SAFETY: see above.
                    check(unsafe { ffi::PySet_Add(set.as_ptr(), element.as_ptr()) })?;
                }
                Ok(set)
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn pickle(&mut self, data: &'a [u8]) -> Result<PyObj, Failed> {
        let blob = bytes_object(data)?;
        let args = [blob.as_ptr()];
        // SAFETY: `loads` and the bytes object are valid.
        let obj = unsafe {
            PyObj::from_owned(ffi::PyObject_Vectorcall(
                self.loads.as_ptr(),
                args.as_ptr(),
                1,
                ptr::null_mut(),
            ))
        };
        Ok(obj?)
    }
}

/// Builds a dict key: a short ASCII str from the process's key cache
/// ([`key_cache::key_str`]), anything else as [`Builder`] does.
struct KeyBuilder<'b, 'l>(&'b mut Builder<'l>);

impl<'a> Visitor<'a> for KeyBuilder<'_, '_> {
    type Output = PyObj;
    type Error = Failed;

    #[inline(always)]
    fn leaf(&mut self, leaf: Leaf<'a>) -> Result<PyObj, Failed> {
        match leaf {
            Leaf::Str(text) => Ok(key_cache::key_str(text, str_object)?),
            _ => self.0.leaf(leaf),
        }
    }

    fn container(
        &mut self,
        parser: &mut Parser<'a>,
        container: Container,
        count: usize,
    ) -> Result<PyObj, Failed> {
        self.0.container(parser, container, count)
    }

    fn pickle(&mut self, data: &'a [u8]) -> Result<PyObj, Failed> {
        self.0.pickle(data)
    }
}

fn check(status: c_int) -> PyResult<()> {
    if status < 0 {
        Err(ErrSet)
    } else {
        Ok(())
    }
}

fn bytes_object(data: &[u8]) -> PyResult<PyObj> {
    // SAFETY: copies `data` into a new bytes object.
    unsafe {
        PyObj::from_owned(ffi::PyBytes_FromStringAndSize(
            data.as_ptr().cast(),
            data.len() as ffi::Py_ssize_t,
        ))
    }
}

#[inline(always)]
fn str_object(text: &str) -> PyResult<PyObj> {
    let len = text.len() as ffi::Py_ssize_t;
    if text.len() < 2 || !crate::codec::is_ascii(text.as_bytes()) {
        // SAFETY: `text` is UTF-8 (a checked `&str`); a new reference or NULL. (Strings of
        // one Latin-1 character come back as CPython's shared singletons this way.)
        return unsafe {
            PyObj::from_owned(ffi::PyUnicode_FromStringAndSize(text.as_ptr().cast(), len))
        };
    }
    // ASCII: a compact one-byte str, filled with a copy (what CPython's own decoder does
    // once it has scanned the bytes, which the parser has already done).
    // SAFETY: PyUnicode_New returns a new compact ASCII str of `len` characters (NUL
    // already written after them) or NULL; its data holds `len` bytes, distinct from `text`.
    unsafe {
        let obj = PyObj::from_owned(ffi::PyUnicode_New(len, 127))?;
        ptr::copy_nonoverlapping(
            text.as_ptr(),
            ffi::PyUnicode_1BYTE_DATA(obj.as_ptr()),
            text.len(),
        );
        Ok(obj)
    }
}

/// The object of a leaf: the common kinds here, the rest in [`rare_leaf_object`].
#[inline(always)]
fn leaf_object(leaf: Leaf<'_>) -> PyResult<PyObj> {
    // SAFETY: each constructor returns a new reference or NULL with an exception set.
    unsafe {
        match leaf {
            Leaf::None => Ok(PyObj::from_borrowed(ffi::Py_None())),
            Leaf::Bool(b) => PyObj::from_owned(ffi::PyBool_FromLong(b.into())),
            Leaf::Int(n) => PyObj::from_owned(ffi::PyLong_FromLongLong(n)),
            Leaf::Float(x) => PyObj::from_owned(ffi::PyFloat_FromDouble(x)),
            Leaf::Str(text) => str_object(text),
            Leaf::Bytes(data) => bytes_object(data),
            _ => rare_leaf_object(leaf),
        }
    }
}

/// The object of a leaf of the rarer kinds (out of the hot loop).
#[inline(never)]
fn rare_leaf_object(leaf: Leaf<'_>) -> PyResult<PyObj> {
    // SAFETY: each constructor returns a new reference or NULL with an exception set.
    unsafe {
        match leaf {
            Leaf::None
            | Leaf::Bool(_)
            | Leaf::Int(_)
            | Leaf::Float(_)
            | Leaf::Str(_)
            | Leaf::Bytes(_) => leaf_object(leaf),
            Leaf::BigInt(bytes) => ints::from_le_bytes(bytes, true),
            Leaf::ByteArray(data) => PyObj::from_owned(ffi::PyByteArray_FromStringAndSize(
                data.as_ptr().cast(),
                data.len() as ffi::Py_ssize_t,
            )),
            Leaf::Date(d) => {
                let api = datetime_api()?;
                PyObj::from_owned((api.Date_FromDate)(
                    d.year.into(),
                    d.month.into(),
                    d.day.into(),
                    api.DateType,
                ))
            }
            Leaf::Time(t) => {
                let api = datetime_api()?;
                let tz = tz_object(api, t.tz)?;
                let Clock {
                    hour,
                    minute,
                    second,
                    microsecond,
                    fold,
                } = t.clock;
                PyObj::from_owned((api.Time_FromTimeAndFold)(
                    hour.into(),
                    minute.into(),
                    second.into(),
                    microsecond as c_int,
                    tz.as_ptr(),
                    fold.into(),
                    api.TimeType,
                ))
            }
            Leaf::DateTime(dt) => {
                let api = datetime_api()?;
                let tz = tz_object(api, dt.tz)?;
                let Clock {
                    hour,
                    minute,
                    second,
                    microsecond,
                    fold,
                } = dt.clock;
                PyObj::from_owned((api.DateTime_FromDateAndTimeAndFold)(
                    dt.date.year.into(),
                    dt.date.month.into(),
                    dt.date.day.into(),
                    hour.into(),
                    minute.into(),
                    second.into(),
                    microsecond as c_int,
                    tz.as_ptr(),
                    fold.into(),
                    api.DateTimeType,
                ))
            }
            Leaf::TimeDelta(d) => {
                let api = datetime_api()?;
                PyObj::from_owned((api.Delta_FromDelta)(
                    d.days,
                    d.seconds as c_int,
                    d.microseconds as c_int,
                    1,
                    api.DeltaType,
                ))
            }
            Leaf::Decimal(text) => {
                let class = stdtypes::decimal(true).ok_or_else(|| missing(c"decimal"))?;
                let text = str_object(text)?;
                let args = [text.as_ptr()];
                PyObj::from_owned(ffi::PyObject_Vectorcall(
                    class.as_ptr(),
                    args.as_ptr(),
                    1,
                    ptr::null_mut(),
                ))
            }
            Leaf::Uuid(uuid) => {
                let types = stdtypes::uuid(true).ok_or_else(|| missing(c"uuid"))?;
                let int = ints::from_le_bytes(&uuid.int.to_le_bytes(), false)?;
                let safety = &types.safety[match uuid.safety {
                    UuidSafety::Unknown => 0,
                    UuidSafety::Safe => 1,
                    UuidSafety::Unsafe => 2,
                }];
                // As unpickling does: `object.__new__(UUID)`, then the two slots set
                // past `UUID.__setattr__` (which refuses every assignment).
                let empty = PyObj::from_owned(ffi::PyTuple_New(0))?;
                let class = types.class.as_ptr().cast::<ffi::PyTypeObject>();
                let obj = PyObj::from_owned(ffi::PyType_GenericNew(
                    class,
                    empty.as_ptr(),
                    ptr::null_mut(),
                ))?;
                check(ffi::PyObject_GenericSetAttr(
                    obj.as_ptr(),
                    types.int_name.as_ptr(),
                    int.as_ptr(),
                ))?;
                check(ffi::PyObject_GenericSetAttr(
                    obj.as_ptr(),
                    types.is_safe_name.as_ptr(),
                    safety.as_ptr(),
                ))?;
                Ok(obj)
            }
        }
    }
}

/// Raises `ValueError`: an entry needs a module this process cannot import.
#[cold]
fn missing(module: &std::ffi::CStr) -> ErrSet {
    let message = format!(
        "shared cache entry needs module {} which cannot be imported",
        module.to_string_lossy()
    );
    let message = std::ffi::CString::new(message).unwrap_or_default();
    // SAFETY: setting an exception; we are attached.
    unsafe { ffi::PyErr_SetString(ffi::PyExc_ValueError, message.as_ptr()) };
    ErrSet
}

fn datetime_api() -> PyResult<&'static ffi::PyDateTime_CAPI> {
    stdtypes::datetime(true).ok_or_else(|| missing(c"datetime"))
}

/// The `tzinfo` object of a tz: `None`, `timezone.utc`, or a new `timezone`.
fn tz_object(api: &ffi::PyDateTime_CAPI, tz: Tz<'_>) -> PyResult<PyObj> {
    // SAFETY: each constructor returns a new reference or NULL with an exception set;
    // `TimeZone_UTC` is the live `timezone.utc`. The offset was checked to lie within a
    // day, so its fields fit `c_int`.
    unsafe {
        match tz {
            Tz::Naive => Ok(PyObj::from_borrowed(ffi::Py_None())),
            Tz::Fixed {
                offset_us: 0,
                name: None,
            } => Ok(PyObj::from_borrowed(api.TimeZone_UTC)),
            Tz::Fixed { offset_us, name } => {
                const DAY: i64 = 86_400_000_000;
                let (days, rest) = (offset_us.div_euclid(DAY), offset_us.rem_euclid(DAY));
                let offset = PyObj::from_owned((api.Delta_FromDelta)(
                    days as c_int,
                    (rest / 1_000_000) as c_int,
                    (rest % 1_000_000) as c_int,
                    1,
                    api.DeltaType,
                ))?;
                let name = name.map(str_object).transpose()?;
                PyObj::from_owned((api.TimeZone_FromTimeZone)(
                    offset.as_ptr(),
                    name.as_ref().map_or(ptr::null_mut(), PyObj::as_ptr),
                ))
            }
        }
    }
}
