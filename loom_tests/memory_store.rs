//! The in-process store (`src/memory/`) with `RwLock` shards from the seam, as on
//! free-threaded builds: hits setting the visited bit under the read lock, the SIEVE hand
//! clearing it under the write lock, clears and cross-shard evictions racing lookups.

use crate::{model, Arc};
use loom::thread;
use warp_cache::memory::{Get, Insert, Shard, Store};
use warp_cache::sync::{AtomicBool, Ordering, RwLock};

pub(crate) type U64Store = Store<u64, u64, RwLock<Shard<u64, u64>>>;

/// Keys name their shard: with two shards the top hash bit picks one.
pub(crate) fn hash(key: u64) -> u64 {
    key.rotate_right(1)
}

pub(crate) fn value_of(key: u64) -> u64 {
    key * 10 + 1
}

/// Looks `key` up and checks any value found; true on a hit.
pub(crate) fn lookup(store: &U64Store, key: u64) -> bool {
    match store.get(hash(key), &key, &[], 0) {
        Get::Hit(value) => {
            assert_eq!(value, value_of(key), "wrong value for {key}");
            true
        }
        Get::Miss => false,
        Get::Undecided(_) => unreachable!("u64 keys are always decidable"),
    }
}

/// Inserts `key -> value_of(key)`; true if stored.
pub(crate) fn insert(store: &U64Store, key: u64) -> bool {
    match store.insert(hash(key), key, value_of(key), &[], 0, u64::MAX) {
        Insert::Done(_) => true,
        Insert::NotCached(..) => false,
        Insert::Undecided(..) => unreachable!("u64 keys are always decidable"),
    }
}

/// A hit that finished before an eviction started gives its entry a second chance: the
/// visited bit, stored relaxed under the read lock, reaches the hand under the write lock.
/// Keys 2 and 4 share shard 0; the store holds two entries, 2 the oldest.
#[test]
fn hit_setting_visited_races_the_hand() {
    model(3, || {
        let store = Arc::new(U64Store::new(2, 1));
        assert!(insert(&store, 2) && insert(&store, 4));
        let hit_done = Arc::new(AtomicBool::new(false));
        let hitter = {
            let (store, hit_done) = (Arc::clone(&store), Arc::clone(&hit_done));
            thread::spawn(move || {
                let hit = lookup(&store, 2);
                hit_done.store(true, Ordering::Release);
                hit
            })
        };
        let hit_first = hit_done.load(Ordering::Acquire);
        assert!(insert(&store, 6), "a full store evicts to make room");
        let hit = hitter.join().unwrap();
        store.check_invariants();
        assert_eq!(store.len(), 2);
        assert!(lookup(&store, 6), "the newest entry was evicted");
        if hit_first {
            assert!(hit, "2 was present until the insert");
            assert!(lookup(&store, 2), "a visited entry lost its second chance");
            assert!(!lookup(&store, 4), "the unvisited entry should have gone");
        }
    });
}

/// `clear` takes the shards one by one while a lookup reads and an insert writes.
#[test]
fn clear_racing_lookups_and_an_insert() {
    model(2, || {
        // Two shards: 2 lands in shard 0, 3 in shard 1 (top hash bit).
        let store = Arc::new(U64Store::new(2, 2));
        assert!(insert(&store, 2) && insert(&store, 3));
        let clearer = {
            let store = Arc::clone(&store);
            thread::spawn(move || store.clear().len())
        };
        let inserter = {
            let store = Arc::clone(&store);
            thread::spawn(move || insert(&store, 5))
        };
        lookup(&store, 2);
        lookup(&store, 3);
        let cleared = clearer.join().unwrap();
        let stored = inserter.join().unwrap();
        store.check_invariants();
        assert!(
            !lookup(&store, 2) && !lookup(&store, 3),
            "clear left an entry"
        );
        assert!(cleared <= 2 + usize::from(stored));
        assert!(
            store.len() <= 1,
            "only the racing insert may survive the clear"
        );
    });
}

/// An insert into an empty shard of a full store evicts from the other shard after
/// dropping its own lock, while an insert into that other shard races it: no deadlock,
/// the budget is kept.
#[test]
fn cross_shard_eviction_races_an_insert() {
    model(2, || {
        let store = Arc::new(U64Store::new(1, 2));
        assert!(insert(&store, 2));
        let other_shard = {
            let store = Arc::clone(&store);
            thread::spawn(move || insert(&store, 3))
        };
        let same_shard = insert(&store, 4);
        let other = other_shard.join().unwrap();
        store.check_invariants();
        assert_eq!(store.len(), 1);
        assert!(same_shard || other, "both inserts gave up");
        let present = [2, 3, 4].into_iter().filter(|&k| lookup(&store, k)).count();
        assert_eq!(present, 1);
    });
}
