//! The shared store's engine (`src/shared/engine.rs`, `table.rs`) on a two-slot heap region:
//! lookups inside seqlock reads racing inserts that evict, and writers racing each other.
//! Every value is a function of its key, so a lookup can check what it got.

use crate::owner::Processes;
use crate::{model, Arc};
use loom::thread;
use warp_cache::shared::{HeapRegion, InsertOutcome, Params, ValueBuf};

/// Two slots; keys and values of one word each keep every copy short.
pub(crate) fn tiny_region() -> Arc<HeapRegion> {
    Arc::new(
        HeapRegion::new(Params {
            capacity: 2,
            max_key_size: 8,
            max_value_size: 8,
            ttl_ns: None,
            max_bytes: None,
        })
        .expect("tiny parameters"),
    )
}

pub(crate) fn value_of(key: &[u8]) -> Vec<u8> {
    key.iter().map(|b| b ^ 0x5A).chain(*b"!!").collect()
}

/// Looks `key` up and checks any value found; true on a hit.
pub(crate) fn lookup(region: &HeapRegion, key: &[u8]) -> bool {
    let mut out = ValueBuf::new();
    let hit = region.engine().get(key, 0, &mut out).expect("never stale");
    if hit {
        assert_eq!(out.bytes(), value_of(key), "wrong value for {key:?}");
    }
    hit
}

/// Inserts `key -> value_of(key)` forever; true if stored.
pub(crate) fn insert(
    region: &HeapRegion,
    key: &[u8],
    owner: &impl warp_cache::shared::LockOwner,
) -> bool {
    let outcome = region
        .engine()
        .insert(key, &value_of(key), 0, u64::MAX, owner)
        .expect("never stale");
    assert_ne!(outcome, InsertOutcome::Oversize);
    outcome == InsertOutcome::Stored
}

fn len(region: &HeapRegion) -> u64 {
    region.engine().info().expect("never stale").current_size
}

#[test]
fn lookup_racing_an_insert_sees_nothing_or_the_value() {
    model(2, || {
        let region = tiny_region();
        let processes = Processes::new(1);
        let writer = {
            let region = Arc::clone(&region);
            let owner = processes.owner(1);
            thread::spawn(move || assert!(insert(&region, b"key", &owner)))
        };
        lookup(&region, b"key");
        writer.join().unwrap();
        assert!(lookup(&region, b"key"));
        region.check_invariants();
    });
}

/// `remove` (`cache_invalidate`) moves the last occupied slot into the hole it makes:
/// lookups racing it, of the moved key and of the removed one, see the right value or
/// nothing, never another key's; afterwards the moved key is still there.
#[test]
fn lookups_racing_a_remove_that_moves_the_last_slot() {
    model(2, || {
        let region = tiny_region();
        let processes = Processes::new(2);
        let main = processes.owner(2);
        assert!(insert(&region, b"p", &main));
        assert!(insert(&region, b"q", &main));
        let remover = {
            let region = Arc::clone(&region);
            let owner = processes.owner(1);
            thread::spawn(move || {
                let removed = region.engine().remove(b"p", 0, &owner);
                assert_eq!(removed, Ok(Some(true)));
            })
        };
        lookup(&region, b"q");
        lookup(&region, b"p");
        remover.join().unwrap();
        assert!(!lookup(&region, b"p"));
        assert!(lookup(&region, b"q"), "the moved entry was lost");
        assert_eq!(len(&region), 1);
        region.check_invariants();
    });
}

#[test]
fn lookup_racing_an_eviction_of_its_key() {
    model(2, || {
        let region = tiny_region();
        let processes = Processes::new(2);
        let main = processes.owner(2);
        assert!(insert(&region, b"p", &main));
        assert!(insert(&region, b"q", &main));
        let writer = {
            let region = Arc::clone(&region);
            let owner = processes.owner(1);
            // Full: evicts p, or q if the lookup below marked p visited first.
            thread::spawn(move || assert!(insert(&region, b"k", &owner)))
        };
        lookup(&region, b"p");
        writer.join().unwrap();
        region.check_invariants();
        assert_eq!(len(&region), 2, "size bound, no lost entry");
        assert!(lookup(&region, b"k"), "the newest entry was evicted");
        let survivors = [&b"p"[..], b"q"]
            .iter()
            .filter(|k| lookup(&region, k))
            .count();
        assert_eq!(survivors, 1, "exactly one of p and q was evicted");
    });
}

#[test]
fn two_writers_and_a_lookup_lose_and_duplicate_nothing() {
    model(2, || {
        let region = tiny_region();
        let processes = Processes::new(3);
        assert!(insert(&region, b"p", &processes.owner(3)));
        let writers: Vec<_> = [(1, &b"a"[..]), (2, b"b")]
            .into_iter()
            .map(|(id, key)| {
                let region = Arc::clone(&region);
                let owner = processes.owner(id);
                thread::spawn(move || insert(&region, key, &owner).then_some(key))
            })
            .collect();
        lookup(&region, b"p");
        let stored: Vec<&[u8]> = writers
            .into_iter()
            .filter_map(|w| w.join().unwrap())
            .collect();
        region.check_invariants();
        let expected_len = (1 + stored.len() as u64).min(2);
        assert_eq!(
            len(&region),
            expected_len,
            "an entry was lost or duplicated"
        );
        let present = [&b"p"[..], b"a", b"b"]
            .iter()
            .filter(|k| lookup(&region, k))
            .count();
        assert_eq!(present as u64, expected_len);
        for key in [&b"a"[..], b"b"] {
            if !stored.contains(&key) {
                assert!(!lookup(&region, key), "{key:?} present though not stored");
            }
        }
    });
}
