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
//! write section never finished, which [`WriteGuard::torn`] reports so the store repairs.
//! A section that panics, or that ends without repairing what it found torn
//! ([`WriteGuard::release_torn`]), frees the lock but leaves `SEQ` odd for the next writer.
//!
//! A live owner that does not progress (stopped, swapped out) is waited for at most
//! [`Patience::budget_ns`]; a writer that gave up on one remembers it
//! ([`LockOwner::stuck_memo`]) and gives up at once while the same section stays open.
//!
//! The same even/odd protocol guards each slot of the shared store on its own word
//! ([`Version`]): readers of a slot never look at `SEQ`, so a writer stopped inside a section
//! costs readers only the slot it was writing.

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

    /// Where this writer remembers the last section it gave up waiting for (see
    /// [`SeqLock::lock`]); `None` to always wait the whole patience.
    fn stuck_memo(&self) -> Option<&AtomicU64> {
        None
    }
}

/// Bounds on waiting for the lock: a writer that cannot get it skips its write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patience {
    /// Attempts that spin before attempts start yielding the thread.
    pub spins: u32,
    /// Attempts in all before giving up.
    pub attempts: u32,
    /// Ask whether the owner lives (and read the clock) every this many attempts (at least 1).
    pub check_every: u32,
    /// Give up once this many nanoseconds have passed since the first attempt; 0 for no
    /// time bound (models, which have no clock).
    pub budget_ns: u64,
}

impl Patience {
    /// Production bounds: a short spin, then yields for at most a millisecond, checking
    /// the owner's liveness now and then. Sections last microseconds; a holder that keeps
    /// the lock longer is stopped or descheduled, and a store can be skipped.
    pub const DEFAULT: Patience = if cfg!(any(loom, shuttle)) {
        Patience {
            spins: 1,
            attempts: 4,
            check_every: 2,
            budget_ns: 0,
        }
    } else {
        Patience {
            spins: 64,
            attempts: 1_000_000,
            check_every: 32,
            budget_ns: 1_000_000,
        }
    };

    /// These bounds stretched `factor` times, for operations worth a longer wait than a
    /// store (a clear the caller asked for).
    pub const fn stretched(self, factor: u32) -> Patience {
        Patience {
            attempts: self.attempts.saturating_mul(factor),
            budget_ns: self.budget_ns.saturating_mul(factor as u64),
            ..self
        }
    }
}

/// A slot's version word: even while the slot is whole, odd while a writer (who holds the
/// store's lock) changes it. Readers copy a slot between [`Version::begin_read`] and
/// [`Version::validate`]; the copy counts only if no write overlapped it.
#[derive(Clone, Copy)]
pub struct Version<'a> {
    word: &'a AtomicU64,
    /// loom builds only: see [`SeqLock::broken_without_read_fence`].
    #[cfg(loom)]
    skip_read_fence: bool,
}

impl<'a> Version<'a> {
    /// The version kept in `word`.
    #[inline(always)]
    pub fn new(word: &'a AtomicU64) -> Self {
        Self {
            word,
            #[cfg(loom)]
            skip_read_fence: false,
        }
    }

    /// A read starts: the version to validate against, `None` while a write is open.
    #[inline(always)]
    pub fn begin_read(&self) -> Option<u64> {
        let before = self.word.load(Ordering::Acquire);
        (before & 1 == 0).then_some(before)
    }

    /// Whether the relaxed loads made since `begin_read` returned `before` saw no write.
    #[inline(always)]
    pub fn validate(&self, before: u64) -> bool {
        // Orders the copy's loads before the re-check: if the copy saw any store of a write,
        // the re-check sees at least that write's odd version.
        #[cfg(loom)]
        if self.skip_read_fence {
            return self.word.load(Ordering::Relaxed) == before;
        }
        fence(Ordering::Acquire);
        self.word.load(Ordering::Relaxed) == before
    }

    /// A write starts (the caller holds the store's lock): the version becomes odd before
    /// any of the write's stores. An odd version (a writer died inside) stays odd.
    #[inline]
    pub fn begin_write(&self) {
        // Only lock holders change versions, so this sees the last holder's final store.
        let now = self.word.load(Ordering::Relaxed);
        if now & 1 == 0 {
            self.word.store(now.wrapping_add(1), Ordering::Relaxed);
        }
        // Orders the odd version before every store of the write (pairs with `validate`).
        fence(Ordering::Release);
    }

    /// The write ends: the version becomes even, publishing the write's stores.
    #[inline]
    pub fn end_write(&self) {
        let now = self.word.load(Ordering::Relaxed);
        self.word.store(now.wrapping_add(1), Ordering::Release);
    }

    /// Whether no write is open (for a lock holder checking what a dead writer left).
    pub fn is_even(&self) -> bool {
        self.word.load(Ordering::Relaxed) & 1 == 0
    }
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
        let version = self.version();
        for attempt in 0..READ_ATTEMPTS {
            if let Some(before) = version.begin_read() {
                let result = copy();
                if version.validate(before) {
                    return Some(result);
                }
            }
            backoff(attempt, READ_ATTEMPTS / 2);
        }
        None
    }

    /// The sequence word as a [`Version`] (the protocol is the same).
    fn version(&self) -> Version<'a> {
        Version {
            word: self.seq,
            #[cfg(loom)]
            skip_read_fence: self.skip_read_fence,
        }
    }

    /// Takes the lock for `owner` and opens a write section; `None` if it stayed busy for
    /// all of `owner.patience()`.
    pub fn lock(&self, owner: &impl LockOwner) -> Option<WriteGuard<'a>> {
        self.lock_with(owner, owner.patience())
    }

    /// [`SeqLock::lock`] with other bounds on waiting.
    ///
    /// A writer that gave up notes the section it waited for in `owner.stuck_memo()`; while
    /// that same section is still open (same owner, same sequence), later attempts try once,
    /// ask once whether the owner lives, and give up without waiting.
    pub fn lock_with(&self, owner: &impl LockOwner, patience: Patience) -> Option<WriteGuard<'a>> {
        let id = owner.id();
        let check_every = patience.check_every.max(1);
        let memo = owner.stuck_memo();
        let mut attempts = patience.attempts;
        if let Some(memo) = memo {
            let seen = self.section_mark();
            if seen != 0 && memo.load(Ordering::Relaxed) == seen {
                attempts = attempts.min(1);
            }
        }
        let started = (patience.budget_ns != 0).then(crate::clock::monotonic_nanos);
        for attempt in 0..attempts {
            let holder =
                match self
                    .owner
                    .compare_exchange(0, id, Ordering::Acquire, Ordering::Relaxed)
                {
                    Ok(_) => return Some(self.open_section()),
                    Err(holder) => holder,
                };
            let last = attempt + 1 == attempts;
            if attempt % check_every == check_every - 1 || last {
                if !owner.is_alive(holder)
                    && self
                        .owner
                        .compare_exchange(holder, id, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    return Some(self.open_section());
                }
                if started.is_some_and(|t| {
                    crate::clock::monotonic_nanos().saturating_sub(t) >= patience.budget_ns
                }) {
                    break;
                }
            }
            backoff(attempt, patience.spins);
        }
        if let Some(memo) = memo {
            memo.store(self.section_mark(), Ordering::Relaxed);
        }
        None
    }

    /// The open section as one word (holder and sequence mixed), 0 when the lock is free.
    fn section_mark(&self) -> u64 {
        let holder = self.owner.load(Ordering::Relaxed);
        if holder == 0 {
            return 0;
        }
        let seq = self.seq.load(Ordering::Relaxed);
        (holder.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq) | 1
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

/// An open write section; dropping it makes the sequence even and frees the lock (unless
/// the section panicked: then the sequence stays odd, so the next writer repairs).
pub struct WriteGuard<'a> {
    lock: SeqLock<'a>,
    torn: bool,
}

impl WriteGuard<'_> {
    /// True when the previous holder died inside a write section: the data may be torn and
    /// must be repaired before anything else trusts it.
    pub fn torn(&self) -> bool {
        self.torn
    }

    /// Frees the lock but leaves the section open (odd sequence): for a holder that found
    /// the section torn and cannot repair it (its mapping is stale), so the next holder of
    /// the current data does.
    pub fn release_torn(self) {
        let lock = self.lock;
        std::mem::forget(self);
        lock.owner.store(0, Ordering::Release);
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The section may have stopped half-way: keep it marked torn.
            self.lock.owner.store(0, Ordering::Release);
            return;
        }
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
                budget_ns: 0,
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
