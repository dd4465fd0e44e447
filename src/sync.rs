//! The one place concurrency primitives come from.
//!
//! Production builds use std/portable-atomic; `--cfg loom` swaps in loom's models and
//! `--cfg shuttle` swaps in shuttle's, so the seqlock, the shard locks and the SIEVE hand
//! are model-checked as written. Nothing else in the crate imports `std::sync::atomic`.

#[cfg(not(any(loom, shuttle)))]
mod imp {
    pub use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
    pub use portable_atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    };
    pub use std::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

    /// A pause inside a spin loop.
    #[inline]
    pub fn spin_hint() {
        std::hint::spin_loop();
    }

    /// Give the rest of this time slice to another thread.
    #[inline]
    pub fn yield_now() {
        std::thread::yield_now();
    }

    /// Sleeps until [`unpark_all`] on the word at `address` from any process mapping it, or
    /// `timeout`, unless the low 32 bits of that word already differ from `seen` (may also
    /// return early). A futex on Linux (shared, not private: the word may be in a file
    /// mapping); elsewhere a short sleep, so callers poll. Takes an address, not a borrow:
    /// a waiter must not hold the mapping while it sleeps. Only the kernel reads it, and an
    /// address no longer mapped makes the call return at once.
    pub fn park_at(address: usize, seen: u32, timeout: std::time::Duration) {
        #[cfg(all(target_os = "linux", target_endian = "little"))]
        {
            let time = libc::timespec {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
            };
            // SAFETY: FUTEX_WAIT only has the kernel read the u32 at `address` (the low half
            // of a word on a little-endian machine), checking that it is mapped (EFAULT
            // otherwise); no memory of ours is written. The timeout is a valid timespec.
            // Errors (a changed value, a signal, EFAULT) just return.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    address as *const u32,
                    libc::FUTEX_WAIT,
                    seen,
                    &time as *const libc::timespec,
                );
            }
        }
        #[cfg(not(all(target_os = "linux", target_endian = "little")))]
        {
            let _ = (address, seen);
            std::thread::sleep(timeout.min(std::time::Duration::from_millis(2)));
        }
    }

    /// Wakes every thread of every process parked on `word` ([`park_at`]).
    pub fn unpark_all(word: &AtomicU64) {
        #[cfg(all(target_os = "linux", target_endian = "little"))]
        // SAFETY: FUTEX_WAKE only names the address; it reads and writes no memory.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr().cast::<u32>(),
                libc::FUTEX_WAKE,
                i32::MAX,
            );
        }
        #[cfg(not(all(target_os = "linux", target_endian = "little")))]
        let _ = word;
    }

    /// `std::cell::UnsafeCell` with loom's closure-based access API.
    #[derive(Debug, Default)]
    pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        /// Wraps `value`.
        pub const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a shared raw pointer to the contents.
        #[inline]
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Runs `f` with a mutable raw pointer to the contents.
        #[inline]
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

#[cfg(loom)]
mod imp {
    pub use loom::cell::UnsafeCell;
    pub use loom::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    };
    pub use loom::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

    /// A pause inside a spin loop (a scheduling point under loom).
    #[inline]
    pub fn spin_hint() {
        loom::hint::spin_loop();
    }

    /// Give the rest of this time slice to another thread.
    #[inline]
    pub fn yield_now() {
        loom::thread::yield_now();
    }

    /// Parking is a poll under the model: give way, return.
    pub fn park_at(address: usize, seen: u32, _timeout: std::time::Duration) {
        let _ = (address, seen);
        loom::thread::yield_now();
    }

    /// Nothing to wake under the model (parked threads poll).
    pub fn unpark_all(word: &AtomicU64) {
        let _ = word;
    }
}

#[cfg(all(shuttle, not(loom)))]
mod imp {
    pub use shuttle::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    };
    pub use shuttle::sync::{
        Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    };

    /// A pause inside a spin loop (a scheduling point under shuttle).
    #[inline]
    pub fn spin_hint() {
        shuttle::hint::spin_loop();
    }

    /// Give the rest of this time slice to another thread.
    #[inline]
    pub fn yield_now() {
        shuttle::thread::yield_now();
    }

    /// Parking is a poll under the model: give way, return.
    pub fn park_at(address: usize, seen: u32, _timeout: std::time::Duration) {
        let _ = (address, seen);
        shuttle::thread::yield_now();
    }

    /// Nothing to wake under the model (parked threads poll).
    pub fn unpark_all(word: &AtomicU64) {
        let _ = word;
    }

    /// shuttle has no cell model; its scheduler serializes threads, so std's cell is exact.
    #[derive(Debug, Default)]
    pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        /// Wraps `value`.
        pub const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a shared raw pointer to the contents.
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Runs `f` with a mutable raw pointer to the contents.
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

pub use crossbeam_utils::CachePadded;
pub use imp::*;
pub use std::sync::atomic::Ordering;
