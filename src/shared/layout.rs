//! The two file formats, as arrays of 64-bit words (native byte order: the files never leave
//! the machine).
//!
//! **Lock file** ([`LOCK_WORDS`] words, one cache line): `MAGIC`, `VERSION`, `NONCE` (random,
//! fixed for the file's life), `RETIRED` (non-zero once the file was replaced), `GENERATION`
//! (bumped each time the data file is recreated), `SEQ` and `OWNER` (the seqlock, see
//! [`super::seqlock`]).
//!
//! **Data file**, in order:
//! - a header of [`HEADER_WORDS`] words: `MAGIC` and `GENERATION` (the lock file's
//!   generation this file belongs to; both are checked by every operation, so they share the
//!   first cache line), `VERSION`, every parameter (`CAPACITY`, `MAX_KEY`, `MAX_VALUE`,
//!   `TTL`), the derived sizes (`TABLE_SIZE`, `OVERFLOW_WORDS`, `TOTAL_WORDS`), `HASH_PROBE`
//!   (the key hash of a fixed string: builds that hash keys differently must not share a
//!   file), `LOCK_NONCE` (which lock file the file belongs to), the live state (`LEN`, SIEVE
//!   `HEAD`, `TAIL`, `HAND`), `OVERSIZE` on its own cache line, then [`COUNTER_STRIPES`]
//!   lines of hit and miss counters: each process counts in the stripe its pid picks, so
//!   processes hitting one cache do not all increment one cache line (the totals are the
//!   sums);
//! - the hash table: `TABLE_SIZE` words (a power of two, at least twice the capacity), linear
//!   probing; a word is 0 when empty, else `(low 32 bits of the key hash) << 32 | (slot + 1)`
//!   (a damaged word whose low half is 0 counts as empty everywhere).
//!   Removal is backward-shift deletion, so there are no tombstones and probe chains never
//!   degrade under churn;
//! - `CAPACITY` slot heads of 16 words (two cache lines) side by side: `VERSION` (even while
//!   the slot is whole, odd while a writer changes it: readers validate each slot on its own,
//!   never on the lock file's `SEQ`), `LENS` (`value_len << 32 | key_len`), `EXPIRES`
//!   (CLOCK_MONOTONIC ns, `u64::MAX` = never), `CHECKSUM` (of lengths, expiry, key and
//!   value), the first 10 data words, `VISITED`, and last `LINKS` (`older << 32 | newer`,
//!   SIEVE neighbours, `u32::MAX` = none);
//! - `CAPACITY` overflows of `OVERFLOW_WORDS` words (whole cache lines; none when the largest
//!   entry fits a head) holding each slot's data words beyond the first 10.
//!
//! An entry's data words are its key padded to whole words, then its value padded to whole
//! words. Keeping the heads dense means a lookup of a small entry touches only its head,
//! on few pages however large `max_value_size` makes the overflows; up to 32 bytes of key
//! and value (an int or short str key with an int value) sit in the head's first cache
//! line with everything a lookup reads. A slot stores no hash: the table word's 32-bit tag
//! filters probes, keys are compared byte for byte, and an evicting writer rehashes the
//! victim's key to find its table word.
//!
//! Slots `0..LEN` are occupied; a new entry takes slot `LEN` until the slab is full, then the
//! SIEVE victim's slot. Every process keeps its own [`Layout`], checked against the header
//! once at open: offsets are computed from it, never from header words, and every length,
//! slot index or link read from the region is checked against it before use.

use crate::codec::key_hash;
use crate::sync::{AtomicU64, Ordering};
use std::fmt;

/// First word of a data file: `b"WARPDATA"`.
pub const DATA_MAGIC: u64 = u64::from_le_bytes(*b"WARPDATA");
/// First word of a lock file: `b"WARPLOCK"`.
pub const LOCK_MAGIC: u64 = u64::from_le_bytes(*b"WARPLOCK");
/// Bumped whenever either file format changes; other versions are recreated.
pub const FORMAT_VERSION: u64 = 4;

/// Words in the lock file.
pub const LOCK_WORDS: usize = lock_word::NAME + 1 + NAME_WORDS;
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
}

/// Words in a 64-byte cache line.
const WORDS_PER_LINE: usize = 8;

/// Hit/miss counter stripes in the data file header, one cache line each.
pub const COUNTER_STRIPES: usize = 16;
/// Words before the hash table in the data file: three lines of fields, then the stripes.
pub const HEADER_WORDS: usize = 24 + COUNTER_STRIPES * WORDS_PER_LINE;
/// Word indices in the data file header.
pub mod header {
    /// [`super::DATA_MAGIC`].
    pub const MAGIC: usize = 0;
    /// The lock file's `GENERATION` when this file was made (beside `MAGIC`: every
    /// operation checks both, and they share a cache line).
    pub const GENERATION: usize = 1;
    /// [`super::FORMAT_VERSION`].
    pub const VERSION: usize = 2;
    /// Slots in the slab (the most entries held).
    pub const CAPACITY: usize = 3;
    /// Largest key in bytes.
    pub const MAX_KEY: usize = 4;
    /// Largest value in bytes.
    pub const MAX_VALUE: usize = 5;
    /// Time to live in ns, `u64::MAX` for none.
    pub const TTL: usize = 6;
    /// Words in the hash table.
    pub const TABLE_SIZE: usize = 7;
    /// Words of each slot's overflow.
    pub const OVERFLOW_WORDS: usize = 8;
    /// Words in the whole file.
    pub const TOTAL_WORDS: usize = 9;
    /// `key_hash` of a fixed string.
    pub const HASH_PROBE: usize = 10;
    /// `NONCE` of the lock file this data file belongs to.
    pub const LOCK_NONCE: usize = 11;
    /// Occupied slots.
    pub const LEN: usize = 12;
    /// SIEVE newest slot.
    pub const HEAD: usize = 13;
    /// SIEVE oldest slot.
    pub const TAIL: usize = 14;
    /// SIEVE hand.
    pub const HAND: usize = 15;
    /// Inserts skipped because the key or value was too large.
    pub const OVERSIZE: usize = 16;
    /// The first counter stripe; stripe `s` is the line at `STRIPES + 8 * s`.
    pub const STRIPES: usize = 24;
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
    /// SIEVE's visited bit, set by readers: in the second line, so the first line (what a
    /// hit reads) is written by writers only.
    pub const VISITED: usize = 14;
    /// SIEVE links: written by writers only.
    pub const LINKS: usize = 15;
    /// Words in a slot's head: two cache lines.
    pub const HEAD_WORDS: usize = 16;
    /// Data words kept in the head; the rest of a larger entry is in the slot's overflow.
    pub const INLINE_DATA: usize = VISITED - DATA;
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
    /// Data words of the largest entry (longest key, then longest value).
    data_words: usize,
    /// Words of each slot's overflow (a whole number of cache lines, maybe none).
    overflow_words: usize,
    /// Where the slot heads start, and the overflows.
    heads: usize,
    overflows: usize,
    total_words: usize,
}

/// Whole words needed for `bytes` bytes.
fn words_for(bytes: u32) -> usize {
    (bytes as usize).div_ceil(8)
}

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
        let data_words = words_for(params.max_key_size) + words_for(params.max_value_size);
        let overflow_words = data_words
            .saturating_sub(slot::INLINE_DATA)
            .next_multiple_of(WORDS_PER_LINE);
        let heads = HEADER_WORDS + table_size;
        let overflows = capacity
            .checked_mul(slot::HEAD_WORDS)
            .and_then(|all| all.checked_add(heads))
            .ok_or(TooLarge)?;
        let total_words = capacity
            .checked_mul(overflow_words)
            .and_then(|all| all.checked_add(overflows))
            .ok_or(TooLarge)?;
        // Mappings and slices are limited to isize::MAX bytes.
        if total_words > isize::MAX as usize / 8 {
            return Err(TooLarge);
        }
        Ok(Self {
            params,
            table_size,
            data_words,
            overflow_words,
            heads,
            overflows,
            total_words,
        })
    }

    /// The parameters this layout was made from.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Words in the data file.
    pub fn total_words(&self) -> usize {
        self.total_words
    }

    /// Bytes in the data file.
    pub fn total_bytes(&self) -> usize {
        self.total_words * 8
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

    /// Index of data word `n` of slot `i` (`i < capacity`, `n` below the largest entry's
    /// data words).
    pub fn data_word(&self, i: u32, n: usize) -> usize {
        if n < slot::INLINE_DATA {
            self.slot_word(i, slot::DATA + n)
        } else {
            self.overflow_word(i) + n - slot::INLINE_DATA
        }
    }

    /// Index of the first word of slot `i`'s overflow.
    pub(crate) fn overflow_word(&self, i: u32) -> usize {
        self.overflows + i as usize * self.overflow_words
    }

    /// Words in each slot's overflow.
    pub(crate) fn overflow_words(&self) -> usize {
        self.overflow_words
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
            self.table_size as u64,
            self.overflow_words as u64,
            self.total_words as u64,
            hash_probe(),
            nonce,
        ]
    }

    /// Writes the header of an empty data file into zeroed `data` (`total_words` long).
    pub fn init_data(&self, data: &[AtomicU64], nonce: u64, generation: u64) {
        for (word, value) in data.iter().zip(self.identity(nonce, generation)) {
            word.store(value, Ordering::Relaxed);
        }
        for i in [header::HEAD, header::TAIL, header::HAND] {
            data[i].store(u64::from(crate::sieve::NIL), Ordering::Relaxed);
        }
    }

    /// Whether `data` is a data file of this layout belonging to the given lock file and
    /// generation.
    pub fn data_matches(&self, data: &[AtomicU64], nonce: u64, generation: u64) -> bool {
        data.len() == self.total_words
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
        }
    }

    #[test]
    fn sizes_and_offsets() {
        let layout = Layout::new(params(5)).unwrap();
        assert_eq!(layout.table_size(), 16);
        // 2 key words + 13 value words: 10 in the head, 5 overflow (rounded to a line).
        assert_eq!(layout.data_words, 15);
        assert_eq!(layout.overflow_words(), 8);
        assert_eq!(layout.slot_word(0, 0), HEADER_WORDS + 16);
        assert_eq!(layout.data_word(1, 0), HEADER_WORDS + 16 + 16 + slot::DATA);
        assert_eq!(layout.data_word(1, 9), HEADER_WORDS + 16 + 32 - 3);
        assert_eq!(layout.data_word(0, 10), HEADER_WORDS + 16 + 5 * 16);
        assert_eq!(layout.total_words(), HEADER_WORDS + 16 + 5 * (16 + 8));
        assert_eq!(layout.data_word(4, 14), layout.total_words() - 8 + 4);
        let small = Layout::new(Params {
            max_key_size: 16,
            max_value_size: 64,
            ..params(5)
        })
        .unwrap();
        assert_eq!(small.overflow_words(), 0, "2 + 8 data words fit the head");
        let spill = Layout::new(Params {
            max_key_size: 16,
            max_value_size: 72,
            ..params(5)
        })
        .unwrap();
        assert_eq!(spill.overflow_words(), 8, "2 + 9 data words do not");
        assert_eq!(Layout::new(params(0)).unwrap().table_size(), 8);
    }

    #[test]
    fn absurd_parameters_are_refused() {
        let huge = Params {
            capacity: Layout::MAX_CAPACITY,
            max_key_size: u32::MAX,
            max_value_size: u32::MAX,
            ttl_ns: None,
        };
        // 2^31 slots of 2^30 words: 2^61 words fit a u64 but not a mapping.
        assert_eq!(Layout::new(huge), Err(TooLarge));
        assert_eq!(Layout::new(params(Layout::MAX_CAPACITY + 1)), Err(TooLarge));
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
        let data: Vec<AtomicU64> = (0..layout.total_words())
            .map(|_| AtomicU64::new(0))
            .collect();
        layout.init_data(&data, 42, 7);
        assert!(layout.data_matches(&data, 42, 7));
        assert!(!layout.data_matches(&data, 43, 7));
        assert!(!layout.data_matches(&data, 42, 8));
        assert!(!layout.data_matches(&data[1..], 42, 7));
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
    }
}
