use super::*;
use crate::sync::RwLock;
use std::sync::Arc;

type U64Store = Store<u64, u64, RwLock<Shard<u64, u64>>>;

fn get(store: &U64Store, key: u64, now: u64) -> Option<u64> {
    match store.get(spread_hash(key), &key, &[], now) {
        Get::Hit(v) => Some(v),
        Get::Miss => None,
        Get::Undecided(_) => unreachable!("u64 keys are always decidable"),
    }
}

fn put(store: &U64Store, key: u64, value: u64, now: u64, expires_at: u64) {
    match store.insert(spread_hash(key), key, value, &[], now, expires_at) {
        Insert::Done(_) | Insert::NotCached(..) => {}
        Insert::Undecided(..) => unreachable!("u64 keys are always decidable"),
    }
}

#[test]
fn holds_max_size_when_every_hash_lands_in_one_shard() {
    // Raw (unspread) hashes of 0..n all have zero high bits: one shard of sixteen.
    let store = U64Store::new(100, 16);
    assert_eq!(store.shard_count(), 16);
    for k in 0..1000u64 {
        assert!(matches!(
            store.insert(k, k, k * 2, &[], 0, u64::MAX),
            Insert::Done(_)
        ));
        assert!(store.len() <= 100);
    }
    assert_eq!(
        store.len(),
        100,
        "a skewed shard still gets the whole budget"
    );
    store.check_invariants();
}

#[test]
fn evicts_from_other_shards_when_own_shard_is_empty() {
    let store = U64Store::new(4, 2);
    // Fill shard 0 (high bit clear), then insert into shard 1 (high bit set).
    for k in 0..4u64 {
        assert!(matches!(
            store.insert(k, k, k, &[], 0, u64::MAX),
            Insert::Done(_)
        ));
    }
    let high = 1u64 << 63;
    assert!(matches!(
        store.insert(high, high, 7, &[], 0, u64::MAX),
        Insert::Done(_)
    ));
    assert_eq!(store.len(), 4);
    assert!(matches!(store.get(high, &high, &[], 0), Get::Hit(7)));
    store.check_invariants();
}

#[test]
fn ttl_expires_and_replaces_in_place() {
    let store = U64Store::new(8, 1);
    put(&store, 1, 10, 0, 100);
    assert_eq!(get(&store, 1, 99), Some(10));
    assert_eq!(get(&store, 1, 100), None, "expired at its deadline");
    assert_eq!(store.live_len(100), 0);
    put(&store, 1, 11, 100, 200);
    assert_eq!(store.len(), 1, "expired entry reused, not duplicated");
    assert_eq!(get(&store, 1, 150), Some(11));
    store.check_invariants();
}

#[test]
fn expired_entries_are_evicted_before_visited_ones() {
    let store = U64Store::new(2, 1);
    put(&store, 1, 1, 0, u64::MAX);
    put(&store, 2, 2, 0, 10);
    assert_eq!(get(&store, 1, 0), Some(1));
    assert_eq!(get(&store, 2, 0), Some(2));
    put(&store, 3, 3, 20, u64::MAX);
    assert_eq!(get(&store, 1, 20), Some(1));
    assert_eq!(get(&store, 2, 20), None);
    assert_eq!(get(&store, 3, 20), Some(3));
}

#[test]
fn zero_size_caches_nothing() {
    let store = U64Store::new(0, 1);
    assert!(matches!(
        store.insert(1, 1, 1, &[], 0, u64::MAX),
        Insert::NotCached(1, 1)
    ));
    assert_eq!(store.len(), 0);
}

#[test]
fn clear_hands_back_every_entry() {
    let store = U64Store::new(50, 4);
    for k in 0..40 {
        put(&store, k, k, 0, u64::MAX);
    }
    let mut taken: Vec<u64> = store.clear().into_iter().map(|(k, _)| k).collect();
    taken.sort_unstable();
    assert_eq!(taken, (0..40).collect::<Vec<_>>());
    assert!(store.is_empty());
    assert_eq!(get(&store, 3, 0), None);
    store.check_invariants();
}

#[test]
fn remove_takes_one_entry_and_frees_its_budget() {
    let store = U64Store::new(3, 1);
    for k in 0..3 {
        put(&store, k, k * 10, 0, u64::MAX);
    }
    assert!(matches!(
        store.remove(spread_hash(1), &1, &[], 0),
        Remove::Removed((1, 10), true)
    ));
    assert_eq!(get(&store, 1, 0), None);
    assert!(matches!(
        store.remove(spread_hash(1), &1, &[], 0),
        Remove::Absent
    ));
    // The freed unit takes a new key without evicting the others.
    put(&store, 7, 70, 0, u64::MAX);
    assert_eq!((get(&store, 0, 0), get(&store, 2, 0)), (Some(0), Some(20)));
    assert_eq!(get(&store, 7, 0), Some(70));
    assert_eq!(store.len(), 3);
    store.check_invariants();
}

/// A key whose equality the store may not decide: like a Python object with `__eq__`.
#[derive(Clone, Debug)]
struct ForeignKey {
    id: u64,
    class: u64,
}

impl CacheKey for ForeignKey {
    fn quick_eq(&self, other: &Self) -> Option<bool> {
        (self.id == other.id).then_some(true)
    }
}

fn foreign_eq(a: &ForeignKey, b: &ForeignKey) -> bool {
    a.class == b.class
}

#[test]
fn undecided_candidates_are_settled_by_verdicts() {
    let store: Store<ForeignKey, u64, RwLock<Shard<ForeignKey, u64>>> = Store::new(8, 1);
    let stored = ForeignKey { id: 1, class: 5 };
    assert!(matches!(
        store.insert(42, stored, 9, &[], 0, u64::MAX),
        Insert::Done(None)
    ));

    let equal = ForeignKey { id: 2, class: 5 };
    let Get::Undecided(candidates) = store.get(42, &equal, &[], 0) else {
        panic!("a different object must be compared outside the store");
    };
    let verdicts: Vec<Verdict> = candidates
        .iter()
        .map(|c| Verdict {
            slot: c.slot,
            stamp: c.stamp,
            equal: foreign_eq(&c.key, &equal),
        })
        .collect();
    assert!(matches!(store.get(42, &equal, &verdicts, 0), Get::Hit(9)));

    let other = ForeignKey { id: 3, class: 6 };
    let Insert::Undecided(candidates, other, value) = store.insert(42, other, 10, &[], 0, u64::MAX)
    else {
        panic!("insert must not decide foreign equality itself");
    };
    let verdicts: Vec<Verdict> = candidates
        .iter()
        .map(|c| Verdict {
            slot: c.slot,
            stamp: c.stamp,
            equal: foreign_eq(&c.key, &other),
        })
        .collect();
    assert!(matches!(
        store.insert(42, other, value, &verdicts, 0, u64::MAX),
        Insert::Done(None)
    ));
    assert_eq!(store.len(), 2, "unequal keys with one hash are two entries");
    store.check_invariants();
}

#[test]
fn stale_verdicts_are_ignored() {
    let store: Store<ForeignKey, u64, RwLock<Shard<ForeignKey, u64>>> = Store::new(1, 1);
    store.insert(7, ForeignKey { id: 1, class: 1 }, 1, &[], 0, u64::MAX);
    let probe = ForeignKey { id: 2, class: 1 };
    let Get::Undecided(c) = store.get(7, &probe, &[], 0) else {
        panic!()
    };
    let verdict = Verdict {
        slot: c[0].slot,
        stamp: c[0].stamp,
        equal: true,
    };
    // The entry is evicted and its slot reused by a different key.
    store.insert(8, ForeignKey { id: 3, class: 2 }, 2, &[], 0, u64::MAX);
    store.insert(7, ForeignKey { id: 4, class: 3 }, 3, &[], 0, u64::MAX);
    assert!(matches!(
        store.get(7, &probe, &[verdict], 0),
        Get::Undecided(_)
    ));
}

#[test]
fn threads_racing_keep_every_invariant() {
    hammer(Arc::new(U64Store::new(64, 4)));
}

#[test]
fn threads_racing_on_reader_sharded_locks_keep_every_invariant() {
    hammer(Arc::new(Store::<
        u64,
        u64,
        crate::sync::ShardedLock<Shard<u64, u64>>,
    >::new(64, 4)));
}

/// Four threads of mixed gets, inserts and clears, every value checked.
fn hammer<L: ShardLock<Shard<u64, u64>> + Send + Sync + 'static>(store: Arc<Store<u64, u64, L>>) {
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut x = t + 1;
                for _ in 0..20_000 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let key = (x >> 33) % 200;
                    match store.get(spread_hash(key), &key, &[], 0) {
                        Get::Hit(v) => assert_eq!(v, key * 3, "wrong value for {key}"),
                        _ => drop(store.insert(spread_hash(key), key, key * 3, &[], 0, u64::MAX)),
                    }
                    if x % 5000 == 0 {
                        drop(store.clear());
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    store.check_invariants();
}

#[test]
fn remove_takes_one_entry_out_and_tells_whether_it_was_live() {
    let store = U64Store::new(8, 1);
    put(&store, 1, 10, 0, u64::MAX);
    put(&store, 2, 20, 0, 5);
    put(&store, 3, 30, 0, u64::MAX);
    assert!(matches!(
        store.remove(spread_hash(1), &1, &[], 0),
        Remove::Removed((1, 10), true)
    ));
    assert!(matches!(
        store.remove(spread_hash(2), &2, &[], 9),
        Remove::Removed((2, 20), false)
    ));
    assert!(matches!(
        store.remove(spread_hash(1), &1, &[], 0),
        Remove::Absent
    ));
    assert_eq!(store.len(), 1);
    assert_eq!(get(&store, 3, 0), Some(30));
    store.check_invariants();
    // The freed budget is usable again.
    for k in 10..17 {
        put(&store, k, k, 0, u64::MAX);
    }
    assert_eq!(store.len(), 8);
    store.check_invariants();
}

#[test]
fn peek_leaves_the_visited_bit_so_the_entry_is_evicted_first() {
    let store = U64Store::new(2, 1);
    put(&store, 1, 10, 0, u64::MAX);
    put(&store, 2, 20, 0, u64::MAX);
    assert!(matches!(
        store.peek(spread_hash(1), &1, &[], 0),
        Get::Hit(10)
    ));
    put(&store, 3, 30, 0, u64::MAX);
    assert_eq!(
        get(&store, 1, 0),
        None,
        "a peeked entry has no second chance"
    );
    assert_eq!(get(&store, 2, 0), Some(20));
}

#[test]
fn replace_gives_a_live_key_a_new_value_and_insert_does_not() {
    let store = U64Store::new(4, 1);
    put(&store, 1, 10, 0, u64::MAX);
    put(&store, 1, 11, 0, u64::MAX);
    assert_eq!(get(&store, 1, 0), Some(10));
    assert!(matches!(
        store.put(spread_hash(1), 1, 12, &[], 0, 50, true),
        Insert::Done(Some((1, 10)))
    ));
    assert_eq!(get(&store, 1, 0), Some(12));
    assert_eq!(
        get(&store, 1, 60),
        None,
        "the replaced value has the new expiry"
    );
    assert_eq!(store.len(), 1);
    store.check_invariants();
}
