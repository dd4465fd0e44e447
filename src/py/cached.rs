//! The cached callable: a C-level type with vectorcall, so a hit is one call into Rust that
//! builds the key, hashes, probes, compares and returns, with no argument tuple for a single
//! scalar argument and no allocation.
//!
//! It behaves like a function: `Py_TPFLAGS_METHOD_DESCRIPTOR` lets `obj.method(x)` call it
//! with `self` prepended, `__get__` binds it otherwise, and it has a `__dict__` so
//! `functools.update_wrapper` can give it `__name__`, `__doc__`, `__wrapped__` and the rest.

use super::awaitable::ReadyValue;
use super::flight::{FlightKey, Flights, Lead, Turn};
use super::memory_backend::MemoryBackend;
use super::object::{ErrSet, PyObj, PyResult};
#[cfg(unix)]
use super::shared_backend::SharedBackend;
use super::stack::Descent;
use crate::py::ffi;
use std::ffi::{c_int, c_void};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::OnceLock;

/// Where a cached callable keeps its entries.
// One boxed `Core` per cached function: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Core {
    /// In this process, as Python objects.
    Memory(MemoryBackend),
    /// In memory-mapped files shared by every process, as bytes.
    #[cfg(unix)]
    Shared(SharedBackend),
}

/// Evaluates `$body` with `$b` bound to whichever backend `$core` holds.
macro_rules! with_backend {
    ($core:expr, $b:ident => $body:expr) => {
        match $core {
            Core::Memory($b) => $body,
            #[cfg(unix)]
            Core::Shared($b) => $body,
        }
    };
}

/// A new reference to `None`, the result of the methods that return nothing.
fn none() -> PyResult<PyObj> {
    // SAFETY: None is always a valid object.
    Ok(unsafe { PyObj::from_borrowed(ffi::Py_None()) })
}

/// What a backend does for one call; the call sequence itself is shared
/// ([`CachedObject::call_with`]).
pub trait Backend {
    /// This backend, if it is the one `core` holds.
    fn of(core: &Core) -> Option<&Self>;
    /// A call's key, with whatever the lookup learnt that the insert can reuse.
    type Key;

    /// Builds the key of a vectorcall's arguments and looks it up, counting a hit or a
    /// miss: the cached value, or the key to compute it under.
    ///
    /// # Safety
    /// The arguments are as the vectorcall protocol delivers them.
    unsafe fn lookup_call(
        &self,
        args: *const *mut ffi::PyObject,
        nargs: usize,
        kwnames: *mut ffi::PyObject,
        kw_mark: *mut ffi::PyObject,
    ) -> PyResult<Lookup<Self::Key>>;
    /// The key as two words, to pass in registers through [`cached_miss`]. What the lookup
    /// learnt for the insert may be dropped (it is learnt again).
    fn key_into_words(key: Self::Key) -> [usize; 2];
    /// The key [`Backend::key_into_words`] made `words` of.
    ///
    /// # Safety
    /// `words` came from `key_into_words` of this backend and are used once.
    unsafe fn key_from_words(words: [usize; 2]) -> Self::Key;
    /// Looks a key up again (a flight leader's second look), counting a hit or a miss.
    fn lookup(&self, key: &mut Self::Key) -> PyResult<Option<PyObj>>;
    /// Takes back the miss this thread's last lookup counted; false (nothing done) where
    /// the backend cannot.
    fn uncount_miss(&self) -> bool;
    /// Counts the miss this thread's last lookup counted as a hit instead: the call was
    /// served by another call's flight, without running the function (where the backend
    /// can; else it stays a miss).
    fn miss_to_hit(&self);
    /// A key as the single-flight table compares it.
    type FlightKey: FlightKey;
    /// This cache's flights (`crate::py::flight`).
    fn flights(&self) -> &Flights<Self::FlightKey>;
    /// The flight key and its hash for a call's key.
    fn flight_key(&self, key: &Self::Key) -> (Self::FlightKey, u64);
    /// Caches `value` under `key`.
    fn store(&self, key: Self::Key, value: &PyObj) -> PyResult<()>;
    /// The key as an object, to hand to the async fill helper.
    fn key_object(&self, key: Self::Key) -> PyResult<PyObj>;
    /// The key back from [`Backend::key_object`]'s object.
    ///
    /// # Safety
    /// `obj` is a valid object that outlives the key.
    unsafe fn key_from_object(
        &self,
        obj: *mut ffi::PyObject,
        kw_mark: *mut ffi::PyObject,
    ) -> PyResult<Self::Key>;
    /// `cache_info()`.
    fn info(&self, info_type: *mut ffi::PyObject) -> PyResult<PyObj>;
    /// `cache_clear()`.
    fn clear(&self) -> PyResult<()>;
}

/// What [`Backend::lookup_call`] found.
pub enum Lookup<K> {
    /// The cached value.
    Hit(PyObj),
    /// Not cached: the key to compute the value under.
    Miss(K),
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
    pub core: Core,
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
        let core = Box::new(settings.core);
        // SAFETY: `obj` is a fresh instance of our type, so it has our layout.
        let this = unsafe { &mut *(obj.as_ptr() as *mut CachedObject) };
        // One entry point per backend: the call path never matches on the backend.
        this.vectorcall = Some(match &*core {
            Core::Memory(_) => cached_vectorcall::<MemoryBackend>,
            #[cfg(unix)]
            Core::Shared(_) => cached_vectorcall::<SharedBackend>,
        });
        this.func = settings.func.into_ptr();
        this.info_type = settings.info_type.into_ptr();
        this.kw_mark = settings.kw_mark.into_ptr();
        this.async_fill = settings.async_fill.map_or(ptr::null_mut(), PyObj::into_ptr);
        this.core = Box::into_raw(core);
        // SAFETY: `obj` is fresh, made by this thread and not yet shared; `func` is valid.
        #[cfg(all(Py_GIL_DISABLED, not(Py_3_14)))]
        unsafe {
            super::refcount::mirror(obj.as_ptr(), this.func)
        };
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

    /// The hit path of a call: the cached value, or the key of a miss to hand to
    /// [`cached_miss`]. A miss of a coroutine function (which only makes the coroutine) is
    /// dealt with here.
    ///
    /// # Safety
    /// The arguments are as the vectorcall protocol delivers them; `B` is the backend in
    /// `core` (the entry point was chosen by it).
    #[inline(always)]
    unsafe fn call<B: Backend>(
        &self,
        args: *const *mut ffi::PyObject,
        nargsf: usize,
        kwnames: *mut ffi::PyObject,
    ) -> PyResult<Found> {
        let Some(backend) = B::of(self.core()?) else {
            return Err(raise(Exc::Runtime, c"cache backend changed"));
        };
        // SAFETY: vectorcall arguments, as the caller promises.
        let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf) } as usize;
        // SAFETY: as above.
        let key = match unsafe { backend.lookup_call(args, nargs, kwnames, self.kw_mark)? } {
            Lookup::Hit(value) if self.async_fill.is_null() => return Ok(Found::Done(value)),
            Lookup::Hit(value) => return ReadyValue::wrap(value).map(Found::Done),
            Lookup::Miss(key) => key,
        };
        if !self.async_fill.is_null() {
            // SAFETY: forwarded vectorcall arguments, as the caller promises.
            let result = unsafe { self.miss_async(backend, key, args, nargsf, kwnames) };
            return result.map(Found::Done);
        }
        Ok(Found::Miss(B::key_into_words(key)))
    }

    /// Calls the wrapped function, one level deeper (`crate::py::stack`).
    ///
    /// # Safety
    /// As for [`CachedObject::call`].
    #[inline(always)]
    unsafe fn call_function(
        &self,
        args: *const *mut ffi::PyObject,
        nargsf: usize,
        kwnames: *mut ffi::PyObject,
    ) -> PyResult<PyObj> {
        let func = self.func()?;
        let _level = Descent::enter()?;
        // SAFETY: forwarding the caller's own vectorcall arguments unchanged.
        unsafe { PyObj::from_owned(vectorcall(func, args, nargsf, kwnames)) }
    }

    /// A miss of a coroutine function: `_fill` awaits the coroutine (single-flight per event
    /// loop) and hands the result back through `_store_result`.
    ///
    /// # Safety
    /// As for [`CachedObject::call`].
    #[inline(never)]
    unsafe fn miss_async<B: Backend>(
        &self,
        backend: &B,
        key: B::Key,
        args: *const *mut ffi::PyObject,
        nargsf: usize,
        kwnames: *mut ffi::PyObject,
    ) -> PyResult<PyObj> {
        // SAFETY: forwarding the caller's own vectorcall arguments unchanged.
        let result = unsafe { self.call_function(args, nargsf, kwnames)? };
        let key = backend.key_object(key)?;
        let fill_args = [
            self as *const Self as *mut ffi::PyObject,
            key.as_ptr(),
            result.as_ptr(),
        ];
        call_owned(self.async_fill, &fill_args, &[])
    }

    /// `_store_result(key, value)` for one backend.
    fn store_result_with<B: Backend>(
        &self,
        backend: &B,
        key: *mut ffi::PyObject,
        value: *mut ffi::PyObject,
    ) -> PyResult<()> {
        // SAFETY: `key` and `value` are argument objects alive for the whole method call.
        let key = unsafe { backend.key_from_object(key, self.kw_mark)? };
        // SAFETY: as above.
        let value = unsafe { PyObj::from_borrowed(value) };
        backend.store(key, &value)
    }
}

/// How a missing call goes on after [`take_turn`].
enum Start<'a, K> {
    /// The call's result, without running the function (a flight's value, or a second look
    /// that hit).
    Done(PyObj),
    /// Run the function, then land the lead if any (leading a flight, or alone).
    Compute(Option<Lead<'a, K>>),
}

/// Joins the key's flight, or leads one (looking again first where the backend can).
#[inline(always)]
fn take_turn<'a, B: Backend>(
    backend: &'a B,
    key: &mut B::Key,
) -> PyResult<Start<'a, B::FlightKey>> {
    let (flight_key, hash) = backend.flight_key(key);
    Ok(match backend.flights().take_turn(flight_key, hash)? {
        Turn::Value(value) => {
            backend.miss_to_hit();
            Start::Done(value)
        }
        Turn::Alone => Start::Compute(None),
        Turn::Lead(lead) if !backend.uncount_miss() => Start::Compute(Some(lead)),
        Turn::Lead(lead) => {
            // An equal flight may have landed (its value stored) between our lookup and
            // joining, so look again; our miss was just taken back, and this lookup counts
            // the call's hit or miss.
            match backend.lookup(key) {
                Ok(Some(value)) => Start::Done(land(Ok(value), Some(lead))?),
                Ok(None) => Start::Compute(Some(lead)),
                Err(err) => return land(Err(err), Some(lead)).map(Start::Done),
            }
        }
    })
}

/// Lands the call's flight, if it leads one, with its result: the value, or the exception
/// (which stays set).
fn land<K>(result: PyResult<PyObj>, lead: Option<Lead<'_, K>>) -> PyResult<PyObj> {
    match (&result, lead) {
        (Ok(value), Some(lead)) => lead.succeed(value),
        (Err(ErrSet), Some(lead)) => lead.fail(),
        (_, None) => {}
    }
    result
}

/// Calls `f(*a, *b)`.
pub(super) fn call_owned(
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

/// Which exception [`raise`] sets.
#[derive(Clone, Copy)]
pub(super) enum Exc {
    Recursion,
    Runtime,
    Type,
}

pub(super) fn raise(kind: Exc, msg: &std::ffi::CStr) -> ErrSet {
    // SAFETY: reading the interpreter's exception type objects, initialised before any
    // module code runs; `msg` is a C string.
    unsafe {
        let tp = match kind {
            Exc::Recursion => ffi::PyExc_RecursionError,
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
        Err(_) => internal_error(),
    }
}

/// Raises the `RuntimeError` a caught panic (a bug) becomes; returns NULL.
#[cold]
#[inline(never)]
fn internal_error() -> *mut ffi::PyObject {
    raise(
        Exc::Runtime,
        c"internal error in warp_cache (please report it)",
    );
    ptr::null_mut()
}

/// # Safety
/// `slf` is a `CachedObject` (CPython only calls our slots on our instances).
unsafe fn this<'a>(slf: *mut ffi::PyObject) -> &'a CachedObject {
    // SAFETY: as the caller promises.
    unsafe { &*(slf as *const CachedObject) }
}

/// What the hit path found ([`CachedObject::call`]).
enum Found {
    /// The call's result.
    Done(PyObj),
    /// A miss to compute, with its key as words ([`Backend::key_into_words`]).
    Miss([usize; 2]),
}

/// The entry point of a call (the vectorcall slot): the hit path ([`cached_hit`]), then, on
/// a miss, a tail call to [`cached_miss`]. Neither this frame nor the hit path's is on the
/// stack while the function runs: a recursion through the cache stacks only `cached_miss`
/// frames (`crate::py::stack`). On a hit this adds a call and a compare: the miss's
/// arguments come back through `record`, written only on a miss, so nothing is kept
/// across the call.
unsafe extern "C" fn cached_vectorcall<B: Backend>(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let mut record = MaybeUninit::<MissRecord>::uninit();
    // SAFETY: CPython calls our vectorcall slot with our instance and protocol arguments;
    // `create` chose this entry point for the instance's backend.
    let result = unsafe { cached_hit::<B>(callable, args, nargsf, kwnames, &mut record) };
    if result != MISS {
        return result;
    }
    // SAFETY: `cached_hit` wrote the record when it returned MISS.
    let r = unsafe { record.assume_init() };
    // SAFETY: our own arguments, forwarded; the key words come from `B::key_into_words`.
    unsafe { cached_miss::<B>(r.callable, r.args, r.nargsf, r.kwnames, r.key[0], r.key[1]) }
}

/// [`cached_hit`]'s answer for "a miss: see the record" (never an object's address).
const MISS: *mut ffi::PyObject = ptr::without_provenance_mut(1);

/// The arguments of [`cached_miss`], as [`cached_hit`] hands them back.
struct MissRecord {
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
    key: [usize; 2],
}

/// The hit path ([`CachedObject::call`]), panics caught: the result (a new reference, or
/// NULL with an exception set), or [`MISS`] with `record` written. Out of line: its frame
/// (and the one `catch_unwind` needs) is gone before [`cached_vectorcall`] tail-calls the
/// miss.
///
/// # Safety
/// As for [`cached_vectorcall`].
#[inline(never)]
unsafe fn cached_hit<B: Backend>(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
    record: &mut MaybeUninit<MissRecord>,
) -> *mut ffi::PyObject {
    // SAFETY: as the caller promises.
    let found = catch_unwind(AssertUnwindSafe(|| unsafe {
        this(callable).call::<B>(args, nargsf, kwnames)
    }));
    match found {
        Ok(Ok(Found::Done(value))) => value.into_ptr(),
        Ok(Ok(Found::Miss(key))) => {
            record.write(MissRecord {
                callable,
                args,
                nargsf,
                kwnames,
                key,
            });
            MISS
        }
        Ok(Err(ErrSet)) => ptr::null_mut(),
        Err(_) => internal_error(),
    }
}

/// A miss of a plain function, single-flight (`crate::py::flight`): the first call for a
/// key leads and calls the function; calls for an equal key meanwhile wait for its value or
/// exception.
///
/// This frame stays on the stack while the function runs, so a recursion through the cache
/// stacks one per level, and it must be no larger than what a level through `lru_cache`
/// adds (`crate::py::stack`). So everything before and after the call is out of line
/// ([`miss_begin`], [`miss_end`], each catching panics), every value lives in a register
/// (the key's and the lead's words; the level is entered first, so that few are live
/// across each call), and nothing here can panic: there is no `catch_unwind` frame.
///
/// # Safety
/// As for [`cached_vectorcall`]; `key` and `extra` are the words of a key of `B`.
#[inline(never)]
unsafe extern "C" fn cached_miss<B: Backend>(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
    key: usize,
    extra: usize,
) -> *mut ffi::PyObject {
    let key = [key, extra];
    // The whole miss is one level deeper: too deep raises before any flight is joined.
    let Ok(level) = Descent::enter() else {
        // SAFETY: the key's words, used once.
        drop(unsafe { B::key_from_words(key) });
        return ptr::null_mut();
    };
    // SAFETY: as the caller promises.
    let lead = match unsafe { miss_begin::<B>(callable, key) }.result() {
        Ok(lead) => lead,
        Err(result) => return result,
    };
    // SAFETY: our instance (CPython keeps it alive for the call); forwarded arguments.
    let result = match unsafe { this(callable).func() } {
        // SAFETY: a valid callable and the caller's own vectorcall arguments.
        Ok(func) => unsafe { vectorcall(func, args, nargsf, kwnames) },
        Err(ErrSet) => ptr::null_mut(),
    };
    drop(level);
    // SAFETY: the key's and the lead's words, used once; `result` is ours.
    unsafe { miss_end::<B>(callable, key, result, lead) }
}

/// What [`miss_begin`] found, in two words (returned in registers): a lead's words
/// ([`Lead::into_words`]: `[0, 0]` for none, else the flights' address and a flight's,
/// both aligned), or `[0, result | 1]`, a result to return (a new reference, or NULL with
/// an exception set).
struct Begin(usize, usize);

impl Begin {
    fn done(result: *mut ffi::PyObject) -> Self {
        Begin(0, result as usize | 1)
    }

    /// The lead's words to call the function with, or the result to return.
    #[inline(always)]
    fn result(self) -> Result<[usize; 2], *mut ffi::PyObject> {
        match self {
            Begin(0, tagged) if tagged & 1 == 1 => Err((tagged & !1) as *mut ffi::PyObject),
            Begin(flights, flight) => Ok([flights, flight]),
        }
    }
}

/// Joins the key's flight, or leads one (looking again first where the backend can).
///
/// # Safety
/// `callable` is our instance with backend `B`; `key` are the words of a key of `B`: kept
/// by the caller if the function is to be called, else dropped here.
#[inline(never)]
unsafe fn miss_begin<B: Backend>(callable: *mut ffi::PyObject, key: [usize; 2]) -> Begin {
    let step = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as the caller promises.
        let this = unsafe { this(callable) };
        // SAFETY: as the caller promises. Lent: the caller keeps the key (a panic leaves it
        // to the caller too).
        let mut lent = ManuallyDrop::new(unsafe { B::key_from_words(key) });
        let turn = backend_of::<B>(this).and_then(|backend| take_turn(backend, &mut lent));
        // The same words back; what the second look learnt for the insert is dropped.
        let back = B::key_into_words(ManuallyDrop::into_inner(lent));
        debug_assert_eq!(back, key);
        Ok(match turn? {
            Start::Compute(lead) => Ok(Lead::into_words(lead)),
            Start::Done(value) => Err(value.into_ptr()),
        })
    }));
    let lead = match step {
        Ok(Ok(Ok(lead))) => return Begin(lead[0], lead[1]),
        Ok(Ok(Err(value))) => value,
        Ok(Err(ErrSet)) => ptr::null_mut(),
        Err(_) => internal_error(),
    };
    // The function is not called: the key ends here.
    // SAFETY: the caller's words, used once.
    drop(unsafe { B::key_from_words(key) });
    Begin::done(lead)
}

/// Stores what the function returned (`result`: a new reference, or NULL with an exception
/// set) and lands the call's flight.
///
/// # Safety
/// `callable` is our instance with backend `B`; `key` and `lead` are words of a key of `B`
/// and of a lead of its flights ([`miss_begin`]), used once.
#[inline(never)]
unsafe fn miss_end<B: Backend>(
    callable: *mut ffi::PyObject,
    key: [usize; 2],
    result: *mut ffi::PyObject,
    lead: [usize; 2],
) -> *mut ffi::PyObject {
    to_c(|| {
        // SAFETY: as the caller promises (all three are taken back once, here).
        let (this, key, result) = unsafe {
            (
                this(callable),
                B::key_from_words(key),
                PyObj::from_owned(result),
            )
        };
        let backend = backend_of::<B>(this)?;
        // SAFETY: lead words of `backend`'s flights, alive as long as `this`.
        let lead = unsafe { Lead::<B::FlightKey>::from_words(lead) };
        land(
            result.and_then(|value| backend.store(key, &value).map(|()| value)),
            lead,
        )
    })
}

/// The backend of a cached function whose entry point was chosen for `B`.
#[inline(always)]
fn backend_of<B: Backend>(this: &CachedObject) -> PyResult<&B> {
    B::of(this.core()?).ok_or_else(|| raise(Exc::Runtime, c"cache backend changed"))
}

/// Calls `func` through its vectorcall slot when it has one (a Python function does):
/// `PyObject_Vectorcall` without its frame, one less per level of a recursion.
///
/// # Safety
/// `func` is a valid callable; the arguments are as the vectorcall protocol delivers them.
#[inline(always)]
unsafe fn vectorcall(
    func: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: `func` is valid; a type with the vectorcall flag keeps a (possibly NULL)
    // vectorcall pointer at `tp_vectorcall_offset` of each instance.
    unsafe {
        let tp = ffi::Py_TYPE(func);
        if ffi::PyType_HasFeature(tp, ffi::Py_TPFLAGS_HAVE_VECTORCALL) != 0 {
            let slot = func.cast::<u8>().offset((*tp).tp_vectorcall_offset);
            if let Some(call) = *slot.cast::<Option<ffi::vectorcallfunc>>() {
                return call(func, args, nargsf, kwnames);
            }
        }
        ffi::PyObject_Vectorcall(func, args, nargsf, kwnames)
    }
}

unsafe extern "C" fn cache_info(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: method of our type.
    let this = unsafe { this(slf) };
    to_c(|| with_backend!(this.core()?, b => b.info(this.info_type)))
}

unsafe extern "C" fn cache_clear(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: method of our type.
    let this = unsafe { this(slf) };
    to_c(|| {
        with_backend!(this.core()?, b => b.clear())?;
        none()
    })
}

/// `_store_result(key, value)`: the async path's way back in once the coroutine finishes.
///
/// # Safety
/// A CPython slot or method of our type: called only on our instances, with arguments as
/// its calling convention delivers them.
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
        with_backend!(this.core()?, b => this.store_result_with(b, key, value))?;
        none()
    })
}

/// `_served_by_flight()`: an async call got its value from another task's flight, so its
/// miss counts as a hit (`Backend::miss_to_hit`).
///
/// # Safety
/// A CPython slot or method of our type: called only on our instances, with arguments as
/// its calling convention delivers them.
unsafe extern "C" fn served_by_flight(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: method of our type.
    let this = unsafe { this(slf) };
    to_c(|| {
        with_backend!(this.core()?, b => b.miss_to_hit());
        none()
    })
}

/// `__reduce__`: pickle by qualified name, like functions and `lru_cache` wrappers.
///
/// # Safety
/// A CPython slot or method of our type: called only on our instances, with arguments as
/// its calling convention delivers them.
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

/// `tp_traverse`: visits every reference we own, cached keys and values included.
///
/// # Safety
/// A CPython slot or method of our type: called only on our instances, with arguments as
/// its calling convention delivers them.
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
    match unsafe { this.core.as_ref() } {
        Some(Core::Memory(backend)) => {
            let mut result = 0;
            backend.for_each_unlocked(|k, v| {
                for p in [k.as_ptr(), v.as_ptr()] {
                    if result == 0 {
                        // SAFETY: the store holds a reference to both.
                        result = unsafe { visit(p, arg) };
                    }
                }
            });
            result
        }
        #[cfg(unix)]
        Some(Core::Shared(backend)) => {
            let mut result = 0;
            backend.for_each_decoded(|v| {
                if result == 0 {
                    // SAFETY: the decoded table holds a reference to it.
                    result = unsafe { visit(v.as_ptr(), arg) };
                }
            });
            result
        }
        _ => 0,
    }
}

/// `tp_clear`: drops the references that can form cycles (cached entries, dict, function).
///
/// # Safety
/// A CPython slot or method of our type: called only on our instances, with arguments as
/// its calling convention delivers them.
unsafe extern "C" fn clear(slf: *mut ffi::PyObject) -> c_int {
    // SAFETY: GC calls this on our instances.
    let this = unsafe { &mut *(slf as *mut CachedObject) };
    // SAFETY: `core` is NULL or our live Box.
    match unsafe { this.core.as_ref() } {
        Some(Core::Memory(backend)) => {
            let _ = backend.clear();
        }
        // The shared entries stay: only this process's decoded copies hold references.
        #[cfg(unix)]
        Some(Core::Shared(backend)) => backend.forget_decoded(),
        _ => {}
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
        method(
            c"_served_by_flight",
            Meth::NoArgs(served_by_flight),
            c"Internal: count this thread's last miss as a hit.",
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
