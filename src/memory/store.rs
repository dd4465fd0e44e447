//! The sharded store: picks a shard by hash, keeps `len <= max_size` across all shards.
//!
//! Capacity is one budget for the whole store, not a quota per shard: keys whose hashes all
//! land in one shard still get `max_size` entries. An insert takes budget while there is
//! some; then it evicts from its own shard (SIEVE within the shard), or, when its shard is
//! empty, from another one.

use super::shard::{Probe, Shard};
use super::{CacheKey, Candidate, ShardLock, Verdict};
use crate::sync::{AtomicUsize, Ordering};

/// How many times an insert re-locks before giving up on caching: other threads can keep
/// taking the budget it frees, and a cache must never make a call wait without bound.
const INSERT_ATTEMPTS: usize = 8;

/// Result of [`Store::get`].
pub enum Get<K, V> {
    /// The value of a live, equal key.
    Hit(V),
    /// No equal live key.
    Miss,
    /// Compare these with the probe key outside any lock, then call `get` again with the
    /// verdicts added.
    Undecided(Vec<Candidate<K>>),
}

/// Result of [`Store::insert`]. Everything it hands back must be dropped by the caller,
/// which happens after the shard lock is released (dropping may run foreign code).
pub enum Insert<K, V> {
    /// Stored (or an equal live entry was already there). The pair is garbage to drop: an
    /// evicted entry, or the unused key and a value that was displaced or not needed.
    Done(Option<(K, V)>),
    /// Decide these candidates and retry with the key and value handed back.
    Undecided(Vec<Candidate<K>>, K, V),
    /// Not stored (a zero-size cache, or budget lost to other threads repeatedly).
    NotCached(K, V),
}

/// Result of [`Store::remove`]. What it hands back must be dropped by the caller, after
/// the shard lock is released.
pub enum Remove<K, V> {
    /// Taken out: the entry, and whether it was live at `now` (not expired).
    Removed((K, V), bool),
    /// No equal key.
    Absent,
    /// Compare these with the key outside any lock, then call `remove` again with the
    /// verdicts added.
    Undecided(Vec<Candidate<K>>),
}

/// A bounded, sharded SIEVE map.
pub struct Store<K, V, L> {
    shards: Box<[L]>,
    shard_bits: u32,
    max_size: usize,
    len: AtomicUsize,
    _entries: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K, V, L> Store<K, V, L>
where
    K: CacheKey + Clone,
    V: Clone,
    L: ShardLock<Shard<K, V>>,
{
    /// A store of at most `max_size` entries over `shards` shards (rounded up to a power of
    /// two). One shard gives exact SIEVE order.
    pub fn new(max_size: usize, shards: usize) -> Self {
        let shard_count = shards.max(1).next_power_of_two();
        Self {
            shards: (0..shard_count).map(|_| L::new(Shard::new())).collect(),
            shard_bits: shard_count.trailing_zeros(),
            max_size,
            len: AtomicUsize::new(0),
            _entries: std::marker::PhantomData,
        }
    }

    /// The most entries the store holds.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Entries held now, including expired ones not yet reclaimed.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    #[inline]
    fn shard_of(&self, hash: u64) -> &L {
        // High bits: the table inside the shard indexes with the low ones.
        let index = if self.shard_bits == 0 {
            0
        } else {
            (hash >> (64 - self.shard_bits)) as usize
        };
        &self.shards[index]
    }

    /// Looks `key` up under a shared lock. `hash` must be well spread (see `spread_hash`).
    /// A hit sets the entry's visited bit.
    #[inline(always)]
    pub fn get(&self, hash: u64, key: &K, verdicts: &[Verdict], now: u64) -> Get<K, V> {
        self.look(hash, key, verdicts, now, true)
    }

    /// [`Store::get`] that leaves the visited bit alone: reading an entry this way does not
    /// keep it from being evicted.
    pub fn peek(&self, hash: u64, key: &K, verdicts: &[Verdict], now: u64) -> Get<K, V> {
        self.look(hash, key, verdicts, now, false)
    }

    #[inline(always)]
    fn look(&self, hash: u64, key: &K, verdicts: &[Verdict], now: u64, visit: bool) -> Get<K, V> {
        let mut undecided = Vec::new();
        let shard = self.shard_of(hash).read();
        match shard.probe(hash, key, verdicts, now, &mut undecided) {
            Probe::Found(i, true) if visit => Get::Hit(shard.hit(i)),
            Probe::Found(i, true) => Get::Hit(shard.value(i)),
            Probe::Found(_, false) => Get::Miss,
            Probe::Absent if undecided.is_empty() => Get::Miss,
            Probe::Absent => {
                drop(shard);
                Get::Undecided(undecided)
            }
        }
    }

    /// Stores `key -> value`, living until `expires_at` (`u64::MAX`: forever). An equal key
    /// that is live at `now` keeps its value.
    pub fn insert(
        &self,
        hash: u64,
        key: K,
        value: V,
        verdicts: &[Verdict],
        now: u64,
        expires_at: u64,
    ) -> Insert<K, V> {
        self.put(hash, key, value, verdicts, now, expires_at, false)
    }

    /// [`Store::insert`]; with `replace`, a live equal key gets the new value (and expiry)
    /// too.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &self,
        hash: u64,
        key: K,
        value: V,
        verdicts: &[Verdict],
        now: u64,
        expires_at: u64,
        replace: bool,
    ) -> Insert<K, V> {
        if self.max_size == 0 {
            return Insert::NotCached(key, value);
        }
        // Declared before any guard, so candidate keys are dropped after the lock.
        let mut undecided = Vec::new();
        for _ in 0..INSERT_ATTEMPTS {
            let mut shard = self.shard_of(hash).write();
            match shard.probe(hash, &key, verdicts, now, &mut undecided) {
                Probe::Found(_, true) if !replace => return Insert::Done(Some((key, value))),
                Probe::Found(i, _) => {
                    let old = shard.replace_value(i, value, expires_at);
                    return Insert::Done(Some((key, old)));
                }
                Probe::Absent if !undecided.is_empty() => {
                    drop(shard);
                    return Insert::Undecided(undecided, key, value);
                }
                Probe::Absent => {}
            }
            if self.try_reserve() {
                shard.insert_new(hash, key, value, expires_at);
                return Insert::Done(None);
            }
            if let Some(evicted) = shard.evict_one(now) {
                shard.insert_new(hash, key, value, expires_at);
                return Insert::Done(Some(evicted));
            }
            drop(shard);
            self.evict_from_any_shard(now);
        }
        Insert::NotCached(key, value)
    }

    /// Takes one unit of the size budget if any is left.
    fn try_reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.max_size).then_some(n + 1)
            })
            .is_ok()
    }

    /// Frees one unit of budget by evicting from the first non-empty shard.
    fn evict_from_any_shard(&self, now: u64) {
        for lock in self.shards.iter() {
            let mut shard = lock.write();
            if let Some(evicted) = shard.evict_one(now) {
                self.len.fetch_sub(1, Ordering::AcqRel);
                drop(shard);
                drop(evicted);
                return;
            }
        }
    }

    /// Takes `key`'s entry out, live or expired.
    pub fn remove(&self, hash: u64, key: &K, verdicts: &[Verdict], now: u64) -> Remove<K, V> {
        let mut undecided = Vec::new();
        let mut shard = self.shard_of(hash).write();
        match shard.probe(hash, key, verdicts, now, &mut undecided) {
            Probe::Found(i, live) => {
                let entry = shard.remove(i);
                self.len.fetch_sub(1, Ordering::AcqRel);
                Remove::Removed(entry, live)
            }
            Probe::Absent if undecided.is_empty() => Remove::Absent,
            Probe::Absent => {
                drop(shard);
                Remove::Undecided(undecided)
            }
        }
    }

    /// Removes every entry; returns them so the caller drops them with no lock held.
    pub fn clear(&self) -> Vec<(K, V)> {
        let mut all = Vec::new();
        for lock in self.shards.iter() {
            let mut taken = lock.write().take_all();
            self.len.fetch_sub(taken.len(), Ordering::AcqRel);
            all.append(&mut taken);
        }
        all
    }

    /// Calls `f` on every entry of every shard that is not being written right now; a
    /// garbage collector's traversal, which must not block, may miss a busy shard.
    pub fn for_each_unlocked(&self, mut f: impl FnMut(&K, &V)) {
        for lock in self.shards.iter() {
            if let Some(shard) = lock.try_read() {
                shard.entries().for_each(|(k, v)| f(k, v));
            }
        }
    }

    /// Entries that are still live at `now`.
    pub fn live_len(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|lock| lock.read().live_len(now))
            .sum()
    }

    /// Asserts every shard's invariants and the size accounting (tests and fuzzing).
    #[cfg(any(test, fuzzing, loom, shuttle))]
    pub fn check_invariants(&self) {
        let mut total = 0;
        for lock in self.shards.iter() {
            let shard = lock.read();
            shard.check_invariants();
            total += shard.len();
        }
        assert_eq!(total, self.len(), "len accounting");
        assert!(total <= self.max_size, "size bound");
    }
}
