//! One shard: a hash table of slot indices, the slots, and their SIEVE queue.
//!
//! Invariants: a slot is in the table iff it is in the queue iff it holds an entry; no two
//! entries are equal keys (the caller's insert protocol guarantees it); `stamp` is unique
//! per occupancy, so `(slot, stamp)` names one entry even after the slot is reused.

use super::CacheKey;
use crate::sieve::{SieveList, SieveQueue};
use crate::sync::{AtomicBool, Ordering};
use hashbrown::HashTable;

/// An entry whose equality with the probe key only foreign code can decide.
#[derive(Debug)]
pub struct Candidate<K> {
    /// Slot holding the entry.
    pub slot: u32,
    /// Occupancy stamp of that slot when the candidate was taken.
    pub stamp: u64,
    /// A clone of the stored key, to compare outside the lock.
    pub key: K,
}

/// The caller's answer for one [`Candidate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Slot of the compared entry.
    pub slot: u32,
    /// Its stamp: a verdict about an entry that has since been replaced is ignored.
    pub stamp: u64,
    /// Whether the keys were equal.
    pub equal: bool,
}

pub(crate) struct Entry<K, V> {
    pub(crate) hash: u64,
    pub(crate) stamp: u64,
    /// Monotonic nanoseconds after which the entry is dead; `u64::MAX` for never.
    pub(crate) expires_at: u64,
    pub(crate) key: K,
    pub(crate) value: V,
}

struct Slot<K, V> {
    entry: Option<Entry<K, V>>,
    /// Set by hits under a shared lock, cleared by the hand under the exclusive one. A hit
    /// racing the hand may be lost or survive one extra turn: both are allowed by SIEVE's
    /// approximate recency, and neither breaks an invariant above.
    visited: AtomicBool,
}

/// What a probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// An equal key in slot `.0`, live (`.1 == true`) or expired.
    Found(u32, bool),
    /// No equal key among the decided candidates.
    Absent,
}

/// One shard of a [`Store`](super::Store); opaque outside the memory module.
pub struct Shard<K, V> {
    table: HashTable<u32>,
    slots: Vec<Slot<K, V>>,
    free: Vec<u32>,
    queue: SieveList,
    next_stamp: u64,
}

impl<K: CacheKey + Clone, V: Clone> Shard<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            queue: SieveList::new(),
            next_stamp: 1,
        }
    }

    #[cfg(any(test, fuzzing, loom, shuttle))]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Looks `key` up. Candidates that need foreign comparison and have no verdict yet are
    /// appended to `undecided`; the probe result is only final when `undecided` stays empty.
    #[inline(always)]
    pub(crate) fn probe(
        &self,
        hash: u64,
        key: &K,
        verdicts: &[Verdict],
        now: u64,
        undecided: &mut Vec<Candidate<K>>,
    ) -> Probe {
        let slots = &self.slots;
        let found = self.table.find(hash, |&i| {
            let Some(entry) = &slots[i as usize].entry else {
                return false;
            };
            if entry.hash != hash {
                return false;
            }
            match decide(entry, i, key, verdicts) {
                Some(equal) => equal,
                None => {
                    undecided.push(Candidate {
                        slot: i,
                        stamp: entry.stamp,
                        key: entry.key.clone(),
                    });
                    false
                }
            }
        });
        match found {
            Some(&i) => Probe::Found(i, self.entry(i).expires_at > now),
            None => Probe::Absent,
        }
    }

    fn entry(&self, i: u32) -> &Entry<K, V> {
        self.slots[i as usize]
            .entry
            .as_ref()
            .expect("table points at occupied slots")
    }

    /// The value of live slot `i`, marking it visited. Only writes when the bit is clear, so
    /// a hot entry's cache line stays shared between reading threads.
    #[inline]
    pub(crate) fn hit(&self, i: u32) -> V {
        let slot = &self.slots[i as usize];
        if !slot.visited.load(Ordering::Relaxed) {
            slot.visited.store(true, Ordering::Relaxed);
        }
        self.entry(i).value.clone()
    }

    /// The value of live slot `i`, leaving its visited bit as it is.
    pub(crate) fn value(&self, i: u32) -> V {
        self.entry(i).value.clone()
    }

    /// Gives slot `i` a new value (and expiry), returning the old value to drop later.
    pub(crate) fn replace_value(&mut self, i: u32, value: V, expires_at: u64) -> V {
        let entry = self.slots[i as usize]
            .entry
            .as_mut()
            .expect("occupied slot");
        entry.expires_at = expires_at;
        std::mem::replace(&mut entry.value, value)
    }

    /// Adds a new entry at the newest end. The caller has made room.
    pub(crate) fn insert_new(&mut self, hash: u64, key: K, value: V, expires_at: u64) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let entry = Entry {
            hash,
            stamp,
            expires_at,
            key,
            value,
        };
        let i = match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                slot.entry = Some(entry);
                slot.visited.store(false, Ordering::Relaxed);
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).expect("fewer than 2^32 slots per shard");
                self.slots.push(Slot {
                    entry: Some(entry),
                    visited: AtomicBool::new(false),
                });
                self.queue.grow_to(self.slots.len());
                i
            }
        };
        let slots = &self.slots;
        self.table.insert_unique(hash, i, |&j| {
            slots[j as usize].entry.as_ref().map_or(0, |e| e.hash)
        });
        self.queue.push_newest(i);
    }

    /// Runs the SIEVE hand and removes its victim; expired entries get no second chance.
    pub(crate) fn evict_one(&mut self, now: u64) -> Option<(K, V)> {
        let slots = &self.slots;
        let victim = self.queue.select_victim(|i| {
            let slot = &slots[i as usize];
            let live = slot.entry.as_ref().is_some_and(|e| e.expires_at > now);
            slot.visited.swap(false, Ordering::Relaxed) && live
        })?;
        Some(self.remove(victim))
    }

    /// Removes slot `i`'s entry from table and queue and returns it.
    pub(crate) fn remove(&mut self, i: u32) -> (K, V) {
        let slot = &mut self.slots[i as usize];
        let entry = slot.entry.take().expect("removing an occupied slot");
        slot.visited.store(false, Ordering::Relaxed);
        match self.table.find_entry(entry.hash, |&j| j == i) {
            Ok(occupied) => {
                occupied.remove();
            }
            Err(_) => unreachable!("occupied slot {i} missing from its table"),
        }
        self.queue.unlink(i);
        self.free.push(i);
        (entry.key, entry.value)
    }

    /// Empties the shard, handing back every entry so the caller drops them unlocked.
    pub(crate) fn take_all(&mut self) -> Vec<(K, V)> {
        self.table.clear();
        self.free.clear();
        let drained: Vec<(K, V)> = self
            .slots
            .drain(..)
            .filter_map(|slot| slot.entry.map(|e| (e.key, e.value)))
            .collect();
        self.queue = SieveList::new();
        drained
    }

    /// Every stored key and value.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots
            .iter()
            .filter_map(|s| s.entry.as_ref().map(|e| (&e.key, &e.value)))
    }

    /// Entries not yet expired at `now`.
    pub(crate) fn live_len(&self, now: u64) -> usize {
        self.slots
            .iter()
            .filter(|s| s.entry.as_ref().is_some_and(|e| e.expires_at > now))
            .count()
    }

    /// Checks every invariant listed at the top of this file (tests and fuzzing).
    #[cfg(any(test, fuzzing, loom, shuttle))]
    pub(crate) fn check_invariants(&self) {
        let order = self.queue.oldest_to_newest();
        let occupied = self.slots.iter().filter(|s| s.entry.is_some()).count();
        assert_eq!(order.len(), occupied, "queue length vs occupied slots");
        assert_eq!(self.table.len(), occupied, "table length vs occupied slots");
        for &i in &order {
            let entry = self.slots[i as usize]
                .entry
                .as_ref()
                .expect("queued slot occupied");
            assert!(
                self.table.find(entry.hash, |&j| j == i).is_some(),
                "slot {i} not in table"
            );
        }
        assert_eq!(
            self.free.len() + occupied,
            self.slots.len(),
            "free list accounts for all"
        );
    }
}

/// Equality of a stored entry with the probe key: quick check first, then a verdict.
#[inline]
fn decide<K: CacheKey, V>(
    entry: &Entry<K, V>,
    slot: u32,
    key: &K,
    verdicts: &[Verdict],
) -> Option<bool> {
    entry.key.quick_eq(key).or_else(|| {
        verdicts
            .iter()
            .find(|v| v.slot == slot && v.stamp == entry.stamp)
            .map(|v| v.equal)
    })
}
