//! The shared cache's logic on heap regions: no files, one process.

use super::layout::{self, header, lock_word, Layout};
use super::*;
use crate::sieve::reference::xorshift;
use crate::sieve::reference::ReferenceSieve;
use crate::sync::Ordering;

/// A lock owner for tests: a fixed id and a fixed set of dead ids.
pub(super) struct TestOwner {
    pub(super) id: u64,
    pub(super) dead: Vec<u64>,
    pub(super) patience: Patience,
    /// How many times it was asked whether an owner lives.
    pub(super) asked: crate::sync::AtomicU32,
}

impl TestOwner {
    pub(super) fn new(id: u64) -> Self {
        Self {
            id,
            dead: Vec::new(),
            patience: Patience {
                spins: 4,
                attempts: 64,
                check_every: 8,
                budget_ns: 0,
            },
            asked: Default::default(),
        }
    }
}

impl LockOwner for TestOwner {
    fn id(&self) -> u64 {
        self.id
    }
    fn is_alive(&self, owner: u64) -> bool {
        self.asked.fetch_add(1, Ordering::Relaxed);
        !self.dead.contains(&owner)
    }
    fn patience(&self) -> Patience {
        self.patience
    }
}

pub(super) fn params(capacity: u32) -> Params {
    Params {
        capacity,
        max_key_size: 24,
        max_value_size: 64,
        ttl_ns: None,
        max_bytes: None,
    }
}

fn region(capacity: u32) -> HeapRegion {
    HeapRegion::new(params(capacity)).unwrap()
}

fn get(region: &HeapRegion, key: &[u8], now: u64) -> Option<Vec<u8>> {
    let mut out = ValueBuf::new();
    region
        .engine()
        .get(key, now, &mut out)
        .expect("heap regions never go stale")
        .then(|| out.bytes().to_vec())
}

fn put(region: &HeapRegion, key: &[u8], value: &[u8], now: u64, expires_at: u64) -> InsertOutcome {
    region
        .engine()
        .insert(key, value, now, expires_at, &TestOwner::new(1))
        .expect("never stale")
}

#[test]
fn round_trip_and_counters() {
    let r = region(4);
    assert_eq!(get(&r, b"k", 0), None);
    assert_eq!(put(&r, b"k", b"value", 0, u64::MAX), InsertOutcome::Stored);
    assert_eq!(get(&r, b"k", 0).as_deref(), Some(&b"value"[..]));
    assert_eq!(put(&r, b"", b"", 0, u64::MAX), InsertOutcome::Stored);
    assert_eq!(get(&r, b"", 0).as_deref(), Some(&b""[..]));
    let info = r.engine().info().unwrap();
    assert_eq!(
        info,
        Info {
            hits: 2,
            misses: 1,
            max_size: 4,
            current_size: 2,
            oversize_skips: 0,
            current_bytes: 6,
        }
    );
    r.check_invariants();
}

#[test]
fn live_entry_keeps_its_value_and_expired_one_is_replaced() {
    let r = region(4);
    put(&r, b"k", b"first", 0, 100);
    put(&r, b"k", b"second", 50, 200);
    assert_eq!(get(&r, b"k", 60).as_deref(), Some(&b"first"[..]));
    assert_eq!(get(&r, b"k", 100), None, "expires exactly at its deadline");
    put(&r, b"k", b"third", 150, 300);
    assert_eq!(get(&r, b"k", 160).as_deref(), Some(&b"third"[..]));
    assert_eq!(r.engine().info().unwrap().current_size, 1);
    r.check_invariants();
}

#[test]
fn oversize_is_counted_and_not_stored() {
    let r = region(4);
    let big_key = [7u8; 25];
    let big_value = [7u8; 65];
    assert_eq!(
        put(&r, &big_key, b"v", 0, u64::MAX),
        InsertOutcome::Oversize
    );
    assert_eq!(
        put(&r, b"k", &big_value, 0, u64::MAX),
        InsertOutcome::Oversize
    );
    assert_eq!(
        put(&r, &[1; 24], &[2; 64], 0, u64::MAX),
        InsertOutcome::Stored,
        "limits are inclusive"
    );
    assert_eq!(get(&r, &[1; 24], 0).as_deref(), Some(&[2u8; 64][..]));
    assert_eq!(get(&r, &big_key, 0), None);
    assert_eq!(get(&r, b"k", 0), None);
    let info = r.engine().info().unwrap();
    assert_eq!(
        (info.oversize_skips, info.current_size, info.misses),
        (2, 1, 2)
    );
}

#[test]
fn zero_capacity_caches_nothing() {
    let r = region(0);
    assert_eq!(put(&r, b"k", b"v", 0, u64::MAX), InsertOutcome::NotCached);
    assert_eq!(get(&r, b"k", 0), None);
}

#[test]
fn clear_drops_entries_and_counters() {
    let r = region(4);
    for k in 0..6u8 {
        put(&r, &[k], &[k], 0, u64::MAX);
        get(&r, &[k], 0);
    }
    assert!(r.engine().clear(&TestOwner::new(1)).unwrap());
    assert_eq!(
        r.engine().info().unwrap(),
        Info {
            max_size: 4,
            ..Info::default()
        }
    );
    for k in 0..6u8 {
        assert_eq!(get(&r, &[k], 0), None);
    }
    put(&r, b"again", b"v", 0, u64::MAX);
    assert_eq!(get(&r, b"again", 0).as_deref(), Some(&b"v"[..]));
    r.check_invariants();
}

#[test]
fn expired_entries_get_no_second_chance() {
    let r = region(2);
    put(&r, b"a", b"1", 0, 10);
    put(&r, b"b", b"2", 0, u64::MAX);
    get(&r, b"a", 0);
    get(&r, b"b", 0);
    // Both visited; "a" expired by now = 20, so it goes even though it is older and visited.
    put(&r, b"c", b"3", 20, u64::MAX);
    assert_eq!(get(&r, b"b", 20).as_deref(), Some(&b"2"[..]));
    assert_eq!(get(&r, b"c", 20).as_deref(), Some(&b"3"[..]));
    r.check_invariants();
}

#[test]
fn eviction_is_exact_sieve_on_random_traces() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for trace in 0..300 {
        let capacity = 1 + (trace % 9) as u32;
        let universe = 1 + xorshift(&mut seed) % 24;
        let r = region(capacity);
        let mut reference = ReferenceSieve::new(capacity as usize);
        for step in 0..300 {
            let key = (xorshift(&mut seed) % universe).min(xorshift(&mut seed) % universe);
            let bytes = key.to_le_bytes();
            let hit = get(&r, &bytes, 0).is_some();
            if !hit {
                assert_eq!(
                    put(&r, &bytes, &[key as u8; 3], 0, u64::MAX),
                    InsertOutcome::Stored
                );
            }
            assert_eq!(
                reference.access(key),
                hit,
                "trace {trace} step {step} key {key} capacity {capacity}"
            );
        }
        r.check_invariants();
        for (key, _) in &reference.queue {
            assert_eq!(
                get(&r, &key.to_le_bytes(), 0).as_deref(),
                Some(&[*key as u8; 3][..])
            );
        }
    }
}

#[test]
fn damaged_value_bytes_read_as_a_miss_then_heal() {
    let r = region(4);
    put(&r, b"k", b"value", 0, u64::MAX);
    // Key "k" is data word 0, the value starts at data word 1.
    r.data_words()[r.data_word_index(0, 1)].fetch_xor(1, Ordering::Relaxed);
    assert_eq!(get(&r, b"k", 0), None, "checksum mismatch is a miss");
    put(&r, b"k", b"value", 0, u64::MAX);
    assert_eq!(
        get(&r, b"k", 0).as_deref(),
        Some(&b"value"[..]),
        "an insert rewrites a damaged entry"
    );
}

/// Fills every word past the identity header (the words a writer changes) with `fill`.
fn damage(region: &HeapRegion, mut fill: impl FnMut() -> u64) {
    for word in &region.data_words()[header::LEN..] {
        word.store(fill(), Ordering::Relaxed);
    }
}

fn hammer_damaged(region: &HeapRegion, seed: &mut u64) {
    for step in 0..200u64 {
        let key = (xorshift(seed) % 12).to_le_bytes();
        let value = [step as u8; 5];
        // Any answer but a wrong value is fine on damaged data.
        if let Some(got) = get(region, &key, 0) {
            assert_eq!(got.len(), 5);
        }
        assert_eq!(
            put(region, &key, &value, 0, u64::MAX),
            InsertOutcome::Stored
        );
        let got = get(region, &key, 0).expect("just inserted");
        assert_eq!(got.len(), 5, "value of a key inserted since the damage");
    }
}

#[test]
fn random_words_never_panic_and_the_cache_recovers() {
    let mut seed = 0xDEAD_BEEF_CAFE_F00Du64;
    for round in 0..50 {
        let r = region(1 + round % 6);
        for k in 0..4u8 {
            put(&r, &[k], &[k; 5], 0, u64::MAX);
        }
        match round % 3 {
            0 => damage(&r, || xorshift(&mut seed)),
            // Small numbers look like valid slot indices and lengths: the hard case.
            1 => damage(&r, || xorshift(&mut seed) % 8),
            _ => damage(&r, || 0),
        }
        hammer_damaged(&r, &mut seed);
        // Some structure checks need a clean region: a clear gives one.
        assert!(r.engine().clear(&TestOwner::new(1)).unwrap());
        hammer_damaged(&r, &mut seed);
        r.check_invariants();
    }
}

#[test]
fn random_header_and_lock_words_make_the_mapping_stale_not_wrong() {
    let r = region(4);
    put(&r, b"k", b"v", 0, u64::MAX);
    r.data_words()[header::GENERATION].store(99, Ordering::Relaxed);
    let mut out = ValueBuf::new();
    assert_eq!(r.engine().get(b"k", 0, &mut out), Err(Stale));
    assert_eq!(
        r.engine()
            .insert(b"k", b"v", 0, u64::MAX, &TestOwner::new(1)),
        Err(Stale)
    );
    r.data_words()[header::GENERATION].store(1, Ordering::Relaxed);
    r.lock_words()[lock_word::RETIRED].store(1, Ordering::Relaxed);
    assert_eq!(r.engine().info(), Err(Stale));
}

#[test]
fn engine_refuses_regions_of_the_wrong_length() {
    let r = region(4);
    let layout = Layout::new(params(4)).unwrap();
    let data = r.data_words();
    let backing = HeapRegion::new(params(4)).unwrap();
    let b = backing.backing();
    assert!(Engine::new(&layout, r.lock_words(), &data[..data.len() - 1], 1, b).is_none());
    assert!(Engine::new(&layout, &r.lock_words()[1..], data, 1, b).is_none());
    assert!(Engine::new(&layout, r.lock_words(), data, 1, b).is_some());
}

/// Marks `region` as if writer `owner` died inside a section that was rewriting slot
/// `victim`: lock held, sequence odd, the slot's version odd and a data word changed.
fn die_writing_slot(region: &HeapRegion, owner: u64, victim: u32) {
    let lock = region.lock_words();
    lock[lock_word::OWNER].store(owner, Ordering::Relaxed);
    lock[lock_word::SEQ].fetch_add(1, Ordering::Relaxed);
    let layout = region.layout();
    let data = region.data_words();
    data[layout.slot_word(victim, layout::slot::VERSION)].fetch_add(1, Ordering::Relaxed);
    data[region.data_word_index(victim, 0)].fetch_xor(0xFF, Ordering::Relaxed);
}

#[test]
fn dead_writer_mid_write_costs_only_the_slot_it_was_writing() {
    let r = region(4);
    for key in [&b"a"[..], b"b", b"c"] {
        put(&r, key, key, 0, u64::MAX);
    }
    // Writer 77 died rewriting slot 1 (key "b").
    die_writing_slot(&r, 77, 1);
    assert_eq!(
        get(&r, b"a", 0).as_deref(),
        Some(&b"a"[..]),
        "other slots hit"
    );
    assert_eq!(
        get(&r, b"c", 0).as_deref(),
        Some(&b"c"[..]),
        "other slots hit"
    );
    assert_eq!(get(&r, b"b", 0), None, "the slot being written misses");

    let alive = TestOwner::new(1);
    assert_eq!(
        r.engine().insert(b"new", b"v", 0, u64::MAX, &alive),
        Ok(InsertOutcome::NotCached),
        "a live owner is never robbed"
    );

    let survivor = TestOwner {
        dead: vec![77],
        ..TestOwner::new(1)
    };
    assert_eq!(
        r.engine().insert(b"new", b"v", 0, u64::MAX, &survivor),
        Ok(InsertOutcome::Stored)
    );
    let lock = r.lock_words();
    assert_eq!(lock[lock_word::OWNER].load(Ordering::Relaxed), 0);
    assert_eq!(lock[lock_word::SEQ].load(Ordering::Relaxed) % 2, 0);
    r.check_invariants();
    assert_eq!(get(&r, b"new", 0).as_deref(), Some(&b"v"[..]));
    assert_eq!(
        get(&r, b"a", 0).as_deref(),
        Some(&b"a"[..]),
        "kept by the repair"
    );
    assert_eq!(
        get(&r, b"c", 0).as_deref(),
        Some(&b"c"[..]),
        "kept by the repair"
    );
    assert_eq!(get(&r, b"b", 0), None, "the torn slot is dropped");
    assert_eq!(r.engine().info().unwrap().current_size, 3);
}

#[test]
fn repair_keeps_whole_slots_drops_torn_and_duplicate_ones() {
    let r = region(8);
    for key in [&b"a"[..], b"b", b"c", b"d", b"e"] {
        put(&r, key, key, 0, u64::MAX);
    }
    let layout = Layout::new(params(8)).unwrap();
    let data = r.data_words();
    // Slot 4 ("e") becomes a second copy of slot 0 ("a"), slot 2 is torn, and the table,
    // length and queue are garbage.
    for n in 0..layout::slot::HEAD_WORDS {
        let word = data[layout.slot_word(0, n)].load(Ordering::Relaxed);
        data[layout.slot_word(4, n)].store(word, Ordering::Relaxed);
    }
    data[layout.slot_word(2, layout::slot::VERSION)].fetch_add(1, Ordering::Relaxed);
    for pos in 0..layout.table_size() {
        data[layout.table_word(pos)].store(0x0BAD_0000_0003, Ordering::Relaxed);
    }
    data[header::TAIL].store(3, Ordering::Relaxed);
    r.lock_words()[lock_word::SEQ].fetch_add(1, Ordering::Relaxed);
    assert_eq!(put(&r, b"f", b"f", 0, u64::MAX), InsertOutcome::Stored);
    r.check_invariants();
    let held: Vec<_> = [&b"a"[..], b"b", b"c", b"d", b"e", b"f"]
        .into_iter()
        .filter(|k| get(&r, k, 0).as_deref() == Some(*k))
        .collect();
    assert_eq!(held, [&b"a"[..], b"b", b"d", b"f"]);
}

#[test]
fn a_stale_mapping_that_finds_a_torn_section_leaves_it_torn() {
    let r = region(4);
    put(&r, b"a", b"a", 0, u64::MAX);
    die_writing_slot(&r, 77, 0);
    let survivor = TestOwner {
        dead: vec![77],
        ..TestOwner::new(1)
    };
    // Another process replaced the data file (generation 2): this mapping is stale.
    let lock = r.lock_words();
    lock[lock_word::GENERATION].store(2, Ordering::Relaxed);
    assert_eq!(
        r.engine().insert(b"k", b"v", 0, u64::MAX, &survivor),
        Err(Stale)
    );
    assert_eq!(
        lock[lock_word::GENERATION].load(Ordering::Relaxed),
        2,
        "no new generation"
    );
    assert_eq!(
        lock[lock_word::OWNER].load(Ordering::Relaxed),
        0,
        "lock freed"
    );
    assert_eq!(
        lock[lock_word::SEQ].load(Ordering::Relaxed) % 2,
        1,
        "still torn for the current mapping's next writer"
    );
}

#[test]
fn a_panic_inside_a_write_section_leaves_it_torn_and_the_next_writer_repairs() {
    let r = region(4);
    put(&r, b"a", b"a", 0, u64::MAX);
    let engine = r.engine();
    let owner = TestOwner::new(1);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = engine.write(&owner, || panic!("inside the section"));
    }));
    assert!(panicked.is_err());
    let lock = r.lock_words();
    assert_eq!(lock[lock_word::OWNER].load(Ordering::Relaxed), 0);
    assert_eq!(
        lock[lock_word::SEQ].load(Ordering::Relaxed) % 2,
        1,
        "marked torn"
    );
    assert_eq!(put(&r, b"b", b"b", 0, u64::MAX), InsertOutcome::Stored);
    assert_eq!(lock[lock_word::SEQ].load(Ordering::Relaxed) % 2, 0);
    assert_eq!(get(&r, b"a", 0).as_deref(), Some(&b"a"[..]));
    r.check_invariants();
}

#[test]
fn a_stuck_live_writer_is_waited_for_once_then_skipped_at_once() {
    let r = region(4);
    put(&r, b"a", b"a", 0, u64::MAX);
    let lock = r.lock_words();
    lock[lock_word::OWNER].store(77, Ordering::Relaxed);
    lock[lock_word::SEQ].fetch_add(1, Ordering::Relaxed);
    let memo = crate::sync::AtomicU64::new(0);
    let owner = Remembers(TestOwner::new(1), &memo);
    assert_eq!(
        r.engine().insert(b"k", b"v", 0, u64::MAX, &owner),
        Ok(InsertOutcome::NotCached)
    );
    assert_ne!(
        memo.load(Ordering::Relaxed),
        0,
        "the stuck section is remembered"
    );
    let asked = owner.0.asked.load(Ordering::Relaxed);
    assert_eq!(
        r.engine().insert(b"k", b"v", 0, u64::MAX, &owner),
        Ok(InsertOutcome::NotCached)
    );
    assert_eq!(
        owner.0.asked.load(Ordering::Relaxed),
        asked + 1,
        "one look, no waiting"
    );
    assert_eq!(get(&r, b"a", 0).as_deref(), Some(&b"a"[..]), "hits go on");
    // The writer moves on: the memo no longer matches, writes wait normally again.
    lock[lock_word::SEQ].fetch_add(1, Ordering::Relaxed);
    lock[lock_word::OWNER].store(0, Ordering::Relaxed);
    assert_eq!(
        r.engine().insert(b"k", b"v", 0, u64::MAX, &owner),
        Ok(InsertOutcome::Stored)
    );
}

/// A test owner with a stuck memo.
struct Remembers<'a>(TestOwner, &'a crate::sync::AtomicU64);

impl LockOwner for Remembers<'_> {
    fn id(&self) -> u64 {
        self.0.id()
    }
    fn is_alive(&self, owner: u64) -> bool {
        self.0.is_alive(owner)
    }
    fn patience(&self) -> Patience {
        self.0.patience()
    }
    fn stuck_memo(&self) -> Option<&crate::sync::AtomicU64> {
        Some(self.1)
    }
}

#[test]
fn dead_writer_between_writes_leaves_entries_alone() {
    let r = region(4);
    put(&r, b"old", b"v", 0, u64::MAX);
    r.lock_words()[lock_word::OWNER].store(77, Ordering::Relaxed);
    let survivor = TestOwner {
        dead: vec![77],
        ..TestOwner::new(1)
    };
    assert_eq!(
        r.engine().insert(b"new", b"v", 0, u64::MAX, &survivor),
        Ok(InsertOutcome::Stored)
    );
    assert_eq!(get(&r, b"old", 0).as_deref(), Some(&b"v"[..]));
}

#[test]
fn threads_on_one_region_never_see_a_wrong_value() {
    let r = region(8);
    let expected =
        |key: u64| -> Vec<u8> { (0..(key % 40) as u8 + 1).map(|i| i ^ key as u8).collect() };
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let r = &r;
            s.spawn(move || {
                let owner = TestOwner {
                    patience: Patience::DEFAULT,
                    ..TestOwner::new(t + 1)
                };
                let mut seed = 0x1234_5678 + t;
                let mut out = ValueBuf::new();
                for _ in 0..20_000 {
                    let key = xorshift(&mut seed) % 32;
                    let engine = r.engine();
                    if engine.get(&key.to_le_bytes(), 0, &mut out).unwrap() {
                        assert_eq!(out.bytes(), expected(key), "key {key}");
                    } else {
                        engine
                            .insert(&key.to_le_bytes(), &expected(key), 0, u64::MAX, &owner)
                            .unwrap();
                    }
                }
            });
        }
    });
    r.check_invariants();
    let info = r.engine().info().unwrap();
    assert_eq!(info.hits + info.misses, 80_000);
}

/// Entries of every key and value length, small enough for the slot head and large enough
/// to spill into the overflow, round-trip, and damage to a word in the overflow is caught.
#[test]
fn entries_of_every_size_cross_the_head_and_overflow_intact() {
    let params = Params {
        capacity: 4,
        max_key_size: 40,
        max_value_size: 120,
        ttl_ns: None,
        max_bytes: None,
    };
    let owner = TestOwner::new(1);
    for key_len in [1, 7, 8, 9, 40] {
        for value_len in [0, 1, 8, 63, 64, 65, 119, 120] {
            let r = HeapRegion::new(params).unwrap();
            let key: Vec<u8> = (0..key_len).map(|i| i as u8 ^ 0x5A).collect();
            let value: Vec<u8> = (0..value_len).map(|i| (i * 7) as u8).collect();
            let engine = r.engine();
            assert_eq!(
                engine.insert(&key, &value, 0, u64::MAX, &owner),
                Ok(InsertOutcome::Stored)
            );
            let mut out = ValueBuf::new();
            assert_eq!(engine.get(&key, 0, &mut out), Ok(true));
            assert_eq!(out.bytes(), &value[..], "{key_len}/{value_len}");
            let last = (key_len as usize).div_ceil(8) + (value_len as usize).div_ceil(8) - 1;
            r.data_words()[r.data_word_index(0, last)].fetch_xor(1 << 60, Ordering::Relaxed);
            assert_eq!(
                engine.get(&key, 0, &mut out),
                Ok(false),
                "damage to data word {last} of {key_len}/{value_len} went unnoticed"
            );
        }
    }
}

/// Other processes count in other stripes: `info` sums every stripe, `clear` zeroes them all.
#[test]
fn counters_of_every_stripe_are_summed_and_cleared() {
    let r = region(4);
    put(&r, b"k", b"v", 0, u64::MAX);
    assert_eq!(get(&r, b"k", 0).as_deref(), Some(&b"v"[..]));
    assert_eq!(get(&r, b"other", 0), None);
    for stripe in 0..layout::COUNTER_STRIPES {
        r.data_words()[header::counter(stripe, header::HITS)].fetch_add(10, Ordering::Relaxed);
        r.data_words()[header::counter(stripe, header::MISSES)].fetch_add(1, Ordering::Relaxed);
    }
    let info = r.engine().info().unwrap();
    let stripes = layout::COUNTER_STRIPES as u64;
    assert_eq!((info.hits, info.misses), (1 + 10 * stripes, 1 + stripes));
    assert_eq!(r.engine().clear(&TestOwner::new(1)), Ok(true));
    let info = r.engine().info().unwrap();
    assert_eq!((info.hits, info.misses), (0, 0));
}

fn sized(capacity: u32, max_value_size: u32, max_bytes: Option<u64>) -> HeapRegion {
    HeapRegion::new(Params {
        capacity,
        max_key_size: 24,
        max_value_size,
        ttl_ns: None,
        max_bytes,
    })
    .unwrap()
}

/// A value of `len` bytes that tells which key and length it was made for.
fn value_for(key: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|n| (key as usize * 31 + n * 7 + len) as u8)
        .collect()
}

#[test]
fn entries_of_every_size_fit_the_byte_budget_and_read_back_exactly() {
    let budget = 6_000;
    let r = sized(64, 2_000, Some(budget));
    let mut seed = 0x5EED_u64;
    let mut latest = Vec::new();
    for round in 0..2_000u64 {
        let key = xorshift(&mut seed) % 200;
        let len = (xorshift(&mut seed) % 1_500) as usize;
        let value = value_for(key, len);
        // Replace: the latest value of a key is the one held.
        assert_eq!(
            r.engine()
                .replace(&key.to_le_bytes(), &value, 0, u64::MAX, &TestOwner::new(1)),
            Ok(InsertOutcome::Stored)
        );
        latest.push((key, value));
        let info = r.engine().info().unwrap();
        assert!(info.current_bytes <= budget, "{info:?}");
        assert!(info.current_size <= 64);
        if round % 97 == 0 {
            r.check_invariants();
        }
        // Every hit is the latest value stored for its key; the newest entry is there.
        for probe in [key, xorshift(&mut seed) % 200] {
            if let Some(got) = get(&r, &probe.to_le_bytes(), 0) {
                let want = latest.iter().rev().find(|(k, _)| *k == probe).unwrap();
                assert_eq!(got, want.1, "key {probe}");
            } else {
                assert_ne!(probe, key, "the entry just stored is missing");
            }
        }
    }
    r.check_invariants();
}

#[test]
fn the_heap_grows_as_entries_land_and_is_reused_after_evictions() {
    let r = sized(1_000, 4_096, None);
    let start = r.heap_limit();
    for key in 0..200u64 {
        put(&r, &key.to_le_bytes(), &value_for(key, 1_000), 0, u64::MAX);
    }
    assert!(r.heap_limit() > start, "the heap grew");
    assert!(r.heap_limit() < 200 * 1_000 * 3 / 2 / 8 + 2 * super::layout::CHUNK_WORDS);
    for key in 0..200u64 {
        assert_eq!(
            get(&r, &key.to_le_bytes(), 0),
            Some(value_for(key, 1_000)),
            "{key}"
        );
    }
    r.check_invariants();
    // Replacing every entry with one of the same size needs no more heap.
    let grown = r.heap_limit();
    assert!(r.engine().clear(&TestOwner::new(1)).unwrap());
    for key in 0..200u64 {
        put(
            &r,
            &key.to_le_bytes(),
            &value_for(key + 1, 1_000),
            0,
            u64::MAX,
        );
    }
    assert_eq!(r.heap_limit(), grown);
    r.check_invariants();
}

#[test]
fn a_full_disk_costs_entries_never_a_fault_and_hits_go_on() {
    let r = sized(1_000, 100_000, None);
    // The file cannot grow past its first chunk (64 KiB): about 60 values of 1 KB fit.
    r.cap_heap(r.heap_limit());
    for key in 0..300u64 {
        assert_eq!(
            put(&r, &key.to_le_bytes(), &value_for(key, 1_000), 0, u64::MAX),
            InsertOutcome::Stored,
            "older entries make room"
        );
        assert_eq!(get(&r, &key.to_le_bytes(), 0), Some(value_for(key, 1_000)));
    }
    let info = r.engine().info().unwrap();
    assert!((40..=64).contains(&info.current_size), "{info:?}");
    r.check_invariants();
    // An entry larger than the whole heap is skipped and counted; the others stay.
    let before = info.current_size;
    assert_eq!(
        put(&r, b"huge", &value_for(9, 90_000), 0, u64::MAX),
        InsertOutcome::NotCached
    );
    let info = r.engine().info().unwrap();
    assert_eq!(info.oversize_skips, 1);
    assert!(info.current_size == 0 || info.current_size <= before);
    assert_eq!(get(&r, b"huge", 0), None);
    put(&r, b"small", b"v", 0, u64::MAX);
    assert_eq!(get(&r, b"small", 0).as_deref(), Some(&b"v"[..]));
    r.check_invariants();
}

#[test]
fn a_torn_section_in_a_heap_with_blocks_keeps_the_whole_entries() {
    let r = sized(16, 4_096, None);
    for key in 0..10u64 {
        put(&r, &key.to_le_bytes(), &value_for(key, 300), 0, u64::MAX);
    }
    // Writer 77 died rewriting slot 3's block; the free lists are garbage.
    die_writing_slot(&r, 77, 3);
    for class in 0..super::layout::CLASSES {
        r.data_words()[header::FREE + class].store(0xDEAD, Ordering::Relaxed);
    }
    let survivor = TestOwner {
        dead: vec![77],
        ..TestOwner::new(1)
    };
    assert_eq!(
        r.engine()
            .insert(b"new", &value_for(99, 500), 0, u64::MAX, &survivor),
        Ok(InsertOutcome::Stored)
    );
    r.check_invariants();
    for key in 0..10u64 {
        let got = get(&r, &key.to_le_bytes(), 0);
        if key == 3 {
            assert_eq!(got, None);
        } else {
            assert_eq!(got, Some(value_for(key, 300)), "{key}");
        }
    }
    assert_eq!(get(&r, b"new", 0), Some(value_for(99, 500)));
}

#[test]
fn remove_takes_one_entry_out_for_everyone() {
    let r = region(4);
    let owner = TestOwner::new(1);
    for (key, value) in [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")] {
        assert_eq!(put(&r, key, value, 0, u64::MAX), InsertOutcome::Stored);
    }
    assert_eq!(put(&r, b"d", b"4", 0, 10), InsertOutcome::Stored);
    let engine = r.engine();
    // "a" is not the last slot: the last one moves into its place and stays readable.
    assert_eq!(engine.remove(b"a", 0, &owner), Ok(Some(true)));
    assert_eq!(engine.remove(b"a", 0, &owner), Ok(Some(false)));
    assert_eq!(
        engine.remove(b"d", 20, &owner),
        Ok(Some(false)),
        "expired: not live"
    );
    assert_eq!(get(&r, b"a", 0), None);
    assert_eq!(get(&r, b"b", 0).as_deref(), Some(&b"2"[..]));
    assert_eq!(get(&r, b"c", 0).as_deref(), Some(&b"3"[..]));
    assert_eq!(engine.info().unwrap().current_size, 2);
    r.check_invariants();
    assert_eq!(
        engine.remove(&[0; 100], 0, &owner),
        Ok(Some(false)),
        "a key over max_key_size is never stored"
    );
}

#[test]
fn a_read_that_does_not_count_leaves_the_visited_bit() {
    let r = region(2);
    put(&r, b"a", b"1", 0, u64::MAX);
    put(&r, b"b", b"2", 0, u64::MAX);
    let engine = r.engine();
    let mut out = ValueBuf::new();
    let read = engine.get_read(b"a", 0, &mut out, |_, _| false, false);
    assert!(matches!(read, Ok(Some(_))));
    assert_eq!(engine.info().unwrap().hits, 0);
    put(&r, b"c", b"3", 0, u64::MAX);
    assert_eq!(get(&r, b"a", 0), None, "peeked at only: evicted first");
    assert_eq!(get(&r, b"b", 0).as_deref(), Some(&b"2"[..]));
}
