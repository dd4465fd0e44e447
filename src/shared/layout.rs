//! The two file formats, as arrays of 64-bit words (native byte order: the files never leave
//! the machine).
//!
//! **Lock file** ([`LOCK_WORDS`] words): `MAGIC`, `VERSION`, `NONCE` (random, fixed for the
//! file's life), `RETIRED` (non-zero once the file was replaced), `GENERATION` (bumped each
//! time the data file is recreated), `SEQ` and `OWNER` (the write lock, see
//! [`super::seqlock`]), `LAST_USE`, the function's name, `CLEARS`, and the board of flights under way
//! across processes ([`super::flights`]: it outlives data file generations).
//!
//! **Data file**, in order:
//! - a header of [`HEADER_WORDS`] words: `MAGIC` and `GENERATION` (the lock file's
//!   generation this file belongs to; both are checked by every operation, so they share the
//!   first cache line), `VERSION`, every parameter (`CAPACITY`, `MAX_KEY`, `MAX_VALUE`,
//!   `TTL`, `MAX_BYTES`), the derived sizes (`TABLE_SIZE`, `HEAP_START`, `HEAP_MAX`),
//!   `HASH_PROBE` (the key hash of a fixed string: builds that hash keys differently must
//!   not share a file), `LOCK_NONCE` (which lock file the file belongs to), the live state
//!   (`LEN`, SIEVE `HEAD`, `TAIL`, `HAND`, heap `TOP` and `BACKED`, `BYTES` held),
//!   `OVERSIZE` on its own cache line, the heads of the heap's free lists (one per size
//!   class), then [`COUNTER_STRIPES`] lines of hit and miss counters: each process counts in
//!   the stripe its pid picks, so processes hitting one cache do not all increment one cache
//!   line (the totals are the sums);
//! - the hash table: `TABLE_SIZE` words (a power of two, at least twice the capacity), linear
//!   probing; a word is 0 when empty, else `(low 32 bits of the key hash) << 32 | (slot + 1)`
//!   (a damaged word whose low half is 0 counts as empty everywhere).
//!   Removal is backward-shift deletion, so there are no tombstones and probe chains never
//!   degrade under churn;
//! - `CAPACITY` slot heads of 8 words (one cache line) side by side: `VERSION` (even while
//!   the slot is whole, odd while a writer changes it: readers validate each slot on its own,
//!   never on the lock file's `SEQ`), `LENS` (`value_len << 32 | key_len`), `EXPIRES`
//!   (CLOCK_MONOTONIC ns, `u64::MAX` = never), `CHECKSUM` (of lengths, expiry, key and
//!   value), the entry's first 3 data words, and `BLOCK` (where the rest of the entry is in
//!   the heap), or, for an entry of at most 4 data words, its fourth word;
//! - `CAPACITY` slot metas of 2 words: `VISITED` (set by readers) and `LINKS`
//!   (`older << 32 | newer`, SIEVE neighbours, `u32::MAX` = none), which only writers read;
//! - the heap, from `HEAP_START` (page aligned): blocks holding each larger entry's data
//!   words beyond the first 3. A block's size is one of the size classes ([`class_words`]: 2, 3, 4,
//!   6, 8, 12... words, each at most 1.5 times the one before), so an entry occupies at most
//!   1.5 times its data plus a word. Blocks come from the class's free list, else from `TOP`;
//!   the file holds only `BACKED` heap words (grown in chunks, allocated before they are
//!   published, so no process touches a page the file does not have) out of at most
//!   `HEAP_MAX`, which `MAX_BYTES` bounds. A free block's first word links the next free
//!   block of its class (`offset + 1`; 0 ends the list).
//!
//! An entry's data words are its key padded to whole words, then its value padded to whole
//! words. An entry of up to 32 bytes (an int key and an int value) lives in its head alone;
//! a lookup of an entry whose key fits 3 words (an int or short str key) compares it in the
//! head's one cache line; a repeated hit of an entry this process already decoded
//! reads nothing else. A slot stores no hash: the table word's 32-bit tag filters probes,
//! keys are compared byte for byte, and an evicting writer rehashes the victim's key to find
//! its table word.
//!
//! Slots `0..LEN` are occupied; a new entry takes slot `LEN`, and removing an entry moves
//! the last one into its slot. Every process keeps its own [`Layout`], checked against the
//! header once at open: offsets are computed from it, never from header words, and every
//! length, slot index, block or link read from the region is checked against it before use.

use crate::codec::key_hash;
use crate::sync::{AtomicU64, Ordering};
use std::fmt;

/// First word of a data file: `b"WARPDATA"`.
pub const DATA_MAGIC: u64 = u64::from_le_bytes(*b"WARPDATA");
/// First word of a lock file: `b"WARPLOCK"`.
pub const LOCK_MAGIC: u64 = u64::from_le_bytes(*b"WARPLOCK");
/// Bumped whenever either file format changes; other versions are recreated.
pub const FORMAT_VERSION: u64 = 6;

/// Words in the lock file.
pub const LOCK_WORDS: usize = lock_word::BOARD + super::flights::BOARD_WORDS;
/// Words holding the function's name in the lock file (for people listing caches).
pub const NAME_WORDS: usize = 32;
/// Word indices in the lock file.
pub mod lock_word {
    /// [`super::LOCK_MAGIC`].
    pub const MAGIC: usize = 0;
    /// [`super::FORMAT_VERSION`].
    pub const VERSION: usize = 1;
    /// Random identity of this lock file; data files record it.
    pub const NONCE: usize = 2;
    /// Non-zero once this lock file has been replaced by another.
    pub const RETIRED: usize = 3;
    /// Generation of the current data file.
    pub const GENERATION: usize = 4;
    /// Seqlock sequence: odd while a writer is changing the data file.
    pub const SEQ: usize = 5;
    /// Seqlock owner: 0 when free, else the holder's id.
    pub const OWNER: usize = 6;
    /// Wall-clock seconds of the last open or insert (shown by the operator CLI).
    pub const LAST_USE: usize = 7;
    /// The function's `module.qualname`: its length in bytes, then UTF-8 in
    /// [`super::NAME_WORDS`] words (cut to fit). Informational only: nothing trusts it.
    pub const NAME: usize = 8;
    /// Clears so far (a store that began before a clear does not land after it).
    pub const CLEARS: usize = NAME + 1 + super::NAME_WORDS;
    /// The cross-process flight board (`super::super::flights`), from the first cache line
    /// after the name.
    pub const BOARD: usize = (CLEARS + 1).next_multiple_of(8);
}

/// Words in a 64-byte cache line.
const WORDS_PER_LINE: usize = 8;

/// Hit/miss counter stripes in the data file header, one cache line each.
pub const COUNTER_STRIPES: usize = 16;
/// Heap size classes (free lists in the header).
pub const CLASSES: usize = 64;
/// Words before the hash table in the data file: four lines of fields, the free lists, then
/// the stripes.
pub const HEADER_WORDS: usize = header::STRIPES + COUNTER_STRIPES * WORDS_PER_LINE;
/// Word indices in the data file header.
pub mod header {
    /// [`super::DATA_MAGIC`].
    pub const MAGIC: usize = 0;
    /// The lock file's `GENERATION` when this file was made (beside `MAGIC`: every
    /// operation checks both, and they share a cache line).
    pub const GENERATION: usize = 1;
    /// [`super::FORMAT_VERSION`].
    pub const VERSION: usize = 2;
    /// Slots (the most entries held).
    pub const CAPACITY: usize = 3;
    /// Largest key in bytes.
    pub const MAX_KEY: usize = 4;
    /// Largest value in bytes.
    pub const MAX_VALUE: usize = 5;
    /// Time to live in ns, `u64::MAX` for none.
    pub const TTL: usize = 6;
    /// Most key and value bytes held in all.
    pub const MAX_BYTES: usize = 7;
    /// Words in the hash table.
    pub const TABLE_SIZE: usize = 8;
    /// Where the heap starts (a word index).
    pub const HEAP_START: usize = 9;
    /// Most words the heap may grow to.
    pub const HEAP_MAX: usize = 10;
    /// `key_hash` of a fixed string.
    pub const HASH_PROBE: usize = 11;
    /// `NONCE` of the lock file this data file belongs to.
    pub const LOCK_NONCE: usize = 12;
    /// Occupied slots.
    pub const LEN: usize = 13;
    /// SIEVE newest slot.
    pub const HEAD: usize = 14;
    /// SIEVE oldest slot.
    pub const TAIL: usize = 15;
    /// SIEVE hand.
    pub const HAND: usize = 16;
    /// Heap words handed out from the start (free blocks included).
    pub const TOP: usize = 17;
    /// Heap words the file holds (grown before it is raised).
    pub const BACKED: usize = 18;
    /// Key and value bytes of the entries held.
    pub const BYTES: usize = 19;
    /// Inserts skipped because the key or value was too large, or space ran out.
    pub const OVERSIZE: usize = 24;
    /// Free list head of size class `c` is `FREE + c`.
    pub const FREE: usize = 32;
    /// The first counter stripe; stripe `s` is the line at `STRIPES + 8 * s`.
    pub const STRIPES: usize = FREE + super::CLASSES;
    /// Offset in a stripe of its count of lookups that found a live entry.
    pub const HITS: usize = 0;
    /// Offset in a stripe of its count of lookups that did not.
    pub const MISSES: usize = 1;

    /// Index of counter `which` ([`HITS`] or [`MISSES`]) of stripe `stripe`.
    pub const fn counter(stripe: usize, which: usize) -> usize {
        STRIPES + stripe % super::COUNTER_STRIPES * super::WORDS_PER_LINE + which
    }
}

/// Word offsets inside a slot's head (see the module docs).
pub mod slot {
    /// Even while the slot is whole, odd while a writer changes it (`seqlock::Version`).
    pub const VERSION: usize = 0;
    /// `value_len << 32 | key_len`.
    pub const LENS: usize = 1;
    /// Expiry, CLOCK_MONOTONIC ns (`u64::MAX`: never).
    pub const EXPIRES: usize = 2;
    /// Of lengths, expiry, key and value.
    pub const CHECKSUM: usize = 3;
    /// The first data word (key words, then value words) kept in the head.
    pub const DATA: usize = 4;
    /// The entry's heap block, `(offset + 1) << 8 | class` ([`super::NO_BLOCK`], 0, for
    /// none); an entry of at most [`WHOLE_INLINE`] data words has no block and keeps its
    /// last data word here instead.
    pub const BLOCK: usize = 7;
    /// Words in a slot's head: one cache line.
    pub const HEAD_WORDS: usize = 8;
    /// Data words kept in the head when the rest is in a heap block.
    pub const INLINE_DATA: usize = BLOCK - DATA;
    /// Data words an entry may have and fit its head whole (an int key and an int value).
    pub const WHOLE_INLINE: usize = HEAD_WORDS - DATA;
}

/// Word offsets inside a slot's meta.
pub mod meta {
    /// SIEVE's visited bit, set by readers.
    pub const VISITED: usize = 0;
    /// SIEVE links: written and read by writers only.
    pub const LINKS: usize = 1;
    /// Words in a slot's meta.
    pub const WORDS: usize = 2;
}

/// A slot's `BLOCK` word when the entry fits its head (a zeroed slot has no block).
pub const NO_BLOCK: u64 = 0;

/// Words of heap block size class `class` (2, 3, 4, 6, 8, 12, ...).
pub const fn class_words(class: usize) -> usize {
    let base = 1usize << (class / 2 + 1);
    if class % 2 == 0 {
        base
    } else {
        base + base / 2
    }
}

/// The smallest size class of at least `words` words (`None` past the largest).
pub fn class_for(words: usize) -> Option<usize> {
    (0..CLASSES).find(|&c| class_words(c) >= words)
}

/// A `BLOCK` word: `(offset + 1) << 8 | class`.
pub(crate) fn block_ref(offset: usize, class: usize) -> u64 {
    (offset as u64 + 1) << 8 | class as u64
}

/// The heap offset and size class a `BLOCK` word names (`None` for [`NO_BLOCK`] or a
/// class out of range).
pub(crate) fn split_block(word: u64) -> Option<(usize, usize)> {
    let class = (word & 0xFF) as usize;
    let offset = ((word >> 8) as usize).checked_sub(1)?;
    (class < CLASSES).then_some((offset, class))
}

/// The parameters a shared cache is created with; a file made with others is recreated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Most entries held.
    pub capacity: u32,
    /// Largest encoded key in bytes.
    pub max_key_size: u32,
    /// Largest encoded value in bytes.
    pub max_value_size: u32,
    /// Time to live in nanoseconds; `None` for entries that never expire.
    pub ttl_ns: Option<u64>,
    /// Most key and value bytes held in all; `None`: `capacity * (max_key_size +
    /// max_value_size)`.
    pub max_bytes: Option<u64>,
}

impl Params {
    /// The byte budget, defaults applied.
    pub fn byte_budget(&self) -> u64 {
        self.max_bytes.unwrap_or(
            u64::from(self.capacity)
                * (u64::from(self.max_key_size) + u64::from(self.max_value_size)),
        )
    }
}

/// The parameters describe a file too large to address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge;

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shared cache parameters describe a file too large to map")
    }
}

impl std::error::Error for TooLarge {}

/// Where everything is in a data file with given [`Params`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    params: Params,
    table_size: usize,
    /// Where the slot heads start, and the metas.
    heads: usize,
    metas: usize,
    heap_start: usize,
    heap_max: usize,
}

/// Whole words needed for `bytes` bytes.
fn words_for(bytes: u64) -> u64 {
    bytes.div_ceil(8)
}

/// Words in a page: the heap starts on one, and grows by whole pages. (Models and fuzzing
/// use tiny pages and chunks: their regions are built word by word.)
const PAGE_WORDS: usize = if cfg!(any(loom, shuttle, fuzzing)) {
    8
} else {
    512
};
/// The heap a new file holds, and the least it grows by: 64 KiB.
pub const CHUNK_WORDS: usize = if cfg!(any(loom, shuttle, fuzzing)) {
    16
} else {
    8 * 1024
};

impl Layout {
    /// The most slots a file may have: table positions then fit the 32-bit hash tags.
    pub const MAX_CAPACITY: u32 = 1 << 31;

    /// The layout for `params`.
    pub fn new(params: Params) -> Result<Self, TooLarge> {
        if params.capacity > Self::MAX_CAPACITY {
            return Err(TooLarge);
        }
        let capacity = params.capacity as usize;
        let table_size = capacity
            .checked_mul(2)
            .ok_or(TooLarge)?
            .max(8)
            .checked_next_power_of_two()
            .ok_or(TooLarge)?;
        let heads = HEADER_WORDS + table_size;
        let metas = capacity
            .checked_mul(slot::HEAD_WORDS)
            .and_then(|all| all.checked_add(heads))
            .ok_or(TooLarge)?;
        let heap_start = capacity
            .checked_mul(meta::WORDS)
            .and_then(|all| all.checked_add(metas))
            .ok_or(TooLarge)?
            .next_multiple_of(PAGE_WORDS);
        // Blocks hold at most 1.5 times the data words beyond the head, plus a word of
        // rounding per entry; one more chunk of slack for the free lists' fragmentation.
        let heap_max = words_for(params.byte_budget())
            .checked_mul(3)
            .map(|w| w / 2)
            .and_then(|w| w.checked_add(params.capacity as u64 * 2))
            .and_then(|w| w.checked_add(CHUNK_WORDS as u64))
            .and_then(|w| usize::try_from(w).ok())
            .ok_or(TooLarge)?
            .next_multiple_of(PAGE_WORDS);
        let total = heap_start.checked_add(heap_max).ok_or(TooLarge)?;
        // Mappings and slices are limited to isize::MAX bytes.
        if total > isize::MAX as usize / 8 {
            return Err(TooLarge);
        }
        Ok(Self {
            params,
            table_size,
            heads,
            metas,
            heap_start,
            heap_max,
        })
    }

    /// The parameters this layout was made from.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Words a data file may grow to (and every mapping of it covers).
    pub fn total_words(&self) -> usize {
        self.heap_start + self.heap_max
    }

    /// Bytes a data file may grow to.
    pub fn total_bytes(&self) -> usize {
        self.total_words() * 8
    }

    /// Words of a new data file: everything before the heap, and a first chunk of it.
    pub fn initial_words(&self) -> usize {
        self.heap_start + self.initial_heap()
    }

    /// Heap words a new data file holds.
    pub fn initial_heap(&self) -> usize {
        CHUNK_WORDS.min(self.heap_max)
    }

    /// Where the heap starts.
    pub fn heap_start(&self) -> usize {
        self.heap_start
    }

    /// The most words the heap may grow to.
    pub fn heap_max(&self) -> usize {
        self.heap_max
    }

    /// The heap size to grow to from `backed` words for `needed` more words past `top`:
    /// a quarter more, at least a chunk, in whole pages, at most [`Layout::heap_max`].
    pub fn grown_heap(&self, backed: usize, top: usize, needed: usize) -> usize {
        (backed + (backed / 4).max(CHUNK_WORDS))
            .max(top + needed)
            .next_multiple_of(PAGE_WORDS)
            .min(self.heap_max)
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.params.capacity
    }

    pub(crate) fn table_size(&self) -> usize {
        self.table_size
    }

    /// Index of table word `pos` (`pos < table_size`).
    pub(crate) fn table_word(&self, pos: usize) -> usize {
        HEADER_WORDS + pos
    }

    /// Index of word `field` of slot `i`'s head (`i < capacity`, `field < HEAD_WORDS`).
    pub fn slot_word(&self, i: u32, field: usize) -> usize {
        self.heads + i as usize * slot::HEAD_WORDS + field
    }

    /// Index of word `field` of slot `i`'s meta (`i < capacity`, `field < meta::WORDS`).
    pub fn meta_word(&self, i: u32, field: usize) -> usize {
        self.metas + i as usize * meta::WORDS + field
    }

    /// Header words fixed for the file's life, in index order from `MAGIC`.
    fn identity(&self, nonce: u64, generation: u64) -> [u64; header::LOCK_NONCE + 1] {
        [
            DATA_MAGIC,
            generation,
            FORMAT_VERSION,
            u64::from(self.params.capacity),
            u64::from(self.params.max_key_size),
            u64::from(self.params.max_value_size),
            self.params.ttl_ns.unwrap_or(u64::MAX),
            self.params.byte_budget(),
            self.table_size as u64,
            self.heap_start as u64,
            self.heap_max as u64,
            hash_probe(),
            nonce,
        ]
    }

    /// Writes the header of an empty data file into zeroed `data` (at least
    /// `initial_words` long), whose heap holds `backed` words.
    pub fn init_data(&self, data: &[AtomicU64], nonce: u64, generation: u64, backed: usize) {
        for (word, value) in data.iter().zip(self.identity(nonce, generation)) {
            word.store(value, Ordering::Relaxed);
        }
        for i in [header::HEAD, header::TAIL, header::HAND] {
            data[i].store(u64::from(crate::sieve::NIL), Ordering::Relaxed);
        }
        data[header::BACKED].store(backed as u64, Ordering::Relaxed);
    }

    /// Whether `data` is a data file of this layout belonging to the given lock file and
    /// generation.
    pub fn data_matches(&self, data: &[AtomicU64], nonce: u64, generation: u64) -> bool {
        data.len() >= HEADER_WORDS
            && data
                .iter()
                .zip(self.identity(nonce, generation))
                .all(|(w, v)| w.load(Ordering::Acquire) == v)
    }
}

/// The value every data file made by a compatible build holds in `HASH_PROBE`.
fn hash_probe() -> u64 {
    key_hash(b"warp_cache hash probe")
}

/// Writes a fresh lock file's words into zeroed `lock`, naming the cache's function.
pub fn init_lock(lock: &[AtomicU64], nonce: u64, name: &str) {
    lock[lock_word::MAGIC].store(LOCK_MAGIC, Ordering::Relaxed);
    lock[lock_word::VERSION].store(FORMAT_VERSION, Ordering::Relaxed);
    lock[lock_word::NONCE].store(nonce, Ordering::Relaxed);
    let mut cut = name.len().min(NAME_WORDS * 8);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    lock[lock_word::NAME].store(cut as u64, Ordering::Relaxed);
    for (word, chunk) in lock[lock_word::NAME + 1..]
        .iter()
        .zip(name.as_bytes()[..cut].chunks(8))
    {
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
    }
}

/// The function name a lock file records (lossy: the file is not trusted).
pub fn lock_name(lock: &[AtomicU64]) -> String {
    if lock.len() != LOCK_WORDS {
        return String::new();
    }
    let len = (lock[lock_word::NAME].load(Ordering::Relaxed) as usize).min(NAME_WORDS * 8);
    let bytes: Vec<u8> = lock[lock_word::NAME + 1..]
        .iter()
        .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
        .take(len)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether `lock` is a live lock file of this format.
pub fn lock_matches(lock: &[AtomicU64]) -> bool {
    lock.len() == LOCK_WORDS
        && lock[lock_word::MAGIC].load(Ordering::Acquire) == LOCK_MAGIC
        && lock[lock_word::VERSION].load(Ordering::Acquire) == FORMAT_VERSION
        && lock[lock_word::RETIRED].load(Ordering::Acquire) == 0
}

/// A table word naming `slot` for a key of hash `hash`.
pub(crate) fn table_entry(hash: u64, slot: u32) -> u64 {
    (hash << 32) | (u64::from(slot) + 1)
}

/// The slot a table word names (`None` when empty) and its 32-bit hash tag.
pub(crate) fn split_entry(entry: u64) -> (Option<u32>, u32) {
    ((entry as u32).checked_sub(1), (entry >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(capacity: u32) -> Params {
        Params {
            capacity,
            max_key_size: 13,
            max_value_size: 100,
            ttl_ns: None,
            max_bytes: None,
        }
    }

    #[test]
    fn sizes_and_offsets() {
        let layout = Layout::new(params(5)).unwrap();
        assert_eq!(layout.table_size(), 16);
        assert_eq!(layout.slot_word(0, 0), HEADER_WORDS + 16);
        assert_eq!(layout.slot_word(1, slot::DATA), HEADER_WORDS + 16 + 8 + 4);
        assert_eq!(layout.meta_word(0, 0), HEADER_WORDS + 16 + 5 * 8);
        assert_eq!(
            layout.meta_word(4, meta::LINKS),
            HEADER_WORDS + 16 + 5 * 8 + 9
        );
        assert_eq!(layout.heap_start() % PAGE_WORDS, 0);
        assert!(layout.heap_start() > layout.meta_word(4, meta::LINKS));
        // 5 * 113 bytes of budget: 71 words, 1.5 times that, 2 per slot, a chunk, in pages.
        assert_eq!(
            layout.heap_max(),
            (106 + 10 + CHUNK_WORDS).next_multiple_of(512)
        );
        assert_eq!(layout.initial_heap(), CHUNK_WORDS);
        assert_eq!(
            layout.total_words(),
            layout.heap_start() + layout.heap_max()
        );
        assert_eq!(Layout::new(params(0)).unwrap().table_size(), 8);
    }

    #[test]
    fn a_large_cache_starts_small() {
        let layout = Layout::new(Params {
            capacity: 100_000,
            max_key_size: 256,
            max_value_size: 65_536,
            ttl_ns: None,
            max_bytes: None,
        })
        .unwrap();
        assert!(
            layout.initial_words() * 8 < 16 << 20,
            "{}",
            layout.initial_words() * 8
        );
        assert!(
            layout.total_bytes() > 6 << 30,
            "room to grow to the byte budget"
        );
    }

    #[test]
    fn size_classes_grow_by_at_most_half() {
        assert_eq!(
            (0..8).map(class_words).collect::<Vec<_>>(),
            [2, 3, 4, 6, 8, 12, 16, 24]
        );
        for c in 1..CLASSES - 1 {
            assert!(class_words(c) * 2 <= class_words(c - 1) * 3, "class {c}");
        }
        assert_eq!(class_for(1), Some(0));
        assert_eq!(class_for(5), Some(3));
        assert_eq!(class_for(6), Some(3));
        assert_eq!(class_for(7), Some(4));
        assert!(
            class_words(CLASSES - 1) >= 1 << 32,
            "any u32-sized entry has a class"
        );
        assert_eq!(split_block(block_ref(12345, 7)), Some((12345, 7)));
        assert_eq!(split_block(NO_BLOCK), None);
        assert_eq!(split_block(block_ref(0, 0)), Some((0, 0)));
        assert_eq!(split_block(block_ref(1, CLASSES)), None);
    }

    #[test]
    fn grown_heap_is_paged_bounded_and_enough() {
        let layout = Layout::new(Params {
            max_bytes: Some(1 << 30),
            ..params(4)
        })
        .unwrap();
        let grown = layout.grown_heap(CHUNK_WORDS, CHUNK_WORDS - 2, 100);
        assert_eq!(grown, 2 * CHUNK_WORDS);
        assert_eq!(
            layout.grown_heap(1 << 20, 1 << 20, 10),
            (1 << 20) + (1 << 18)
        );
        assert_eq!(layout.grown_heap(0, 0, 1 << 22), 1 << 22);
        assert_eq!(
            layout.grown_heap(layout.heap_max(), 0, 1),
            layout.heap_max()
        );
    }

    #[test]
    fn absurd_parameters_are_refused() {
        let huge = Params {
            capacity: Layout::MAX_CAPACITY,
            max_key_size: u32::MAX,
            max_value_size: u32::MAX,
            ttl_ns: None,
            max_bytes: None,
        };
        assert_eq!(Layout::new(huge), Err(TooLarge));
        assert_eq!(Layout::new(params(Layout::MAX_CAPACITY + 1)), Err(TooLarge));
        assert_eq!(
            Layout::new(Params {
                max_bytes: Some(u64::MAX),
                ..params(1)
            }),
            Err(TooLarge)
        );
    }

    #[test]
    fn table_entries_round_trip() {
        assert_eq!(split_entry(0), (None, 0));
        let e = table_entry(0xDEAD_BEEF_1234_5678, 7);
        assert_eq!(split_entry(e), (Some(7), 0x1234_5678));
        let last = table_entry(u64::MAX, u32::MAX - 1);
        assert_eq!(split_entry(last), (Some(u32::MAX - 1), u32::MAX));
    }

    #[test]
    fn header_checks_every_identity_word() {
        let layout = Layout::new(params(3)).unwrap();
        let data: Vec<AtomicU64> = (0..layout.initial_words())
            .map(|_| AtomicU64::new(0))
            .collect();
        layout.init_data(&data, 42, 7, layout.initial_heap());
        assert!(layout.data_matches(&data, 42, 7));
        assert!(!layout.data_matches(&data, 43, 7));
        assert!(!layout.data_matches(&data, 42, 8));
        for i in 0..=header::LOCK_NONCE {
            let old = data[i].fetch_xor(1, Ordering::Relaxed);
            assert!(!layout.data_matches(&data, 42, 7), "word {i} not checked");
            data[i].store(old, Ordering::Relaxed);
        }
        let other = Layout::new(Params {
            ttl_ns: Some(5),
            ..params(3)
        })
        .unwrap();
        assert!(!other.data_matches(&data, 42, 7));
        let budget = Layout::new(Params {
            max_bytes: Some(77),
            ..params(3)
        })
        .unwrap();
        assert!(!budget.data_matches(&data, 42, 7));
    }
}
