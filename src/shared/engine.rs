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

use super::flights::Board;
use super::layout::{
    self, header, lock_word, Layout, Params, TooLarge, COUNTER_STRIPES, DATA_MAGIC, LOCK_MAGIC,
    LOCK_WORDS,
};
use super::seqlock::{LockOwner, Patience, SeqLock};
use super::table::{Backing, Corrupt, NoBlock, Read, Table};
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
    /// Inserts skipped for size (or for want of space).
    pub oversize_skips: u64,
    /// Key and value bytes held now.
    pub current_bytes: u64,
}

/// What became of an insert under the lock.
enum Put {
    /// Written into this slot.
    Stored(u32),
    /// A live equal key kept its value.
    Kept,
    /// No heap space could be had, even after evicting.
    NoSpace,
}

/// The cache over borrowed regions.
pub struct Engine<'a> {
    layout: &'a Layout,
    lock: &'a [AtomicU64],
    table: Table<'a>,
    generation: u64,
}

impl<'a> Engine<'a> {
    /// The cache over `lock` ([`LOCK_WORDS`] words) and `data` (`layout.total_words()`,
    /// of which `backing` says how much of the heap may be touched), which must belong to
    /// `generation`; `None` if a region has the wrong length.
    pub fn new(
        layout: &'a Layout,
        lock: &'a [AtomicU64],
        data: &'a [AtomicU64],
        generation: u64,
        backing: &'a dyn Backing,
    ) -> Option<Self> {
        let table = Table::new(data, layout, backing)?;
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

    /// The board of flights under way across processes, in the lock file.
    pub fn board(&self) -> Board<'a> {
        Board::new(&self.lock[lock_word::BOARD..]).expect("the lock region has LOCK_WORDS words")
    }

    fn count(&self, counter: usize) {
        self.table.header(counter).fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a hit or a miss ([`header::HITS`] or [`header::MISSES`]) in this process's
    /// stripe.
    #[inline(always)] // on the hit path
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
    /// `known(slot, version)` says the caller already holds. Counts the lookup and marks a
    /// found entry visited only when `count` (a peek, or a second read of one lookup, does
    /// neither).
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
            let hash = key_hash(key);
            let hit = self.table.read(hash, key, now, out, &known);
            // An entry in heap another process grew since this one last looked reads as a
            // miss: look again once this process has taken the growth in.
            if hit.is_none() && self.table.refresh_if_grown() {
                self.table.read(hash, key, now, out, &known)
            } else {
                hit
            }
        };
        match hit {
            Some(read) if count => {
                self.table.mark_visited(read.slot);
                self.count_lookup(header::HITS);
            }
            None if count => self.count_lookup(header::MISSES),
            _ => {}
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
        Ok(self
            .store(key, value, now, expires_at, owner, false, None)?
            .0)
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
        Ok(self
            .store(key, value, now, expires_at, owner, true, None)?
            .0)
    }

    /// [`Engine::replace`], also telling which slot now holds the value, at which version.
    /// With `clears` (what [`Engine::clears`] said when the value's computation began), a
    /// value computed before a clear is not stored after it.
    pub fn replace_read(
        &self,
        key: &[u8],
        value: &[u8],
        now: u64,
        expires_at: u64,
        owner: &impl LockOwner,
        clears: Option<u64>,
    ) -> Result<(InsertOutcome, Option<(u32, u64)>), Stale> {
        self.store(key, value, now, expires_at, owner, true, clears)
    }

    /// How many times the cache was cleared (by any process) since its lock file was made.
    pub fn clears(&self) -> u64 {
        self.lock[lock_word::CLEARS].load(Ordering::Acquire)
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        key: &[u8],
        value: &[u8],
        now: u64,
        expires_at: u64,
        owner: &impl LockOwner,
        replace: bool,
        clears: Option<u64>,
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
        if key.len() as u64 + value.len() as u64 > params.byte_budget() {
            self.count(header::OVERSIZE);
            return Ok((InsertOutcome::Oversize, None));
        }
        let hash = key_hash(key);
        let put = || self.put(hash, key, value, now, expires_at, replace);
        let done = self.write(owner, || {
            // Under the lock, as clears are: a clear since the computation began wins.
            if clears.is_some_and(|clears| clears != self.clears()) {
                return Some((u32::MAX, 0));
            }
            let put = put().or_else(|Corrupt| {
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
            match put {
                Ok(Put::Stored(slot)) => Some((slot, self.table.version_of(slot))),
                Ok(Put::Kept) => None,
                Ok(Put::NoSpace) | Err(Corrupt) => {
                    self.count(header::OVERSIZE);
                    Some((u32::MAX, 0))
                }
            }
        })?;
        Ok(match done {
            None => (InsertOutcome::NotCached, None),
            Some(Some((u32::MAX, _))) => (InsertOutcome::NotCached, None),
            Some(written) => (InsertOutcome::Stored, written),
        })
    }

    /// Takes `key`'s entry out, for every process; true if it was live at `now`. `None`
    /// if the lock stayed busy.
    pub fn remove(
        &self,
        key: &[u8],
        now: u64,
        owner: &impl LockOwner,
    ) -> Result<Option<bool>, Stale> {
        if key.len() > self.layout.params().max_key_size as usize {
            return Ok(Some(false));
        }
        let hash = key_hash(key);
        let table = self.table;
        let take = || -> Result<bool, Corrupt> {
            let Some(i) = table.find(hash, key) else {
                return Ok(false);
            };
            let live = table.read_live(i, now, &mut ValueBuf::new());
            table.remove(i, hash)?;
            Ok(live)
        };
        self.write(owner, || {
            take().unwrap_or_else(|Corrupt| {
                // As for a store: rebuild from the whole slots, else start empty (which
                // removes the entry too).
                table.repair();
                take().unwrap_or_else(|Corrupt| {
                    table.reset();
                    false
                })
            })
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
            self.lock[lock_word::CLEARS].fetch_add(1, Ordering::AcqRel);
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
            current_bytes: load(header::BYTES),
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
        // Blocks another process placed in heap it grew must be readable before anything
        // here moves or judges them.
        self.table.refresh_if_grown();
        if guard.torn() {
            self.table.repair();
        }
        let result = change();
        drop(guard);
        Ok(Some(result))
    }

    /// The insert proper, under the write lock. A new entry (or a new value for a key)
    /// always joins as the newest, after SIEVE victims made room for it by bytes; a heap
    /// too full or fragmented for its block is compacted, then more victims go. It takes
    /// slot `LEN`, or, when every slot is taken, the slot of the victim evicted for it.
    fn put(
        &self,
        hash: u64,
        key: &[u8],
        value: &[u8],
        now: u64,
        expires_at: u64,
        replace: bool,
    ) -> Result<Put, Corrupt> {
        let table = self.table;
        if let Some(i) = table.find(hash, key) {
            if !replace && table.read_live(i, now, &mut ValueBuf::new()) {
                return Ok(Put::Kept);
            }
            // Expired, damaged or to be replaced: the new value joins as a new entry.
            table.remove(i, hash)?;
        }
        let size = key.len() as u64 + value.len() as u64;
        let budget = self.layout.params().byte_budget();
        while table.bytes() + size > budget {
            if !self.evict(now)? {
                break;
            }
        }
        let block = match self.block_for(key.len(), value.len(), now)? {
            Some(block) => block,
            None => return Ok(Put::NoSpace),
        };
        let len = table.len()?;
        let i = if len < self.layout.capacity() {
            table.set_len(len + 1);
            len
        } else {
            // Full: the SIEVE victim's slot takes the new entry (its block is freed when
            // the entry is written).
            let mut queue = table.queue();
            let victim = queue
                .select_victim(|i| table.second_chance(i, now))
                .ok_or(Corrupt)?;
            if victim >= len {
                return Err(Corrupt);
            }
            table.table_remove(table.hash_of(victim)?, victim)?;
            queue.unlink(victim);
            table.sub_bytes(table.entry_bytes(victim));
            victim
        };
        table.write_entry(i, key, value, expires_at, block);
        table.clear_visited(i);
        table.queue().push_newest(i);
        table.table_insert(hash, i)?;
        table.add_bytes(size);
        Ok(Put::Stored(i))
    }

    /// A heap block for an entry of these sizes: compacting the heap, then evicting a few
    /// entries at a time, while there is none. `None` when nothing is left to evict.
    fn block_for(
        &self,
        key_len: usize,
        value_len: usize,
        now: u64,
    ) -> Result<Option<u64>, Corrupt> {
        let table = self.table;
        loop {
            match table.alloc(key_len, value_len) {
                Ok(block) => return Ok(Some(block)),
                Err(NoBlock::Corrupt) => return Err(Corrupt),
                Err(NoBlock::Full) => {}
            }
            table.compact(table.len()?);
            match table.alloc(key_len, value_len) {
                Ok(block) => return Ok(Some(block)),
                Err(NoBlock::Corrupt) => return Err(Corrupt),
                Err(NoBlock::Full) => {}
            }
            for _ in 0..EVICT_FOR_SPACE {
                if !self.evict(now)? {
                    return Ok(None);
                }
            }
        }
    }

    /// Takes the SIEVE victim out; false when the queue is empty.
    fn evict(&self, now: u64) -> Result<bool, Corrupt> {
        let table = self.table;
        let len = table.len()?;
        let Some(victim) = table.queue().select_victim(|i| table.second_chance(i, now)) else {
            return Ok(false);
        };
        if victim >= len {
            return Err(Corrupt);
        }
        table.remove(victim, table.hash_of(victim)?)?;
        Ok(true)
    }
}

/// Entries evicted between two compactions while looking for heap space.
const EVICT_FOR_SPACE: usize = 8;

/// The heap behind a [`HeapRegion`]: all there from the start, but handed out as the file's
/// would be (a first chunk, then growth), up to an optional cap that plays a full disk.
pub struct HeapBacking {
    limit: AtomicU64,
    cap: AtomicU64,
}

impl Backing for HeapBacking {
    fn limit(&self) -> &AtomicU64 {
        &self.limit
    }

    fn grow(&self, heap_words: usize) -> bool {
        if heap_words as u64 > self.cap.load(Ordering::Relaxed) {
            return false;
        }
        self.limit.fetch_max(heap_words as u64, Ordering::Release);
        true
    }

    fn refresh(&self, published: usize) {
        let published = (published as u64).min(self.cap.load(Ordering::Relaxed));
        self.limit.fetch_max(published, Ordering::Release);
    }
}

/// A lock region and a data region on the heap: the shared cache without files, for tests,
/// models and fuzzing (one process, any number of threads).
pub struct HeapRegion {
    layout: Layout,
    lock: Box<[AtomicU64]>,
    data: Box<[AtomicU64]>,
    backing: HeapBacking,
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
        layout.init_data(&data, 1, 1, layout.initial_heap());
        let backing = HeapBacking {
            limit: AtomicU64::new(layout.initial_heap() as u64),
            cap: AtomicU64::new(layout.heap_max() as u64),
        };
        Ok(Self {
            layout,
            lock,
            data,
            backing,
        })
    }

    /// The cache over these regions.
    pub fn engine(&self) -> Engine<'_> {
        Engine::new(&self.layout, &self.lock, &self.data, 1, &self.backing)
            .expect("regions sized by the layout")
    }

    /// The index in [`HeapRegion::data_words`] of data word `n` of slot `i`'s entry (in its
    /// head or its block).
    #[cfg(any(test, fuzzing, loom, shuttle))]
    pub fn data_word_index(&self, i: u32, n: usize) -> usize {
        use super::layout::{slot, split_block};
        let layout = &self.layout;
        let block = self.engine().table.block_of(i);
        match n.checked_sub(slot::INLINE_DATA) {
            None => layout.slot_word(i, slot::DATA + n),
            Some(0) if block == super::layout::NO_BLOCK => layout.slot_word(i, slot::BLOCK),
            Some(beyond) => {
                let (offset, _) = split_block(block).expect("an entry with a block");
                layout.heap_start() + offset + beyond
            }
        }
    }

    /// Lets the heap grow to at most `words` words from now on, as a full disk would.
    pub fn cap_heap(&self, words: usize) {
        self.backing.cap.store(words as u64, Ordering::Relaxed);
    }

    /// The region's heap backing.
    pub fn backing(&self) -> &HeapBacking {
        &self.backing
    }

    /// Another process's view of the heap: it starts with the first chunk and takes in
    /// growth as a process mapping the file would.
    pub fn process_backing(&self) -> HeapBacking {
        HeapBacking {
            limit: AtomicU64::new(self.layout.initial_heap() as u64),
            cap: AtomicU64::new(self.layout.heap_max() as u64),
        }
    }

    /// Heap words handed out so far.
    pub fn heap_limit(&self) -> usize {
        self.backing.limit.load(Ordering::Relaxed) as usize
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
    /// under its own hash tag, nothing else in the table, no key held by two slots, blocks
    /// inside the heap's top and never shared, the byte count exact.
    #[cfg(any(test, fuzzing, loom, shuttle))]
    pub fn check_invariants(&self) {
        use super::layout::{class_words, meta, slot, split_block, split_entry};
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
            at = load(layout.meta_word(at, meta::LINKS)) as u32;
        }
        order.sort_unstable();
        assert_eq!(
            order,
            (0..len).collect::<Vec<_>>(),
            "every occupied slot queued once"
        );
        let engine = self.engine();
        let mut in_table: Vec<u32> = Vec::new();
        for pos in 0..layout.table_size() {
            if let (Some(i), tag) = split_entry(load(layout.table_word(pos))) {
                assert!(i < len, "table names slot {i} beyond len {len}");
                let hash = engine.table.hash_of(i).expect("a valid key");
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
        let top = load(header::TOP) as usize;
        let mut blocks: Vec<(usize, usize)> = (0..len)
            .filter_map(|i| split_block(engine.table.block_of(i)))
            .map(|(offset, class)| (offset, offset + class_words(class)))
            .collect();
        blocks.sort_unstable();
        for pair in blocks.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "blocks {pair:?} overlap");
        }
        if let Some(&(_, end)) = blocks.last() {
            assert!(end <= top, "a block past the heap's top");
        }
        let bytes: u64 = (0..len).map(|i| engine.table.entry_bytes(i)).sum();
        assert_eq!(bytes, load(header::BYTES), "byte count");
        let mut seen = std::collections::HashSet::new();
        for i in 0..len {
            let key_len = load(layout.slot_word(i, slot::LENS)) as u32 as usize;
            let key: Vec<u64> = (0..key_len.div_ceil(8))
                .map(|n| engine.table.data_word(i, n).expect("key words"))
                .chain([key_len as u64])
                .collect();
            assert!(seen.insert(key), "a key held by two slots");
        }
    }
}
