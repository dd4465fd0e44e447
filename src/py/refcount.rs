//! How a cached function's own reference count is kept on free-threaded CPython 3.13:
//! the way the interpreter keeps the function it wraps.
//!
//! On 3.13t every call from every thread increments and decrements the callable's reference
//! count, so threads calling one object contend on one cache line. CPython gives top-level
//! functions *deferred* reference counting when it creates them, and once a second thread
//! starts it makes every deferred object immortal (`_PyGC_ImmortalizeDeferredObjects`,
//! gh-117696); after that, new deferred objects are immortal at once. Deferred objects are
//! still freed by the garbage collector; immortal ones never are.
//!
//! A cached function takes the state of the function it wraps at decoration: immortal if it
//! is immortal (threads have started), deferred if it is deferred (the interpreter will make
//! it immortal together with the function when the first thread starts), ordinary
//! otherwise (closures, methods of instances, partials, builtins). So a process that never
//! starts a thread frees discarded cached functions, and all their entries and mappings, as
//! it frees discarded functions; one with threads keeps them, as it keeps the functions.
//! Decoration runs no Python code between reading the function's state and setting ours, so
//! the interpreter cannot immortalize in between.
//!
//! 3.14t defers references from the interpreter's stack instead of immortalizing; there this
//! module does nothing (the object keeps ordinary counts, as before).

use crate::py::ffi;

/// `_PyGC_BITS_DEFERRED` (3.13 `Include/internal/pycore_gc.h`).
const GC_BITS_DEFERRED: u8 = 64;
/// `_Py_REF_QUEUED`: the shared count's flag for "already queued for merging" (3.13).
const REF_QUEUED: isize = 2;
/// `_Py_IMMORTAL_REFCNT_LOCAL` (3.13 free-threaded).
const IMMORTAL_LOCAL: u32 = u32::MAX;

/// Gives `wrapper` the reference-count state of `func` (see the module doc).
///
/// # Safety
/// `wrapper` is a fresh GC object of ours, made by this thread and not yet shared (no other
/// thread can hold a reference); `func` is a valid object; the thread is attached.
pub unsafe fn mirror(wrapper: *mut ffi::PyObject, func: *mut ffi::PyObject) {
    use crate::sync::Ordering::Relaxed;
    // SAFETY: `func` is valid (caller); reading its state races with nothing that can change
    // it before we return: only a stop-the-world pass or the owning thread's own increfs do,
    // and this thread is attached and runs no Python code meanwhile.
    let (immortal, deferred) = unsafe {
        (
            (*func).ob_ref_local.load(Relaxed) == IMMORTAL_LOCAL,
            (*func).ob_gc_bits & GC_BITS_DEFERRED != 0,
        )
    };
    if immortal {
        // SAFETY: what 3.13's `_Py_SetImmortal` does to a GC object: untrack it, then mark
        // the counts immortal. `wrapper` is ours alone (caller), so plain stores suffice.
        unsafe {
            ffi::PyObject_GC_UnTrack(wrapper.cast());
            (*wrapper).ob_tid = 0;
            (*wrapper).ob_ref_local.store(IMMORTAL_LOCAL, Relaxed);
            (*wrapper).ob_ref_shared.store(0, Relaxed);
        }
    } else if deferred {
        // SAFETY: what 3.13's `_PyObject_SetDeferredRefcount` does, whose preconditions hold:
        // a GC type, owned by this thread (a fresh object), shared count still 0. The extra
        // local reference keeps ordinary decrefs from freeing it; the collector subtracts it.
        unsafe {
            debug_assert_eq!((*wrapper).ob_ref_shared.load(Relaxed), 0);
            (*wrapper).ob_gc_bits |= GC_BITS_DEFERRED;
            (*wrapper).ob_ref_local.fetch_add(1, Relaxed);
            (*wrapper).ob_ref_shared.store(REF_QUEUED, Relaxed);
        }
    }
}
