//! What the operator CLI (`python -m warp_cache`) sees of a cache directory: which caches are
//! there, what they hold, whether a live process uses them; clearing and purging them.
//!
//! Headers are read with `pread`, never mapped, and every number read is only reported, so a
//! damaged file costs nothing but a row marked invalid. A cache is in use while some process
//! holds a shared `flock` on its lock file (see `region::Mapping`); a probe takes the lock
//! exclusively without waiting and lets it go at once.

use super::layout::{self, header, lock_word, Params, COUNTER_STRIPES, DATA_MAGIC, LOCK_WORDS};
use super::region::{try_flock, Dir};
use super::{ProcessOwner, SharedStore};
use crate::sync::AtomicU64;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// One cache in a directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheFile {
    /// The files' common name, `<module>.<qualname>-<tag>-<identity>`.
    pub stem: String,
    /// The function's `module.qualname` as its lock file records it.
    pub function: String,
    /// The identity part of the stem (16 hex digits).
    pub identity: String,
    /// Both files' headers are readable and of this build's format.
    pub valid: bool,
    /// Most entries held.
    pub max_size: u64,
    /// Entries held now.
    pub entries: u64,
    /// Shared counters.
    pub hits: u64,
    /// Shared counters.
    pub misses: u64,
    /// Inserts skipped for size.
    pub oversize_skips: u64,
    /// Bytes the two files occupy on their file system.
    pub bytes: u64,
    /// Key and value bytes of the entries held.
    pub held_bytes: u64,
    /// A live process has the cache open.
    pub in_use: bool,
    /// Wall-clock seconds of the last open or insert (0: unknown).
    pub last_use: u64,
}

/// Every cache in `dir` (by its lock file), sorted by stem.
pub fn list(dir: &Path) -> io::Result<Vec<CacheFile>> {
    let dir = Dir::open(dir)?;
    Ok(dir
        .lock_stems()?
        .into_iter()
        .map(|stem| describe(&dir, stem))
        .collect())
}

fn describe(dir: &Dir, stem: String) -> CacheFile {
    let identity = stem.rsplit('-').next().unwrap_or_default().to_owned();
    let mut row = CacheFile {
        stem,
        identity,
        ..CacheFile::default()
    };
    let lock = dir
        .open_checked(&format!("{}.lock", row.stem))
        .ok()
        .flatten();
    let data = dir
        .open_checked(&format!("{}.data", row.stem))
        .ok()
        .flatten();
    row.bytes = [&lock, &data]
        .into_iter()
        .flatten()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum();
    let Some(lock) = lock else { return row };
    row.in_use = !try_flock(&lock, libc::LOCK_EX).unwrap_or(false);
    // Closing `lock` below lets the probe's lock go.
    let lock_words = read_words(&lock, LOCK_WORDS);
    row.function = layout::lock_name(&lock_words);
    row.last_use = word(&lock_words, lock_word::LAST_USE);
    let Some(data) = data else { return row };
    let head = read_words(&data, layout::HEADER_WORDS);
    let at = |i: usize| word(&head, i);
    row.valid = layout::lock_matches(&lock_words)
        && at(header::MAGIC) == DATA_MAGIC
        && at(header::VERSION) == layout::FORMAT_VERSION;
    if row.valid {
        let sum = |which| {
            (0..COUNTER_STRIPES)
                .map(|s| at(header::counter(s, which)))
                .fold(0u64, u64::wrapping_add)
        };
        row.max_size = at(header::CAPACITY);
        row.entries = at(header::LEN).min(row.max_size);
        row.hits = sum(header::HITS);
        row.misses = sum(header::MISSES);
        row.oversize_skips = at(header::OVERSIZE);
        row.held_bytes = at(header::BYTES);
    }
    row
}

/// The first `n` words of `file` (zeros past its end or on a read error).
fn read_words(file: &File, n: usize) -> Vec<AtomicU64> {
    let mut bytes = vec![0u8; n * 8];
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read_at(&mut bytes[filled..], filled as u64) {
            Ok(0) | Err(_) => break,
            Ok(k) => filled += k,
        }
    }
    bytes
        .chunks_exact(8)
        .map(|c| AtomicU64::new(u64::from_le_bytes(c.try_into().expect("8 bytes"))))
        .collect()
}

fn word(words: &[AtomicU64], i: usize) -> u64 {
    words
        .get(i)
        .map_or(0, |w| w.load(crate::sync::Ordering::Relaxed))
}

/// Clears cache `stem` for every process, as `cache_clear()` does. False if it is not a
/// valid cache of this format or its lock stayed busy.
pub fn clear(dir: &Path, stem: &str) -> io::Result<bool> {
    let row = describe(&Dir::open(dir)?, stem.to_owned());
    if !row.valid {
        return Ok(false);
    }
    let data = Dir::open(dir)?.open_checked(&format!("{stem}.data"))?;
    let Some(data) = data else { return Ok(false) };
    let head = read_words(&data, layout::HEADER_WORDS);
    let ttl = word(&head, header::TTL);
    let narrow = |i| u32::try_from(word(&head, i)).ok();
    let (Some(capacity), Some(max_key_size), Some(max_value_size)) = (
        narrow(header::CAPACITY),
        narrow(header::MAX_KEY),
        narrow(header::MAX_VALUE),
    ) else {
        return Ok(false);
    };
    let params = Params {
        capacity,
        max_key_size,
        max_value_size,
        ttl_ns: (ttl != u64::MAX).then_some(ttl),
        max_bytes: Some(word(&head, header::MAX_BYTES)),
    };
    let store: SharedStore =
        SharedStore::open_named(Some(dir), stem, &row.function, params, ProcessOwner)?;
    Ok(store.clear())
}

/// Removes caches no live process uses: all of them, or (`all` false) the stale ones: those
/// of a function that has a more recently used identity, and damaged ones. Returns the
/// stems removed.
pub fn purge(dir: &Path, all: bool) -> io::Result<Vec<String>> {
    let rows = list(dir)?;
    let mut newest: HashMap<&str, u64> = HashMap::new();
    for row in rows.iter().filter(|r| r.valid) {
        let entry = newest.entry(function_of(&row.stem)).or_default();
        *entry = (*entry).max(row.last_use);
    }
    let mut removed = Vec::new();
    for row in &rows {
        let prefix = function_of(&row.stem);
        let current = row.valid && newest.get(prefix) == Some(&row.last_use);
        if row.in_use || (current && !all) {
            continue;
        }
        // Takes the lock exclusively before unlinking: a process that opened meanwhile
        // keeps its files.
        if Dir::open(dir)?.remove_if_unused(&row.stem).unwrap_or(false) {
            removed.push(row.stem.clone());
        }
    }
    Ok(removed)
}

/// The function part of a stem (everything up to the identity).
fn function_of(stem: &str) -> &str {
    stem.rsplit_once('-').map_or(stem, |(prefix, _)| prefix)
}
