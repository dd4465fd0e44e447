//! Which counter stripe this process counts its hits and misses in.
//!
//! Every process hitting a shared cache used to increment one counter word: at tens of
//! millions of hits per second that cache line bounced between cores on every call, and two
//! processes together ran slower than one. Each process now picks a stripe from its pid
//! (computed once, forgotten in a forked child so the child picks its own); counts stay exact
//! (atomic adds) and `cache_info` sums the stripes. On free-threaded builds each thread of a
//! process also moves to a stripe of its own, for the same reason.

#[cfg(all(unix, not(any(loom, shuttle))))]
mod imp {
    use crate::sync::{AtomicBool, AtomicUsize, Ordering};

    /// Not picked yet (the first call, and the first call in a forked child).
    const UNSET: usize = usize::MAX;

    static STRIPE: AtomicUsize = AtomicUsize::new(UNSET);
    static FORK_HOOK: AtomicBool = AtomicBool::new(false);

    extern "C" fn forget_in_child() {
        // Only an atomic store: safe in a child of a multi-threaded parent.
        STRIPE.store(UNSET, Ordering::Relaxed);
    }

    /// This process's (and, free-threaded, this thread's) stripe: any value, the layout
    /// reduces it modulo the stripe count.
    #[inline]
    pub fn current() -> usize {
        let process = match STRIPE.load(Ordering::Relaxed) {
            UNSET => pick(),
            stripe => stripe,
        };
        process.wrapping_add(thread_offset())
    }

    /// 0, 1, 2... for the threads of a free-threaded process in the order they first count.
    #[cfg(Py_GIL_DISABLED)]
    pub(super) fn thread_offset() -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        MINE.try_with(|n| *n).unwrap_or(0)
    }

    /// With the GIL, one thread runs at a time: the process's stripe is enough.
    #[cfg(not(Py_GIL_DISABLED))]
    #[inline(always)]
    pub(super) fn thread_offset() -> usize {
        0
    }

    #[cold]
    fn pick() -> usize {
        if !FORK_HOOK.swap(true, Ordering::Relaxed) {
            // SAFETY: registers a handler that only stores to an atomic; it lives for the
            // whole process (a static function). A failure (ENOMEM) only means a forked child
            // keeps counting in its parent's stripe, which is still exact.
            unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
        }
        // SAFETY: getpid has no preconditions.
        let stripe = of_pid(unsafe { libc::getpid() });
        STRIPE.store(stripe, Ordering::Relaxed);
        stripe
    }

    /// The stripe of process `pid`: consecutive pids (workers started together) land on
    /// different stripes.
    pub(super) fn of_pid(pid: libc::pid_t) -> usize {
        ((pid as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize
    }
}

#[cfg(not(all(unix, not(any(loom, shuttle)))))]
mod imp {
    /// Models and non-unix builds count in one stripe.
    #[inline]
    pub fn current() -> usize {
        0
    }
}

pub use imp::current;

#[cfg(all(test, unix, not(any(loom, shuttle))))]
mod tests {
    use super::{current, imp};

    #[test]
    fn a_process_keeps_its_stripe_and_a_forked_child_picks_its_own() {
        let mine = current();
        assert_eq!(current(), mine, "stable within a process");
        let mut fds = [0; 2];
        // SAFETY: a pipe, then a fork whose child only computes, writes 8 bytes and exits.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let child = libc::fork();
            assert!(child >= 0, "fork failed");
            if child == 0 {
                let expected = imp::of_pid(libc::getpid()).wrapping_add(imp::thread_offset());
                let ok = u64::from(current() == expected);
                libc::write(fds[1], (&ok as *const u64).cast(), 8);
                libc::_exit(0);
            }
            let mut ok = 0u64;
            assert_eq!(libc::read(fds[0], (&mut ok as *mut u64).cast(), 8), 8);
            libc::waitpid(child, std::ptr::null_mut(), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
            assert_eq!(
                ok, 1,
                "the child counted in a stripe picked from its own pid"
            );
        }
    }
}
