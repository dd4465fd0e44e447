//! The cross-process seqlock: a sequence word and an owner word in the lock file.
//!
//! - `SEQ`: even when the data file is consistent, odd while a writer changes it. Each write
//!   section adds 2 in all (odd on entry, even on exit).
//! - `OWNER`: 0 when the lock is free, else the holder's id (its pid in production; models
//!   use thread ids). Taken by compare-and-swap from 0, released by storing 0.
//!
//! Readers never lock: they load an even `SEQ`, copy words with relaxed loads, fence, and
//! retry if `SEQ` moved. After [`READ_ATTEMPTS`] tries they give up (the caller treats the
//! lookup as a miss), so a writer that died mid-write cannot wedge them.
//!
//! A writer that has waited a while asks whether the owner still lives; if not, it takes
//! the lock over by swapping the dead id for its own. A dead writer may have left the data
//! half-written, and the sequence says so: an odd `SEQ` found on acquiring means the last
//! write section never finished, which [`WriteGuard::torn`] reports so the store resets.

use crate::sync::{fence, spin_hint, yield_now, AtomicU64, Ordering};

/// How often a reader retries before giving up.
pub const READ_ATTEMPTS: u32 = if cfg!(any(loom, shuttle)) { 3 } else { 64 };

/// Who takes the lock, and how to tell whether an owner still lives.
pub trait LockOwner {
    /// This writer's id: non-zero, and the same for everything that may hold the lock at once
    /// only if those are serialized some other way (threads of one process share their pid
    /// and simply wait for one another).
    fn id(&self) -> u64;

    /// Whether the holder with id `owner` still lives. `false` lets a waiter take over, so
    /// only answer `false` when the owner can no longer release the lock.
    fn is_alive(&self, owner: u64) -> bool;

    /// How long to wait for the lock.
    fn patience(&self) -> Patience {
        Patience::DEFAULT
    }
}

/// Bounds on waiting for the lock: a writer that cannot get it skips its write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patience {
    /// Attempts that spin before attempts start yielding the thread.
    pub spins: u32,
    /// Attempts in all before giving up.
    pub attempts: u32,
    /// Ask whether the owner lives every this many attempts (at least 1).
    pub check_every: u32,
}

impl Patience {
    /// Production bounds: a short spin, then yields for some milliseconds, checking the
    /// owner's liveness now and then.
    pub const DEFAULT: Patience = if cfg!(any(loom, shuttle)) {
        Patience {
            spins: 1,
            attempts: 4,
            check_every: 2,
        }
    } else {
        Patience {
            spins: 64,
            attempts: 100_000,
            check_every: 256,
        }
    };
}

/// The seqlock over two words of a lock file.
#[derive(Clone, Copy)]
pub struct SeqLock<'a> {
    seq: &'a AtomicU64,
    owner: &'a AtomicU64,
    /// loom builds only: see [`SeqLock::broken_without_read_fence`].
    #[cfg(loom)]
    skip_read_fence: bool,
}

impl<'a> SeqLock<'a> {
    /// A seqlock over the given sequence and owner words.
    pub fn new(seq: &'a AtomicU64, owner: &'a AtomicU64) -> Self {
        Self {
            seq,
            owner,
            #[cfg(loom)]
            skip_read_fence: false,
        }
    }

    /// A deliberately BROKEN seqlock whose readers skip their acquire fence, so a read can
    /// return words of two different write sections. It exists only in loom builds, for the
    /// model that proves the seqlock models can catch a torn read (`loom_tests/teeth.rs`).
    #[cfg(loom)]
    pub fn broken_without_read_fence(seq: &'a AtomicU64, owner: &'a AtomicU64) -> Self {
        Self {
            skip_read_fence: true,
            ..Self::new(seq, owner)
        }
    }

    /// Runs `copy` until it ran with no writer active, at most [`READ_ATTEMPTS`] times.
    ///
    /// `copy` may see a write in progress: it must only use relaxed atomic loads, check
    /// everything it reads, and neither panic nor loop on inconsistent data. Its result is
    /// returned only when the sequence shows no write overlapped it.
    pub fn read<R>(&self, mut copy: impl FnMut() -> R) -> Option<R> {
        for attempt in 0..READ_ATTEMPTS {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let result = copy();
                self.read_fence();
                if self.seq.load(Ordering::Relaxed) == before {
                    return Some(result);
                }
            }
            backoff(attempt, READ_ATTEMPTS / 2);
        }
        None
    }

    /// Orders the copy's loads before the re-check: if the copy saw any store of a write
    /// section, the re-check sees at least that section's odd sequence.
    #[inline]
    fn read_fence(&self) {
        #[cfg(loom)]
        if self.skip_read_fence {
            return;
        }
        fence(Ordering::Acquire);
    }

    /// Takes the lock for `owner` and opens a write section; `None` if it stayed busy for
    /// all of `owner.patience()`.
    pub fn lock(&self, owner: &impl LockOwner) -> Option<WriteGuard<'a>> {
        let id = owner.id();
        let patience = owner.patience();
        let check_every = patience.check_every.max(1);
        for attempt in 0..patience.attempts {
            let holder =
                match self
                    .owner
                    .compare_exchange(0, id, Ordering::Acquire, Ordering::Relaxed)
                {
                    Ok(_) => return Some(self.open_section()),
                    Err(holder) => holder,
                };
            if attempt % check_every == check_every - 1
                && !owner.is_alive(holder)
                && self
                    .owner
                    .compare_exchange(holder, id, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(self.open_section());
            }
            backoff(attempt, patience.spins);
        }
        None
    }

    /// With the lock held: makes the sequence odd and notes whether it already was.
    fn open_section(&self) -> WriteGuard<'a> {
        // Only the holder changes SEQ, so this load sees the last holder's final store.
        let seq = self.seq.load(Ordering::Relaxed);
        let torn = seq & 1 == 1;
        if !torn {
            self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        }
        // Orders the odd sequence before every data store of this section (pairs with the
        // readers' acquire fence).
        fence(Ordering::Release);
        WriteGuard { lock: *self, torn }
    }
}

/// Spins for the first `spins` attempts, then yields the thread.
fn backoff(attempt: u32, spins: u32) {
    if attempt < spins {
        spin_hint();
    } else {
        yield_now();
    }
}

/// An open write section; dropping it makes the sequence even and frees the lock.
pub struct WriteGuard<'a> {
    lock: SeqLock<'a>,
    torn: bool,
}

impl WriteGuard<'_> {
    /// True when the previous holder died inside a write section: the data may be torn and
    /// must be reset before anything else reads it as consistent.
    pub fn torn(&self) -> bool {
        self.torn
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let seq = self.lock.seq.load(Ordering::Relaxed);
        // Publishes the section's data stores to readers that see the even sequence.
        self.lock.seq.store(seq.wrapping_add(1), Ordering::Release);
        self.lock.owner.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Owner {
        id: u64,
        dead: u64,
        asked: Cell<u32>,
    }

    impl LockOwner for Owner {
        fn id(&self) -> u64 {
            self.id
        }
        fn is_alive(&self, owner: u64) -> bool {
            self.asked.set(self.asked.get() + 1);
            owner != self.dead
        }
        fn patience(&self) -> Patience {
            Patience {
                spins: 2,
                attempts: 20,
                check_every: 4,
            }
        }
    }

    fn owner(id: u64, dead: u64) -> Owner {
        Owner {
            id,
            dead,
            asked: Cell::new(0),
        }
    }

    #[test]
    fn write_sections_keep_sequence_parity() {
        let (seq, own) = (AtomicU64::new(0), AtomicU64::new(0));
        let lock = SeqLock::new(&seq, &own);
        {
            let guard = lock.lock(&owner(5, 0)).unwrap();
            assert!(!guard.torn());
            assert_eq!(seq.load(Ordering::Relaxed), 1);
            assert_eq!(own.load(Ordering::Relaxed), 5);
            assert_eq!(
                lock.read(|| ()),
                None,
                "readers give up while a write is open"
            );
        }
        assert_eq!(seq.load(Ordering::Relaxed), 2);
        assert_eq!(own.load(Ordering::Relaxed), 0);
        assert_eq!(lock.read(|| 7), Some(7));
    }

    #[test]
    fn reader_retries_when_a_write_overlaps() {
        let (seq, own) = (AtomicU64::new(0), AtomicU64::new(0));
        let lock = SeqLock::new(&seq, &own);
        let calls = Cell::new(0);
        let got = lock.read(|| {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                drop(lock.lock(&owner(1, 0)).unwrap());
            }
            calls.get()
        });
        assert_eq!(got, Some(2));
    }

    #[test]
    fn live_owner_makes_writer_give_up() {
        let (seq, own) = (AtomicU64::new(0), AtomicU64::new(9));
        let lock = SeqLock::new(&seq, &own);
        let me = owner(1, 0);
        assert!(lock.lock(&me).is_none());
        assert_eq!(me.asked.get(), 5, "liveness asked every fourth attempt");
        assert_eq!(own.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn dead_owner_is_taken_over_and_torn_write_reported() {
        // The dead writer was inside a write section (odd sequence).
        let (seq, own) = (AtomicU64::new(7), AtomicU64::new(9));
        let lock = SeqLock::new(&seq, &own);
        let guard = lock
            .lock(&owner(1, 9))
            .expect("takes over from a dead owner");
        assert!(guard.torn());
        assert_eq!(own.load(Ordering::Relaxed), 1);
        drop(guard);
        assert_eq!(seq.load(Ordering::Relaxed), 8);
        assert_eq!(own.load(Ordering::Relaxed), 0);

        // Dead between write sections: the data is whole.
        own.store(9, Ordering::Relaxed);
        let guard = lock.lock(&owner(1, 9)).unwrap();
        assert!(!guard.torn());
        drop(guard);
        assert_eq!(seq.load(Ordering::Relaxed), 10);
    }
}
