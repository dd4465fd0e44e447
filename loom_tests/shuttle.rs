//! shuttle models: randomized schedules of larger scenarios than loom can explore.
//!
//! Build with `RUSTFLAGS="--cfg shuttle"` and `--no-default-features` (`make shuttle`);
//! without the cfg this test crate is empty. shuttle makes every atomic SeqCst, so these
//! check logic under interleavings (several "processes" on one region, one of them dying
//! at a random step), not memory orderings: that is loom's job (`loom.rs`). `flights`
//! models single-flight across processes (claim, land, wake, takeover of a dead leader).
//!
//! - `SHUTTLE_ITERATIONS`: schedules per test (default 10000, about a second each here).
//! - `SHUTTLE_SEED`: the scheduler's seed (default: fresh each run). A failure prints its
//!   "failing seed"; run the one failing test again with `SHUTTLE_SEED=<seed>` to replay it.
#![cfg(shuttle)]

mod flights;
mod growth;
mod owner;

use owner::Processes;
use shuttle::rand::{thread_rng, Rng};
use shuttle::thread;
use warp_cache::memory::{Get, Insert, Shard, Store};
use warp_cache::shared::layout::{header, lock_word, slot, Layout};
use warp_cache::shared::seqlock::{SeqLock, Version};
use warp_cache::shared::{Engine, HeapRegion, InsertOutcome, LockOwner, Params, ValueBuf};
use warp_cache::sync::{Ordering, RwLock};

pub(crate) use shuttle::sync::Arc;

/// Runs `f` under shuttle's random scheduler, as configured by the environment.
pub(crate) fn check(f: impl Fn() + Send + Sync + 'static) {
    let env = |name: &str| std::env::var(name).ok();
    let iterations = env("SHUTTLE_ITERATIONS").map_or(10_000, |n| {
        n.parse().expect("SHUTTLE_ITERATIONS is a number")
    });
    match env("SHUTTLE_SEED") {
        Some(seed) => shuttle::check_random_with_seed(
            f,
            seed.parse().expect("SHUTTLE_SEED is a number"),
            iterations,
        ),
        None => shuttle::check_random(f, iterations),
    }
}

const PROCESSES: u64 = 4;
const OPS: usize = 16;
const KEYS: u8 = 6;

fn params() -> Params {
    Params {
        capacity: 4,
        max_key_size: 8,
        max_value_size: 120,
        ttl_ns: None,
        max_bytes: Some(300),
    }
}

/// Values of one to 120 bytes: some fit a slot's head, most need heap blocks of several
/// size classes, and together they exceed the byte budget and the first chunk of heap (so
/// processes evict by bytes, grow the heap and take in each other's growth).
fn value_of(key: u8) -> Vec<u8> {
    vec![key ^ 0xA5; 1 + (key as usize * 37) % 120]
}

/// Looks `key` up through `engine`, checking any value found.
fn lookup(engine: &Engine<'_>, key: u8) -> bool {
    let mut out = ValueBuf::new();
    let hit = engine.get(&[key], 0, &mut out).expect("never stale");
    if hit {
        assert_eq!(out.bytes(), value_of(key), "wrong value for key {key}");
    }
    hit
}

/// What the dying process does at its last step.
fn die(region: &HeapRegion, owner: &impl LockOwner, rng: &mut impl Rng) {
    let lock_words = region.lock_words();
    match rng.gen_range(0..3) {
        // Killed between taking the owner word and opening a section: the data is whole.
        0 => {
            let _ = lock_words[lock_word::OWNER].compare_exchange(
                0,
                owner.id(),
                Ordering::Acquire,
                Ordering::Relaxed,
            );
        }
        // Killed inside a section, after storing some words (a prefix of any write is some
        // set of changed words; which ones and what they hold does not matter to recovery).
        _ => {
            let lock = SeqLock::new(&lock_words[lock_word::SEQ], &lock_words[lock_word::OWNER]);
            if let Some(section) = lock.lock(owner) {
                let data = region.data_words();
                for _ in 0..rng.gen_range(0..4) {
                    let i = rng.gen_range(header::LEN..data.len());
                    data[i].store(rng.gen(), Ordering::Relaxed);
                }
                std::mem::forget(section);
            }
        }
    }
}

/// Four processes, each with its own layout and engine over one region, run mixed
/// operations (lookups, inserts, removals, clears); one of them dies at a random step, perhaps holding the lock mid-write. No
/// lookup ever returns a wrong value, the size bound holds throughout, the survivors take
/// the lock over, and the region ends consistent.
#[test]
fn processes_share_a_region_and_one_dies_at_a_random_step() {
    check(|| {
        let region = Arc::new(HeapRegion::new(params()).expect("small parameters"));
        let processes = Processes::new(PROCESSES + 1);
        let mut rng = thread_rng();
        let dying = rng.gen_range(1..=PROCESSES);
        let death_step = rng.gen_range(0..=OPS);
        let handles: Vec<_> = (1..=PROCESSES)
            .map(|id| {
                let (region, processes) = (Arc::clone(&region), processes.clone());
                thread::spawn(move || {
                    let layout = Layout::new(params()).expect("small parameters");
                    let backing = region.process_backing();
                    let engine = Engine::new(
                        &layout,
                        region.lock_words(),
                        region.data_words(),
                        1,
                        &backing,
                    )
                    .expect("region sized for this layout");
                    let owner = processes.owner(id);
                    let mut rng = thread_rng();
                    for step in 0..OPS {
                        if id == dying && step == death_step {
                            die(&region, &owner, &mut rng);
                            processes.die(id);
                            return;
                        }
                        let key = rng.gen_range(0..KEYS);
                        match rng.gen_range(0..22) {
                            0 => {
                                engine.clear(&owner).expect("never stale");
                            }
                            20..=21 => {
                                engine.remove(&[key], 0, &owner).expect("never stale");
                            }
                            1..=2 => {
                                let info = engine.info().expect("never stale");
                                assert!(info.current_size <= info.max_size, "size bound");
                            }
                            3..=10 => {
                                let outcome = engine
                                    .insert(&[key], &value_of(key), 0, u64::MAX, &owner)
                                    .expect("never stale");
                                assert_ne!(outcome, InsertOutcome::Oversize);
                            }
                            _ => {
                                lookup(&engine, key);
                            }
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        // A survivor after everything: takes over from the dead owner if it held the lock.
        let engine = region.engine();
        let survivor = processes.owner(PROCESSES + 1);
        assert_eq!(
            engine.insert(&[KEYS], &value_of(KEYS), 0, u64::MAX, &survivor),
            Ok(InsertOutcome::Stored),
            "a dead owner wedged the lock"
        );
        region.check_invariants();
        assert!(lookup(&engine, KEYS));
        for key in 0..KEYS {
            lookup(&engine, key);
        }
        let info = engine.info().expect("never stale");
        assert!(info.current_size <= info.max_size);
    });
}

type U64Store = Store<u64, u64, RwLock<Shard<u64, u64>>>;

/// Four threads of gets, inserts, removals and clears on a two-shard memory store of four
/// entries.
#[test]
fn threads_share_a_memory_store() {
    check(|| {
        let store = Arc::new(U64Store::new(4, 2));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = Arc::clone(&store);
                thread::spawn(move || {
                    let mut rng = thread_rng();
                    for _ in 0..OPS {
                        let key: u64 = rng.gen_range(0..8);
                        // Keys spread over both shards by their top hash bit.
                        let hash = key.rotate_right(1);
                        match rng.gen_range(0..22) {
                            0 => drop(store.clear()),
                            20..=21 => drop(store.remove(hash, &key, &[], 0)),
                            1..=9 => match store.insert(hash, key, key * 7, &[], 0, u64::MAX) {
                                Insert::Done(_) | Insert::NotCached(..) => {}
                                Insert::Undecided(..) => unreachable!("u64 keys decide"),
                            },
                            _ => match store.get(hash, &key, &[], 0) {
                                Get::Hit(value) => assert_eq!(value, key * 7),
                                Get::Miss => {}
                                Get::Undecided(_) => unreachable!("u64 keys decide"),
                            },
                        }
                        assert!(store.len() <= store.max_size(), "size bound");
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        store.check_invariants();
    });
}

/// Stores keys `0..4` (slots 0 to 3, in order).
fn fill_four(region: &HeapRegion, owner: &impl LockOwner) {
    for key in 0..4 {
        let outcome = region
            .engine()
            .insert(&[key], &value_of(key), 0, u64::MAX, owner);
        assert_eq!(outcome, Ok(InsertOutcome::Stored));
    }
}

/// Opens a write section on slot `victim` as `owner` and scribbles a data word there,
/// then stops (keeps the lock, never finishes); false if the lock was busy.
fn stop_inside(region: &HeapRegion, owner: &impl LockOwner, victim: u32) -> bool {
    let lock_words = region.lock_words();
    let lock = SeqLock::new(&lock_words[lock_word::SEQ], &lock_words[lock_word::OWNER]);
    let Some(section) = lock.lock(owner) else {
        return false;
    };
    let layout = region.layout();
    let data = region.data_words();
    Version::new(&data[layout.slot_word(victim, slot::VERSION)]).begin_write();
    data[layout.slot_word(victim, slot::DATA)].store(0xBAD, Ordering::Relaxed);
    std::mem::forget(section);
    true
}

/// A writer stops (alive, holding the lock) inside a write to one slot while two readers
/// look every key up and a writer re-stores one: the readers never miss a key in another
/// slot and never read a wrong value; the writer gives up rather than wait or rob.
#[test]
fn a_stopped_writer_costs_readers_only_the_slot_it_was_writing() {
    check(|| {
        let region = Arc::new(HeapRegion::new(params()).expect("small parameters"));
        let processes = Processes::new(4);
        fill_four(&region, &processes.owner(4));
        let victim = thread_rng().gen_range(0..4u8);
        let stopped = {
            let (region, processes) = (Arc::clone(&region), processes.clone());
            thread::spawn(move || stop_inside(&region, &processes.owner(1), u32::from(victim)))
        };
        let readers: Vec<_> = (2..=3)
            .map(|_| {
                let region = Arc::clone(&region);
                thread::spawn(move || {
                    let engine = region.engine();
                    for _ in 0..3 {
                        for key in 0..4 {
                            let hit = lookup(&engine, key);
                            assert!(hit || key == victim, "key {key} missed, not being written");
                        }
                    }
                })
            })
            .collect();
        let writer = {
            let (region, owner) = (Arc::clone(&region), processes.owner(2));
            // An equal live key: stored (kept) before the stop, or given up on after it.
            thread::spawn(move || {
                region
                    .engine()
                    .insert(&[0], &value_of(0), 0, u64::MAX, &owner)
            })
        };
        let stopped_inside = stopped.join().unwrap();
        for reader in readers {
            reader.join().unwrap();
        }
        let stored = writer.join().unwrap().expect("never stale");
        assert_ne!(stored, InsertOutcome::Oversize);
        if !stopped_inside {
            // The writer held the lock when the other tried to stop inside: nothing stopped.
            return;
        }
        let engine = region.engine();
        for key in 0..4 {
            assert_eq!(
                lookup(&engine, key),
                key != victim,
                "key {key} after the stop"
            );
        }
        let owner = processes.owner(3);
        assert_eq!(
            engine.insert(&[9], &value_of(9), 0, u64::MAX, &owner),
            Ok(InsertOutcome::NotCached),
            "a live holder was robbed"
        );
    });
}

/// A writer died inside a write to one slot; a process whose mapping is stale takes the
/// lock over first and must leave the section torn (no new generation), so the current
/// mapping's next writer repairs: only the torn slot's entry is lost.
#[test]
fn a_stale_mapping_leaves_a_torn_section_to_the_current_one() {
    check(|| {
        let region = Arc::new(HeapRegion::new(params()).expect("small parameters"));
        let processes = Processes::new(4);
        fill_four(&region, &processes.owner(4));
        let victim = thread_rng().gen_range(0..4u8);
        assert!(stop_inside(&region, &processes.owner(1), u32::from(victim)));
        processes.die(1);
        let stale = {
            let (region, owner) = (Arc::clone(&region), processes.owner(2));
            thread::spawn(move || {
                let backing = region.process_backing();
                // Generation 0: this mapping is of a file replaced since.
                let engine = Engine::new(
                    region.layout(),
                    region.lock_words(),
                    region.data_words(),
                    0,
                    &backing,
                )
                .expect("regions sized by the layout");
                let _ = engine.insert(&[7], &value_of(7), 0, u64::MAX, &owner);
            })
        };
        let current = {
            let (region, owner) = (Arc::clone(&region), processes.owner(3));
            thread::spawn(move || {
                for _ in 0..4 {
                    let outcome = region
                        .engine()
                        .insert(&[8], &value_of(8), 0, u64::MAX, &owner);
                    if outcome == Ok(InsertOutcome::Stored) {
                        return;
                    }
                }
            })
        };
        stale.join().unwrap();
        // The current writer may have given up while the stale one held the lock.
        current.join().unwrap();
        let lock_words = region.lock_words();
        assert_eq!(
            lock_words[lock_word::GENERATION].load(Ordering::Relaxed),
            1,
            "the stale mapping made a new generation"
        );
        // Whoever came last, a writer of the current mapping repairs and stores.
        let owner = processes.owner(4);
        assert_eq!(
            region
                .engine()
                .insert(&[8], &value_of(8), 0, u64::MAX, &owner),
            Ok(InsertOutcome::Stored)
        );
        region.check_invariants();
        let engine = region.engine();
        for key in 0..4 {
            assert_eq!(
                lookup(&engine, key),
                key != victim,
                "key {key} after the repair"
            );
        }
        assert!(lookup(&engine, 8));
    });
}
