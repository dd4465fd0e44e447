//! [`SharedStore`]: a shared cache in a pair of mapped files, the API the Python layer uses.
//!
//! Operations run on the current mapping under a process-local read lock; one that finds the
//! mapping stale re-opens the files (under the write lock, once per staleness, whichever
//! thread gets there first) and retries once. Failures degrade to misses and skipped
//! inserts: a cache must never make a call fail.
//!
//! A mapping made by another process image is stale too: in a forked child (checked on
//! every operation, one load) and after a change of credentials (checked before every
//! write). When such a process cannot open the files under its own credentials, or a cache
//! cannot open them at all ([`SharedStore::open_or_private`]), it serves from a private
//! in-memory region with the same layout, and [`SharedStore::take_unusable`] says why once.

use super::engine::{Engine, Info, InsertOutcome, Stale};
use super::flights::Board;
use super::layout::{header, Layout, Params};
use super::region::{wall_seconds, Mapping, ProcessOwner};
use super::seqlock::LockOwner;
use super::ValueBuf;
use crate::memory::ShardLock;
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering, RwLock};
use std::io;
use std::path::{Path, PathBuf};

/// The files a store has mapped now, and how many times it has opened files before.
pub struct Current {
    mapping: Mapping,
    opened: u64,
}

/// An entry a lookup found, named for as long as this process keeps its mapping: any write
/// to the slot changes its version, and re-opening the files changes the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// How many times this store had re-opened its files.
    pub epoch: u64,
    /// The entry's slot.
    pub slot: u32,
    /// The slot's version.
    pub version: u64,
}

/// A cache shared by every process that opens the same `dir` and stem.
///
/// `L` guards the process's current mapping: every operation reads it, and a re-open
/// replaces it. It is a [`ShardLock`], like the memory store's shards, so the Python layer
/// can use the same GIL-backed cell on GIL builds (where the interpreter lock already
/// serializes every call, and a hit then takes no lock at all).
pub struct SharedStore<O: LockOwner = ProcessOwner, L: ShardLock<Current> = RwLock<Current>> {
    layout: Layout,
    owner: O,
    current: L,
    /// Set while `files.unusable` holds an error (the check on the store path is one load).
    has_unusable: AtomicBool,
    /// The write section this process last gave up waiting for (see
    /// [`LockOwner::stuck_memo`]): while a stopped writer holds the lock, stores skip at once.
    stuck: AtomicU64,
    files: Box<Files>,
}

/// A lock owner that remembers the section it gave up on in its store.
struct Remembering<'a, O> {
    owner: &'a O,
    memo: &'a AtomicU64,
}

impl<O: LockOwner> LockOwner for Remembering<'_, O> {
    fn id(&self) -> u64 {
        self.owner.id()
    }
    fn is_alive(&self, owner: u64) -> bool {
        self.owner.is_alive(owner)
    }
    fn patience(&self) -> super::seqlock::Patience {
        self.owner.patience()
    }
    fn stuck_memo(&self) -> Option<&AtomicU64> {
        Some(self.memo)
    }
}

/// What re-opening needs (boxed: not touched by lookups).
struct Files {
    /// The directory chosen by the user; `None`: the default of whoever opens.
    dir: Option<PathBuf>,
    stem: String,
    /// The function's `module.qualname`, recorded in new lock files.
    function: String,
    /// Why the files could not be opened, until taken.
    unusable: Mutex<Option<io::Error>>,
}

/// How an operation uses the mapping: every operation checks that this process image made
/// it (one load); writes also check the credentials (system calls).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl SharedStore {
    /// Opens or creates cache `stem` (see [`super::file_stem`]) in `dir`. Files made with
    /// other parameters are recreated.
    pub fn open(dir: &Path, stem: &str, params: Params) -> io::Result<Self> {
        Self::open_with_owner(dir, stem, params, ProcessOwner)
    }
}

impl<O: LockOwner> SharedStore<O> {
    /// [`SharedStore::open`] with a chosen lock owner (tests simulate other processes).
    pub fn open_with_owner(dir: &Path, stem: &str, params: Params, owner: O) -> io::Result<Self> {
        Self::open_guarded(Some(dir), stem, params, owner)
    }
}

impl<O: LockOwner, L: ShardLock<Current>> SharedStore<O, L> {
    /// [`SharedStore::open_with_owner`] with a chosen guard of the process's mapping, in
    /// `dir` or (`None`) the first usable default directory (see [`super::default_dirs`]).
    pub fn open_guarded(
        dir: Option<&Path>,
        stem: &str,
        params: Params,
        owner: O,
    ) -> io::Result<Self> {
        Self::open_named(dir, stem, stem, params, owner)
    }

    /// [`SharedStore::open_guarded`], recording `function` (its `module.qualname`) in new
    /// files for the operator CLI.
    pub fn open_named(
        dir: Option<&Path>,
        stem: &str,
        function: &str,
        params: Params,
        owner: O,
    ) -> io::Result<Self> {
        let layout =
            Layout::new(params).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mapping = Mapping::open(dir, stem, function, &layout, &owner)?;
        Ok(Self::with_mapping(
            dir, stem, function, layout, owner, mapping,
        ))
    }

    /// [`SharedStore::open_guarded`], but files that cannot be opened leave the cache in
    /// private memory of this process, with the reason kept for
    /// [`SharedStore::take_unusable`]. Fails only if that memory cannot be had either.
    pub fn open_or_private(
        dir: Option<&Path>,
        stem: &str,
        function: &str,
        params: Params,
        owner: O,
    ) -> io::Result<Self> {
        let layout =
            Layout::new(params).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (mapping, unusable) = match Mapping::open(dir, stem, function, &layout, &owner) {
            Ok(mapping) => (mapping, None),
            Err(e) => (Mapping::private(&layout)?, Some(e)),
        };
        let store = Self::with_mapping(dir, stem, function, layout, owner, mapping);
        if let Some(e) = unusable {
            store.note_unusable(e);
        }
        Ok(store)
    }

    fn with_mapping(
        dir: Option<&Path>,
        stem: &str,
        function: &str,
        layout: Layout,
        owner: O,
        mapping: Mapping,
    ) -> Self {
        Self {
            layout,
            owner,
            current: L::new(Current { mapping, opened: 0 }),
            has_unusable: AtomicBool::new(false),
            stuck: AtomicU64::new(0),
            files: Box::new(Files {
                dir: dir.map(Path::to_owned),
                stem: stem.to_owned(),
                function: function.to_owned(),
                unusable: Mutex::new(None),
            }),
        }
    }

    fn remembering(&self) -> Remembering<'_, O> {
        Remembering {
            owner: &self.owner,
            memo: &self.stuck,
        }
    }

    fn note_unusable(&self, error: io::Error) {
        *self
            .files
            .unusable
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(error);
        self.has_unusable.store(true, Ordering::Release);
    }

    /// Why the files could not be opened, once, if they could not since the last call (the
    /// cache then serves from private memory). One load when they could.
    #[inline]
    pub fn take_unusable(&self) -> Option<io::Error> {
        if !self.has_unusable.load(Ordering::Acquire) {
            return None;
        }
        self.has_unusable.store(false, Ordering::Relaxed);
        self.files
            .unusable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Whether opening created the cache's files (its identity is new in the directory), and
    /// the directory they are in: where older identities may be left to remove.
    pub fn created_in(&self) -> Option<PathBuf> {
        let current = self.current.read();
        let mapping = &current.mapping;
        mapping
            .created()
            .then(|| mapping.dir().map(Path::to_owned))
            .flatten()
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
        self.run(Access::Read, |engine| engine.get(key, now, out))
            .unwrap_or(false)
    }

    /// Looks `key` up like [`SharedStore::get_into`], telling which entry it found: the
    /// mapping's epoch (it changes whenever this store re-opens its files), the slot and
    /// the slot's version name the entry's content. An entry for which `known(found)` is
    /// true is not copied into `out` (the caller holds it decoded). Counts, and marks the
    /// entry visited, only when `count`.
    #[inline(always)]
    pub fn get_found(
        &self,
        key: &[u8],
        now: u64,
        out: &mut ValueBuf,
        known: impl Fn(Found) -> bool,
        count: bool,
    ) -> Option<(Found, bool)> {
        // Inlined into each caller: the hit path's copy must stay one piece whatever else
        // (peeks, stale reads) reads this way.
        self.run_epoch(
            Access::Read,
            #[inline(always)]
            |engine: &Engine<'_>, epoch| {
                let read = engine.get_read(
                    key,
                    now,
                    out,
                    |slot, version| {
                        known(Found {
                            epoch,
                            slot,
                            version,
                        })
                    },
                    count,
                )?;
                Ok(read.map(|r| {
                    let found = Found {
                        epoch,
                        slot: r.slot,
                        version: r.version,
                    };
                    (found, r.copied)
                }))
            },
        )
        .flatten()
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

    /// How many times the cache was cleared, for [`SharedStore::replace_found`] (`None` if
    /// the files cannot be used).
    pub fn clears(&self) -> Option<u64> {
        self.run(Access::Read, |engine| Ok(engine.clears()))
    }

    /// [`SharedStore::replace`], also telling which entry now holds the value (`None` when
    /// it was not stored). With `clears` ([`SharedStore::clears`] when the value's
    /// computation began), a value computed before a clear is not stored after it.
    pub fn replace_found(
        &self,
        key: &[u8],
        value: &[u8],
        now: u64,
        expires_at: u64,
        clears: Option<u64>,
    ) -> (InsertOutcome, Option<Found>) {
        let seconds = wall_seconds();
        let owner = self.remembering();
        self.run_epoch(Access::Write, |engine, epoch| {
            engine.touch(seconds);
            let (outcome, written) =
                engine.replace_read(key, value, now, expires_at, &owner, clears)?;
            let found = written.map(|(slot, version)| Found {
                epoch,
                slot,
                version,
            });
            Ok((outcome, found))
        })
        .unwrap_or((InsertOutcome::NotCached, None))
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
        let owner = self.remembering();
        self.run(Access::Write, |engine| {
            engine.touch(seconds);
            if replace {
                engine.replace(key, value, now, expires_at, &owner)
            } else {
                engine.insert(key, value, now, expires_at, &owner)
            }
        })
        .unwrap_or(InsertOutcome::NotCached)
    }

    /// Moves one of this process's counts from misses to hits (`to_hit`) or back: see
    /// [`Engine::recount`]. Counters are only read and added to, so a read access will do.
    pub fn recount(&self, to_hit: bool) {
        let (from, to) = if to_hit {
            (header::MISSES, header::HITS)
        } else {
            (header::HITS, header::MISSES)
        };
        self.run(Access::Read, |engine| {
            engine.recount(from, to);
            Ok(())
        });
    }

    /// Runs `f` on the board of flights under way across processes (see
    /// [`super::flights`]), in the current files; `None` if they cannot be used. Readers'
    /// checks only (one load), not the credentials a store re-reads: the board holds hints,
    /// never values, and a miss pays for it, so it must stay cheap.
    pub fn with_board<R>(&self, f: impl FnMut(Board<'_>) -> R) -> Option<R> {
        self.on_board(Access::Read, f)
    }

    fn on_board<R>(&self, access: Access, mut f: impl FnMut(Board<'_>) -> R) -> Option<R> {
        self.run(access, |engine| {
            if engine.is_current() {
                Ok(f(engine.board()))
            } else {
                Err(Stale)
            }
        })
    }

    /// Takes `key`'s entry out for every process: `Some(true)` if it was live at `now`,
    /// `Some(false)` if there was none, `None` if the lock stayed busy (a stopped or stuck
    /// writer: waited for as long as a store waits) or the files could not be re-opened.
    pub fn remove(&self, key: &[u8], now: u64) -> Option<bool> {
        self.run(Access::Write, |engine| engine.remove(key, now, &self.owner))
            .flatten()
    }

    /// Drops every entry and zeroes the counters for all processes. False if the lock stayed
    /// busy or the files could not be re-opened.
    pub fn clear(&self) -> bool {
        // The whole (longer) wait, even for a writer this process saw stuck before.
        self.run(Access::Write, |engine| engine.clear(&self.owner))
            .unwrap_or(false)
    }

    /// Shared counters and sizes (zero counters if the files cannot be reached).
    pub fn info(&self) -> Info {
        self.run(Access::Read, |engine| engine.info())
            .unwrap_or(Info {
                max_size: u64::from(self.layout.params().capacity),
                ..Info::default()
            })
    }

    /// Runs `op` on the current mapping, re-opening once if it is stale or was made by
    /// another process image.
    #[inline(always)]
    fn run<R>(
        &self,
        access: Access,
        mut op: impl FnMut(&Engine<'_>) -> Result<R, Stale>,
    ) -> Option<R> {
        self.run_epoch(access, |engine, _| op(engine))
    }

    /// [`SharedStore::run`], also telling `op` the mapping's epoch.
    #[inline(always)]
    fn run_epoch<R>(
        &self,
        access: Access,
        mut op: impl FnMut(&Engine<'_>, u64) -> Result<R, Stale>,
    ) -> Option<R> {
        for _ in 0..2 {
            let opened = {
                let current = self.current.read();
                let mapping = &current.mapping;
                // Checked before the mapping is touched: in a forked child it is not there.
                let usable = match access {
                    Access::Read => mapping.readable_here(),
                    Access::Write => mapping.writable_here(),
                };
                if usable {
                    let engine = Engine::new(
                        &self.layout,
                        mapping.lock_words(),
                        mapping.data_words(),
                        mapping.generation(),
                        mapping.backing(),
                    )?;
                    if let Ok(result) = op(&engine, current.opened) {
                        return Some(result);
                    }
                }
                current.opened
            };
            self.reopen(opened).ok()?;
        }
        None
    }

    /// Replaces the mapping numbered `stale`, unless another thread already has. A process
    /// image that may not use the old mapping at all falls back to private memory when the
    /// files cannot be opened under its own credentials; otherwise the error is returned
    /// and the next operation tries again.
    #[cold]
    fn reopen(&self, stale: u64) -> io::Result<()> {
        let mut current = self.current.write();
        if current.opened == stale {
            let files = &self.files;
            let mapping = match Mapping::open(
                files.dir.as_deref(),
                &files.stem,
                &files.function,
                &self.layout,
                &self.owner,
            ) {
                Ok(mapping) => mapping,
                Err(e) if !current.mapping.writable_here() => {
                    let private = Mapping::private(&self.layout)?;
                    self.note_unusable(e);
                    private
                }
                Err(e) => return Err(e),
            };
            *current = Current {
                mapping,
                opened: stale + 1,
            };
        }
        Ok(())
    }
}
