//! The data file's contents as operations on words: the hash table, the slots, and the SIEVE
//! queue threaded through them (see [`super::layout`] for the encodings).
//!
//! Readers ([`Table::read`]) take no lock: they probe the table, then copy the slot they
//! found between two reads of its version ([`Version`]), so a write elsewhere (or a writer
//! stopped in the middle of one) never disturbs them. They use only relaxed loads, check
//! every index and length against the process's own [`Layout`], and loop at most
//! `table_size` times. Everything else runs under the write lock and reports data it cannot
//! make sense of as [`Corrupt`], after which the caller rebuilds the table from the slots
//! that are whole ([`Table::repair`]). Damaged words can thus cost entries, never memory
//! safety, a panic, or a wrong value (keys are compared byte for byte and values
//! checksummed).

use super::layout::{header, slot, split_entry, table_entry, Layout, Params};
use super::seqlock::{Version, READ_ATTEMPTS};
use super::ValueBuf;
use crate::codec::{key_hash_of_words, words};
use crate::sieve::{Ends, Link, SieveQueue, NIL};
use crate::sync::{AtomicU64, Ordering};

/// The region holds something no correct writer leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Corrupt;

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

/// One slot's words: its head and its overflow (see [`super::layout`]).
#[derive(Clone, Copy)]
struct SlotWords<'a> {
    head: &'a [AtomicU64],
    overflow: &'a [AtomicU64],
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

    /// Data word `n`, or `None` past the slot's end.
    #[inline(always)]
    fn data(&self, n: usize) -> Option<u64> {
        let word = match n.checked_sub(slot::INLINE_DATA) {
            None => self.head.get(slot::DATA + n),
            Some(beyond) => self.overflow.get(beyond),
        };
        word.map(|w| w.load(Ordering::Relaxed))
    }
}

/// Whether `slot` holds `key`. A torn or damaged length can make the
/// answer wrong (the checksum then rejects the value) but never reads out of bounds.
#[inline(always)]
fn holds_key(slot: SlotWords<'_>, key: &[u8]) -> bool {
    slot.field(slot::LENS) as u32 as usize == key.len()
        && words(key)
            .enumerate()
            .all(|(n, word)| slot.data(n) == Some(word))
}

/// Copies the value of `slot` into `out`; true when the entry is live at `now` and its
/// checksum matches. The checksum is computed while copying, over the slot's own key words
/// (a lookup has already compared them with its key). Lengths are checked against `params`
/// first, so every data word read lies inside the slot.
#[inline(always)]
fn read_live(slot: SlotWords<'_>, params: Params, now: u64, out: &mut ValueBuf) -> bool {
    let expires = slot.field(slot::EXPIRES);
    expires > now && read_whole(slot, params, expires, out)
}

/// [`read_live`] whatever the expiry (`expires`, already loaded).
#[inline(always)]
fn read_whole(slot: SlotWords<'_>, params: Params, expires: u64, out: &mut ValueBuf) -> bool {
    let lens = slot.field(slot::LENS);
    let (key_len, value_len) = (lens as u32 as usize, (lens >> 32) as usize);
    if value_len > params.max_value_size as usize || key_len > params.max_key_size as usize {
        return false;
    }
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
            overflow: &self.words[self.layout.overflow_word(i)..][..self.layout.overflow_words()],
        }
    }

    /// Copies the value of slot `i` into `out`; true when the entry is live at `now` and
    /// its checksum matches.
    pub(crate) fn read_live(&self, i: u32, now: u64, out: &mut ValueBuf) -> bool {
        read_live(self.slot(i), self.layout.params(), now, out)
    }

    /// Writes a whole entry into slot `i` (not its links or visited bit), between the
    /// slot's version turning odd and even again. Sizes are checked.
    pub(crate) fn write_entry(&self, i: u32, key: &[u8], value: &[u8], expires: u64) {
        let version = self.slot(i).version();
        version.begin_write();
        let lens = (value.len() as u64) << 32 | key.len() as u64;
        self.slot_store(i, slot::LENS, lens);
        self.slot_store(i, slot::EXPIRES, expires);
        let mut sum = Checksum::new(lens, expires);
        for (n, word) in words(key).chain(words(value)).enumerate() {
            sum.add(word);
            self.store(self.layout.data_word(i, n), word);
        }
        self.slot_store(i, slot::CHECKSUM, sum.finish());
        version.end_write();
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

    /// Copies whole slot `from` into slot `to` (its entry words, not its links).
    fn copy_slot(&self, from: u32, to: u32) {
        let version = self.slot(to).version();
        version.begin_write();
        for field in [slot::LENS, slot::EXPIRES, slot::CHECKSUM, slot::VISITED] {
            self.slot_store(to, field, self.slot_load(from, field));
        }
        let lens = self.slot_load(from, slot::LENS);
        let data_words = (lens as u32 as usize).div_ceil(8) + ((lens >> 32) as usize).div_ceil(8);
        for n in 0..data_words {
            self.store(
                self.layout.data_word(to, n),
                self.load(self.layout.data_word(from, n)),
            );
        }
        version.end_write();
    }

    /// Rebuilds the table, the SIEVE queue and the length from the slots that hold whole
    /// entries, after a writer died (or panicked) inside a section or left words this
    /// process cannot make sense of: the entries it was changing are lost, the others kept.
    /// Whole slots are packed to the front in order (a key held twice is kept once);
    /// the queue is rebuilt in slot order. Counters are kept.
    pub(crate) fn repair(&self) {
        let occupied = self
            .load(header::LEN)
            .min(u64::from(self.layout.capacity())) as u32;
        for pos in 0..self.layout.table_size() {
            self.store(self.layout.table_word(pos), 0);
        }
        let mut kept = 0;
        for i in 0..occupied {
            if !self.is_whole(i) {
                continue;
            }
            let Ok(hash) = self.hash_of(i) else { continue };
            if self.holds_key_of(hash, i) {
                continue;
            }
            if i != kept {
                self.copy_slot(i, kept);
            }
            if self.table_insert(hash, kept).is_err() {
                break;
            }
            kept += 1;
        }
        self.set_len(kept);
        let mut queue = self.queue();
        queue.set_ends(Ends::EMPTY);
        for i in 0..kept {
            queue.push_newest(i);
        }
    }

    /// Whether the table already names a slot whose key equals slot `i`'s (hash `hash`).
    fn holds_key_of(&self, hash: u64, i: u32) -> bool {
        let key_len = self.slot_load(i, slot::LENS) as u32 as usize;
        let mut pos = hash as usize & self.mask();
        for _ in 0..self.layout.table_size() {
            let (found, tag) = split_entry(self.load(self.layout.table_word(pos)));
            let Some(j) = found else { return false };
            if tag == hash as u32
                && j < self.layout.capacity()
                && self.slot_load(j, slot::LENS) as u32 as usize == key_len
                && (0..key_len.div_ceil(8)).all(|n| {
                    self.load(self.layout.data_word(j, n)) == self.load(self.layout.data_word(i, n))
                })
            {
                return true;
            }
            pos = (pos + 1) & self.mask();
        }
        false
    }

    /// The hash of the key stored in slot `i` (`i < capacity`), recomputed from its bytes;
    /// `Corrupt` if its length is impossible.
    pub(crate) fn hash_of(&self, i: u32) -> Result<u64, Corrupt> {
        let key_len = self.slot_load(i, slot::LENS) as u32 as usize;
        if key_len > self.layout.params().max_key_size as usize {
            return Err(Corrupt);
        }
        let words = (0..key_len.div_ceil(8)).map(|n| self.load(self.layout.data_word(i, n)));
        Ok(key_hash_of_words(key_len, words))
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
    use super::super::{HeapRegion, InsertOutcome, ValueBuf};
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
            // Damage only empty words: an earlier key may live next door.
            for pos in [home, (home + 1) & mask] {
                let _ = region.data_words()[layout.table_word(pos)].compare_exchange(
                    0,
                    0xDEAD_BEEF_0000_0000,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            assert_eq!(
                engine.insert(key, b"v", 0, u64::MAX, &owner),
                Ok(InsertOutcome::Stored)
            );
            let mut out = ValueBuf::new();
            assert_eq!(
                engine.get(key, 0, &mut out),
                Ok(true),
                "{key:?} unreachable"
            );
            assert_eq!(out.bytes(), b"v");
            region.check_invariants();
        }
    }
}
