//! Deep recursion through a cached function: a `RecursionError`, never a crash.
//!
//! Every call into the wrapped function goes through [`Descent`]. It counts against the
//! interpreter's recursion limit with `Py_EnterRecursiveCall`, as a call through
//! `functools.lru_cache` does (there `_PyObject_MakeTpCall` enters it), so both reach the
//! same depth under the same limit. GIL builds before 3.14 do not look at the machine stack
//! at all, though: with `sys.setrecursionlimit(100_000)`, a recursion through C overflows it
//! and the process dies. So the descent also refuses when less than [`MARGIN`] of the
//! thread's stack is left, with the same `RecursionError` the interpreter raises. The
//! thread's stack bounds are read once per thread (`pthread_getattr_np` on Linux, the
//! `pthread_get_stack*_np` pair on macOS); elsewhere only the limit applies.
//!
//! What this promises is bounded by what the code between two levels does: a cached
//! function whose body needs more than [`MARGIN`] of stack before it calls the cache again
//! can still overflow, as it would with `lru_cache`. Going as deep as `lru_cache` also needs
//! each level to use no more stack than its does: the frames on the path of a miss are kept
//! small (no large buffers; see `cached.rs`).

use super::cached::{raise, Exc};
use super::object::{ErrSet, PyResult};
use crate::py::ffi;
use std::cell::Cell;

/// Stack left below which a descent raises `RecursionError` instead.
pub const MARGIN: usize = 32 * 1024;

thread_local! {
    /// The lowest usable address of this thread's stack plus [`MARGIN`]: 0 before the first
    /// look, 1 where the bounds cannot be read (then no stack check).
    static FLOOR: Cell<usize> = const { Cell::new(0) };
}

/// A call into Python counted against the recursion limit; leaves it when dropped.
pub struct Descent(());

impl Descent {
    /// Enters one level, or raises `RecursionError` (the limit, or the stack, is reached).
    #[inline]
    pub fn enter() -> PyResult<Self> {
        let floor = match FLOOR.with(Cell::get) {
            0 => floor(),
            known => known,
        };
        if approximate_stack_pointer() < floor {
            return Err(raise(
                Exc::Recursion,
                c"maximum recursion depth exceeded while calling a cached function \
                  (the thread's stack is nearly full)",
            ));
        }
        // SAFETY: attached (Python-facing code); the message is a C string with static life.
        if unsafe { ffi::Py_EnterRecursiveCall(c" while calling a cached function".as_ptr()) } != 0
        {
            return Err(ErrSet);
        }
        Ok(Descent(()))
    }
}

impl Drop for Descent {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: pairs the successful `Py_EnterRecursiveCall` in `enter`, on this thread.
        unsafe { ffi::Py_LeaveRecursiveCall() };
    }
}

/// The stack pointer (read directly where we can: no stack slot for a marker, which would
/// grow the frame of the miss path).
#[inline(always)]
fn approximate_stack_pointer() -> usize {
    let sp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register, touches nothing.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads a register, touches nothing.
    unsafe {
        std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let marker = 0u8;
        sp = std::hint::black_box(&marker) as *const u8 as usize;
    }
    sp
}

/// Reads this thread's stack bounds (once per thread) and returns [`FLOOR`].
#[cold]
#[inline(never)]
fn floor() -> usize {
    let floor = stack_low().map_or(1, |low| low.saturating_add(MARGIN));
    FLOOR.with(|f| f.set(floor));
    floor
}

/// The lowest address of this thread's stack, if the platform says.
#[cfg(target_os = "linux")]
fn stack_low() -> Option<usize> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is read and destroyed
    // after; the out-pointers are valid locals.
    unsafe {
        let mut attr = std::mem::zeroed::<libc::pthread_attr_t>();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr = std::ptr::null_mut();
        let mut size = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        (ok && !addr.is_null()).then_some(addr as usize)
    }
}

/// The lowest address of this thread's stack, if the platform says.
#[cfg(target_os = "macos")]
fn stack_low() -> Option<usize> {
    // SAFETY: both calls only read the calling thread's attributes.
    let (top, size) = unsafe {
        let me = libc::pthread_self();
        (
            libc::pthread_get_stackaddr_np(me) as usize,
            libc::pthread_get_stacksize_np(me),
        )
    };
    top.checked_sub(size)
}

/// The lowest address of this thread's stack, if the platform says.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn stack_low() -> Option<usize> {
    None
}
