//! The cached callable: a C-level type with vectorcall, so a hit is one call into Rust that
//! builds the key, hashes, probes, compares and returns, with no argument tuple for a single
//! scalar argument and no allocation.
//!
//! It behaves like a function: `Py_TPFLAGS_METHOD_DESCRIPTOR` lets `obj.method(x)` call it
//! with `self` prepended, `__get__` binds it otherwise, and it has a `__dict__` so
//! `functools.update_wrapper` can give it `__name__`, `__doc__`, `__wrapped__` and the rest.

use super::awaitable::ReadyValue;
use super::bound::BoundMethod;
use super::flight::{FlightKey, Flights, Lead, Turn};
use super::memory_backend::MemoryBackend;
use super::object::{ErrSet, PyObj, PyResult};
use super::refresh::RefreshJob;
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

    /// Builds the key of a vectorcall's arguments: the one a call with them looks up (the
    /// per-entry methods use it, so their key rules are a call's).
    ///
    /// # Safety
    /// The arguments are as the vectorcall protocol delivers them.
    unsafe fn call_key(
        &self,
        args: *const *mut ffi::PyObject,
        nargs: usize,
        kwnames: *mut ffi::PyObject,
        kw_mark: *mut ffi::PyObject,
    ) -> PyResult<Self::Key>;

    /// Builds the key of a vectorcall's arguments ([`Backend::call_key`]) and looks it up,
    /// counting a hit or a miss: the cached value, or the key to compute it under. With
    /// `serve_stale`, an entry expired less than that ago is [`Lookup::Stale`] (a hit).
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
    /// The value live under `key`, counting nothing and leaving the entry's visited bit
    /// (`cache_peek`).
    fn peek(&self, key: &mut Self::Key) -> PyResult<Option<PyObj>>;
    /// Removes `key`'s entry; true if it was live (`cache_invalidate`).
    fn invalidate(&self, key: Self::Key) -> PyResult<bool>;
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
    /// Caches `value` under `key`. A live equal entry keeps its value unless `replace`
    /// (a refresh or `cache_set`); the shared backend always replaces.
    fn store(&self, key: Self::Key, value: &PyObj, replace: bool) -> PyResult<()>;
    /// [`Backend::store`], telling whether the value is cached now.
    fn store_reporting(&self, key: Self::Key, value: &PyObj, replace: bool) -> PyResult<bool> {
        self.store(key, value, replace).map(|()| true)
    }
    /// A call that leads its key's flight in this process, before it computes: the value
    /// if another process computed it meanwhile (counted as a hit), else `None`: compute.
    /// Backends shared between processes wait here for another process's flight.
    fn lead_across(&self, _key: &Self::Key) -> PyResult<Option<PyObj>> {
        Ok(None)
    }
    /// `_across(key, token, nested)`: the async path's [`Backend::lead_across`], one
    /// step at a time so that the event loop never blocks. `token` is `None` for a first
    /// claim, else what the last step returned to wait on; `nested`: the task leads
    /// flights itself. Returns `(0, None)` compute, `(1, token)` compute and land,
    /// `(2, token)` sleep and call again, `(3, value)` the value (a hit).
    fn across_step(
        &self,
        _key: Self::Key,
        _token: *mut ffi::PyObject,
        _nested: bool,
    ) -> PyResult<PyObj> {
        step_tuple(0, None)
    }
    /// `_across_land(key, token, outcome)`: ends a flight `_across` let the task lead
    /// (outcome 1: stored, 2: computed but not stored, 3: no value).
    fn across_land(
        &self,
        _key: Self::Key,
        _token: *mut ffi::PyObject,
        _outcome: u64,
    ) -> PyResult<()> {
        Ok(())
    }
    /// Ends a computed miss: caches the value, if any, and (`led`: the call led its key's
    /// flight) ends whatever [`Backend::lead_across`] began.
    fn finish(&self, key: Self::Key, result: PyResult<PyObj>, _led: bool) -> PyResult<PyObj> {
        result.and_then(|value| self.store(key, &value, false).map(|()| value))
    }
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
    /// Expired less than `serve_stale` ago: the value to return now, and the key to
    /// refresh it under.
    Stale(PyObj, K),
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

/// A heap type of this module, made once at import.
pub(super) struct TypeCell(OnceLock<TypePtr>);

impl TypeCell {
    pub(super) const fn new() -> Self {
        Self(OnceLock::new())
    }

    /// The type, once made.
    pub(super) fn made(&self) -> Option<*mut ffi::PyTypeObject> {
        self.0.get().map(|tp| tp.0)
    }

    /// The type; instances are only made after the module's import made it.
    pub(super) fn get(&self) -> *mut ffi::PyTypeObject {
        self.made().expect("type initialised at module import")
    }

    /// Makes the type of `parts` (adding the tables' terminating entries, `tp_call` by
    /// vectorcall and the GC slots). Everything the spec points to is leaked: a type lives
    /// as long as the process.
    pub(super) fn make(&self, parts: TypeParts) -> PyResult<*mut ffi::PyObject> {
        let TypeParts {
            name,
            basicsize,
            flags,
            gc: (dealloc, traverse, clear),
            mut members,
            mut methods,
            mut getset,
            mut slots,
        } = parts;
        // SAFETY: an all-zero PyMemberDef is the documented sentinel.
        members.push(unsafe { std::mem::zeroed() });
        methods.push(ffi::PyMethodDef::zeroed());
        getset.push(ffi::PyGetSetDef::default());
        slots.extend([
            slot(ffi::Py_tp_dealloc, dealloc as *mut c_void),
            slot(ffi::Py_tp_traverse, traverse as *mut c_void),
            slot(ffi::Py_tp_clear, clear as *mut c_void),
            slot(ffi::Py_tp_call, ffi::PyVectorcall_Call as *mut c_void),
            slot(
                ffi::Py_tp_members,
                members.leak().as_mut_ptr() as *mut c_void,
            ),
            slot(
                ffi::Py_tp_methods,
                methods.leak().as_mut_ptr() as *mut c_void,
            ),
            slot(ffi::Py_tp_getset, getset.leak().as_mut_ptr() as *mut c_void),
            slot(0, ptr::null_mut()),
        ]);
        let spec = Box::leak(Box::new(ffi::PyType_Spec {
            name: name.as_ptr(),
            basicsize: basicsize as c_int,
            itemsize: 0,
            flags: (ffi::Py_TPFLAGS_DEFAULT
                | ffi::Py_TPFLAGS_HAVE_GC
                | ffi::Py_TPFLAGS_HAVE_VECTORCALL
                | flags) as _,
            slots: slots.leak().as_mut_ptr(),
        }));
        // SAFETY: the spec and everything it points to are leaked, so they live forever.
        let tp = unsafe { ffi::PyType_FromSpec(spec) };
        if tp.is_null() {
            return Err(ErrSet);
        }
        let _ = self.0.set(TypePtr(tp as *mut ffi::PyTypeObject));
        Ok(tp)
    }
}

/// What a heap type of this module is made of ([`TypeCell::make`]).
pub(super) struct TypeParts {
    pub name: &'static std::ffi::CStr,
    pub basicsize: usize,
    /// Type flags besides the ones every such type has.
    pub flags: std::ffi::c_ulong,
    /// `tp_dealloc`, `tp_traverse` and `tp_clear`.
    pub gc: (ffi::destructor, ffi::traverseproc, ffi::inquiry),
    pub members: Vec<ffi::PyMemberDef>,
    pub methods: Vec<ffi::PyMethodDef>,
    pub getset: Vec<ffi::PyGetSetDef>,
    /// Other slots.
    pub slots: Vec<ffi::PyType_Slot>,
}

static CACHED_TYPE: TypeCell = TypeCell::new();

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
        let tp = CACHED_TYPE.get();
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
            Lookup::Stale(value, key) => {
                // SAFETY: forwarded vectorcall arguments, as the caller promises.
                let result =
                    unsafe { self.serve_stale(backend, value, key, args, nargsf, kwnames) };
                return result.map(Found::Done);
            }
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

    /// `_store_result(key, value, replace)` for one backend: whether the value is cached now.
    fn store_result_with<B: Backend>(
        &self,
        backend: &B,
        key: *mut ffi::PyObject,
        value: *mut ffi::PyObject,
        replace: bool,
    ) -> PyResult<bool> {
        // SAFETY: `key` and `value` are argument objects alive for the whole method call.
        let key = unsafe { backend.key_from_object(key, self.kw_mark)? };
        // SAFETY: as above.
        let value = unsafe { PyObj::from_borrowed(value) };
        backend.store_reporting(key, &value, replace)
    }

    /// A call that found its entry expired less than `serve_stale` ago: returns the stale
    /// value at once, and starts one refresh of the entry unless one is under way. Plain
    /// functions claim the key's flight (atomically: one of the threads that find the
    /// entry stale at once wins) and hand it to a background thread
    /// ([`super::refresh::RefreshJob`]); coroutine functions refresh in a task of the
    /// caller's event loop, claimed in that loop's flights (`_api._refresh_stale`).
    ///
    /// # Safety
    /// As for [`CachedObject::call`].
    #[cold]
    #[inline(never)]
    unsafe fn serve_stale<B: Backend>(
        &self,
        backend: &B,
        value: PyObj,
        key: B::Key,
        args: *const *mut ffi::PyObject,
        nargsf: usize,
        kwnames: *mut ffi::PyObject,
    ) -> PyResult<PyObj> {
        if !self.async_fill.is_null() {
            // SAFETY: forwarded vectorcall arguments; this only makes the coroutine.
            let coro = unsafe { self.call_function(args, nargsf, kwnames)? };
            let key = backend.key_object(key)?;
            let helper = api_helper(&REFRESH_STALE_ASYNC)?;
            call_owned(helper, &[self.as_ptr(), key.as_ptr(), coro.as_ptr()], &[])?;
            return ReadyValue::wrap(value);
        }
        let (flight_key, hash) = backend.flight_key(&key);
        if let Some(lead) = backend.flights().try_lead(flight_key, hash)? {
            // SAFETY: forwarded vectorcall arguments; the job keeps its own references.
            let job = unsafe {
                RefreshJob::create::<B>(self.as_ptr(), key, lead, args, nargsf, kwnames)?
            };
            call_owned(api_helper(&REFRESH_IN_BACKGROUND)?, &[job.as_ptr()], &[])?;
        }
        Ok(value)
    }

    /// This object as a plain object pointer (borrowed).
    fn as_ptr(&self) -> *mut ffi::PyObject {
        self as *const Self as *mut ffi::PyObject
    }

    /// Calls the function now and stores its result over any live entry, then lands
    /// `lead` (if any) with the result: `cache_refresh`, and a stale entry's refresh.
    ///
    /// # Safety
    /// The arguments are as the vectorcall protocol delivers them.
    pub(super) unsafe fn compute_replacing<B: Backend>(
        &self,
        backend: &B,
        key: B::Key,
        lead: Option<Lead<'_, B::FlightKey>>,
        args: *const *mut ffi::PyObject,
        nargsf: usize,
        kwnames: *mut ffi::PyObject,
    ) -> PyResult<PyObj> {
        // SAFETY: as the caller promises.
        let result = unsafe { self.call_function(args, nargsf, kwnames) };
        land(
            result.and_then(|value| backend.store(key, &value, true).map(|()| value)),
            lead,
        )
    }

    /// `cache_invalidate` for one backend.
    ///
    /// # Safety
    /// `call` holds valid arguments.
    unsafe fn invalidate<B: Backend>(&self, backend: &B, call: CallArgs) -> PyResult<PyObj> {
        // SAFETY: as the caller promises.
        let removed = backend.invalidate(unsafe { call.key(backend, self.kw_mark)? })?;
        // SAFETY: True and False are always valid objects.
        Ok(unsafe {
            PyObj::from_borrowed(if removed {
                ffi::Py_True()
            } else {
                ffi::Py_False()
            })
        })
    }

    /// `cache_peek` for one backend.
    ///
    /// # Safety
    /// `call` holds valid arguments.
    unsafe fn peek<B: Backend>(&self, backend: &B, call: CallArgs) -> PyResult<PyObj> {
        // SAFETY: as the caller promises.
        let mut key = unsafe { call.key(backend, self.kw_mark)? };
        backend.peek(&mut key)?.ok_or_else(|| {
            // SAFETY: a valid exception type and a C string.
            unsafe {
                ffi::PyErr_SetString(
                    ffi::PyExc_KeyError,
                    c"no live cached value for these arguments".as_ptr(),
                )
            };
            ErrSet
        })
    }

    /// `cache_set` for one backend: the first argument is the value, the rest the key's.
    ///
    /// # Safety
    /// `call` holds valid arguments.
    unsafe fn set<B: Backend>(&self, backend: &B, call: CallArgs) -> PyResult<PyObj> {
        let Some((value, rest)) = call.split_first() else {
            return Err(raise(
                Exc::Type,
                c"cache_set() missing the value to store: cache_set(value, *args, **kwargs)",
            ));
        };
        // SAFETY: as the caller promises (`value` is one of its arguments).
        let (value, key) = unsafe {
            (
                PyObj::from_borrowed(value),
                rest.key(backend, self.kw_mark)?,
            )
        };
        backend.store(key, &value, true)?;
        none()
    }

    /// `cache_refresh(*args, **kwargs)` for one backend: computes now, joining the key's
    /// flight if one is under way, stores and returns the value; for a coroutine function,
    /// the awaitable that does so on the caller's event loop.
    ///
    /// # Safety
    /// `call` holds valid arguments.
    unsafe fn refresh<B: Backend>(&self, backend: &B, call: CallArgs) -> PyResult<PyObj> {
        let CallArgs {
            args,
            nargs,
            kwnames,
        } = call;
        // SAFETY: as the caller promises.
        let key = unsafe { call.key(backend, self.kw_mark)? };
        if !self.async_fill.is_null() {
            // SAFETY: as the caller promises; this only makes the coroutine.
            let coro = unsafe { self.call_function(args, nargs, kwnames)? };
            let key = backend.key_object(key)?;
            // SAFETY: True is always a valid object.
            let replace = unsafe { ffi::Py_True() };
            let fill_args = [self.as_ptr(), key.as_ptr(), coro.as_ptr(), replace];
            return call_owned(self.async_fill, &fill_args, &[]);
        }
        let (flight_key, hash) = backend.flight_key(&key);
        let lead = match backend.flights().take_turn(flight_key, hash)? {
            Turn::Value(value) => return Ok(value),
            Turn::Alone => None,
            Turn::Lead(lead) => Some(lead),
        };
        // SAFETY: as the caller promises.
        unsafe { self.compute_replacing(backend, key, lead, args, nargs, kwnames) }
    }
}

/// A function of `warp_cache._api`, looked up once.
pub(super) struct ApiHelper {
    name: &'static std::ffi::CStr,
    function: OnceLock<PyObj>,
}

impl ApiHelper {
    pub(super) const fn new(name: &'static std::ffi::CStr) -> Self {
        Self {
            name,
            function: OnceLock::new(),
        }
    }
}

/// `_refresh_in_background(job)`: runs a [`RefreshJob`] in a new daemon thread.
static REFRESH_IN_BACKGROUND: ApiHelper = ApiHelper::new(c"_refresh_in_background");

/// `_refresh_stale(cached, key, coro)`: refreshes a coroutine function's stale entry in a
/// task of the running event loop, unless one is under way there.
static REFRESH_STALE_ASYNC: ApiHelper = ApiHelper::new(c"_refresh_stale");

/// The helper's function (a borrowed reference, kept for the life of the process).
pub(super) fn api_helper(helper: &'static ApiHelper) -> PyResult<*mut ffi::PyObject> {
    if let Some(function) = helper.function.get() {
        return Ok(function.as_ptr());
    }
    // SAFETY: attached; each result is checked.
    let function = unsafe {
        let module = PyObj::from_owned(ffi::PyImport_ImportModule(c"warp_cache._api".as_ptr()))?;
        PyObj::from_owned(ffi::PyObject_GetAttrString(
            module.as_ptr(),
            helper.name.as_ptr(),
        ))?
    };
    // Two threads may both look it up: either object will do.
    Ok(helper.function.get_or_init(|| function).as_ptr())
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
        Turn::Lead(lead) if !backend.uncount_miss() => match backend.lead_across(key) {
            Ok(None) => Start::Compute(Some(lead)),
            Ok(Some(value)) => Start::Done(land(Ok(value), Some(lead))?),
            Err(err) => return land(Err(err), Some(lead)).map(Start::Done),
        },
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
pub(super) fn to_c(f: impl FnOnce() -> PyResult<PyObj>) -> *mut ffi::PyObject {
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
pub(super) unsafe fn this<'a>(slf: *mut ffi::PyObject) -> &'a CachedObject {
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
        let led = lead.is_some();
        land(backend.finish(key, result, led), lead)
    })
}

/// The backend of a cached function whose entry point was chosen for `B`.
#[inline(always)]
pub(super) fn backend_of<B: Backend>(this: &CachedObject) -> PyResult<&B> {
    B::of(this.core()?).ok_or_else(|| raise(Exc::Runtime, c"cache backend changed"))
}

/// Calls `func` through its vectorcall slot when it has one (a Python function does):
/// `PyObject_Vectorcall` without its frame, one less per level of a recursion.
///
/// # Safety
/// `func` is a valid callable; the arguments are as the vectorcall protocol delivers them.
#[inline(always)]
pub(super) unsafe fn vectorcall(
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

/// `(kind, payload)`, as [`Backend::across_step`] answers.
pub(super) fn step_tuple(kind: u64, payload: Option<PyObj>) -> PyResult<PyObj> {
    // SAFETY: a new int and a borrowed-then-owned payload (None if absent) packed into a
    // new tuple, which takes its own references; we are attached.
    unsafe {
        let kind = PyObj::from_owned(ffi::PyLong_FromUnsignedLongLong(kind))?;
        let payload = match payload {
            Some(payload) => payload,
            None => PyObj::from_borrowed(ffi::Py_None()),
        };
        PyObj::from_owned(ffi::PyTuple_Pack(2, kind.as_ptr(), payload.as_ptr()))
    }
}

/// The `N` arguments of a `METH_FASTCALL` method, or a `TypeError` showing `usage`.
///
/// # Safety
/// `args` holds `nargs` valid objects, as the calling convention delivers them.
unsafe fn fast_args<const N: usize>(
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    usage: &std::ffi::CStr,
) -> PyResult<[*mut ffi::PyObject; N]> {
    if nargs as usize != N {
        return Err(raise(Exc::Type, usage));
    }
    // SAFETY: `nargs` (= N) arguments, as the caller promises.
    Ok(std::array::from_fn(|i| unsafe { *args.add(i) }))
}

/// `_across(key, token, nested)` (see [`Backend::across_step`]).
///
/// # Safety
/// A CPython method of our type: called only on our instances, with arguments as its
/// calling convention delivers them.
unsafe extern "C" fn across(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: method of our type.
    let this = unsafe { this(slf) };
    to_c(|| {
        // SAFETY: as the calling convention delivers them.
        let [key, token, nested] =
            unsafe { fast_args(args, nargs, c"_across(key, token, nested)")? };
        // SAFETY: a valid object.
        let nested = match unsafe { ffi::PyObject_IsTrue(nested) } {
            -1 => return Err(ErrSet),
            n => n == 1,
        };
        with_backend!(this.core()?, b => {
            // SAFETY: `key` is alive for the call.
            let key = unsafe { b.key_from_object(key, this.kw_mark)? };
            b.across_step(key, token, nested)
        })
    })
}

/// `_across_land(key, token, outcome)` (see [`Backend::across_land`]).
///
/// # Safety
/// As for [`across`].
unsafe extern "C" fn across_land(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: method of our type.
    let this = unsafe { this(slf) };
    to_c(|| {
        // SAFETY: as the calling convention delivers them.
        let [key, token, outcome] =
            unsafe { fast_args(args, nargs, c"_across_land(key, token, outcome)")? };
        // SAFETY: a valid object; -1 with an exception set if not an int.
        let outcome = unsafe { ffi::PyLong_AsUnsignedLongLong(outcome) };
        // SAFETY: checking this thread's exception state.
        if !unsafe { ffi::PyErr_Occurred() }.is_null() {
            return Err(ErrSet);
        }
        with_backend!(this.core()?, b => {
            // SAFETY: `key` is alive for the call.
            let key = unsafe { b.key_from_object(key, this.kw_mark)? };
            b.across_land(key, token, outcome)
        })?;
        none()
    })
}

/// `_store_result(key, value, replace=False)`: the async path's way back in once the
/// coroutine finishes (`replace`: a refresh, which replaces a live entry).
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
        if !(2..=3).contains(&nargs) {
            return Err(raise(
                Exc::Type,
                c"_store_result(key, value, replace=False)",
            ));
        }
        // SAFETY: two or three arguments, as just checked.
        let (key, value) = unsafe { (*args, *args.add(1)) };
        let replace = match nargs {
            // SAFETY: a third argument, a valid object; -1 means an exception is set.
            3 => match unsafe { ffi::PyObject_IsTrue(*args.add(2)) } {
                r if r < 0 => return Err(ErrSet),
                r => r == 1,
            },
            _ => false,
        };
        let stored =
            with_backend!(this.core()?, b => this.store_result_with(b, key, value, replace))?;
        // SAFETY: the bool singletons are always valid objects.
        Ok(unsafe {
            PyObj::from_borrowed(if stored {
                ffi::Py_True()
            } else {
                ffi::Py_False()
            })
        })
    })
}

/// The memory backend of `this`, or a `TypeError` naming `method`.
fn memory_core<'a>(this: &'a CachedObject, method: &std::ffi::CStr) -> PyResult<&'a MemoryBackend> {
    match this.core()? {
        Core::Memory(backend) => Ok(backend),
        #[cfg(unix)]
        _ => Err(raise(Exc::Type, method)),
    }
}

/// `_forget(key)`: drop one entry of a memory-backend cache (a near cache invalidated by
/// its remote tier); True if there was one.
///
/// # Safety
/// A CPython method of our type: called only on our instances, with arguments as its
/// calling convention delivers them.
unsafe extern "C" fn forget(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: method of our type.
    let this = unsafe { this(slf) };
    to_c(|| {
        // SAFETY: as the calling convention delivers them.
        let [key] = unsafe { fast_args(args, nargs, c"_forget(key)")? };
        let backend = memory_core(this, c"_forget() needs a memory-backend cache")?;
        // SAFETY: `key` is an argument object alive for the whole method call.
        let removed = unsafe { backend.forget(key, this.kw_mark)? };
        // SAFETY: the bool singletons are always valid objects.
        Ok(unsafe {
            PyObj::from_borrowed(if removed {
                ffi::Py_True()
            } else {
                ffi::Py_False()
            })
        })
    })
}

/// `_flush()`: drop every entry of a memory-backend cache but keep its counters.
///
/// # Safety
/// A CPython method of our type: called only on our instances.
unsafe extern "C" fn flush(slf: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: method of our type.
    let this = unsafe { this(slf) };
    to_c(|| {
        memory_core(this, c"_flush() needs a memory-backend cache")?.flush();
        none()
    })
}

/// The arguments of a key-taking method, laid out as a vectorcall delivers them: `nargs`
/// positional ones, then one value per name in `kwnames` (NULL or a tuple of str).
#[derive(Clone, Copy)]
pub(super) struct CallArgs {
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: *mut ffi::PyObject,
}

impl CallArgs {
    /// The key a call with these arguments uses in `backend`.
    ///
    /// # Safety
    /// The arguments are valid as a vectorcall's; `kw_mark` is the cache's marker.
    unsafe fn key<B: Backend>(self, backend: &B, kw_mark: *mut ffi::PyObject) -> PyResult<B::Key> {
        // SAFETY: as the caller promises.
        unsafe { backend.call_key(self.args, self.nargs, self.kwnames, kw_mark) }
    }

    /// These arguments without the first positional one (`cache_set`'s value), which is
    /// returned; `None` when there is no positional argument.
    fn split_first(self) -> Option<(*mut ffi::PyObject, CallArgs)> {
        (self.nargs > 0).then(|| {
            // SAFETY: at least one positional argument.
            let (first, rest) = unsafe { (*self.args, self.args.add(1)) };
            let rest = CallArgs {
                args: rest,
                nargs: self.nargs - 1,
                kwnames: self.kwnames,
            };
            (first, rest)
        })
    }
}

/// The key-taking methods' C signature (`METH_FASTCALL | METH_KEYWORDS`): the arguments
/// arrive as a vectorcall delivers them, so they build the key a call with them builds.
pub(super) type KeyedMethod = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

/// Defines a key-taking method of the cached type: the C entry point that dispatches on
/// the backend to `CachedObject::$method`.
macro_rules! keyed_method {
    ($(#[$doc:meta])* $name:ident => $method:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// A method of our type: called only on our instances, with arguments as
        /// `METH_FASTCALL | METH_KEYWORDS` delivers them.
        pub(super) unsafe extern "C" fn $name(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargs: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            // SAFETY: method of our type.
            let this = unsafe { this(slf) };
            let call = CallArgs {
                args,
                nargs: nargs as usize,
                kwnames,
            };
            // SAFETY: arguments as the calling convention delivers them.
            to_c(|| with_backend!(this.core()?, b => unsafe { this.$method(b, call) }))
        }
    };
}

keyed_method!(
    /// `cache_invalidate(*args, **kwargs) -> bool`: removes the entry a call with these
    /// arguments would find; True if there was a live one.
    cache_invalidate => invalidate
);
keyed_method!(
    /// `cache_peek(*args, **kwargs)`: the value a call with these arguments would return
    /// from the cache, counting nothing and leaving SIEVE's visited bit; `KeyError` when
    /// there is none live (absent, expired, or only servable stale).
    cache_peek => peek
);
keyed_method!(
    /// `cache_set(value, *args, **kwargs)`: stores `value` as the result of a call with
    /// these arguments, over any live entry (size limits and TTL as for a computed value).
    cache_set => set
);
keyed_method!(
    /// `cache_refresh(*args, **kwargs)`: computes now (joining a computation of the same
    /// key under way), stores over any live entry and returns the value; an awaitable for a
    /// coroutine function.
    cache_refresh => refresh
);

/// Whether `obj` is a cached function.
pub(super) fn is_cached(obj: *mut ffi::PyObject) -> bool {
    // SAFETY: reading a valid object's type pointer.
    CACHED_TYPE.made() == Some(unsafe { ffi::Py_TYPE(obj) })
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
    }
    // A bound method that also binds the per-entry methods (`obj.f.cache_peek(x)` means
    // the entry for `(obj, x)`); a call through `obj.f(x)` does not come here at all.
    to_c(|| BoundMethod::create(slf, obj))
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
    // SAFETY: owned references of ours.
    unsafe { release([&mut this.dict, &mut this.func, &mut this.async_fill]) };
    0
}

/// Releases the owned references in `fields`, setting each to NULL first (releasing may
/// run code that looks at the object).
///
/// # Safety
/// Each field is NULL or an owned reference.
pub(super) unsafe fn release<const N: usize>(fields: [&mut *mut ffi::PyObject; N]) {
    for field in fields {
        let p = std::mem::replace(field, ptr::null_mut());
        if !p.is_null() {
            // SAFETY: an owned reference, as the caller promises, now unlinked.
            unsafe { ffi::Py_DECREF(p) };
        }
    }
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
        release([&mut this.info_type, &mut this.kw_mark]);
        if !this.core.is_null() {
            drop(Box::from_raw(this.core));
            this.core = ptr::null_mut();
        }
        free_instance(slf);
    }
}

/// The end of a heap type's `tp_dealloc`: frees the object's memory and releases the
/// reference every instance holds to its type.
///
/// # Safety
/// `slf` is an instance of a heap type whose fields were already released, not used after.
pub(super) unsafe fn free_instance(slf: *mut ffi::PyObject) {
    // SAFETY: as the caller promises.
    unsafe {
        let tp = ffi::Py_TYPE(slf);
        if let Some(free) = (*tp).tp_free {
            free(slf as *mut c_void);
        }
        ffi::Py_DECREF(tp as *mut ffi::PyObject);
    }
}

/// Creates the type. Called once, at module import.
pub fn init_type() -> PyResult<*mut ffi::PyObject> {
    if let Some(tp) = CACHED_TYPE.made() {
        return Ok(tp as *mut ffi::PyObject);
    }
    let offset = |field: usize| field as ffi::Py_ssize_t;
    let members = vec![
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
    ];
    let methods = vec![
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
            c"cache_invalidate",
            Meth::Keyed(cache_invalidate),
            c"cache_invalidate(*args, **kwargs) -> bool: remove the entry these arguments map to.",
        ),
        method(
            c"cache_peek",
            Meth::Keyed(cache_peek),
            c"cache_peek(*args, **kwargs): the cached value, or KeyError; counts nothing.",
        ),
        method(
            c"cache_set",
            Meth::Keyed(cache_set),
            c"cache_set(value, *args, **kwargs): store value as the result for these arguments.",
        ),
        method(
            c"cache_refresh",
            Meth::Keyed(cache_refresh),
            c"cache_refresh(*args, **kwargs): compute now, store and return the value.",
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
        method(
            c"_forget",
            Meth::Fast(forget),
            c"Internal: drop one entry (memory backend; a near cache's invalidation).",
        ),
        method(
            c"_flush",
            Meth::NoArgs(flush),
            c"Internal: drop every entry, keep the counters (memory backend).",
        ),
        method(
            c"_across",
            Meth::Fast(across),
            c"Internal: one step of an async call's flight across processes.",
        ),
        method(
            c"_across_land",
            Meth::Fast(across_land),
            c"Internal: end an async call's flight across processes.",
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
    ];
    let getset = vec![ffi::PyGetSetDef {
        name: c"__dict__".as_ptr(),
        get: Some(ffi::PyObject_GenericGetDict),
        set: Some(ffi::PyObject_GenericSetDict),
        doc: ptr::null(),
        closure: ptr::null_mut(),
    }];
    CACHED_TYPE.make(TypeParts {
        name: c"warp_cache._warp_cache.CachedFunction",
        basicsize: std::mem::size_of::<CachedObject>(),
        flags: ffi::Py_TPFLAGS_METHOD_DESCRIPTOR | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION,
        gc: (dealloc, traverse, clear),
        members,
        methods,
        getset,
        slots: vec![
            slot(ffi::Py_tp_descr_get, descr_get as *mut c_void),
            slot(
                ffi::Py_tp_doc,
                c"A function wrapped by warp_cache.cache().".as_ptr() as *mut c_void,
            ),
        ],
    })
}

pub(super) fn member(name: &'static std::ffi::CStr, offset: ffi::Py_ssize_t) -> ffi::PyMemberDef {
    ffi::PyMemberDef {
        name: name.as_ptr(),
        type_code: ffi::Py_T_PYSSIZET,
        offset,
        flags: ffi::Py_READONLY,
        doc: ptr::null(),
    }
}

/// A method's C entry point and calling convention.
pub(super) enum Meth {
    NoArgs(ffi::PyCFunction),
    OneArg(ffi::PyCFunction),
    Fast(ffi::PyCFunctionFast),
    Keyed(KeyedMethod),
}

pub(super) fn method(
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
        Meth::Keyed(f) => (
            ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: f,
            },
            ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ),
    };
    ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth,
        ml_flags,
        ml_doc: doc.as_ptr(),
    }
}

pub(super) fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}
