//! Arbitrary bytes as a shared cache's lock and data files, then lookups and inserts.
//!
//! A real cache is filled on a heap region, its words are dumped as the two files' bytes,
//! and the fuzzer damages them (words overwritten, bits flipped, sizes changed, files
//! missing, or wholly arbitrary bytes). The result is then opened either for real
//! (written into a private directory and opened with `SharedStore::open_with_owner`) or as
//! a heap region whose words are the damaged bytes. Whatever the bytes, the store must
//! either reject and recreate them or serve them correctly:
//!
//! - no panic, no out-of-bounds access (a panic aborts the fuzzer);
//! - a hit returns a value once inserted for that key (keys are compared byte for byte and
//!   values checksummed, so damage may cost entries, never yield a wrong value);
//! - an insert reports `Oversize` exactly for oversize entries, and a stored entry is found
//!   right after;
//! - after a successful clear, only keys inserted since can hit;
//! - the size never exceeds the capacity;
//! - undamaged files behave exactly like the heap region they were dumped from.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use warp_cache::shared::layout::{lock_word, Layout};
use warp_cache::shared::{
    HeapRegion, Info, InsertOutcome, LockOwner, Params, Patience, SharedStore, Stale, ValueBuf,
};
use warp_cache::sync::Ordering;

const STEM: &str = "fuzz.region_open-0123456789abcdef";

/// The fuzzer's writer. Any other lock holder is dead (taken over at once); a lock file
/// naming this id as its holder makes every write give up, which the checks allow for.
#[derive(Clone, Copy)]
struct Owner;

const OWNER_ID: u64 = 0x5EED_0001;

impl LockOwner for Owner {
    fn id(&self) -> u64 {
        OWNER_ID
    }
    fn is_alive(&self, owner: u64) -> bool {
        owner == OWNER_ID
    }
    fn patience(&self) -> Patience {
        Patience {
            spins: 2,
            attempts: 6,
            check_every: 2,
            budget_ns: 0,
        }
    }
}

#[derive(Debug)]
struct Shape(Params);

impl<'a> Arbitrary<'a> for Shape {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self(Params {
            capacity: u.int_in_range(0..=6)?,
            max_key_size: u.int_in_range(0..=24)?,
            max_value_size: u.int_in_range(0..=40)?,
            ttl_ns: if u.arbitrary()? {
                Some(u.arbitrary()?)
            } else {
                None
            },
            max_bytes: if u.arbitrary()? {
                Some(u.int_in_range(0..=300)?)
            } else {
                None
            },
        }))
    }
}

/// What happens to a file's bytes.
#[derive(Arbitrary, Debug)]
enum Damage {
    None,
    /// Word `index % words` becomes `value`.
    Words(Vec<(u16, u64)>),
    /// Bit `bit % 64` of word `index % words` flips.
    Bits(Vec<(u16, u8)>),
    /// Cut or extended (zeros) to this many bytes.
    Resize(u16),
    /// The file holds exactly these bytes.
    Raw(Vec<u8>),
    /// No file at all (a heap region gets zeroed words).
    Missing,
}

impl Damage {
    /// The damaged bytes, `None` for a missing file.
    fn apply(&self, mut bytes: Vec<u8>) -> Option<Vec<u8>> {
        let words = bytes.len() / 8;
        let mut word = |index: u16, f: &dyn Fn(u64) -> u64| {
            let at = index as usize % words * 8;
            let old = u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap());
            bytes[at..at + 8].copy_from_slice(&f(old).to_ne_bytes());
        };
        match self {
            Damage::None => {}
            Damage::Words(changes) => {
                for &(index, value) in changes {
                    word(index, &|_| value);
                }
            }
            Damage::Bits(flips) => {
                for &(index, bit) in flips {
                    word(index, &|old| old ^ (1 << (bit % 64)));
                }
            }
            Damage::Resize(len) => bytes.resize(usize::from(*len), 0),
            Damage::Raw(raw) => bytes.clone_from(raw),
            Damage::Missing => return None,
        }
        Some(bytes)
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Get(u8),
    Insert {
        key: u8,
        value: u16,
        len: u8,
        /// Lifetime from now; 0 for forever.
        ttl: u8,
    },
    Clear,
    Advance(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    shape: Shape,
    /// Real files (else a heap region).
    files: bool,
    prefill: Vec<(u8, u16, u8, u8)>,
    lock: Damage,
    data: Damage,
    ops: Vec<Op>,
}

/// Distinct bytes for distinct keys, of varying lengths (some beyond any limit here).
fn key_bytes(key: u8) -> Vec<u8> {
    let mut bytes = vec![key];
    bytes.resize(1 + usize::from(key) % 29, key ^ 0x5A);
    bytes
}

fn value_bytes(value: u16, len: u8) -> Vec<u8> {
    let [lo, hi] = value.to_le_bytes();
    (0..len % 48).map(|n| lo.wrapping_add(n) ^ hi).collect()
}

fn expiry(now: u64, ttl: u8) -> u64 {
    match ttl {
        0 => u64::MAX,
        ttl => now + u64::from(ttl),
    }
}

fn to_bytes(words: &[warp_cache::sync::AtomicU64]) -> Vec<u8> {
    words
        .iter()
        .flat_map(|w| w.load(Ordering::Relaxed).to_ne_bytes())
        .collect()
}

fn owner_word(lock: Option<&[u8]>) -> Option<u64> {
    let at = lock_word::OWNER * 8;
    let bytes = lock?.get(at..at + 8)?;
    Some(u64::from_ne_bytes(bytes.try_into().unwrap()))
}

/// The cache under test, whatever it sits on.
trait Cache {
    fn get(&self, key: &[u8], now: u64) -> Option<Vec<u8>>;
    fn insert(&self, key: &[u8], value: &[u8], now: u64, expires: u64) -> InsertOutcome;
    fn clear(&self) -> bool;
    fn info(&self) -> Info;
    /// Whether the store said its region was replaced (heap regions cannot re-open).
    fn saw_stale(&self) -> bool;
}

impl Cache for SharedStore<Owner> {
    fn get(&self, key: &[u8], now: u64) -> Option<Vec<u8>> {
        SharedStore::get(self, key, now)
    }
    fn insert(&self, key: &[u8], value: &[u8], now: u64, expires: u64) -> InsertOutcome {
        SharedStore::insert(self, key, value, now, expires)
    }
    fn clear(&self) -> bool {
        SharedStore::clear(self)
    }
    fn info(&self) -> Info {
        SharedStore::info(self)
    }
    fn saw_stale(&self) -> bool {
        false
    }
}

/// A heap region and whether an operation found it stale.
struct Heap(HeapRegion, std::cell::Cell<bool>);

impl Heap {
    fn note<R>(&self, result: Result<R, Stale>, stale: R) -> R {
        result.unwrap_or_else(|Stale| {
            self.1.set(true);
            stale
        })
    }
}

impl Cache for Heap {
    fn get(&self, key: &[u8], now: u64) -> Option<Vec<u8>> {
        let mut out = ValueBuf::new();
        let hit = self.0.engine().get(key, now, &mut out);
        self.note(hit, false).then(|| out.bytes().to_vec())
    }
    fn insert(&self, key: &[u8], value: &[u8], now: u64, expires: u64) -> InsertOutcome {
        let outcome = self.0.engine().insert(key, value, now, expires, &Owner);
        self.note(outcome, InsertOutcome::NotCached)
    }
    fn clear(&self) -> bool {
        let cleared = self.0.engine().clear(&Owner);
        self.note(cleared, false)
    }
    fn info(&self) -> Info {
        let info = self.0.engine().info();
        self.note(info, Info::default())
    }
    fn saw_stale(&self) -> bool {
        self.1.get()
    }
}

/// This process's private cache directory, removed at exit.
fn cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove_dir() {
        if let Some(dir) = DIR.get().and_then(|d| d.parent()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    DIR.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("warp_cache_fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&base).expect("temporary directory");
        // SAFETY: `remove_dir` is an `extern "C" fn()` that never unwinds (it ignores every
        // error and touches only a static set before registration).
        unsafe { libc::atexit(remove_dir) };
        base.join("cache")
    })
}

/// Puts the damaged files in place (removing whatever a previous run left) and opens them.
fn open_files(
    params: Params,
    lock: Option<&[u8]>,
    data: Option<&[u8]>,
) -> Option<SharedStore<Owner>> {
    let dir = cache_dir();
    // The store makes the directory (0700) on first open; later runs find it.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if !dir.is_dir() {
        let _ = SharedStore::open_with_owner(dir, STEM, params, Owner);
        for suffix in ["lock", "data"] {
            let _ = std::fs::remove_file(dir.join(format!("{STEM}.{suffix}")));
        }
    }
    for (suffix, bytes) in [("lock", lock), ("data", data)] {
        if let Some(bytes) = bytes {
            // Mode 0600, as the store makes them: it refuses files others could write.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join(format!("{STEM}.{suffix}")))
                .expect("create file");
            file.write_all(bytes).expect("write file");
        }
    }
    SharedStore::open_with_owner(dir, STEM, params, Owner).ok()
}

/// A heap region holding the damaged words (missing or short files read as zeros).
fn heap_region(params: Params, lock: Option<&[u8]>, data: Option<&[u8]>) -> Heap {
    let region = HeapRegion::new(params).expect("small parameters");
    for (words, bytes) in [(region.lock_words(), lock), (region.data_words(), data)] {
        let bytes = bytes.unwrap_or_default();
        for (n, word) in words.iter().enumerate() {
            let mut raw = [0; 8];
            for (i, b) in raw.iter_mut().enumerate() {
                *b = bytes.get(n * 8 + i).copied().unwrap_or(0);
            }
            word.store(u64::from_ne_bytes(raw), Ordering::Relaxed);
        }
    }
    Heap(region, std::cell::Cell::new(false))
}

struct Checker {
    params: Params,
    /// Every value ever inserted per key, stored or not.
    history: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    /// Keys that may hit: `None` until a clear succeeds, then those stored since.
    since_clear: Option<HashSet<Vec<u8>>>,
    /// Whether writes may be refused (the lock names this writer as a live holder).
    lock_stuck: bool,
}

impl Checker {
    fn check_get(&self, key: &[u8], got: &Option<Vec<u8>>) {
        let Some(value) = got else { return };
        assert!(
            self.history
                .get(key)
                .is_some_and(|values| values.contains(value)),
            "key {key:?} hit with {value:?}, never inserted for it"
        );
        if let Some(keys) = &self.since_clear {
            assert!(keys.contains(key), "key {key:?} hit after a clear");
        }
    }
}

fn run(input: Input) {
    let params = input.shape.0;
    let Ok(layout) = Layout::new(params) else {
        return;
    };
    let mut checker = Checker {
        params,
        history: HashMap::new(),
        since_clear: None,
        lock_stuck: false,
    };

    // A genuine cache file pair, as a heap region: the reference for undamaged files.
    let reference = Heap(
        HeapRegion::new(params).expect("small parameters"),
        Default::default(),
    );
    for &(key, value, len, ttl) in input.prefill.iter().take(16) {
        let (key, value) = (key_bytes(key), value_bytes(value, len));
        reference.insert(&key, &value, 1, expiry(1, ttl));
        checker.history.entry(key).or_default().insert(value);
    }
    let (lock, data) = (
        to_bytes(reference.0.lock_words()),
        to_bytes(reference.0.data_words()),
    );
    assert_eq!(data.len(), layout.total_bytes());
    let damaged_lock = input.lock.apply(lock.clone());
    let damaged_data = input.data.apply(data.clone());
    let undamaged = damaged_lock.as_ref() == Some(&lock) && damaged_data.as_ref() == Some(&data);
    checker.lock_stuck = owner_word(damaged_lock.as_deref()) == Some(OWNER_ID);

    let cache: Box<dyn Cache> = if input.files {
        match open_files(params, damaged_lock.as_deref(), damaged_data.as_deref()) {
            Some(store) => Box::new(store),
            None => {
                assert!(checker.lock_stuck, "open failed on a lock nobody holds");
                return;
            }
        }
    } else {
        Box::new(heap_region(
            params,
            damaged_lock.as_deref(),
            damaged_data.as_deref(),
        ))
    };

    let mut now = 1;
    for op in input.ops.into_iter().take(64) {
        match op {
            Op::Get(key) => {
                let key = key_bytes(key);
                let got = cache.get(&key, now);
                checker.check_get(&key, &got);
                if undamaged {
                    assert_eq!(got, reference.get(&key, now), "undamaged get");
                }
            }
            Op::Insert {
                key,
                value,
                len,
                ttl,
            } => {
                let (key, value, expires) =
                    (key_bytes(key), value_bytes(value, len), expiry(now, ttl));
                checker
                    .history
                    .entry(key.clone())
                    .or_default()
                    .insert(value.clone());
                let outcome = cache.insert(&key, &value, now, expires);
                let oversize = key.len() > params.max_key_size as usize
                    || value.len() > params.max_value_size as usize
                    || (params.capacity > 0
                        && (key.len() + value.len()) as u64 > params.byte_budget());
                assert_eq!(outcome == InsertOutcome::Oversize, oversize, "{outcome:?}");
                if undamaged {
                    assert_eq!(outcome, reference.insert(&key, &value, now, expires));
                }
                match outcome {
                    InsertOutcome::Stored => {
                        if let Some(keys) = &mut checker.since_clear {
                            keys.insert(key.clone());
                        }
                        let got = cache.get(&key, now);
                        checker.check_get(&key, &got);
                        assert!(got.is_some(), "stored key {key:?} not found");
                        if undamaged {
                            assert_eq!(got, reference.get(&key, now));
                        }
                    }
                    InsertOutcome::NotCached => assert!(
                        params.capacity == 0 || checker.lock_stuck || cache.saw_stale(),
                        "insert refused"
                    ),
                    InsertOutcome::Oversize => {}
                }
            }
            Op::Clear => {
                let cleared = cache.clear();
                if cleared {
                    checker.since_clear = Some(HashSet::new());
                } else {
                    assert!(checker.lock_stuck || cache.saw_stale(), "clear refused");
                }
                if undamaged {
                    assert_eq!(cleared, reference.clear());
                }
            }
            Op::Advance(dt) => now += u64::from(dt),
        }
        let info = cache.info();
        assert!(info.current_size <= u64::from(checker.params.capacity));
        if undamaged {
            assert_eq!(info, reference.info());
        }
    }
}

fuzz_target!(|input: Input| run(input));
