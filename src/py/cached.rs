//! The cached callable: a C-level type with vectorcall, so a hit is one call into Rust that
//! builds the key, hashes, probes, compares and returns, with no argument tuple for a single
//! scalar argument and no allocation.
//!
//! It behaves like a function: `Py_TPFLAGS_METHOD_DESCRIPTOR` lets `obj.method(x)` call it
//! with `self` prepended, `__get__` binds it otherwise, and it has a `__dict__` so
//! `functools.update_wrapper` can give it `__name__`, `__doc__`, `__wrapped__` and the rest.

use super::awaitable::ReadyValue;
use super::counters::Counters;
use super::key::{CallKey, PyKey};
use super::object::{ErrSet, PyObj, PyResult};
use crate::clock;
use crate::memory::{Candidate, Get, Insert, Shard, Store, Verdict};
use pyo3::ffi;
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::OnceLock;

#[cfg(not(Py_GIL_DISABLED))]
type Guard<T> = super::gil_lock::GilLock<T>;
#[cfg(Py_GIL_DISABLED)]
type Guard<T> = crate::sync::ShardedLock<T>;

type MemoryStore = Store<PyKey, PyObj, Guard<Shard<PyKey, PyObj>>>;

/// Rounds of "compare outside the lock, probe again" before a call gives up and treats the
/// lookup as a miss (each round only happens when a foreign `__eq__` changed the cache).
const COMPARE_ROUNDS: usize = 8;

/// Caches up to this size are one shard, so their eviction order is exact SIEVE.
const SINGLE_SHARD_MAX: usize = 1024;

/// Shards for a cache of `max_size`. With the GIL there is no parallelism to gain, so one
/// shard keeps SIEVE exact; free-threaded builds split large caches so writers to
/// different shards do not wait on each other.
fn shard_count(max_size: usize) -> usize {
    if cfg!(Py_GIL_DISABLED) && max_size > SINGLE_SHARD_MAX {
        (max_size / SINGLE_SHARD_MAX).clamp(1, 16)
    } else {
        1
    }
}

/// Everything a cached callable owns besides its Python-visible fields.
pub struct Core {
    store: MemoryStore,
    ttl_nanos: Option<u64>,
    counters: Counters,
    max_size: usize,
}

/// The object layout. Pointer fields are owned references, NULL after `tp_clear`.
#[repr(C)]
pub struct CachedObject {
    ob_base: ffi::PyObject,
    vectorcall: Option<ffi::vectorcallfunc>,
    dict: *mut ffi::PyObject,
    weaklist: *mut ffi::PyObject,
    func: *mut ffi::PyObject,
    /// The `CacheInfo` named tuple type.
    info_type: *mut ffi::PyObject,
    /// The keyword-argument marker shared by all keys.
    kw_mark: *mut ffi::PyObject,
    /// `async def _fill(cached, key, coro)` for coroutine functions, else NULL.
    async_fill: *mut ffi::PyObject,
    core: *mut Core,
}

struct TypePtr(*mut ffi::PyTypeObject);
// SAFETY: the type object is immortal for the life of the module and only read.
unsafe impl Send for TypePtr {}
// SAFETY: as above.
unsafe impl Sync for TypePtr {}

static CACHED_TYPE: OnceLock<TypePtr> = OnceLock::new();

/// Arguments of [`CachedObject::create`].
pub struct Settings {
    pub func: PyObj,
    pub max_size: usize,
    pub ttl_nanos: Option<u64>,
    pub info_type: PyObj,
    pub kw_mark: PyObj,
    pub async_fill: Option<PyObj>,
}

impl CachedObject {
    /// Makes a cached callable. Must run after [`init_type`].
    pub fn create(settings: Settings) -> PyResult<PyObj> {
        let tp = CACHED_TYPE
            .get()
            .expect("type initialised at module import")
            .0;
        // SAFETY: `tp` is our heap type; GenericAlloc zero-fills the whole object (so every
        // pointer is NULL until set below) and starts GC tracking.
        let obj = unsafe { PyObj::from_owned(ffi::PyType_GenericAlloc(tp, 0))? };
        let core = Box::new(Core {
            store: Store::new(settings.max_size, shard_count(settings.max_size)),
            ttl_nanos: settings.ttl_nanos,
            counters: Counters::default(),
            max_size: settings.max_size,
        });
        // SAFETY: `obj` is a fresh instance of our type, so it has our layout.
        let this = unsafe { &mut *(obj.as_ptr() as *mut CachedObject) };
        this.vectorcall = Some(cached_vectorcall);
        this.func = settings.func.into_ptr();
        this.info_type = settings.info_type.into_ptr();
        this.kw_mark = settings.kw_mark.into_ptr();
        this.async_fill = settings.async_fill.map_or(ptr::null_mut(), PyObj::into_ptr);
        this.core = Box::into_raw(core);
        Ok(obj)
    }

    fn core(&self) -> PyResult<&Core> {
        // SAFETY: `core` is NULL or the Box made in `create`, freed only by dealloc.
        unsafe { self.core.as_ref() }.ok_or_else(|| raise(Exc::Runtime, c"cache was torn down"))
    }

    fn func(&self) -> PyResult<*mut ffi::PyObject> {
        if self.func.is_null() {
            Err(raise(
                Exc::Runtime,
                c"cached function was cleared by the garbage collector",
            ))
        } else {
            Ok(self.func)
        }
    }

    /// One call: a hit returns the cached value, a miss calls the function and caches.
    ///
    /// # Safety
    /// The arguments are as the vectorcall protocol delivers them.
    unsafe fn call(
        &self,
        args: *const *mut ffi::PyObject,
        nargsf: usize,
        kwnames: *mut ffi::PyObject,
    ) -> PyResult<PyObj> {
        let core = self.core()?;
        // SAFETY: vectorcall arguments, as the caller promises.
        let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf) } as usize;
        // SAFETY: as above.
        let key = unsafe { CallKey::build(args, nargs, kwnames, self.kw_mark)? };
        let hash = key.hash()?;
        let now = core.now();
        let mut verdicts = Vec::new();
        if let Some(value) = core.lookup(hash, key.probe(), now, &mut verdicts)? {
            core.counters.hit();
            return if self.async_fill.is_null() {
                Ok(value)
            } else {
                ReadyValue::wrap(value)
            };
        }
        core.counters.miss();
        let func = self.func()?;
        // SAFETY: forwarding the caller's own vectorcall arguments unchanged.
        let result =
            unsafe { PyObj::from_owned(ffi::PyObject_Vectorcall(func, args, nargsf, kwnames))? };
        if self.async_fill.is_null() {
            core.store_result(hash, key.into_owned(), result.clone(), verdicts)?;
            return Ok(result);
        }
        // A coroutine: `_fill` awaits it and hands the result back through `_store_result`.
        let key = key.into_owned();
        let fill_args = [
            self as *const Self as *mut ffi::PyObject,
            key.as_ptr(),
            result.as_ptr(),
        ];
        call_owned(self.async_fill, &fill_args, &[])
    }
}

/// Calls `f(*a, *b)`.
fn call_owned(
    f: *mut ffi::PyObject,
    a: &[*mut ffi::PyObject],
    b: &[*mut ffi::PyObject],
) -> PyResult<PyObj> {
    let all: Vec<*mut ffi::PyObject> = a.iter().chain(b).copied().collect();
    // SAFETY: `f` and every argument are valid objects kept alive by the caller.
    unsafe {
        PyObj::from_owned(ffi::PyObject_Vectorcall(
            f,
            all.as_ptr(),
            all.len(),
            ptr::null_mut(),
        ))
    }
}

impl Core {
    #[inline]
    fn now(&self) -> u64 {
        if self.ttl_nanos.is_some() {
            clock::monotonic_nanos()
        } else {
            0
        }
    }

    /// Probes until decided, comparing foreign keys outside every lock.
    #[inline]
    fn lookup(
        &self,
        hash: u64,
        key: &PyKey,
        now: u64,
        verdicts: &mut Vec<Verdict>,
    ) -> PyResult<Option<PyObj>> {
        for _ in 0..COMPARE_ROUNDS {
            match self.store.get(hash, key, verdicts, now) {
                Get::Hit(value) => return Ok(Some(value)),
                Get::Miss => return Ok(None),
                Get::Undecided(candidates) => compare_outside(candidates, key, verdicts)?,
            }
        }
        Ok(None)
    }

    /// Stores a computed result (also the async path's entry point).
    fn store_result(
        &self,
        hash: u64,
        key: PyKey,
        value: PyObj,
        mut verdicts: Vec<Verdict>,
    ) -> PyResult<()> {
        let now = self.now();
        let expires_at = clock::deadline(now, self.ttl_nanos);
        let (mut key, mut value) = (key, value);
        for _ in 0..COMPARE_ROUNDS {
            match self
                .store
                .insert(hash, key, value, &verdicts, now, expires_at)
            {
                Insert::Done(garbage) => {
                    drop(garbage);
                    return Ok(());
                }
                Insert::NotCached(..) => return Ok(()),
                Insert::Undecided(candidates, k, v) => {
                    compare_outside(candidates, &k, &mut verdicts)?;
                    (key, value) = (k, v);
                }
            }
        }
        Ok(())
    }

    fn info(&self, info_type: *mut ffi::PyObject) -> PyResult<PyObj> {
        let (hits, misses) = self.counters.read();
        let size = if self.ttl_nanos.is_some() {
            self.store.live_len(self.now())
        } else {
            self.store.len()
        };
        let fields = [hits, misses, self.max_size as u64, size as u64];
        let mut objs = Vec::with_capacity(4);
        for n in fields {
            // SAFETY: plain int construction.
            objs.push(unsafe { PyObj::from_owned(ffi::PyLong_FromUnsignedLongLong(n))? });
        }
        let ptrs: Vec<*mut ffi::PyObject> = objs.iter().map(PyObj::as_ptr).collect();
        call_owned(info_type, &ptrs, &[])
    }

    fn clear(&self) {
        let entries = self.store.clear();
        self.counters.reset();
        // Dropped here, after every shard lock is released: finalizers may call back in.
        drop(entries);
    }
}

/// Runs `==` for each candidate with no lock held and records the answers.
fn compare_outside(
    candidates: Vec<Candidate<PyKey>>,
    key: &PyKey,
    verdicts: &mut Vec<Verdict>,
) -> PyResult<()> {
    for c in candidates {
        // SAFETY: both keys are valid objects we hold references to; this may run Python code.
        let r = unsafe { ffi::PyObject_RichCompareBool(c.key.as_ptr(), key.as_ptr(), ffi::Py_EQ) };
        if r < 0 {
            return Err(ErrSet);
        }
        verdicts.push(Verdict {
            slot: c.slot,
            stamp: c.stamp,
            equal: r == 1,
        });
    }
    Ok(())
}

/// Which exception [`raise`] sets.
#[derive(Clone, Copy)]
enum Exc {
    Runtime,
    Type,
}

fn raise(kind: Exc, msg: &std::ffi::CStr) -> ErrSet {
    // SAFETY: reading the interpreter's exception type objects, initialised before any
    // module code runs; `msg` is a C string.
    unsafe {
        let tp = match kind {
            Exc::Runtime => ffi::PyExc_RuntimeError,
            Exc::Type => ffi::PyExc_TypeError,
        };
        ffi::PyErr_SetString(tp, msg.as_ptr());
    }
    ErrSet
}

/// Converts a Rust-side result to the C convention, turning a panic (a bug) into a Python
/// `RuntimeError` instead of aborting the interpreter.
fn to_c(f: impl FnOnce() -> PyResult<PyObj>) -> *mut ffi::PyObject {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(obj)) => obj.into_ptr(),
        Ok(Err(ErrSet)) => ptr::null_mut(),
        Err(_) => {
            raise(
                Exc::Runtime,
                c"internal error in warp_cache (please report it)",
            );
            ptr::null_mut()
        }
    }
}

/// # Safety
/// `slf` is a `CachedObject` (CPython only calls our slots on our instances).
unsafe fn this<'a>(slf: *mut ffi::PyObject) -> &'a CachedObject {
    // SAFETY: as the caller promises.
    unsafe { &*(slf as *const CachedObject) }
}

unsafe extern "C" fn cached_vectorcall(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls our vectorcall slot with our instance and protocol arguments.
    to_c(|| unsafe { this(callable).call(args, nargsf, kwnames) })
}

unsafe extern "C" fn cache_info(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: method of our type.
    let this = unsafe { this(slf) };
    to_c(|| this.core()?.info(this.info_type))
}

unsafe extern "C" fn cache_clear(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: method of our type.
    let this = unsafe { this(slf) };
    to_c(|| {
        this.core()?.clear();
        // SAFETY: None is always valid.
        Ok(unsafe { PyObj::from_borrowed(ffi::Py_None()) })
    })
}

/// `_store_result(key, value)`: the async path's way back in once the coroutine finishes.
unsafe extern "C" fn store_result(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: method of our type.
    let this = unsafe { this(slf) };
    to_c(|| {
        if nargs != 2 {
            return Err(raise(Exc::Type, c"_store_result(key, value)"));
        }
        // SAFETY: two arguments, as just checked.
        let (key, value) = unsafe { (*args, *args.add(1)) };
        // SAFETY: `key` is a valid argument object that outlives this call.
        let key = unsafe { CallKey::existing(key, this.kw_mark) };
        let hash = key.hash()?;
        // SAFETY: `value` is a valid argument object.
        let value = unsafe { PyObj::from_borrowed(value) };
        this.core()?
            .store_result(hash, key.into_owned(), value, Vec::new())?;
        // SAFETY: None is always valid.
        Ok(unsafe { PyObj::from_borrowed(ffi::Py_None()) })
    })
}

/// `__reduce__`: pickle by qualified name, like functions and `lru_cache` wrappers.
unsafe extern "C" fn reduce(slf: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: `slf` is valid; attribute lookup may raise, reported by NULL.
    to_c(|| unsafe {
        PyObj::from_owned(ffi::PyObject_GetAttrString(slf, c"__qualname__".as_ptr()))
    })
}

/// `__copy__` and `__deepcopy__`: a cached function is a singleton, like a function.
unsafe extern "C" fn return_self(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: `slf` is valid.
    unsafe { PyObj::from_borrowed(slf) }.into_ptr()
}

unsafe extern "C" fn descr_get(
    slf: *mut ffi::PyObject,
    obj: *mut ffi::PyObject,
    _tp: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: `slf` is valid; `obj` is NULL/None (class access) or the instance to bind.
    unsafe {
        if obj.is_null() || obj == ffi::Py_None() {
            ffi::Py_INCREF(slf);
            return slf;
        }
        PyMethod_New(slf, obj)
    }
}

unsafe extern "C" fn traverse(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: GC calls this on our instances, with the world stopped on free-threaded builds.
    let this = unsafe { this(slf) };
    for p in [
        this.dict,
        this.func,
        this.info_type,
        this.kw_mark,
        this.async_fill,
    ] {
        if !p.is_null() {
            // SAFETY: `p` is an owned reference of ours.
            let r = unsafe { visit(p, arg) };
            if r != 0 {
                return r;
            }
        }
    }
    // SAFETY: `core` is NULL or our live Box.
    if let Some(core) = unsafe { this.core.as_ref() } {
        let mut result = 0;
        core.store.for_each_unlocked(|k, v| {
            for p in [k.as_ptr(), v.as_ptr()] {
                if result == 0 {
                    // SAFETY: the store holds a reference to both.
                    result = unsafe { visit(p, arg) };
                }
            }
        });
        return result;
    }
    0
}

unsafe extern "C" fn clear(slf: *mut ffi::PyObject) -> c_int {
    // SAFETY: GC calls this on our instances.
    let this = unsafe { &mut *(slf as *mut CachedObject) };
    // SAFETY: `core` is NULL or our live Box.
    if let Some(core) = unsafe { this.core.as_ref() } {
        core.clear();
    }
    for field in [&mut this.dict, &mut this.func, &mut this.async_fill] {
        let p = std::mem::replace(field, ptr::null_mut());
        if !p.is_null() {
            // SAFETY: an owned reference, now unlinked from the object.
            unsafe { ffi::Py_DECREF(p) };
        }
    }
    0
}

unsafe extern "C" fn dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: CPython calls dealloc once, on our instance, when its refcount hits zero.
    unsafe {
        ffi::PyObject_GC_UnTrack(slf as *mut c_void);
        let this = &mut *(slf as *mut CachedObject);
        if !this.weaklist.is_null() {
            ffi::PyObject_ClearWeakRefs(slf);
        }
        clear(slf);
        for field in [&mut this.info_type, &mut this.kw_mark] {
            let p = std::mem::replace(field, ptr::null_mut());
            if !p.is_null() {
                ffi::Py_DECREF(p);
            }
        }
        if !this.core.is_null() {
            drop(Box::from_raw(this.core));
            this.core = ptr::null_mut();
        }
        let tp = ffi::Py_TYPE(slf);
        if let Some(free) = (*tp).tp_free {
            free(slf as *mut c_void);
        }
        ffi::Py_DECREF(tp as *mut ffi::PyObject);
    }
}

extern "C" {
    fn PyMethod_New(func: *mut ffi::PyObject, slf: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// Creates the type. Called once, at module import.
pub fn init_type() -> PyResult<*mut ffi::PyObject> {
    if let Some(tp) = CACHED_TYPE.get() {
        return Ok(tp.0 as *mut ffi::PyObject);
    }
    let offset = |field: usize| field as ffi::Py_ssize_t;
    let members = Box::leak(Box::new([
        member(
            c"__vectorcalloffset__",
            offset(std::mem::offset_of!(CachedObject, vectorcall)),
        ),
        member(
            c"__dictoffset__",
            offset(std::mem::offset_of!(CachedObject, dict)),
        ),
        member(
            c"__weaklistoffset__",
            offset(std::mem::offset_of!(CachedObject, weaklist)),
        ),
        // SAFETY: an all-zero PyMemberDef is the documented sentinel.
        unsafe { std::mem::zeroed() },
    ]));
    let methods = Box::leak(Box::new([
        method(
            c"cache_info",
            Meth::NoArgs(cache_info),
            c"Hits, misses, max_size and current_size.",
        ),
        method(
            c"cache_clear",
            Meth::NoArgs(cache_clear),
            c"Drop every entry and reset the counters.",
        ),
        method(
            c"_store_result",
            Meth::Fast(store_result),
            c"Internal: cache an awaited result.",
        ),
        method(c"__reduce__", Meth::NoArgs(reduce), c"Pickle by reference."),
        method(
            c"__copy__",
            Meth::NoArgs(return_self),
            c"Cached functions are not copied.",
        ),
        method(
            c"__deepcopy__",
            Meth::OneArg(return_self),
            c"Cached functions are not copied.",
        ),
        ffi::PyMethodDef::zeroed(),
    ]));
    let getset = Box::leak(Box::new([
        ffi::PyGetSetDef {
            name: c"__dict__".as_ptr(),
            get: Some(ffi::PyObject_GenericGetDict),
            set: Some(ffi::PyObject_GenericSetDict),
            doc: ptr::null(),
            closure: ptr::null_mut(),
        },
        ffi::PyGetSetDef::default(),
    ]));
    let slots = Box::leak(Box::new([
        slot(ffi::Py_tp_dealloc, dealloc as *mut c_void),
        slot(ffi::Py_tp_traverse, traverse as *mut c_void),
        slot(ffi::Py_tp_clear, clear as *mut c_void),
        slot(ffi::Py_tp_call, ffi::PyVectorcall_Call as *mut c_void),
        slot(ffi::Py_tp_descr_get, descr_get as *mut c_void),
        slot(ffi::Py_tp_members, members.as_mut_ptr() as *mut c_void),
        slot(ffi::Py_tp_methods, methods.as_mut_ptr() as *mut c_void),
        slot(ffi::Py_tp_getset, getset.as_mut_ptr() as *mut c_void),
        slot(
            ffi::Py_tp_doc,
            c"A function wrapped by warp_cache.cache().".as_ptr() as *mut c_void,
        ),
        slot(0, ptr::null_mut()),
    ]));
    let spec = Box::leak(Box::new(ffi::PyType_Spec {
        name: c"warp_cache._warp_cache.CachedFunction".as_ptr(),
        basicsize: std::mem::size_of::<CachedObject>() as c_int,
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT
            | ffi::Py_TPFLAGS_HAVE_GC
            | ffi::Py_TPFLAGS_HAVE_VECTORCALL
            | ffi::Py_TPFLAGS_METHOD_DESCRIPTOR
            | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION) as _,
        slots: slots.as_mut_ptr(),
    }));
    // SAFETY: the spec and everything it points to are leaked, so they live forever.
    let tp = unsafe { ffi::PyType_FromSpec(spec) };
    if tp.is_null() {
        return Err(ErrSet);
    }
    let _ = CACHED_TYPE.set(TypePtr(tp as *mut ffi::PyTypeObject));
    Ok(tp)
}

fn member(name: &'static std::ffi::CStr, offset: ffi::Py_ssize_t) -> ffi::PyMemberDef {
    ffi::PyMemberDef {
        name: name.as_ptr(),
        type_code: ffi::Py_T_PYSSIZET,
        offset,
        flags: ffi::Py_READONLY,
        doc: ptr::null(),
    }
}

/// A method's C entry point and calling convention.
enum Meth {
    NoArgs(ffi::PyCFunction),
    OneArg(ffi::PyCFunction),
    Fast(ffi::PyCFunctionFast),
}

fn method(
    name: &'static std::ffi::CStr,
    meth: Meth,
    doc: &'static std::ffi::CStr,
) -> ffi::PyMethodDef {
    let (ml_meth, ml_flags) = match meth {
        Meth::NoArgs(f) => (ffi::PyMethodDefPointer { PyCFunction: f }, ffi::METH_NOARGS),
        Meth::OneArg(f) => (ffi::PyMethodDefPointer { PyCFunction: f }, ffi::METH_O),
        Meth::Fast(f) => (
            ffi::PyMethodDefPointer { PyCFunctionFast: f },
            ffi::METH_FASTCALL,
        ),
    };
    ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth,
        ml_flags,
        ml_doc: doc.as_ptr(),
    }
}

fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}
