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
            },
        }
    }
}

impl LockOwner for TestOwner {
    fn id(&self) -> u64 {
        self.id
    }
    fn is_alive(&self, owner: u64) -> bool {
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
            oversize_skips: 0
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
    let layout = Layout::new(params(4)).unwrap();
    // Key "k" is data word 0, the value starts at data word 1.
    r.data_words()[layout.data_word(0, 1)].fetch_xor(1, Ordering::Relaxed);
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
    assert!(Engine::new(&layout, r.lock_words(), &data[..data.len() - 1], 1).is_none());
    assert!(Engine::new(&layout, &r.lock_words()[1..], data, 1).is_none());
    assert!(Engine::new(&layout, r.lock_words(), data, 1).is_some());
}

#[test]
fn dead_writer_mid_write_is_taken_over_and_region_reset() {
    let r = region(4);
    put(&r, b"old", b"v", 0, u64::MAX);
    // Writer 77 died inside a write section: lock held, sequence odd.
    let lock = r.lock_words();
    lock[lock_word::OWNER].store(77, Ordering::Relaxed);
    lock[lock_word::SEQ].fetch_add(1, Ordering::Relaxed);
    assert_eq!(
        get(&r, b"old", 0),
        None,
        "readers give up on an odd sequence"
    );

    let alive = TestOwner::new(1);
    assert_eq!(
        r.engine().insert(b"new", b"v", 0, u64::MAX, &alive),
        Ok(InsertOutcome::NotCached)
    );

    let survivor = TestOwner {
        dead: vec![77],
        ..TestOwner::new(1)
    };
    assert_eq!(
        r.engine().insert(b"new", b"v", 0, u64::MAX, &survivor),
        Ok(InsertOutcome::Stored)
    );
    assert_eq!(lock[lock_word::OWNER].load(Ordering::Relaxed), 0);
    assert_eq!(lock[lock_word::SEQ].load(Ordering::Relaxed) % 2, 0);
    assert_eq!(get(&r, b"new", 0).as_deref(), Some(&b"v"[..]));
    assert_eq!(get(&r, b"old", 0), None, "a torn region is reset");
    r.check_invariants();
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
    };
    let layout = Layout::new(params).unwrap();
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
            r.data_words()[layout.data_word(0, last)].fetch_xor(1 << 60, Ordering::Relaxed);
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
