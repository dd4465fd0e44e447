//! The shared cache's operations over a lock region and a data region, wherever they live:
//! mapped files in production ([`super::SharedStore`]), boxed words in tests and models
//! ([`HeapRegion`]).
//!
//! Lookups take no lock and never look at the write lock: each validates the one slot it
//! reads by that slot's version. Inserts and clears take the write lock; one that finds the
//! last section torn (its writer died or panicked), or the data inconsistent, repairs the
//! region from the slots that are whole (losing only the entries that writer was changing)
//! and carries on. Every operation first checks that this mapping is still the current file
//! ([`Stale`] otherwise: the owner re-opens and retries).

use super::layout::{
    self, header, lock_word, Layout, Params, TooLarge, COUNTER_STRIPES, DATA_MAGIC, LOCK_MAGIC,
    LOCK_WORDS,
};
use super::seqlock::{LockOwner, Patience, SeqLock};
use super::table::{Corrupt, Read, Table};
use super::ValueBuf;
use crate::codec::key_hash;
use crate::sieve::SieveQueue;
use crate::sync::{AtomicU64, Ordering};

/// How many times longer than a store a clear waits for the lock.
pub const CLEAR_PATIENCE: u32 = 100;

/// This mapping is no longer the cache's current file: re-open it and try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stale;

/// What became of an insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The entry is in the cache (or an equal live key already was).
    Stored,
    /// The key or value exceeds its size limit; counted in `oversize_skips`.
    Oversize,
    /// Not cached: zero capacity, or the lock stayed busy, or the files could not be opened.
    NotCached,
}

/// Counters and sizes, shared by every process using the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// Lookups that returned a value.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Most entries held.
    pub max_size: u64,
    /// Entries held now, expired ones not yet replaced included.
    pub current_size: u64,
    /// Inserts skipped for size.
    pub oversize_skips: u64,
}

/// The cache over borrowed regions.
pub struct Engine<'a> {
    layout: &'a Layout,
    lock: &'a [AtomicU64],
    table: Table<'a>,
    generation: u64,
}

impl<'a> Engine<'a> {
    /// The cache over `lock` ([`LOCK_WORDS`] words) and `data` (`layout.total_words()`),
    /// which must belong to `generation`; `None` if a region has the wrong length.
    pub fn new(
        layout: &'a Layout,
        lock: &'a [AtomicU64],
        data: &'a [AtomicU64],
        generation: u64,
    ) -> Option<Self> {
        let table = Table::new(data, layout)?;
        (lock.len() == LOCK_WORDS).then_some(Self {
            layout,
            lock,
            table,
            generation,
        })
    }

    fn seqlock(&self) -> SeqLock<'a> {
        SeqLock::new(&self.lock[lock_word::SEQ], &self.lock[lock_word::OWNER])
    }

    /// Whether these regions are still the cache's current files.
    #[inline(always)]
    pub fn is_current(&self) -> bool {
        let lock = |i: usize| self.lock[i].load(Ordering::Acquire);
        let data = |i: usize| self.table.header(i).load(Ordering::Acquire);
        lock(lock_word::MAGIC) == LOCK_MAGIC
            && lock(lock_word::RETIRED) == 0
            && lock(lock_word::GENERATION) == self.generation
            && data(header::MAGIC) == DATA_MAGIC
            && data(header::GENERATION) == self.generation
    }

    fn count(&self, counter: usize) {
        self.table.header(counter).fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a hit or a miss ([`header::HITS`] or [`header::MISSES`]) in this process's
    /// stripe.
    fn count_lookup(&self, which: usize) {
        self.count(header::counter(super::stripe::current(), which));
    }

    /// Moves one count of this process's stripe from `from` to `to` ([`header::HITS`] or
    /// [`header::MISSES`]): a lookup's verdict corrected after the fact (a miss served by
    /// another call's flight is a hit; a hit whose value cannot be decoded here is a miss).
    /// Never takes a count below zero (a clear may have zeroed it meanwhile).
    pub fn recount(&self, from: usize, to: usize) {
        let stripe = super::stripe::current();
        let taken = self
            .table
            .header(header::counter(stripe, from))
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if taken {
            self.count(header::counter(stripe, to));
        }
    }

    /// Records `seconds` (wall clock) as the cache's last use, for the operator CLI; writes
    /// the shared word only when it changes.
    pub fn touch(&self, seconds: u64) {
        let word = &self.lock[lock_word::LAST_USE];
        if word.load(Ordering::Relaxed) != seconds {
            word.store(seconds, Ordering::Relaxed);
        }
    }

    /// The sum of counter `which` over every stripe.
    fn counted(&self, which: usize) -> u64 {
        (0..COUNTER_STRIPES)
            .map(|s| {
                self.table
                    .header(header::counter(s, which))
                    .load(Ordering::Relaxed)
            })
            .fold(0, u64::wrapping_add)
    }

    /// Looks `key` up at time `now`; on a hit the value is left in `out`. Counts the hit or
    /// miss. Gives up (a miss) if writers keep the region busy.
    #[inline]
    pub fn get(&self, key: &[u8], now: u64, out: &mut ValueBuf) -> Result<bool, Stale> {
        Ok(self.get_read(key, now, out, |_, _| false, true)?.is_some())
    }

    /// [`Engine::get`] that tells which entry it found, and skips copying an entry
    /// `known(slot, version)` says the caller already holds. Counts only when `count`.
    #[inline(always)]
    pub fn get_read(
        &self,
        key: &[u8],
        now: u64,
        out: &mut ValueBuf,
        known: impl Fn(u32, u64) -> bool,
        count: bool,
    ) -> Result<Option<Read>, Stale> {
        if !self.is_current() {
            return Err(Stale);
        }
        let hit = if key.len() > self.layout.params().max_key_size as usize {
            None
        } else {
            self.table.read(key_hash(key), key, now, out, known)
        };
        match hit {
            Some(read) => {
                self.table.mark_visited(read.slot);
                if count {
                    self.count_lookup(header::HITS);
                }
            }
            None if count => self.count_lookup(header::MISSES),
            None => {}
        }
        Ok(hit)
    }

    /// Stores `key -> value`, living until `expires_at` (`u64::MAX`: forever). An equal key
    /// that is live at `now` keeps its value.
    pub fn insert(
        &self,
        key: &[u8],
        value: &[u8],
        now: u64,
        expires_at: u64,
        owner: &impl LockOwner,
    ) -> Result<InsertOutcome, Stale> {
        Ok(self.store(key, value, now, expires_at, owner, false)?.0)
    }

    /// [`Engine::insert`], but a live equal key gets the new value too (its old value could
    /// not be used: say, this process cannot decode it).
    pub fn replace(
        &self,
        key: &[u8],
        value: &[u8],
        now: u64,
        expires_at: u64,
        owner: &impl LockOwner,
    ) -> Result<InsertOutcome, Stale> {
        Ok(self.store(key, value, now, expires_at, owner, true)?.0)
    }

    /// [`Engine::replace`], also telling which slot now holds the value, at which version.
    pub fn replace_read(
        &self,
        key: &[u8],
        value: &[u8],
        now: u64,
        expires_at: u64,
        owner: &impl LockOwner,
    ) -> Result<(InsertOutcome, Option<(u32, u64)>), Stale> {
        self.store(key, value, now, expires_at, owner, true)
    }

    fn store(
        &self,
        key: &[u8],
        value: &[u8],
        now: u64,
        expires_at: u64,
        owner: &impl LockOwner,
        replace: bool,
    ) -> Result<(InsertOutcome, Option<(u32, u64)>), Stale> {
        let params = self.layout.params();
        if key.len() > params.max_key_size as usize || value.len() > params.max_value_size as usize
        {
            self.count(header::OVERSIZE);
            return Ok((InsertOutcome::Oversize, None));
        }
        if params.capacity == 0 {
            return Ok((InsertOutcome::NotCached, None));
        }
        let hash = key_hash(key);
        let put = || self.put(hash, key, value, now, expires_at, replace);
        let stored = self.write(owner, || {
            let written = put().or_else(|Corrupt| {
                // Words no correct writer leaves: rebuild from the whole slots, and if even
                // that leaves something inconsistent, start empty (an empty region has room
                // and a clear table, so the last try cannot fail).
                self.table.repair();
                put().or_else(|Corrupt| {
                    self.table.reset();
                    put()
                })
            });
            // Read under the lock: nobody else can change the slot meanwhile.
            written
                .ok()
                .flatten()
                .map(|slot| (slot, self.table.version_of(slot)))
        })?;
        Ok(match stored {
            Some(written) => (InsertOutcome::Stored, written),
            None => (InsertOutcome::NotCached, None),
        })
    }

    /// Drops every entry and zeroes the counters, for every process. False if the lock
    /// stayed busy (a clear waits [`CLEAR_PATIENCE`] times longer than a store).
    pub fn clear(&self, owner: &impl LockOwner) -> Result<bool, Stale> {
        let patience = owner.patience().stretched(CLEAR_PATIENCE);
        let cleared = self.write_with(owner, patience, || {
            self.table.reset();
            let stripes = (0..COUNTER_STRIPES).flat_map(|s| {
                [header::HITS, header::MISSES].map(|which| header::counter(s, which))
            });
            for counter in stripes.chain([header::OVERSIZE]) {
                self.table.header(counter).store(0, Ordering::Relaxed);
            }
        })?;
        Ok(cleared.is_some())
    }

    /// The shared counters and sizes.
    pub fn info(&self) -> Result<Info, Stale> {
        if !self.is_current() {
            return Err(Stale);
        }
        let load = |i: usize| self.table.header(i).load(Ordering::Relaxed);
        let max_size = u64::from(self.layout.capacity());
        Ok(Info {
            hits: self.counted(header::HITS),
            misses: self.counted(header::MISSES),
            max_size,
            current_size: load(header::LEN).min(max_size),
            oversize_skips: load(header::OVERSIZE),
        })
    }

    /// Runs `change` in a write section; `None` if the lock stayed busy.
    pub(super) fn write<R>(
        &self,
        owner: &impl LockOwner,
        change: impl FnOnce() -> R,
    ) -> Result<Option<R>, Stale> {
        self.write_with(owner, owner.patience(), change)
    }

    /// [`Engine::write`] waiting for the lock within `patience`.
    fn write_with<R>(
        &self,
        owner: &impl LockOwner,
        patience: Patience,
        change: impl FnOnce() -> R,
    ) -> Result<Option<R>, Stale> {
        let Some(guard) = self.seqlock().lock_with(owner, patience) else {
            return Ok(None);
        };
        if !self.is_current() {
            if guard.torn() {
                // The torn section is in the current file, which this process has not
                // mapped: leave it marked torn for a holder that has (this one re-opens).
                guard.release_torn();
            }
            return Err(Stale);
        }
        if guard.torn() {
            self.table.repair();
        }
        let result = change();
        drop(guard);
        Ok(Some(result))
    }

    /// The insert proper, under the write lock: the slot written, `None` when a live equal
    /// key kept its value.
    fn put(
        &self,
        hash: u64,
        key: &[u8],
        value: &[u8],
        now: u64,
        expires_at: u64,
        replace: bool,
    ) -> Result<Option<u32>, Corrupt> {
        let table = self.table;
        if let Some(i) = table.find(hash, key) {
            if replace || !table.read_live(i, now, &mut ValueBuf::new()) {
                // Expired or damaged: the new value takes its place in the queue.
                table.write_entry(i, key, value, expires_at);
                return Ok(Some(i));
            }
            return Ok(None);
        }
        let len = table.len()?;
        let i = if len < self.layout.capacity() {
            table.set_len(len + 1);
            len
        } else {
            let mut queue = table.queue();
            let victim = queue
                .select_victim(|i| table.second_chance(i, now))
                .ok_or(Corrupt)?;
            if victim >= len {
                return Err(Corrupt);
            }
            table.table_remove(table.hash_of(victim)?, victim)?;
            queue.unlink(victim);
            victim
        };
        table.write_entry(i, key, value, expires_at);
        table.clear_visited(i);
        table.queue().push_newest(i);
        table.table_insert(hash, i).map(|()| Some(i))
    }
}

/// A lock region and a data region on the heap: the shared cache without files, for tests,
/// models and fuzzing (one process, any number of threads).
pub struct HeapRegion {
    layout: Layout,
    lock: Box<[AtomicU64]>,
    data: Box<[AtomicU64]>,
}

impl HeapRegion {
    /// An empty cache with `params`.
    pub fn new(params: Params) -> Result<Self, TooLarge> {
        let layout = Layout::new(params)?;
        let words = |n: usize| {
            (0..n)
                .map(|_| AtomicU64::new(0))
                .collect::<Box<[AtomicU64]>>()
        };
        let (lock, data) = (words(LOCK_WORDS), words(layout.total_words()));
        layout::init_lock(&lock, 1, "");
        lock[lock_word::GENERATION].store(1, Ordering::Relaxed);
        layout.init_data(&data, 1, 1);
        Ok(Self { layout, lock, data })
    }

    /// The cache over these regions.
    pub fn engine(&self) -> Engine<'_> {
        Engine::new(&self.layout, &self.lock, &self.data, 1).expect("regions sized by the layout")
    }

    /// The layout of the regions.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The lock region's words (tests and models poke at them).
    pub fn lock_words(&self) -> &[AtomicU64] {
        &self.lock
    }

    /// The data region's words (tests and models poke at them).
    pub fn data_words(&self) -> &[AtomicU64] {
        &self.data
    }

    /// Asserts the structure a correct writer leaves (tests, fuzzing, models; call it with no
    /// write in progress): `len` slots, each in the SIEVE queue once and in the table once
    /// under its own hash tag, nothing else in the table, no key held by two slots.
    #[cfg(any(test, fuzzing, loom, shuttle))]
    pub fn check_invariants(&self) {
        use super::layout::{slot, split_entry};
        let layout = &self.layout;
        let load = |i: usize| self.data[i].load(Ordering::Relaxed);
        let len = load(header::LEN) as u32;
        assert!(len <= layout.capacity(), "len {len} beyond capacity");
        let mut order = Vec::new();
        let mut at = load(header::TAIL) as u32;
        while at != crate::sieve::NIL {
            assert!(at < len, "queued slot {at} beyond len {len}");
            order.push(at);
            assert!(order.len() <= len as usize, "queue longer than len");
            at = load(layout.slot_word(at, slot::LINKS)) as u32;
        }
        order.sort_unstable();
        assert_eq!(
            order,
            (0..len).collect::<Vec<_>>(),
            "every occupied slot queued once"
        );
        let mut in_table: Vec<u32> = Vec::new();
        for pos in 0..layout.table_size() {
            if let (Some(i), tag) = split_entry(load(layout.table_word(pos))) {
                assert!(i < len, "table names slot {i} beyond len {len}");
                let hash = self.engine().table.hash_of(i).expect("a valid key length");
                assert_eq!(tag, hash as u32, "slot {i} filed under another hash");
                in_table.push(i);
            }
        }
        in_table.sort_unstable();
        assert_eq!(
            in_table,
            (0..len).collect::<Vec<_>>(),
            "every occupied slot in the table once"
        );
        let key_of = |i: u32| -> Vec<u64> {
            let key_len = load(layout.slot_word(i, slot::LENS)) as u32;
            assert!(
                key_len <= layout.params().max_key_size,
                "slot {i} key too long"
            );
            (0..(key_len as usize).div_ceil(8))
                .map(|n| load(layout.data_word(i, n)))
                .chain([u64::from(key_len)])
                .collect()
        };
        let mut keys: Vec<Vec<u64>> = (0..len).map(key_of).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), len as usize, "a key held by two slots");
    }
}
