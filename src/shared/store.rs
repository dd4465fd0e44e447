//! [`SharedStore`]: a shared cache in a pair of mapped files, the API the Python layer uses.
//!
//! Operations run on the current mapping under a process-local read lock; one that finds the
//! mapping stale re-opens the files (under the write lock, once per staleness, whichever
//! thread gets there first) and retries once. Failures degrade to misses and skipped
//! inserts: a cache must never make a call fail.

use super::engine::{Engine, Info, InsertOutcome, Stale};
use super::layout::{header, Layout, Params};
use super::region::{wall_seconds, Mapping, ProcessOwner};
use super::seqlock::LockOwner;
use super::ValueBuf;
use crate::memory::ShardLock;
use crate::sync::RwLock;
use std::io;
use std::path::{Path, PathBuf};

/// The files a store has mapped now, and how many times it has opened files before.
pub struct Current {
    mapping: Mapping,
    opened: u64,
}

/// A cache shared by every process that opens the same `dir` and stem.
///
/// `L` guards the process's current mapping: every operation reads it, and a re-open
/// replaces it. It is a [`ShardLock`], like the memory store's shards, so the Python layer
/// can use the same GIL-backed cell on GIL builds (where the interpreter lock already
/// serializes every call, and a hit then takes no lock at all).
pub struct SharedStore<O: LockOwner = ProcessOwner, L: ShardLock<Current> = RwLock<Current>> {
    dir: PathBuf,
    stem: String,
    function: String,
    layout: Layout,
    owner: O,
    current: L,
}

impl SharedStore {
    /// Opens or creates cache `stem` (see [`super::file_stem`]) in `dir` (see
    /// [`super::default_dir`]). Files made with other parameters are recreated.
    pub fn open(dir: &Path, stem: &str, params: Params) -> io::Result<Self> {
        Self::open_with_owner(dir, stem, params, ProcessOwner)
    }
}

impl<O: LockOwner> SharedStore<O> {
    /// [`SharedStore::open`] with a chosen lock owner (tests simulate other processes).
    pub fn open_with_owner(dir: &Path, stem: &str, params: Params, owner: O) -> io::Result<Self> {
        Self::open_guarded(dir, stem, params, owner)
    }
}

impl<O: LockOwner, L: ShardLock<Current>> SharedStore<O, L> {
    /// [`SharedStore::open_with_owner`] with a chosen guard of the process's mapping.
    pub fn open_guarded(dir: &Path, stem: &str, params: Params, owner: O) -> io::Result<Self> {
        Self::open_named(dir, stem, stem, params, owner)
    }

    /// [`SharedStore::open_guarded`], recording `function` (its `module.qualname`) in new
    /// files for the operator CLI.
    pub fn open_named(
        dir: &Path,
        stem: &str,
        function: &str,
        params: Params,
        owner: O,
    ) -> io::Result<Self> {
        let layout =
            Layout::new(params).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mapping = Mapping::open(dir, stem, function, &layout, &owner)?;
        Ok(Self {
            dir: dir.to_owned(),
            stem: stem.to_owned(),
            function: function.to_owned(),
            layout,
            owner,
            current: L::new(Current { mapping, opened: 0 }),
        })
    }

    /// Whether opening created the cache's files (its identity is new in the directory).
    pub fn created(&self) -> bool {
        self.current.read().mapping.created()
    }

    /// The parameters the cache was opened with.
    pub fn params(&self) -> Params {
        self.layout.params()
    }

    /// The value stored for `key` if live at `now` (monotonic ns, see
    /// [`crate::clock::monotonic_nanos`]). Counts a hit or a miss.
    pub fn get(&self, key: &[u8], now: u64) -> Option<Vec<u8>> {
        let mut value = ValueBuf::new();
        self.get_into(key, now, &mut value)
            .then(|| value.bytes().to_vec())
    }

    /// [`SharedStore::get`] into a caller's buffer (on its stack: no allocation for values
    /// up to the buffer's inline size); true on a hit, with the value in `out`.
    #[inline]
    pub fn get_into(&self, key: &[u8], now: u64, out: &mut ValueBuf) -> bool {
        self.run(|engine| engine.get(key, now, out))
            .unwrap_or(false)
    }

    /// Stores `key -> value` until `expires_at` (monotonic ns, `u64::MAX`: forever). A live
    /// equal key keeps its value.
    pub fn insert(&self, key: &[u8], value: &[u8], now: u64, expires_at: u64) -> InsertOutcome {
        self.store(key, value, now, expires_at, false)
    }

    /// [`SharedStore::insert`], but a live equal key gets the new value too.
    pub fn replace(&self, key: &[u8], value: &[u8], now: u64, expires_at: u64) -> InsertOutcome {
        self.store(key, value, now, expires_at, true)
    }

    fn store(
        &self,
        key: &[u8],
        value: &[u8],
        now: u64,
        expires_at: u64,
        replace: bool,
    ) -> InsertOutcome {
        let seconds = wall_seconds();
        self.run(|engine| {
            engine.touch(seconds);
            if replace {
                engine.replace(key, value, now, expires_at, &self.owner)
            } else {
                engine.insert(key, value, now, expires_at, &self.owner)
            }
        })
        .unwrap_or(InsertOutcome::NotCached)
    }

    /// Moves one of this process's counts from hits to misses (`to_hit` false) or back:
    /// see [`Engine::recount`].
    pub fn recount(&self, to_hit: bool) {
        let (from, to) = if to_hit {
            (header::MISSES, header::HITS)
        } else {
            (header::HITS, header::MISSES)
        };
        self.run(|engine| {
            engine.recount(from, to);
            Ok(())
        });
    }

    /// Drops every entry and zeroes the counters for all processes. False if the lock stayed
    /// busy or the files could not be re-opened.
    pub fn clear(&self) -> bool {
        self.run(|engine| engine.clear(&self.owner))
            .unwrap_or(false)
    }

    /// Shared counters and sizes (zero counters if the files cannot be reached).
    pub fn info(&self) -> Info {
        self.run(|engine| engine.info()).unwrap_or(Info {
            max_size: u64::from(self.layout.params().capacity),
            ..Info::default()
        })
    }

    /// Runs `op` on the current mapping, re-opening once if it is stale.
    #[inline(always)]
    fn run<R>(&self, mut op: impl FnMut(&Engine<'_>) -> Result<R, Stale>) -> Option<R> {
        for _ in 0..2 {
            let opened = {
                let current = self.current.read();
                let mapping = &current.mapping;
                let engine = Engine::new(
                    &self.layout,
                    mapping.lock_words(),
                    mapping.data_words(),
                    mapping.generation(),
                )?;
                match op(&engine) {
                    Ok(result) => return Some(result),
                    Err(Stale) => current.opened,
                }
            };
            self.reopen(opened).ok()?;
        }
        None
    }

    /// Replaces the mapping numbered `stale`, unless another thread already has.
    fn reopen(&self, stale: u64) -> io::Result<()> {
        let mut current = self.current.write();
        if current.opened == stale {
            let mapping = Mapping::open(
                &self.dir,
                &self.stem,
                &self.function,
                &self.layout,
                &self.owner,
            )?;
            *current = Current {
                mapping,
                opened: stale + 1,
            };
        }
        Ok(())
    }
}
