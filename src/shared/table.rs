//! The data file's contents as operations on words: the hash table, the slots, the SIEVE
//! queue threaded through them, and the heap of blocks holding what does not fit a slot's
//! head (see [`super::layout`] for the encodings).
//!
//! Readers ([`Table::read`]) take no lock: they probe the table, then copy the slot they
//! found between two reads of its version ([`Version`]), so a write elsewhere (or a writer
//! stopped in the middle of one) never disturbs them. They use only relaxed loads, check
//! every index, length and block against the process's own [`Layout`] and the heap this
//! process has verified the file holds, and loop at most `table_size` times. Everything else
//! runs under the write lock and reports data it cannot make sense of as [`Corrupt`], after
//! which the caller rebuilds the region from the slots that are whole ([`Table::repair`]).
//! Damaged words can thus cost entries, never memory safety, a panic, or a wrong value (keys
//! are compared byte for byte and values checksummed).
//!
//! A block is freed or reused only inside a write to the slot that held it (its version
//! odd), so a reader that copied a block someone reused sees that slot's version move.

use super::layout::{
    block_ref, class_for, class_words, header, meta, slot, split_block, split_entry, table_entry,
    Layout, Params, CLASSES, NO_BLOCK,
};
use super::seqlock::{Version, READ_ATTEMPTS};
use super::ValueBuf;
use crate::codec::{key_hash_of_words, words};
use crate::sieve::{Ends, Link, SieveQueue, NIL};
use crate::sync::{AtomicU64, Ordering};

/// The region holds something no correct writer leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Corrupt;

/// Where the heap's words come from: the file behind a mapping grows on demand.
pub trait Backing {
    /// Heap words this process has verified the file holds: nothing at or past this is
    /// touched.
    fn limit(&self) -> &AtomicU64;
    /// Makes the file hold `heap_words` heap words (allocating them, so a full filesystem
    /// fails here and never as a fault later), and raises [`Backing::limit`]; false if
    /// there is no space.
    fn grow(&self, heap_words: usize) -> bool;
    /// Another process published `published` heap words: check what the file holds and
    /// raise [`Backing::limit`] to what both agree on.
    fn refresh(&self, published: usize);
}

/// A slot's checksum, over its words: lengths, expiry, key words, value words. Each
/// word is multiplied by a constant off the dependency chain and folded in with a rotation
/// (so swapped or shifted words change the sum); a final multiply-fold spreads the result.
/// Against damage, not adversaries: the files are private to their user.
#[derive(Clone, Copy)]
struct Checksum(u64);

impl Checksum {
    const SEED: u64 = 0xC0AC_29B7_C97C_50DD;
    const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;
    const FINISH: u64 = 0xD131_0BA6_98DF_B5AC;

    #[inline(always)]
    fn new(lens: u64, expires: u64) -> Self {
        let mut sum = Checksum(Self::SEED);
        for word in [lens, expires] {
            sum.add(word);
        }
        sum
    }

    #[inline(always)]
    fn add(&mut self, word: u64) {
        self.0 = self.0.rotate_left(29) ^ word.wrapping_mul(Self::SPREAD);
    }

    #[inline(always)]
    fn finish(self) -> u64 {
        let product = u128::from(self.0) * u128::from(Self::FINISH);
        (product as u64) ^ (product >> 64) as u64
    }
}

/// Data words of an entry of `key_len` and `value_len` bytes.
fn data_words(key_len: usize, value_len: usize) -> usize {
    key_len.div_ceil(8) + value_len.div_ceil(8)
}

/// Data words of an entry whose `LENS` word is `lens`.
fn data_words_of(lens: u64) -> usize {
    data_words(lens as u32 as usize, (lens >> 32) as usize)
}

/// Data words of an entry that go to a heap block (0: it fits its head whole).
fn spill_words(data_words: usize) -> usize {
    if data_words <= slot::WHOLE_INLINE {
        0
    } else {
        data_words - slot::INLINE_DATA
    }
}

/// One slot's words: its head and its block (empty when it has none, or when the block
/// word does not name one inside the verified heap). The block is found only when words
/// past the head are needed (`None` until then): a hit on an entry this process already
/// decoded, with a short key, reads the head alone.
#[derive(Clone, Copy)]
struct SlotWords<'a> {
    head: &'a [AtomicU64],
    block: Option<&'a [AtomicU64]>,
    table: Table<'a>,
}

impl<'a> SlotWords<'a> {
    #[inline(always)]
    fn version(&self) -> Version<'a> {
        Version::new(&self.head[slot::VERSION])
    }

    #[inline(always)]
    fn field(&self, field: usize) -> u64 {
        self.head[field].load(Ordering::Relaxed)
    }

    /// These words with the block found (for reading many words past the head).
    #[inline(always)]
    fn resolved(self) -> Self {
        Self {
            block: Some(self.block_words()),
            ..self
        }
    }

    /// Whether the entry fits its head whole (its `BLOCK` word is then a data word).
    #[inline(always)]
    fn whole_inline(&self) -> bool {
        data_words_of(self.field(slot::LENS)) <= slot::WHOLE_INLINE
    }

    /// The entry's `BLOCK` word as a block reference ([`NO_BLOCK`] for an entry that fits
    /// its head).
    #[inline(always)]
    fn block_ref(&self) -> u64 {
        if self.whole_inline() {
            NO_BLOCK
        } else {
            self.field(slot::BLOCK)
        }
    }

    /// The block's words, found now if not yet.
    #[inline(always)]
    fn block_words(&self) -> &'a [AtomicU64] {
        self.block.unwrap_or_else(|| {
            split_block(self.block_ref())
                .and_then(|(offset, class)| self.table.block(offset, class))
                .unwrap_or(&[])
        })
    }

    /// Data word `n`, or `None` past the slot's end.
    #[inline(always)]
    fn data(&self, n: usize) -> Option<u64> {
        let word = match n.checked_sub(slot::INLINE_DATA) {
            None => self.head.get(slot::DATA + n),
            Some(0) if self.whole_inline() => self.head.get(slot::BLOCK),
            Some(beyond) => self.block_words().get(beyond),
        };
        word.map(|w| w.load(Ordering::Relaxed))
    }
}

/// Whether `slot` holds `key`. A torn or damaged length can make the
/// answer wrong (the checksum then rejects the value) but never reads out of bounds.
/// A key of up to 3 words (the hit path's usual case) is compared in the head directly.
#[inline(always)]
fn holds_key(slot: SlotWords<'_>, key: &[u8]) -> bool {
    if slot.field(slot::LENS) as u32 as usize != key.len() {
        return false;
    }
    let short = key.len() <= slot::INLINE_DATA * 8;
    let slot = if short { slot } else { slot.resolved() };
    let same = |n: usize, word: u64| {
        if short {
            slot.head[slot::DATA + n].load(Ordering::Relaxed) == word
        } else {
            slot.data(n) == Some(word)
        }
    };
    let whole = key.chunks_exact(8);
    let tail = whole.remainder();
    let mut n = 0;
    for chunk in whole {
        if !same(
            n,
            u64::from_le_bytes(chunk.try_into().expect("chunks of eight")),
        ) {
            return false;
        }
        n += 1;
    }
    if !tail.is_empty() {
        let word = tail
            .iter()
            .enumerate()
            .fold(0u64, |word, (i, &b)| word | u64::from(b) << (8 * i));
        return same(n, word);
    }
    true
}

/// Copies the value of `slot` into `out`; true when the entry is live at `now` and its
/// checksum matches. The checksum is computed while copying, over the slot's own key words
/// (a lookup has already compared them with its key). Lengths are checked against `params`
/// first, and every data word is read through [`SlotWords::data`], which stays inside the
/// slot's head and block.
#[inline(always)]
fn read_live(slot: SlotWords<'_>, params: Params, now: u64, out: &mut ValueBuf) -> bool {
    let expires = slot.field(slot::EXPIRES);
    expires > now && read_whole(slot, params, expires, out)
}

/// The size class of the block an entry of `key_len` and `value_len` bytes has, `None` when
/// it fits its head.
fn class_of_entry(key_len: usize, value_len: usize) -> Option<usize> {
    let spill = spill_words(data_words(key_len, value_len));
    (spill > 0).then(|| class_for(spill)).flatten()
}

/// [`read_live`] whatever the expiry (`expires`, already loaded).
#[inline(always)]
fn read_whole(slot: SlotWords<'_>, params: Params, expires: u64, out: &mut ValueBuf) -> bool {
    let lens = slot.field(slot::LENS);
    let (key_len, value_len) = (lens as u32 as usize, (lens >> 32) as usize);
    if value_len > params.max_value_size as usize || key_len > params.max_key_size as usize {
        return false;
    }
    // The block must be the one entries of this size get (damage can leave any word here).
    let block = split_block(slot.block_ref());
    if block.map(|(_, class)| class) != class_of_entry(key_len, value_len) {
        return false;
    }
    let slot = slot.resolved();
    let mut sum = Checksum::new(lens, expires);
    let key_words = key_len.div_ceil(8);
    for n in 0..key_words {
        sum.add(slot.data(n).unwrap_or_default());
    }
    out.fill(value_len, |n| {
        let word = slot.data(key_words + n).unwrap_or_default();
        sum.add(word);
        word
    });
    sum.finish() == slot.field(slot::CHECKSUM)
}

/// A hit: which slot, at which version (the pair names the entry's content for as long as
/// the mapping lives), and whether the value was copied out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    /// The slot holding the entry.
    pub slot: u32,
    /// The slot's version when read: any later write to the slot changes it.
    pub version: u64,
    /// False when the caller said it already holds this entry and nothing was copied.
    pub copied: bool,
}

/// Why a block could not be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoBlock {
    /// The heap is at its limit (or the filesystem is full): free some and try again.
    Full,
    /// The heap's bookkeeping is damaged.
    Corrupt,
}

/// The data words of one file seen through this process's layout.
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    words: &'a [AtomicU64],
    layout: &'a Layout,
    backing: &'a dyn Backing,
}

impl<'a> Table<'a> {
    /// `None` unless `words` is exactly as long as the layout's largest file.
    pub(crate) fn new(
        words: &'a [AtomicU64],
        layout: &'a Layout,
        backing: &'a dyn Backing,
    ) -> Option<Self> {
        (words.len() == layout.total_words()).then_some(Self {
            words,
            layout,
            backing,
        })
    }

    // Every index below comes from the layout with a slot number < capacity, a table
    // position < table_size or a heap offset below the verified limit, so it is in bounds
    // by the length check in `new` and backed by the file.
    fn load(&self, i: usize) -> u64 {
        self.words[i].load(Ordering::Relaxed)
    }

    fn store(&self, i: usize, value: u64) {
        self.words[i].store(value, Ordering::Relaxed);
    }

    fn slot_load(&self, i: u32, field: usize) -> u64 {
        self.load(self.layout.slot_word(i, field))
    }

    fn slot_store(&self, i: u32, field: usize, value: u64) {
        self.store(self.layout.slot_word(i, field), value);
    }

    fn meta_load(&self, i: u32, field: usize) -> u64 {
        self.load(self.layout.meta_word(i, field))
    }

    fn meta_store(&self, i: u32, field: usize, value: u64) {
        self.store(self.layout.meta_word(i, field), value);
    }

    /// A header word, for counters and the checks made before trusting a mapping.
    pub(crate) fn header(&self, field: usize) -> &'a AtomicU64 {
        &self.words[field]
    }

    fn mask(&self) -> usize {
        self.layout.table_size() - 1
    }

    /// Heap words this process may touch.
    #[inline(always)]
    fn limit(&self) -> usize {
        (self.backing.limit().load(Ordering::Acquire) as usize).min(self.layout.heap_max())
    }

    /// The words of block `offset` of class `class`, if it lies inside the verified heap.
    #[inline(always)]
    fn block(&self, offset: usize, class: usize) -> Option<&'a [AtomicU64]> {
        let end = offset.checked_add(class_words(class))?;
        (end <= self.limit())
            .then(|| &self.words[self.layout.heap_start() + offset..][..end - offset])
    }

    /// The slot holding `key`, whose hash is `hash`, if any. `key` must fit `max_key_size`.
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        self.probe(hash, key).map(|(i, _)| i)
    }

    /// The hit path: the slot holding `key` (hash `hash`) if it is live at `now` and its
    /// checksum matches, with its value copied into `out`, and the slot's version. The copy
    /// counts only if the version shows no write overlapped it; a slot being written is
    /// retried a few times, then reads as a miss.
    ///
    /// When `known(slot, version)` says the caller already holds this very entry (decoded
    /// earlier), the value is not copied and `copied` is false: the key is still compared
    /// and the expiry checked, both inside the validated read.
    #[inline(always)]
    pub(crate) fn read(
        &self,
        hash: u64,
        key: &[u8],
        now: u64,
        out: &mut ValueBuf,
        known: impl Fn(u32, u64) -> bool,
    ) -> Option<Read> {
        for attempt in 0..READ_ATTEMPTS {
            let (i, slot) = self.probe(hash, key)?;
            let version = slot.version();
            if let Some(before) = version.begin_read() {
                // The key is compared again inside the validated copy: `probe` may have
                // matched words of a write in progress.
                let read = if !holds_key(slot, key) {
                    None
                } else if known(i, before) {
                    (slot.field(slot::EXPIRES) > now).then_some(false)
                } else {
                    read_live(slot, self.layout.params(), now, out).then_some(true)
                };
                if version.validate(before) {
                    return read.map(|copied| Read {
                        slot: i,
                        version: before,
                        copied,
                    });
                }
            }
            if attempt >= READ_ATTEMPTS / 2 {
                crate::sync::yield_now();
            } else {
                crate::sync::spin_hint();
            }
        }
        None
    }

    /// The slot holding `key` and that slot's words.
    #[inline(always)]
    fn probe(&self, hash: u64, key: &[u8]) -> Option<(u32, SlotWords<'a>)> {
        let table_size = self.layout.table_size();
        let table = &self.words[self.layout.table_word(0)..][..table_size];
        let mask = table_size - 1;
        let mut pos = hash as usize & mask;
        for _ in 0..table_size {
            let (found, tag) = split_entry(table[pos].load(Ordering::Relaxed));
            let i = found?;
            if tag == hash as u32 && i < self.layout.capacity() {
                let slot = self.slot(i);
                if holds_key(slot, key) {
                    return Some((i, slot));
                }
            }
            pos = (pos + 1) & mask;
        }
        None
    }

    /// The words of slot `i` (`i < capacity`).
    #[inline(always)]
    fn slot(&self, i: u32) -> SlotWords<'a> {
        SlotWords {
            head: &self.words[self.layout.slot_word(i, 0)..][..slot::HEAD_WORDS],
            block: None,
            table: *self,
        }
    }

    /// Data word `n` of slot `i`'s entry (tests and checks).
    #[cfg(any(test, fuzzing, loom, shuttle))]
    pub(crate) fn data_word(&self, i: u32, n: usize) -> Option<u64> {
        self.slot(i).data(n)
    }

    /// Copies the value of slot `i` into `out`; true when the entry is live at `now` and
    /// its checksum matches.
    pub(crate) fn read_live(&self, i: u32, now: u64, out: &mut ValueBuf) -> bool {
        read_live(self.slot(i), self.layout.params(), now, out)
    }

    /// The block an entry of `key_len` and `value_len` bytes needs beyond its head:
    /// [`NO_BLOCK`] when it fits the head, else one taken from its class's free list or
    /// from the top of the heap, growing the file if need be.
    pub(crate) fn alloc(&self, key_len: usize, value_len: usize) -> Result<u64, NoBlock> {
        let spill = spill_words(data_words(key_len, value_len));
        if spill == 0 {
            return Ok(NO_BLOCK);
        }
        let class = class_for(spill).ok_or(NoBlock::Full)?;
        let size = class_words(class);
        let top = self.load(header::TOP) as usize;
        let free = self.header(header::FREE + class);
        if let Some(offset) = (free.load(Ordering::Relaxed) as usize).checked_sub(1) {
            // A damaged list may name anything: only blocks below the top are ours.
            if offset
                .checked_add(size)
                .is_none_or(|end| end > top.min(self.limit()))
            {
                return Err(NoBlock::Corrupt);
            }
            let next = self.load(self.layout.heap_start() + offset);
            free.store(next, Ordering::Relaxed);
            return Ok(block_ref(offset, class));
        }
        let end = top.checked_add(size).ok_or(NoBlock::Full)?;
        if end > self.layout.heap_max() {
            return Err(NoBlock::Full);
        }
        if end > self.limit() && !self.grow(top, size) {
            return Err(NoBlock::Full);
        }
        self.store(header::TOP, end as u64);
        Ok(block_ref(top, class))
    }

    /// Takes in growth another process published since this one last looked; true if it
    /// found some.
    pub(crate) fn refresh_if_grown(&self) -> bool {
        let published = self.header(header::BACKED).load(Ordering::Acquire) as usize;
        let grown = published > self.limit();
        if grown {
            self.backing.refresh(published);
        }
        grown
    }

    /// Makes the file hold at least `size` heap words past `top`; false without space.
    #[cold]
    fn grow(&self, top: usize, size: usize) -> bool {
        let published = self.load(header::BACKED) as usize;
        if published > self.limit() {
            // Another process grew the file: check, and maybe that is enough.
            self.backing.refresh(published);
            if top + size <= self.limit() {
                return true;
            }
        }
        let target = self.layout.grown_heap(self.limit(), top, size);
        if target < top + size || !self.backing.grow(target) {
            return false;
        }
        // Published after the file holds the words (`Backing::grow` allocated them).
        self.header(header::BACKED)
            .fetch_max(target as u64, Ordering::Release);
        true
    }

    /// Puts block `word` of a slot being rewritten or cleared on its class's free list.
    fn free(&self, word: u64) {
        let Some((offset, class)) = split_block(word) else {
            return;
        };
        if self.block(offset, class).is_none() {
            return;
        }
        let free = self.header(header::FREE + class);
        self.store(
            self.layout.heap_start() + offset,
            free.load(Ordering::Relaxed),
        );
        free.store(offset as u64 + 1, Ordering::Relaxed);
    }

    /// Writes a whole entry into slot `i` (not its links or visited bit), between the
    /// slot's version turning odd and even again, using `block` (from [`Table::alloc`]
    /// for these sizes) for what does not fit the head. The slot's old block is freed.
    pub(crate) fn write_entry(&self, i: u32, key: &[u8], value: &[u8], expires: u64, block: u64) {
        let version = self.slot(i).version();
        version.begin_write();
        let old = self.block_of(i);
        if old != block {
            self.free(old);
        }
        let lens = (value.len() as u64) << 32 | key.len() as u64;
        self.slot_store(i, slot::LENS, lens);
        self.slot_store(i, slot::EXPIRES, expires);
        self.slot_store(i, slot::BLOCK, block);
        // A whole-inline entry's words run on into the `BLOCK` word (`DATA + 3`).
        let heap = split_block(block).map(|(offset, _)| self.layout.heap_start() + offset);
        let mut sum = Checksum::new(lens, expires);
        for (n, word) in words(key).chain(words(value)).enumerate() {
            sum.add(word);
            match (n.checked_sub(slot::INLINE_DATA), heap) {
                (None, _) | (Some(0), None) => self.slot_store(i, slot::DATA + n, word),
                (Some(beyond), Some(at)) => self.store(at + beyond, word),
                (Some(_), None) => {}
            }
        }
        self.slot_store(i, slot::CHECKSUM, sum.finish());
        version.end_write();
    }

    /// Slot `i`'s block reference ([`NO_BLOCK`] when its entry fits the head).
    pub(crate) fn block_of(&self, i: u32) -> u64 {
        self.slot(i).block_ref()
    }

    /// Empties slot `i`: no entry, no block (freed).
    fn clear_slot(&self, i: u32) {
        let version = self.slot(i).version();
        version.begin_write();
        self.free(self.block_of(i));
        self.empty_head(i);
        version.end_write();
    }

    /// Zeroes the entry fields of slot `i`'s head (inside a write to it).
    fn empty_head(&self, i: u32) {
        self.slot_store(i, slot::BLOCK, NO_BLOCK);
        self.slot_store(i, slot::LENS, 0);
        self.slot_store(i, slot::CHECKSUM, 0);
    }

    /// Key and value bytes of the entry in slot `i`.
    pub(crate) fn entry_bytes(&self, i: u32) -> u64 {
        let lens = self.slot_load(i, slot::LENS);
        (lens & 0xFFFF_FFFF) + (lens >> 32)
    }

    /// Slot `i`'s version (for a lock holder: nobody else changes it meanwhile).
    pub(crate) fn version_of(&self, i: u32) -> u64 {
        self.slot_load(i, slot::VERSION)
    }

    /// Whether slot `i` holds a whole entry: no write left open in it, lengths within the
    /// limits, checksum matching (expired entries are whole too).
    fn is_whole(&self, i: u32) -> bool {
        let slot = self.slot(i);
        slot.version().is_even()
            && read_whole(
                slot,
                self.layout.params(),
                slot.field(slot::EXPIRES),
                &mut ValueBuf::new(),
            )
    }

    /// Copies the entry of slot `from` (its head, and the block it names) into empty slot
    /// `to`, and empties `from`; the block moves with the entry.
    fn move_slot(&self, from: u32, to: u32) {
        let version = self.slot(to).version();
        version.begin_write();
        for field in slot::LENS..slot::HEAD_WORDS {
            self.slot_store(to, field, self.slot_load(from, field));
        }
        version.end_write();
        self.meta_store(to, meta::VISITED, self.meta_load(from, meta::VISITED));
        // `from` no longer owns the block: empty it without freeing.
        self.clear_slot_words(from);
    }

    /// Moves the words of the block named by slot `i` to heap offset `to` (at or below
    /// where it is), inside a write to the slot.
    fn move_block(&self, i: u32, to: usize) {
        let Some((from, class)) = split_block(self.block_of(i)) else {
            return;
        };
        if from == to {
            return;
        }
        let version = self.slot(i).version();
        version.begin_write();
        let start = self.layout.heap_start();
        // Ascending: safe when moving down over an overlap.
        for n in 0..class_words(class) {
            self.store(start + to + n, self.load(start + from + n));
        }
        self.slot_store(i, slot::BLOCK, block_ref(to, class));
        version.end_write();
    }

    /// Takes the entry in slot `i` (`i < len`, under `hash`) out of the cache: out of the
    /// table and queue, its block freed; the last occupied slot moves into its place.
    pub(crate) fn remove(&self, i: u32, hash: u64) -> Result<(), Corrupt> {
        let len = self.len()?;
        if i >= len {
            return Err(Corrupt);
        }
        let last = len - 1;
        self.table_remove(hash, i)?;
        self.queue().unlink(i);
        self.sub_bytes(self.entry_bytes(i));
        self.clear_slot(i);
        if i != last {
            let last_hash = self.hash_of(last)?;
            self.move_slot(last, i);
            self.queue().relabel(last, i);
            self.table_rename(last_hash, last, i)?;
        }
        self.set_len(last);
        Ok(())
    }

    /// Packs every block to the bottom of the heap, in order of place, and empties the
    /// free lists: after this the heap's free space is all above the top. `slots` are the
    /// occupied slots.
    pub(crate) fn compact(&self, slots: u32) {
        let mut blocks: Vec<(usize, u32)> = (0..slots)
            .filter_map(|i| {
                let (offset, class) = split_block(self.block_of(i))?;
                self.block(offset, class).map(|_| (offset, i))
            })
            .collect();
        blocks.sort_unstable();
        let mut top = 0;
        for (_, i) in blocks {
            let Some((_, class)) = split_block(self.block_of(i)) else {
                continue;
            };
            self.move_block(i, top);
            top += class_words(class);
        }
        self.store(header::TOP, top as u64);
        for class in 0..CLASSES {
            self.store(header::FREE + class, 0);
        }
    }

    /// Rebuilds the table, the SIEVE queue, the length, the byte count and the heap from
    /// the slots that hold whole entries, after a writer died (or panicked) inside a section
    /// or left words this process cannot make sense of: the entries it was changing are
    /// lost, the others kept. Whole slots are packed to the front in order (a key held
    /// twice, or a block shared with an earlier slot, is kept once); the queue is rebuilt
    /// in slot order. Counters are kept.
    pub(crate) fn repair(&self) {
        let occupied = self
            .load(header::LEN)
            .min(u64::from(self.layout.capacity())) as u32;
        for pos in 0..self.layout.table_size() {
            self.store(self.layout.table_word(pos), 0);
        }
        // Blocks of the slots kept so far, to drop a slot whose block overlaps one of them.
        let mut taken: Vec<(usize, usize)> = Vec::new();
        let mut kept = 0;
        let mut bytes = 0;
        for i in 0..occupied {
            let block = split_block(self.block_of(i))
                .map(|(offset, class)| (offset, offset + class_words(class)));
            let overlaps =
                block.is_some_and(|(start, end)| taken.iter().any(|&(s, e)| start < e && s < end));
            let whole = !overlaps && self.is_whole(i);
            let hash = self.hash_of(i);
            let keep = match hash {
                Ok(hash) if whole => !self.holds_key_of(hash, i),
                _ => false,
            };
            if !keep {
                // Its block, if any, is not trusted: leave it to the compaction below.
                self.clear_slot_words(i);
                continue;
            }
            if let Some(range) = block {
                taken.push(range);
            }
            if i != kept {
                self.move_slot(i, kept);
            }
            if self.table_insert(hash.unwrap_or_default(), kept).is_err() {
                break;
            }
            bytes += self.entry_bytes(kept);
            kept += 1;
        }
        self.set_len(kept);
        self.store(header::BYTES, bytes);
        let mut queue = self.queue();
        queue.set_ends(Ends::EMPTY);
        for i in 0..kept {
            queue.push_newest(i);
        }
        self.compact(kept);
    }

    /// Empties slot `i` without freeing its block (moved, damaged or shared).
    fn clear_slot_words(&self, i: u32) {
        let version = self.slot(i).version();
        version.begin_write();
        self.empty_head(i);
        version.end_write();
    }

    /// Whether the table already names a slot whose key equals slot `i`'s (hash `hash`).
    fn holds_key_of(&self, hash: u64, i: u32) -> bool {
        let key_len = self.slot_load(i, slot::LENS) as u32 as usize;
        let key_words = key_len.div_ceil(8);
        let mine = self.slot(i).resolved();
        let mut pos = hash as usize & self.mask();
        for _ in 0..self.layout.table_size() {
            let (found, tag) = split_entry(self.load(self.layout.table_word(pos)));
            let Some(j) = found else { return false };
            if tag == hash as u32 && j < self.layout.capacity() {
                let other = self.slot(j).resolved();
                if other.field(slot::LENS) as u32 as usize == key_len
                    && (0..key_words).all(|n| other.data(n) == mine.data(n))
                {
                    return true;
                }
            }
            pos = (pos + 1) & self.mask();
        }
        false
    }

    /// The hash of the key stored in slot `i` (`i < capacity`), recomputed from its bytes;
    /// `Corrupt` if its length is impossible or its words are not there.
    pub(crate) fn hash_of(&self, i: u32) -> Result<u64, Corrupt> {
        let key_len = self.slot_load(i, slot::LENS) as u32 as usize;
        if key_len > self.layout.params().max_key_size as usize {
            return Err(Corrupt);
        }
        let key_words = key_len.div_ceil(8);
        // A key of up to 3 words is in the head: no need to find the block.
        let slot = if key_words <= slot::INLINE_DATA {
            self.slot(i)
        } else {
            self.slot(i).resolved()
        };
        // Every key word must be there (a block may be missing or short after damage).
        if key_words > 0 && slot.data(key_words - 1).is_none() {
            return Err(Corrupt);
        }
        Ok(key_hash_of_words(
            key_len,
            (0..key_words).map(|n| slot.data(n).unwrap_or_default()),
        ))
    }

    /// Marks slot `i` visited; writes only when the bit is clear. Racing the hand is
    /// harmless: the bit is a hint, lost or kept for one extra turn.
    #[inline(always)] // on the hit path
    pub(crate) fn mark_visited(&self, i: u32) {
        let word = &self.words[self.layout.meta_word(i, meta::VISITED)];
        if word.load(Ordering::Relaxed) == 0 {
            word.store(1, Ordering::Relaxed);
        }
    }

    /// Clears slot `i`'s visited bit for a new entry.
    pub(crate) fn clear_visited(&self, i: u32) {
        self.meta_store(i, meta::VISITED, 0);
    }

    /// SIEVE's second chance for slot `i`: it was visited (the bit is now clear) and is live.
    pub(crate) fn second_chance(&self, i: u32, now: u64) -> bool {
        i < self.layout.capacity()
            && self.words[self.layout.meta_word(i, meta::VISITED)].swap(0, Ordering::Relaxed) != 0
            && self.slot_load(i, slot::EXPIRES) > now
    }

    /// Occupied slots, checked against capacity.
    pub(crate) fn len(&self) -> Result<u32, Corrupt> {
        let len = self.load(header::LEN);
        if len > u64::from(self.layout.capacity()) {
            return Err(Corrupt);
        }
        Ok(len as u32)
    }

    pub(crate) fn set_len(&self, len: u32) {
        self.store(header::LEN, u64::from(len));
    }

    /// Key and value bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.load(header::BYTES)
    }

    pub(crate) fn add_bytes(&self, bytes: u64) {
        self.store(header::BYTES, self.bytes().saturating_add(bytes));
    }

    pub(crate) fn sub_bytes(&self, bytes: u64) {
        self.store(header::BYTES, self.bytes().saturating_sub(bytes));
    }

    /// Adds `slot` under `hash` at the first empty position of its probe sequence.
    pub(crate) fn table_insert(&self, hash: u64, slot: u32) -> Result<(), Corrupt> {
        let mut pos = hash as usize & self.mask();
        for _ in 0..self.layout.table_size() {
            let word = self.layout.table_word(pos);
            // Empty means "names no slot", as in `find` (damage may leave tag bits behind).
            if split_entry(self.load(word)).0.is_none() {
                self.store(word, table_entry(hash, slot));
                return Ok(());
            }
            pos = (pos + 1) & self.mask();
        }
        Err(Corrupt)
    }

    /// The table position naming `slot` under `hash`.
    fn table_position(&self, hash: u64, slot: u32) -> Result<usize, Corrupt> {
        let mut pos = hash as usize & self.mask();
        for _ in 0..self.layout.table_size() {
            match split_entry(self.load(self.layout.table_word(pos))) {
                (None, _) => return Err(Corrupt),
                (Some(i), _) if i == slot => return Ok(pos),
                _ => {}
            }
            pos = (pos + 1) & self.mask();
        }
        Err(Corrupt)
    }

    /// Makes the table word naming `from` (under `hash`) name `to` instead.
    fn table_rename(&self, hash: u64, from: u32, to: u32) -> Result<(), Corrupt> {
        let pos = self.table_position(hash, from)?;
        self.store(self.layout.table_word(pos), table_entry(hash, to));
        Ok(())
    }

    /// Removes `slot` (stored under `hash`), shifting later entries of the run back so every
    /// entry stays reachable from its home position without tombstones.
    pub(crate) fn table_remove(&self, hash: u64, slot: u32) -> Result<(), Corrupt> {
        let mask = self.mask();
        let mut hole = self.table_position(hash, slot)?;
        let mut next = hole;
        for _ in 0..self.layout.table_size() {
            next = (next + 1) & mask;
            let entry = self.load(self.layout.table_word(next));
            let (found, tag) = split_entry(entry);
            if found.is_none() {
                break;
            }
            let home = tag as usize & mask;
            // The entry may fill the hole unless its home lies cyclically in (hole, next].
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.store(self.layout.table_word(hole), entry);
                hole = next;
            }
        }
        self.store(self.layout.table_word(hole), 0);
        Ok(())
    }

    /// Empties the cache: no entries, an empty queue, an empty heap. Counters are kept.
    pub(crate) fn reset(&self) {
        for pos in 0..self.layout.table_size() {
            self.store(self.layout.table_word(pos), 0);
        }
        let occupied = self
            .load(header::LEN)
            .min(u64::from(self.layout.capacity())) as u32;
        // Slots stop naming blocks before the blocks are handed out again.
        for i in 0..occupied {
            self.clear_slot_words(i);
        }
        self.set_len(0);
        self.store(header::BYTES, 0);
        self.store(header::TOP, 0);
        for class in 0..CLASSES {
            self.store(header::FREE + class, 0);
        }
        self.queue().set_ends(Ends::EMPTY);
    }

    /// The SIEVE queue over the slots' link words.
    pub(crate) fn queue(&self) -> RegionQueue<'a> {
        RegionQueue(*self)
    }
}

/// [`SieveQueue`] over the region: links in each slot's meta, ends in the header.
/// Out-of-range slot numbers (from damaged words) read as detached and are never written,
/// so the policy's walks stay in bounds; the store validates the victim it gets back.
pub(crate) struct RegionQueue<'a>(Table<'a>);

impl SieveQueue for RegionQueue<'_> {
    fn link(&self, i: u32) -> Link {
        if i >= self.0.layout.capacity() {
            return Link::DETACHED;
        }
        let word = self.0.meta_load(i, meta::LINKS);
        Link {
            newer: word as u32,
            older: (word >> 32) as u32,
        }
    }

    fn set_link(&mut self, i: u32, link: Link) {
        if i < self.0.layout.capacity() {
            self.0.meta_store(
                i,
                meta::LINKS,
                u64::from(link.older) << 32 | u64::from(link.newer),
            );
        }
    }

    fn ends(&self) -> Ends {
        let end = |field| u32::try_from(self.0.load(field)).unwrap_or(NIL);
        Ends {
            head: end(header::HEAD),
            tail: end(header::TAIL),
            hand: end(header::HAND),
        }
    }

    fn set_ends(&mut self, ends: Ends) {
        self.0.store(header::HEAD, u64::from(ends.head));
        self.0.store(header::TAIL, u64::from(ends.tail));
        self.0.store(header::HAND, u64::from(ends.hand));
    }
}
