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
