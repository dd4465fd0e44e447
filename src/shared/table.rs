//! The data file's contents as operations on words: the hash table, the slots, and the SIEVE
//! queue threaded through them (see [`super::layout`] for the encodings).
//!
//! Readers run [`Table::find`] and [`Table::read_live`] inside a seqlock read, where a write
//! may be half done: both use only relaxed loads, check every index and length against the
//! process's own [`Layout`], and loop at most `table_size` times. Everything else runs under
//! the write lock and reports data it cannot make sense of as [`Corrupt`], after which the
//! caller resets the region. Damaged words can thus cost entries, never memory safety, a
//! panic, or a wrong value (keys are compared byte for byte and values checksummed).

use super::layout::{header, slot, split_entry, table_entry, Layout};
use crate::sieve::{Ends, Link, SieveQueue, NIL};
use crate::sync::{AtomicU64, Ordering};
use std::hash::{BuildHasher, Hasher};

/// The region holds something no correct writer leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Corrupt;

/// The checksum hasher: fixed seeds, different from the key hash's.
static CHECKSUM: ahash::RandomState = ahash::RandomState::with_seeds(
    0xC0AC_29B7_C97C_50DD,
    0x3F84_D5B5_B547_0917,
    0x9216_D5D9_8979_FB1B,
    0xD131_0BA6_98DF_B5AC,
);

fn checksum(lens: u64, hash: u64, expires: u64, key: &[u8], value: &[u8]) -> u64 {
    let mut h = CHECKSUM.build_hasher();
    h.write_u64(lens);
    h.write_u64(hash);
    h.write_u64(expires);
    h.write(key);
    h.write(value);
    h.finish()
}

/// `bytes` as little-endian words, the last one zero-padded.
fn packed(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let whole = bytes.chunks_exact(8);
    let tail = whole.remainder();
    // Built byte by byte: a variable-length copy would be a memcpy call per key.
    let last = (!tail.is_empty()).then(|| {
        tail.iter()
            .enumerate()
            .fold(0u64, |word, (i, &b)| word | u64::from(b) << (8 * i))
    });
    whole
        .map(|chunk| u64::from_le_bytes(chunk.try_into().expect("chunks of eight")))
        .chain(last)
}

/// The data words of one file seen through this process's layout.
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    words: &'a [AtomicU64],
    layout: &'a Layout,
}

impl<'a> Table<'a> {
    /// `None` unless `words` is exactly as long as the layout says.
    pub(crate) fn new(words: &'a [AtomicU64], layout: &'a Layout) -> Option<Self> {
        (words.len() == layout.total_words()).then_some(Self { words, layout })
    }

    // Every index below comes from the layout with a slot number < capacity or a table
    // position < table_size, so it is in bounds by the length check in `new`.
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

    /// A header word, for counters and the checks made before trusting a mapping.
    pub(crate) fn header(&self, field: usize) -> &'a AtomicU64 {
        &self.words[field]
    }

    fn mask(&self) -> usize {
        self.layout.table_size() - 1
    }

    /// The slot holding `key`, whose hash is `hash`, if any. `key` must fit `max_key_size`.
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let mut pos = hash as usize & self.mask();
        for _ in 0..self.layout.table_size() {
            let (found, tag) = split_entry(self.load(self.layout.table_word(pos)));
            let i = found?;
            if tag == hash as u32 && i < self.layout.capacity() && self.holds_key(i, hash, key) {
                return Some(i);
            }
            pos = (pos + 1) & self.mask();
        }
        None
    }

    fn holds_key(&self, i: u32, hash: u64, key: &[u8]) -> bool {
        self.slot_load(i, slot::HASH) == hash
            && self.slot_load(i, slot::LENS) as u32 as usize == key.len()
            && packed(key)
                .enumerate()
                .all(|(n, word)| self.slot_load(i, slot::KEY + n) == word)
    }

    /// Copies the value of slot `i` (found holding `key`) into `out`; true when the entry
    /// is live at `now` and its checksum matches.
    pub(crate) fn read_live(&self, i: u32, key: &[u8], now: u64, out: &mut Vec<u8>) -> bool {
        let lens = self.slot_load(i, slot::LENS);
        let value_len = (lens >> 32) as usize;
        let expires = self.slot_load(i, slot::EXPIRES);
        if value_len > self.layout.params().max_value_size as usize || expires <= now {
            return false;
        }
        out.clear();
        out.reserve(value_len.next_multiple_of(8));
        let first = self.layout.value_field();
        for n in 0..value_len.div_ceil(8) {
            out.extend_from_slice(&self.slot_load(i, first + n).to_le_bytes());
        }
        out.truncate(value_len);
        let hash = self.slot_load(i, slot::HASH);
        checksum(lens, hash, expires, key, out) == self.slot_load(i, slot::CHECKSUM)
    }

    /// Writes a whole entry into slot `i` (not its links or visited bit). Sizes are checked.
    pub(crate) fn write_entry(&self, i: u32, hash: u64, key: &[u8], value: &[u8], expires: u64) {
        let lens = (value.len() as u64) << 32 | key.len() as u64;
        self.slot_store(i, slot::LENS, lens);
        self.slot_store(i, slot::HASH, hash);
        self.slot_store(i, slot::EXPIRES, expires);
        self.slot_store(i, slot::CHECKSUM, checksum(lens, hash, expires, key, value));
        for (n, word) in packed(key).enumerate() {
            self.slot_store(i, slot::KEY + n, word);
        }
        let first = self.layout.value_field();
        for (n, word) in packed(value).enumerate() {
            self.slot_store(i, first + n, word);
        }
    }

    /// The stored hash of slot `i` (`i < capacity`).
    pub(crate) fn hash_of(&self, i: u32) -> u64 {
        self.slot_load(i, slot::HASH)
    }

    /// Marks slot `i` visited; writes only when the bit is clear. Racing the hand is
    /// harmless: the bit is a hint, lost or kept for one extra turn.
    pub(crate) fn mark_visited(&self, i: u32) {
        let word = &self.words[self.layout.slot_word(i, slot::VISITED)];
        if word.load(Ordering::Relaxed) == 0 {
            word.store(1, Ordering::Relaxed);
        }
    }

    /// Clears slot `i`'s visited bit for a new entry.
    pub(crate) fn clear_visited(&self, i: u32) {
        self.slot_store(i, slot::VISITED, 0);
    }

    /// SIEVE's second chance for slot `i`: it was visited (the bit is now clear) and is live.
    pub(crate) fn second_chance(&self, i: u32, now: u64) -> bool {
        i < self.layout.capacity()
            && self.words[self.layout.slot_word(i, slot::VISITED)].swap(0, Ordering::Relaxed) != 0
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

    /// Removes `slot` (stored under `hash`), shifting later entries of the run back so every
    /// entry stays reachable from its home position without tombstones.
    pub(crate) fn table_remove(&self, hash: u64, slot: u32) -> Result<(), Corrupt> {
        let mask = self.mask();
        let mut hole = hash as usize & mask;
        let mut steps = 0;
        loop {
            match split_entry(self.load(self.layout.table_word(hole))) {
                (None, _) => return Err(Corrupt),
                (Some(i), _) if i == slot => break,
                _ => {}
            }
            steps += 1;
            if steps == self.layout.table_size() {
                return Err(Corrupt);
            }
            hole = (hole + 1) & mask;
        }
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

    /// Empties the cache: no entries, an empty queue. Counters are kept.
    pub(crate) fn reset(&self) {
        for pos in 0..self.layout.table_size() {
            self.store(self.layout.table_word(pos), 0);
        }
        self.set_len(0);
        self.queue().set_ends(Ends::EMPTY);
    }

    /// The SIEVE queue over the slots' link words.
    pub(crate) fn queue(&self) -> RegionQueue<'a> {
        RegionQueue(*self)
    }
}

/// [`SieveQueue`] over the region: links in each slot's `LINKS` word, ends in the header.
/// Out-of-range slot numbers (from damaged words) read as detached and are never written,
/// so the policy's walks stay in bounds; the store validates the victim it gets back.
pub(crate) struct RegionQueue<'a>(Table<'a>);

impl SieveQueue for RegionQueue<'_> {
    fn link(&self, i: u32) -> Link {
        if i >= self.0.layout.capacity() {
            return Link::DETACHED;
        }
        let word = self.0.slot_load(i, slot::LINKS);
        Link {
            newer: word as u32,
            older: (word >> 32) as u32,
        }
    }

    fn set_link(&mut self, i: u32, link: Link) {
        if i < self.0.layout.capacity() {
            self.0.slot_store(
                i,
                slot::LINKS,
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

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::super::layout::Layout;
    use super::super::tests::{params, TestOwner};
    use super::super::{HeapRegion, InsertOutcome};
    use crate::codec::key_hash;
    use crate::sync::Ordering;

    /// Found by the `region_open` fuzzer: a damaged table word with slot part 0 but tag bits
    /// set ended a lookup's probe (empty to `find`) but was skipped by inserts (not zero), so
    /// an insert reported `Stored` for an entry no lookup could reach while the word stayed.
    #[test]
    fn table_word_with_zero_slot_part_is_empty_to_every_operation() {
        let region = HeapRegion::new(params(2)).unwrap();
        let layout = Layout::new(params(2)).unwrap();
        let owner = TestOwner::new(1);
        let engine = region.engine();
        let mask = layout.table_size() - 1;
        for key in [&b"k"[..], b"other", b"third"] {
            let home = key_hash(key) as usize & mask;
            for pos in [home, (home + 1) & mask] {
                region.data_words()[layout.table_word(pos)]
                    .store(0xDEAD_BEEF_0000_0000, Ordering::Relaxed);
            }
            assert_eq!(
                engine.insert(key, b"v", 0, u64::MAX, &owner),
                Ok(InsertOutcome::Stored)
            );
            let mut out = Vec::new();
            assert_eq!(
                engine.get(key, 0, &mut out),
                Ok(true),
                "{key:?} unreachable"
            );
            assert_eq!(out, b"v");
            region.check_invariants();
        }
    }
}
