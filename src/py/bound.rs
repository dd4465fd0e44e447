//! A cached function bound to an instance: what `obj.method` gives for a method decorated
//! with `@cache()` (attribute access, not a call: `obj.method(x)` calls the cached function
//! with `self` prepended and never makes one).
//!
//! It behaves like Python's bound method (`types.MethodType`): calling it prepends
//! `__self__` (without copying the arguments when the caller leaves a slot for it, as
//! `method_vectorcall` does), it has `__self__` and `__func__`, compares by both, pickles
//! as `getattr(obj, name)`, reports the signature without `self`, and any other attribute
//! comes from the cached function (`cache_info`, `cache_clear`, `__name__`, ...). Unlike
//! it, the per-entry methods bind too: `obj.method.cache_peek(x)` is
//! `Class.method.cache_peek(obj, x)`, the entry a call `obj.method(x)` uses.

use super::cached::{
    api_helper, cache_invalidate, cache_peek, cache_refresh, cache_set, free_instance, is_cached,
    member, method, raise, release, slot, to_c, vectorcall, ApiHelper, Exc, KeyedMethod, Meth,
    TypeCell, TypeParts,
};
use super::object::{ErrSet, PyObj, PyResult};
use crate::py::ffi;
use std::ffi::{c_int, c_void};
use std::ptr;

/// The object layout. `func` and `instance` are owned references, NULL after `tp_clear`.
#[repr(C)]
pub struct BoundMethod {
    ob_base: ffi::PyObject,
    vectorcall: Option<ffi::vectorcallfunc>,
    /// The cached function.
    func: *mut ffi::PyObject,
    /// The instance it is bound to.
    instance: *mut ffi::PyObject,
}

static BOUND_TYPE: TypeCell = TypeCell::new();

/// `_bound_signature(bound)`: the signature of `types.MethodType(func, instance)`.
static SIGNATURE: ApiHelper = ApiHelper::new(c"_bound_signature");
/// `_bound_reduce(bound)`: `(getattr, (instance, name))`.
static REDUCE: ApiHelper = ApiHelper::new(c"_bound_reduce");

impl BoundMethod {
    /// Binds cached function `func` to `instance`. Must run after [`init_type`].
    pub fn create(func: *mut ffi::PyObject, instance: *mut ffi::PyObject) -> PyResult<PyObj> {
        let tp = BOUND_TYPE.get();
        // SAFETY: `tp` is our heap type; GenericAlloc zero-fills and starts GC tracking.
        let obj = unsafe { PyObj::from_owned(ffi::PyType_GenericAlloc(tp, 0))? };
        // SAFETY: a fresh instance of our type, so it has our layout; both are valid
        // objects, of which it takes new references.
        unsafe {
            let this = &mut *(obj.as_ptr() as *mut BoundMethod);
            this.vectorcall = Some(bound_vectorcall);
            ffi::Py_INCREF(func);
            this.func = func;
            ffi::Py_INCREF(instance);
            this.instance = instance;
        }
        Ok(obj)
    }

    /// The cached function and the instance, or an error after `tp_clear`.
    fn parts(&self) -> PyResult<(*mut ffi::PyObject, *mut ffi::PyObject)> {
        if self.func.is_null() || self.instance.is_null() {
            return Err(raise(
                Exc::Runtime,
                c"bound cached method was cleared by the garbage collector",
            ));
        }
        Ok((self.func, self.instance))
    }
}

/// # Safety
/// `slf` is a `BoundMethod` (CPython only calls our slots on our instances).
unsafe fn this<'a>(slf: *mut ffi::PyObject) -> &'a BoundMethod {
    // SAFETY: as the caller promises.
    unsafe { &*(slf as *const BoundMethod) }
}

/// Calls `f(func, *front, *args)` where `args` are laid out as a vectorcall's (`nargs`
/// positional, then one value per name in `kwnames`), `front` the bound instance (and, for
/// `cache_set`, the value before it).
///
/// # Safety
/// As the vectorcall protocol delivers `args`, `nargs` and `kwnames`.
unsafe fn with_front(
    front: &[*mut ffi::PyObject],
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: *mut ffi::PyObject,
    f: impl FnOnce(*const *mut ffi::PyObject, usize) -> *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: NULL or a tuple, as the caller promises.
    let total = nargs + unsafe { super::key::keyword_count(kwnames) };
    let mut all: Vec<*mut ffi::PyObject> = Vec::with_capacity(front.len() + total);
    all.extend_from_slice(front);
    // SAFETY: `total` valid pointers, as the caller promises.
    all.extend_from_slice(unsafe { std::slice::from_raw_parts(args, total) });
    f(all.as_ptr(), front.len() + nargs)
}

/// The vectorcall slot: the cached function called with the instance first.
unsafe extern "C" fn bound_vectorcall(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls our vectorcall slot with our instance.
    let (func, instance) = match unsafe { this(callable) }.parts() {
        Ok(parts) => parts,
        Err(ErrSet) => return ptr::null_mut(),
    };
    // SAFETY: protocol arguments.
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf) } as usize;
    if nargsf & ffi::PY_VECTORCALL_ARGUMENTS_OFFSET != 0 {
        // The caller left the slot before `args` to us: put the instance there for the
        // call and give the slot back, as CPython's bound methods do.
        // SAFETY: the protocol allows writing `args[-1]` when the flag is set, if it is
        // restored before returning; `func` is a valid callable.
        unsafe {
            let slot = (args as *mut *mut ffi::PyObject).sub(1);
            let saved = *slot;
            *slot = instance;
            let result = vectorcall(func, slot, nargs + 1, kwnames);
            *slot = saved;
            return result;
        }
    }
    // SAFETY: protocol arguments; `func` is a valid callable.
    unsafe {
        with_front(&[instance], args, nargs, kwnames, |all, n| {
            vectorcall(func, all, n, kwnames)
        })
    }
}

/// Calls cached-function method `m` with the instance inserted at `at` (0; 1 for
/// `cache_set`, whose first argument is the value).
///
/// # Safety
/// `slf` is our instance; the arguments are as `METH_FASTCALL | METH_KEYWORDS` delivers.
unsafe fn forward(
    m: KeyedMethod,
    at: usize,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as the caller promises.
    let (func, instance) = match unsafe { this(slf) }.parts() {
        Ok(parts) => parts,
        Err(ErrSet) => return ptr::null_mut(),
    };
    let nargs = nargs as usize;
    let at = at.min(nargs);
    // SAFETY: `at <= nargs` leading arguments move in front of the instance.
    let lead = unsafe { std::slice::from_raw_parts(args, at) };
    let mut front = lead.to_vec();
    front.push(instance);
    // SAFETY: the remaining arguments, laid out as before; `func` is our cached type
    // (bound only by its `__get__`), so its methods accept it.
    unsafe {
        with_front(&front, args.add(at), nargs - at, kwnames, |all, n| {
            m(func, all, n as ffi::Py_ssize_t, kwnames)
        })
    }
}

macro_rules! bound_method {
    ($name:ident, $target:ident, $at:expr) => {
        /// The cached function's method of the same name, for this instance's entries.
        ///
        /// # Safety
        /// A method of our type, called with arguments as its convention delivers them.
        unsafe extern "C" fn $name(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargs: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            // SAFETY: as the caller promises.
            unsafe { forward($target, $at, slf, args, nargs, kwnames) }
        }
    };
}

bound_method!(bound_invalidate, cache_invalidate, 0);
bound_method!(bound_peek, cache_peek, 0);
bound_method!(bound_set, cache_set, 1);
bound_method!(bound_refresh, cache_refresh, 0);

/// `tp_new`: `BoundCachedMethod(func, instance)`, as `types.MethodType(func, instance)`
/// (`weakref.WeakMethod` rebuilds bound methods this way).
unsafe extern "C" fn new(
    _tp: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    to_c(|| {
        // SAFETY: CPython passes a tuple of arguments and NULL or a dict of keywords.
        let (n, keywords) = unsafe {
            let keywords = if kwargs.is_null() {
                0
            } else {
                ffi::PyDict_Size(kwargs)
            };
            (ffi::PyTuple_GET_SIZE(args), keywords)
        };
        if n != 2 || keywords != 0 {
            return Err(raise(
                Exc::Type,
                c"BoundCachedMethod(func, instance) takes exactly two positional arguments",
            ));
        }
        // SAFETY: two items, as just checked.
        let (func, instance) = unsafe {
            (
                ffi::PyTuple_GET_ITEM(args, 0),
                ffi::PyTuple_GET_ITEM(args, 1),
            )
        };
        if !is_cached(func) {
            return Err(raise(
                Exc::Type,
                c"BoundCachedMethod(func, instance): func must be a function decorated with warp_cache.cache()",
            ));
        }
        BoundMethod::create(func, instance)
    })
}

/// `tp_getattro`: our own attributes, then the cached function's.
unsafe extern "C" fn getattro(
    slf: *mut ffi::PyObject,
    name: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: `slf` is our instance and `name` a str, as CPython calls this slot.
    unsafe {
        let found = ffi::PyObject_GenericGetAttr(slf, name);
        if !found.is_null() || ffi::PyErr_ExceptionMatches(ffi::PyExc_AttributeError) == 0 {
            return found;
        }
        let Ok((func, _)) = this(slf).parts() else {
            return ptr::null_mut();
        };
        ffi::PyErr_Clear();
        ffi::PyObject_GetAttr(func, name)
    }
}

/// A getter that reads the same attribute of the cached function (`closure`: its name).
unsafe extern "C" fn from_func(
    slf: *mut ffi::PyObject,
    closure: *mut c_void,
) -> *mut ffi::PyObject {
    // SAFETY: `slf` is our instance; `closure` is the C string name given in `init_type`.
    to_c(|| unsafe {
        let (func, _) = this(slf).parts()?;
        PyObj::from_owned(ffi::PyObject_GetAttrString(func, closure as *const _))
    })
}

/// `__signature__`: the signature without the bound parameter (`inspect.signature` stops
/// here instead of following `__wrapped__` to the function with `self`).
unsafe extern "C" fn signature(slf: *mut ffi::PyObject, _: *mut c_void) -> *mut ffi::PyObject {
    to_c(|| super::cached::call_owned(api_helper(&SIGNATURE)?, &[slf], &[]))
}

/// `__reduce__`: `getattr(instance, name)`, as a bound method pickles.
unsafe extern "C" fn reduce(slf: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    to_c(|| super::cached::call_owned(api_helper(&REDUCE)?, &[slf], &[]))
}

/// `tp_richcompare`: equal when bound to the same instance (identity) and the same cached
/// function, like bound methods.
unsafe extern "C" fn richcompare(
    a: *mut ffi::PyObject,
    b: *mut ffi::PyObject,
    op: c_int,
) -> *mut ffi::PyObject {
    // SAFETY: `a` is our instance; `b` is any object, checked before it is read as ours.
    unsafe {
        let ours = ffi::Py_TYPE(b) == ffi::Py_TYPE(a);
        if !ours || (op != ffi::Py_EQ && op != ffi::Py_NE) {
            let not_impl = ffi::Py_NotImplemented();
            ffi::Py_INCREF(not_impl);
            return not_impl;
        }
        let (x, y) = (this(a), this(b));
        let same = x.func == y.func && x.instance == y.instance;
        let result = if same == (op == ffi::Py_EQ) {
            ffi::Py_True()
        } else {
            ffi::Py_False()
        };
        ffi::Py_INCREF(result);
        result
    }
}

/// `tp_hash`: the instance's identity mixed with the cached function's hash.
unsafe extern "C" fn hash(slf: *mut ffi::PyObject) -> ffi::Py_hash_t {
    // SAFETY: `slf` is our instance.
    let Ok((func, instance)) = (unsafe { this(slf) }).parts() else {
        return -1;
    };
    // SAFETY: a valid object; -1 with an exception set on failure.
    let h = unsafe { ffi::PyObject_Hash(func) };
    if h == -1 {
        return -1;
    }
    match h ^ (instance as ffi::Py_hash_t >> 4) {
        -1 => -2,
        h => h,
    }
}

/// `tp_repr`: `<bound method Class.name of obj>`.
unsafe extern "C" fn repr(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: `slf` is our instance; every result is checked.
    to_c(|| unsafe {
        let (func, instance) = this(slf).parts()?;
        let name = PyObj::from_owned(ffi::PyObject_GetAttrString(func, c"__qualname__".as_ptr()))?;
        PyObj::from_owned(ffi::PyUnicode_FromFormat(
            c"<bound method %S of %R>".as_ptr(),
            name.as_ptr(),
            instance,
        ))
    })
}

/// `tp_traverse`.
///
/// # Safety
/// Called by the GC on our instances.
unsafe extern "C" fn traverse(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: our instance.
    let this = unsafe { this(slf) };
    for p in [this.func, this.instance] {
        if !p.is_null() {
            // SAFETY: an owned reference of ours.
            let r = unsafe { visit(p, arg) };
            if r != 0 {
                return r;
            }
        }
    }
    0
}

/// `tp_clear`.
///
/// # Safety
/// Called by the GC (or dealloc) on our instances.
unsafe extern "C" fn clear(slf: *mut ffi::PyObject) -> c_int {
    // SAFETY: our instance.
    let this = unsafe { &mut *(slf as *mut BoundMethod) };
    // SAFETY: owned references of ours.
    unsafe { release([&mut this.func, &mut this.instance]) };
    0
}

unsafe extern "C" fn dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: CPython calls dealloc once, on our instance, when its refcount hits zero.
    unsafe {
        ffi::PyObject_GC_UnTrack(slf as *mut c_void);
        clear(slf);
        free_instance(slf);
    }
}

/// Creates the type. Called once, at module import.
pub fn init_type() -> PyResult<*mut ffi::PyObject> {
    if let Some(tp) = BOUND_TYPE.made() {
        return Ok(tp as *mut ffi::PyObject);
    }
    let offset = |field: usize| field as ffi::Py_ssize_t;
    let object_member = |name: &'static std::ffi::CStr, field: usize| ffi::PyMemberDef {
        type_code: ffi::Py_T_OBJECT_EX,
        ..member(name, offset(field))
    };
    let members = vec![
        member(
            c"__vectorcalloffset__",
            offset(std::mem::offset_of!(BoundMethod, vectorcall)),
        ),
        object_member(c"__func__", std::mem::offset_of!(BoundMethod, func)),
        object_member(c"__self__", std::mem::offset_of!(BoundMethod, instance)),
    ];
    let methods = vec![
        method(
            c"cache_invalidate",
            Meth::Keyed(bound_invalidate),
            c"cache_invalidate(*args, **kwargs) -> bool: remove this instance's entry.",
        ),
        method(
            c"cache_peek",
            Meth::Keyed(bound_peek),
            c"cache_peek(*args, **kwargs): this instance's cached value, or KeyError.",
        ),
        method(
            c"cache_set",
            Meth::Keyed(bound_set),
            c"cache_set(value, *args, **kwargs): store value for this instance's call.",
        ),
        method(
            c"cache_refresh",
            Meth::Keyed(bound_refresh),
            c"cache_refresh(*args, **kwargs): compute this instance's entry now.",
        ),
        method(
            c"__reduce__",
            Meth::NoArgs(reduce),
            c"Pickle as getattr(obj, name).",
        ),
    ];
    let from = |name: &'static std::ffi::CStr| ffi::PyGetSetDef {
        name: name.as_ptr(),
        get: Some(from_func),
        set: None,
        doc: ptr::null(),
        closure: name.as_ptr() as *mut c_void,
    };
    let getset = vec![
        from(c"__doc__"),
        from(c"__module__"),
        ffi::PyGetSetDef {
            name: c"__signature__".as_ptr(),
            get: Some(signature),
            set: None,
            doc: ptr::null(),
            closure: ptr::null_mut(),
        },
    ];
    BOUND_TYPE.make(TypeParts {
        name: c"warp_cache._warp_cache.BoundCachedMethod",
        basicsize: std::mem::size_of::<BoundMethod>(),
        flags: 0,
        gc: (dealloc, traverse, clear),
        members,
        methods,
        getset,
        slots: vec![
            slot(ffi::Py_tp_new, new as *mut c_void),
            slot(ffi::Py_tp_getattro, getattro as *mut c_void),
            slot(ffi::Py_tp_richcompare, richcompare as *mut c_void),
            slot(ffi::Py_tp_hash, hash as *mut c_void),
            slot(ffi::Py_tp_repr, repr as *mut c_void),
        ],
    })
}
