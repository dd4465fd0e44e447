//! State that belongs to one process image: a forked child starts it afresh.
//!
//! After `fork()` only the forking thread exists in the child. Anything another thread of the
//! parent was doing is frozen mid-way: a flight it leads never lands, a mutex it held stays
//! locked for ever. So the child must never wait on the parent's flights, nor lock the
//! parent's flight mutexes. [`ForkLocal`] gives each process image its own copy of such
//! state: the first use in a child sees a stale fork generation, installs a fresh value and
//! leaks the parent's copy without touching it (its locks may be held, its objects are
//! owned by flights that will never land).
//!
//! The fork generation is the one the shared backend uses to drop inherited mappings
//! (`crate::shared::forks`, bumped by a `pthread_atfork` child handler installed at module
//! import). Where fork does not exist it stays 0.
//!
//! What does *not* need this: memory-store shard guards and every other lock taken only by
//! attached threads between two points where the interpreter could stop them. `os.fork()`
//! holds the GIL (GIL builds) or stops the world first (free-threaded builds,
//! `PyOS_BeforeFork`), so no such lock is held at fork: the child uses those caches, and
//! keeps their entries, as `functools.lru_cache` does.

use crate::sync::{AtomicPtr, Ordering};
use std::marker::PhantomData;
use std::ptr;

/// This process image's fork generation (one relaxed load).
#[inline(always)]
pub fn generation() -> u64 {
    #[cfg(unix)]
    return crate::shared::forks();
    #[cfg(not(unix))]
    return 0;
}

/// Installs the fork handler that moves [`generation`] on in children (module import).
/// False if it could not be installed: children then share the parent's flights, as they
/// did before this module.
pub fn watch() -> bool {
    #[cfg(unix)]
    return crate::shared::watch_forks();
    #[cfg(not(unix))]
    return true;
}

/// A `T` of one fork generation.
struct Stamped<T> {
    generation: u64,
    value: T,
}

/// A `T` per process image: [`ForkLocal::get`] in a forked child returns a fresh
/// `T::default()`, never the parent's.
pub struct ForkLocal<T> {
    /// The current generation's value (a leaked `Box`), or NULL before the first use.
    current: AtomicPtr<Stamped<T>>,
    _owns: PhantomData<Box<Stamped<T>>>,
}

// SAFETY: the `T` behind `current` is shared by reference among threads (needs `T: Sync`),
// made by whichever thread first asks and dropped by whichever drops `self` (`T: Send`).
unsafe impl<T: Send + Sync> Sync for ForkLocal<T> {}

impl<T> ForkLocal<T> {
    /// No value yet: the first [`ForkLocal::get`] makes one.
    pub const fn new() -> Self {
        Self {
            current: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }
}

impl<T> Default for ForkLocal<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Default> ForkLocal<T> {
    /// This process image's value, and the generation it belongs to.
    #[inline]
    pub fn get(&self) -> (&T, u64) {
        let now = generation();
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: non-NULL pointers in `current` come from `Box::into_raw` and are freed only
        // by `drop(&mut self)`, so this one lives as long as the borrow of `self`.
        match unsafe { p.as_ref() } {
            Some(s) if s.generation == now => (&s.value, now),
            _ => self.renew(p, now),
        }
    }

    /// Installs a fresh value for generation `now` in place of `stale` (NULL or another
    /// generation's), unless another thread of this image did first.
    #[cold]
    #[inline(never)]
    fn renew(&self, mut stale: *mut Stamped<T>, now: u64) -> (&T, u64) {
        let fresh = Box::into_raw(Box::new(Stamped {
            generation: now,
            value: T::default(),
        }));
        loop {
            match self
                .current
                .compare_exchange(stale, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // The stale value is leaked: a vanished thread may hold its locks.
                // SAFETY: `fresh` is now `current`, alive for the borrow of `self`.
                Ok(_) => return (unsafe { &(*fresh).value }, now),
                Err(seen) => {
                    // SAFETY: as in `get`: a non-NULL `current` lives as long as `self`.
                    if let Some(s) = unsafe { seen.as_ref() } {
                        if s.generation == now {
                            // SAFETY: `fresh` was never shared: ours to free.
                            drop(unsafe { Box::from_raw(fresh) });
                            return (&s.value, now);
                        }
                    }
                    stale = seen;
                }
            }
        }
    }
}

impl<T> Drop for ForkLocal<T> {
    fn drop(&mut self) {
        let p = *self.current.get_mut();
        if !p.is_null() {
            // SAFETY: `current` owns this `Box`; the stale values it replaced were leaked.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::{watch, ForkLocal};
    use crate::sync::Mutex;

    #[test]
    fn a_forked_child_gets_a_fresh_value_and_never_locks_the_parents() {
        assert!(watch());
        let local: ForkLocal<Mutex<Vec<u32>>> = ForkLocal::new();
        local.get().0.lock().unwrap().push(1);
        // Held across the fork, as by a thread that will not exist in the child.
        let held = local.get().0.lock().unwrap();
        // SAFETY: a fork whose child only reads `local` and exits with the answer.
        let status = unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let fresh = local.get().0.try_lock().map(|v| v.is_empty());
                libc::_exit(if matches!(fresh, Ok(true)) { 0 } else { 1 });
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            status
        };
        drop(held);
        assert_eq!(status, 0, "the child saw the parent's locked value");
        assert_eq!(
            *local.get().0.lock().unwrap(),
            [1],
            "the parent keeps its own"
        );
    }
}
