//! Hit and miss counters that never become a shared write on the hit path.
//!
//! GIL builds: plain cells (the GIL serializes). Free-threaded builds: one cache-line-padded
//! pair per stripe, each thread writing its own stripe, summed when read.

#[cfg(not(Py_GIL_DISABLED))]
mod imp {
    use std::cell::Cell;

    /// Hits and misses of one cache.
    #[derive(Default)]
    pub struct Counters {
        hits: Cell<u64>,
        misses: Cell<u64>,
    }

    // SAFETY: only touched by threads holding the GIL (this is the GIL-build variant).
    unsafe impl Sync for Counters {}

    impl Counters {
        #[inline]
        pub fn hit(&self) {
            self.hits.set(self.hits.get() + 1);
        }
        #[inline]
        pub fn miss(&self) {
            self.misses.set(self.misses.get() + 1);
        }
        /// Takes back a miss (never below zero: a `cache_clear` may have come between).
        pub fn uncount_miss(&self) {
            self.misses.set(self.misses.get().saturating_sub(1));
        }
        /// Turns a counted miss into a hit.
        pub fn miss_to_hit(&self) {
            self.uncount_miss();
            self.hit();
        }
        pub fn read(&self) -> (u64, u64) {
            (self.hits.get(), self.misses.get())
        }
        pub fn reset(&self) {
            self.hits.set(0);
            self.misses.set(0);
        }
    }
}

#[cfg(Py_GIL_DISABLED)]
mod imp {
    use crate::sync::{AtomicU64, AtomicUsize, CachePadded, Ordering};

    const STRIPES: usize = 16;

    fn stripe() -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
        }
        MINE.with(|s| *s)
    }

    /// Hits and misses of one cache, striped by thread.
    pub struct Counters {
        stripes: Box<[CachePadded<[AtomicU64; 2]>]>,
    }

    impl Default for Counters {
        fn default() -> Self {
            Counters {
                stripes: (0..STRIPES)
                    .map(|_| CachePadded::new([AtomicU64::new(0), AtomicU64::new(0)]))
                    .collect(),
            }
        }
    }

    impl Counters {
        #[inline]
        pub fn hit(&self) {
            // fetch_add, not load+store: threads beyond STRIPES share a stripe.
            self.stripes[stripe()][0].fetch_add(1, Ordering::Relaxed);
        }
        #[inline]
        pub fn miss(&self) {
            self.stripes[stripe()][1].fetch_add(1, Ordering::Relaxed);
        }
        /// Takes back a miss this thread counted (never below zero: a `cache_clear` may
        /// have come between).
        pub fn uncount_miss(&self) {
            let _ =
                self.stripes[stripe()][1]
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
        /// Turns a miss this thread counted into a hit.
        pub fn miss_to_hit(&self) {
            self.uncount_miss();
            self.hit();
        }
        pub fn read(&self) -> (u64, u64) {
            self.stripes.iter().fold((0, 0), |(h, m), s| {
                (
                    h + s[0].load(Ordering::Relaxed),
                    m + s[1].load(Ordering::Relaxed),
                )
            })
        }
        pub fn reset(&self) {
            for s in self.stripes.iter() {
                s[0].store(0, Ordering::Relaxed);
                s[1].store(0, Ordering::Relaxed);
            }
        }
    }
}

pub use imp::Counters;
