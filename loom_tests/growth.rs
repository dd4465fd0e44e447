//! The heap growing while another process reads (`src/shared/table.rs`: `Table::alloc`,
//! `grow`, `refresh_if_grown`; `engine.rs`: the miss path's second look). A shuttle model:
//! loom's DPOR misses the race here (see docs/model-checking.md, "loom and read-then-write").
//!
//! Each "process" is a thread with its own [`Backing`]: its own view of how much heap it may
//! touch, over one shared word standing for what the file holds. A grower stores entries
//! whose blocks do not fit the first chunk, so it grows the file and publishes the growth; a
//! reader in another process looks them up. The property: no process ever raises its limit
//! past what the file holds (it would touch pages that are not there), and a reader that
//! missed because of growth finds the entry once it takes the growth in.

use crate::owner::Processes;
use crate::{check, Arc};
use shuttle::thread;
use warp_cache::shared::{Backing, Engine, HeapRegion, InsertOutcome, Params, ValueBuf};
use warp_cache::sync::{AtomicU64, Ordering};

/// A process's view of a data file whose heap holds `file` words.
pub(crate) struct ProcessBacking {
    limit: AtomicU64,
    file: Arc<AtomicU64>,
    /// A broken variant (teeth): report the words allocated only after the growth was
    /// published.
    allocate_late: bool,
}

impl ProcessBacking {
    pub(crate) fn new(file: &Arc<AtomicU64>, allocate_late: bool) -> Self {
        Self {
            limit: AtomicU64::new(file.load(Ordering::Relaxed)),
            file: Arc::clone(file),
            allocate_late,
        }
    }

    /// The late allocation of the broken variant.
    pub(crate) fn finish_late(&self) {
        let limit = self.limit.load(Ordering::Relaxed);
        self.file.fetch_max(limit, Ordering::Release);
    }
}

impl Backing for ProcessBacking {
    fn limit(&self) -> &AtomicU64 {
        &self.limit
    }

    fn grow(&self, heap_words: usize) -> bool {
        if !self.allocate_late {
            self.file.fetch_max(heap_words as u64, Ordering::Release);
        }
        self.limit.fetch_max(heap_words as u64, Ordering::Release);
        true
    }

    fn refresh(&self, published: usize) {
        let held = self.file.load(Ordering::Acquire);
        assert!(
            published as u64 <= held,
            "heap published before the file held it"
        );
        self.limit.fetch_max(published as u64, Ordering::Release);
    }
}

/// Two slots, values that need a 12-word block each: the second block does not fit the
/// first chunk of heap (16 words in model builds).
pub(crate) fn growing_region() -> Arc<HeapRegion> {
    Arc::new(
        HeapRegion::new(Params {
            capacity: 2,
            max_key_size: 8,
            max_value_size: 96,
            ttl_ns: None,
            max_bytes: None,
        })
        .expect("tiny parameters"),
    )
}

pub(crate) fn value_of(key: u8) -> Vec<u8> {
    vec![key ^ 0x5A; 90]
}

/// Runs `op` on an engine over `region` seen through `backing`.
pub(crate) fn with_engine<R>(
    region: &HeapRegion,
    backing: &ProcessBacking,
    op: impl FnOnce(&Engine<'_>) -> R,
) -> R {
    let engine = Engine::new(
        region.layout(),
        region.lock_words(),
        region.data_words(),
        1,
        backing,
    )
    .expect("regions sized by the layout");
    op(&engine)
}

/// Looks `key` up; a hit must be its value.
pub(crate) fn lookup(region: &HeapRegion, backing: &ProcessBacking, key: u8) -> bool {
    let mut out = ValueBuf::new();
    let hit = with_engine(region, backing, |e| e.get(&[key], 0, &mut out)).expect("never stale");
    if hit {
        assert_eq!(out.bytes(), value_of(key), "wrong value for {key}");
    }
    hit
}

/// The heap words of a new file of [`growing_region`].
pub(crate) fn first_chunk(region: &HeapRegion) -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(region.layout().initial_heap() as u64))
}

/// The reader and a grower in two processes (`allocate_late`: the broken variant).
fn reader_racing_a_grower(allocate_late: bool) {
    check(move || {
        let region = growing_region();
        let file = first_chunk(&region);
        let processes = Processes::new(1);
        let grower = {
            let (region, file) = (Arc::clone(&region), Arc::clone(&file));
            let owner = processes.owner(1);
            thread::spawn(move || {
                let backing = ProcessBacking::new(&file, allocate_late);
                for key in [1, 2] {
                    let stored = with_engine(&region, &backing, |e| {
                        e.insert(&[key], &value_of(key), 0, u64::MAX, &owner)
                    });
                    assert_eq!(stored, Ok(InsertOutcome::Stored));
                }
                backing.finish_late();
            })
        };
        // The reader keeps looking while the grower works (a miss takes growth in).
        let reader = ProcessBacking::new(&file, false);
        for _ in 0..12 {
            if lookup(&region, &reader, 2) {
                break;
            }
        }
        lookup(&region, &reader, 1);
        grower.join().unwrap();
        assert!(
            file.load(Ordering::Relaxed) > region.layout().initial_heap() as u64,
            "the scenario grows the heap"
        );
        assert!(
            lookup(&region, &reader, 2),
            "growth not taken in after a miss"
        );
        assert!(lookup(&region, &reader, 1));
        region.check_invariants();
    });
}

#[test]
fn a_reader_racing_a_grower_never_passes_the_file_and_finds_the_entry() {
    reader_racing_a_grower(false);
}

/// Teeth: a file that allocates its grown heap only after the growth was published (a
/// `Backing` whose `grow` returns before the words exist). A reader taking the growth in
/// meanwhile would touch pages the file does not have.
#[test]
#[should_panic(expected = "heap published before the file held it")]
fn growth_published_before_the_file_holds_it_is_caught() {
    reader_racing_a_grower(true);
}
