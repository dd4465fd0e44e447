//! The files behind a shared cache: where they live, how they are opened, checked, mapped and
//! recreated.
//!
//! Each cache is a pair in a per-user directory (mode 0700, owned by us, not a symlink):
//! `<stem>.lock` (the seqlock, see [`super::layout`]) and `<stem>.data`. Files are created
//! 0600 with `O_CREAT|O_EXCL|O_NOFOLLOW` under a temporary name, filled in, then moved into
//! place, so nobody ever maps a half-made file; they are opened with `O_NOFOLLOW` and
//! checked with `fstat` (regular, ours, the exact size) before being mapped, so a mapping
//! never extends past the end of its file.
//!
//! A data file that is missing or does not match (size, magic, version, parameters, hash
//! build, lock nonce, generation) is recreated under the lock: the first process to get the
//! lock re-checks, writes a new file with the next generation, renames it over the old one
//! and publishes the generation in the lock file. Processes still mapping the old file see
//! the generation move on their next operation and re-open. A bad lock file is replaced
//! (rename over it, then mark the old one retired); its data file, recording the old lock's
//! nonce, then gets recreated under the new lock, so a data file is only ever written under
//! the lock it names. A new data file is allocated before the lock is taken (that can take
//! long for a large cache); the lock covers only the re-check and the rename.
//!
//! Mappings are not inherited by forked children and are never touched by another process
//! image (see [`super::process`]); [`Mapping::private`] is the in-process stand-in used when
//! the files cannot be opened.

use super::layout::{self, header, lock_word, Layout, LOCK_WORDS};
use super::process::{self, Incarnation};
use super::seqlock::{LockOwner, SeqLock};
use super::table::Backing;
use crate::sync::{AtomicU64, Ordering};
use memmap2::{MmapOptions, MmapRaw};
use std::ffi::CString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::mem::ManuallyDrop;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

// Other processes reach these words through their own mappings: only real hardware atomics
// work across processes, never a lock-based fallback.
const _: () = assert!(
    AtomicU64::is_always_lock_free(),
    "shared caches need lock-free 64-bit atomics"
);

/// Bytes in a lock file.
const LOCK_BYTES: usize = LOCK_WORDS * 8;
/// Rounds of open-check-recreate before giving up on files that keep changing.
const OPEN_ATTEMPTS: usize = 8;
/// Tries for a shared `flock` while a remover holds the exclusive one (200 µs apart).
const FLOCK_ATTEMPTS: usize = 50;
/// How many times longer than a store an opener waits for the lock to replace a data file.
const RECREATE_PATIENCE: u32 = 100;
/// The longest wait for a peer creating the same cache after running out of space (see
/// [`wait_for_peer`]); older temporary files are a crashed creator's leftovers.
const PEER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The directories tried, in order, when none is chosen: the first that [`Dir::open`] accepts
/// (ours, mode 0700, not a symlink) holds the files. Another user can pre-create the first
/// one (it is in a world-writable directory) but never the second.
/// 1. `/dev/shm/warp_cache-<euid>` on Linux, `$TMPDIR/warp_cache` on macOS (a per-user
///    directory there), `<temp dir>/warp_cache-<euid>` elsewhere;
/// 2. `$XDG_RUNTIME_DIR/warp_cache`, when `$XDG_RUNTIME_DIR` is a directory owned by the
///    effective user with mode 0700.
pub fn default_dirs() -> Vec<PathBuf> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let first = if cfg!(target_os = "linux") && Path::new("/dev/shm").is_dir() {
        PathBuf::from(format!("/dev/shm/warp_cache-{uid}"))
    } else {
        match std::env::var_os("TMPDIR") {
            Some(tmp) if cfg!(target_os = "macos") => PathBuf::from(tmp).join("warp_cache"),
            _ => std::env::temp_dir().join(format!("warp_cache-{uid}")),
        }
    };
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute() && is_private_dir(dir, uid))
        .map(|dir| dir.join("warp_cache"));
    [Some(first), runtime].into_iter().flatten().collect()
}

/// The directory caches of this user go to by default: the first usable of
/// [`default_dirs`] (the first, if none is: opening there then says why).
pub fn default_dir() -> PathBuf {
    locate(None).map_or_else(|_| default_dirs().swap_remove(0), |dir| dir.1)
}

/// A real directory (not a symlink) owned by `uid` that nobody else may enter.
fn is_private_dir(path: &Path, uid: libc::uid_t) -> bool {
    std::fs::symlink_metadata(path)
        .is_ok_and(|meta| meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0)
}

/// The directory to use: `chosen`, or the first usable of [`default_dirs`]. Errors name the
/// directory (the first default's, when none is usable).
fn locate(chosen: Option<&Path>) -> io::Result<Dir> {
    let candidates = match chosen {
        Some(dir) => vec![dir.to_owned()],
        None => default_dirs(),
    };
    let mut first_error = None;
    for dir in &candidates {
        match Dir::open(dir) {
            Ok(dir) => return Ok(dir),
            Err(e) => {
                first_error.get_or_insert_with(|| {
                    io::Error::new(e.kind(), format!("{}: {e}", dir.display()))
                });
            }
        }
    }
    Err(first_error.unwrap_or_else(|| io::Error::other("no directory for shared caches")))
}

/// A file-name-safe stem naming one identity of a cached function: its module and qualified
/// name (characters other than ASCII letters, digits, `_`, `-` and `.` become `_`, and long
/// names are cut), a tag of the exact names ([`function_prefix`]), then the `identity`.
pub fn file_stem(module: &str, qualname: &str, identity: u64) -> String {
    format!("{}{identity:016x}", function_prefix(module, qualname))
}

/// What every stem of one function starts with: its readable name and a hash of the exact
/// names, so the files of the function's other identities can be told from another
/// function's whose readable name is the same.
pub fn function_prefix(module: &str, qualname: &str) -> String {
    let mut exact = Vec::with_capacity(module.len() + qualname.len() + 1);
    exact.extend_from_slice(module.as_bytes());
    exact.push(0);
    exact.extend_from_slice(qualname.as_bytes());
    let safe = |c: char| {
        if c.is_ascii_alphanumeric() || "_-.".contains(c) {
            c
        } else {
            '_'
        }
    };
    let readable: String = format!("{module}.{qualname}")
        .chars()
        .map(safe)
        .take(150)
        .collect();
    // A leading dot would hide the files (and is how temporary names start).
    let readable = readable
        .strip_prefix('.')
        .map_or(readable.clone(), |rest| format!("_{rest}"));
    let tag = crate::codec::key_hash(&exact) as u32;
    format!("{readable}-{tag:08x}-")
}

/// The production lock owner: this process, by pid; an owner is dead when no process has
/// its pid. (A dead but unreaped child still counts as alive until its parent waits for it.)
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessOwner;

impl LockOwner for ProcessOwner {
    fn id(&self) -> u64 {
        u64::from(std::process::id())
    }

    fn is_alive(&self, owner: u64) -> bool {
        // A word that cannot be a pid was not written by a live owner. Never pass 0 or a
        // negative number to kill: those name process groups.
        let Ok(pid) = libc::pid_t::try_from(owner) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: signal 0 sends nothing; kill only checks that process `pid` (> 0) exists.
        let status = unsafe { libc::kill(pid, 0) };
        status == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
}

/// A pair of mapped cache files (or, [`Mapping::private`], of anonymous memory), and the
/// process image that mapped them.
pub(crate) struct Mapping {
    lock: ManuallyDrop<MmapRaw>,
    data: ManuallyDrop<MmapRaw>,
    generation: u64,
    made_by: Incarnation,
    /// The lock file, holding a shared `flock` while the mapping lives: how other processes
    /// tell a file in use from a stale one ([`remove_stale`], the operator CLI). `None` for
    /// private memory.
    _in_use: Option<File>,
    /// This open made the lock file: the cache's identity is new in this directory.
    created: bool,
    /// The directory the files are in (`None` for private memory).
    dir: Option<PathBuf>,
    /// How much of the data file's heap this process may touch, and how to grow it.
    backing: DataBacking,
}

/// The heap of a mapped data file (or of private memory: `file` is `None`). The file is as
/// long as the largest the layout allows but sparse: only the words before the heap and the
/// heap's first `BACKED` words are allocated, before anyone touches them.
pub(crate) struct DataBacking {
    limit: AtomicU64,
    file: Option<File>,
    /// Bytes before the heap.
    heap_start: u64,
    heap_max: u64,
}

impl DataBacking {
    fn new(file: Option<File>, layout: &Layout, backed: u64) -> Self {
        Self {
            limit: AtomicU64::new(backed.min(layout.heap_max() as u64)),
            file,
            heap_start: layout.heap_start() as u64 * 8,
            heap_max: layout.heap_max() as u64,
        }
    }
}

impl Backing for DataBacking {
    fn limit(&self) -> &AtomicU64 {
        &self.limit
    }

    fn grow(&self, heap_words: usize) -> bool {
        let heap_words = heap_words as u64;
        if heap_words > self.heap_max {
            return false;
        }
        let from = self.limit.load(Ordering::Acquire);
        if heap_words > from {
            if let Some(file) = &self.file {
                let (start, len) = (self.heap_start + from * 8, (heap_words - from) * 8);
                if allocate(file, start, len).is_err() {
                    return false;
                }
            }
        }
        self.limit.fetch_max(heap_words, Ordering::Release);
        true
    }

    fn refresh(&self, published: usize) {
        // The grower allocated the words before publishing them (`grow`): trust the count,
        // within the layout.
        self.limit
            .fetch_max((published as u64).min(self.heap_max), Ordering::Release);
    }
}

impl Mapping {
    /// Opens (creating or recreating as needed) the files of cache `stem` in `dir`, or in
    /// the default directory (see [`default_dirs`]).
    /// `function` names the cache's function in a new lock file.
    pub(crate) fn open(
        dir: Option<&Path>,
        stem: &str,
        function: &str,
        layout: &Layout,
        owner: &impl LockOwner,
    ) -> io::Result<Self> {
        check_stem(stem)?;
        process::watch_forks();
        let made_by = Incarnation::current();
        let dir = locate(dir)?;
        let mut out_of_space = None;
        let mut created = false;
        for _ in 0..OPEN_ATTEMPTS {
            let Some((lock, in_use)) = open_lock(&dir, stem, function, &mut created)? else {
                continue;
            };
            if let Some((data, generation, file)) = open_data(&dir, stem, layout, words(&lock))? {
                let backed = words(&data)[header::BACKED].load(Ordering::Acquire);
                return Ok(Self {
                    lock: ManuallyDrop::new(lock),
                    data: ManuallyDrop::new(data),
                    generation,
                    made_by,
                    _in_use: Some(in_use),
                    created,
                    dir: Some(dir.1.clone()),
                    backing: DataBacking::new(Some(file), layout, backed),
                });
            }
            match recreate_data(&dir, stem, layout, words(&lock), owner) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A live process keeps the lock without progress (stopped?) while the
                    // data file needs replacing: start a new pair of files rather than
                    // fail. Users of the old lock file see it retired and follow.
                    if replace_lock(&dir, stem, function, &in_use)? {
                        words(&lock)[lock_word::RETIRED].store(1, Ordering::Release);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    // Creators racing for little space can split it and all fail: back off
                    // for a random while, so one of them gets it alone next time.
                    out_of_space = Some(e);
                    std::thread::sleep(std::time::Duration::from_micros(
                        1000 + random_u64() % 15_000,
                    ));
                }
                other => other?,
            }
        }
        Err(out_of_space.unwrap_or_else(|| {
            io::Error::other(format!(
                "shared cache files for {stem:?} kept changing while opening"
            ))
        }))
    }

    /// An empty cache of `layout` in anonymous memory of this process only: what a cache
    /// whose files cannot be opened serves from. Pages are committed as entries arrive.
    pub(crate) fn private(layout: &Layout) -> io::Result<Self> {
        process::watch_forks();
        let made_by = Incarnation::current();
        let (lock, data) = (anonymous(LOCK_BYTES)?, anonymous(layout.total_bytes())?);
        layout::init_lock(words(&lock), random_u64(), "");
        words(&lock)[lock_word::GENERATION].store(1, Ordering::Relaxed);
        let nonce = words(&lock)[lock_word::NONCE].load(Ordering::Relaxed);
        layout.init_data(words(&data), nonce, 1, layout.initial_heap());
        Ok(Self {
            lock: ManuallyDrop::new(lock),
            data: ManuallyDrop::new(data),
            generation: 1,
            made_by,
            _in_use: None,
            created: false,
            dir: None,
            backing: DataBacking::new(None, layout, layout.initial_heap() as u64),
        })
    }

    /// The lock file's words.
    pub(crate) fn lock_words(&self) -> &[AtomicU64] {
        words(&self.lock)
    }

    /// The data file's words (only those before the heap and the heap's backed words may
    /// be touched: see [`Mapping::backing`]).
    pub(crate) fn data_words(&self) -> &[AtomicU64] {
        words(&self.data)
    }

    /// How much of the heap may be touched, and how to grow it.
    pub(crate) fn backing(&self) -> &DataBacking {
        &self.backing
    }

    /// The generation the data file was made for.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether this open created the cache's lock file.
    pub(crate) fn created(&self) -> bool {
        self.created
    }

    /// The directory of the files (`None` for private memory).
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether this process image may read the mapping: false in a forked child, which
    /// did not inherit it. One relaxed load.
    #[inline(always)]
    pub(crate) fn readable_here(&self) -> bool {
        self.made_by.same_fork()
    }

    /// Whether this process image may write the mapping: same fork, same credentials
    /// (system calls).
    pub(crate) fn writable_here(&self) -> bool {
        self.made_by.is_current()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // In a forked child the addresses were not inherited (`MADV_DONTFORK`) and may hold
        // another mapping by now: leave them alone.
        if self.made_by.same_fork() {
            // SAFETY: each field is dropped once, here, and never used again.
            unsafe {
                ManuallyDrop::drop(&mut self.lock);
                ManuallyDrop::drop(&mut self.data);
            }
        }
    }
}

/// The mapped bytes as atomic words.
fn words(map: &MmapRaw) -> &[AtomicU64] {
    // SAFETY: the mapping is page-aligned, so 8-aligned, and `len` bytes long (a multiple of
    // 8: we map exactly LOCK_BYTES or a layout's total_bytes); it stays mapped while `map`
    // is borrowed; AtomicU64 has the size and alignment of u64 and every process touches
    // these bytes only through atomics. The file was fstat-checked to be as long as the
    // mapping (sparse: words are touched only once allocated, see `DataBacking`).
    unsafe { std::slice::from_raw_parts(map.as_mut_ptr().cast::<AtomicU64>(), map.len() / 8) }
}

fn check_stem(stem: &str) -> io::Result<()> {
    let ok = !stem.is_empty()
        && stem.len() <= 200
        && !stem.starts_with('.')
        && !stem.contains(['/', '\0']);
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad shared cache name {stem:?}"),
        ))
    }
}

/// The cache directory, held open so every file operation is relative to the checked inode
/// (the path is only used to list it).
pub(super) struct Dir(File, PathBuf);

impl Dir {
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        match DirBuilder::new().mode(0o700).create(path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        let meta = dir.metadata()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        if meta.uid() != uid || meta.mode() & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("not a directory owned by uid {uid} with mode 0700"),
            ));
        }
        Ok(Self(dir, path.to_owned()))
    }

    fn fd(&self) -> libc::c_int {
        self.0.as_raw_fd()
    }

    /// Runs `f` holding the directory's exclusive `flock`: how processes replacing or
    /// removing a cache's files take turns between checking a name and renaming or unlinking
    /// it. `None` if others held it for all of [`FLOCK_ATTEMPTS`] tries (holders only stat
    /// and rename, so that means something is wrong: the caller looks again later).
    fn exclusively<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<Option<R>> {
        for _ in 0..FLOCK_ATTEMPTS {
            if try_flock(&self.0, libc::LOCK_EX)? {
                let result = f();
                // SAFETY: a valid open descriptor; flock has no memory arguments.
                unsafe { libc::flock(self.fd(), libc::LOCK_UN) };
                return result.map(Some);
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        Ok(None)
    }

    /// `openat` with `O_NOFOLLOW|O_CLOEXEC` added.
    fn open_file(&self, name: &str, flags: libc::c_int) -> io::Result<File> {
        let name = c_name(name)?;
        // SAFETY: `self` keeps the directory descriptor open; `name` is NUL-terminated and
        // outlives the call; the mode argument is read only with O_CREAT and is a valid mode.
        let fd = unsafe {
            libc::openat(
                self.fd(),
                name.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by openat and nothing else owns it.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        // SAFETY: valid directory descriptor and NUL-terminated names that outlive the call.
        check(unsafe { libc::renameat(self.fd(), from.as_ptr(), self.fd(), to.as_ptr()) })
    }

    /// Hard-links `from` as `to`; fails with `AlreadyExists` rather than replacing `to`.
    fn link(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        // SAFETY: valid directory descriptor and NUL-terminated names that outlive the call.
        check(unsafe { libc::linkat(self.fd(), from.as_ptr(), self.fd(), to.as_ptr(), 0) })
    }

    /// Whether another process is creating a file of cache `stem`: one of its temporary
    /// files is there, made within [`PEER_PATIENCE`].
    fn peer_creating(&self, stem: &str) -> bool {
        let prefix = format!(".{stem}.");
        let Ok(entries) = std::fs::read_dir(&self.1) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with(&prefix)
                && name.ends_with(".tmp")
                && entry
                    .metadata()
                    .and_then(|meta| meta.modified())
                    .is_ok_and(|made| made.elapsed().is_ok_and(|age| age < PEER_PATIENCE))
        })
    }

    fn unlink(&self, name: &str) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: valid directory descriptor and a NUL-terminated name that outlives the call.
        check(unsafe { libc::unlinkat(self.fd(), name.as_ptr(), 0) })
    }

    /// `name` opened read-write if it is a regular file of ours; `None` if it is missing.
    pub(super) fn open_checked(&self, name: &str) -> io::Result<Option<File>> {
        Ok(open_existing(self, name)?.map(|(file, _)| file))
    }

    /// Whether `name` in this directory is (still) the file `file` is open on.
    fn same_file(&self, name: &str, file: &File) -> bool {
        let Ok(c) = c_name(name) else { return false };
        // SAFETY: `stat` is plain data, filled in by fstatat before it is read.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid directory descriptor, NUL-terminated name, a valid `stat` to fill.
        let status =
            unsafe { libc::fstatat(self.fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        let Ok(meta) = file.metadata() else {
            return false;
        };
        status == 0 && st.st_ino == meta.ino() && st.st_dev == meta.dev()
    }

    /// The stems of every `<stem>.lock` file here (temporary files excluded).
    pub(super) fn lock_stems(&self) -> io::Result<Vec<String>> {
        // Names only: every file is then opened relative to the checked descriptor.
        let mut stems = Vec::new();
        for entry in std::fs::read_dir(&self.1)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".lock") {
                if !stem.starts_with('.') {
                    stems.push(stem.to_owned());
                }
            }
        }
        stems.sort();
        Ok(stems)
    }

    /// Unlinks `<stem>.data` and `<stem>.lock` if no live process holds the lock file.
    pub(super) fn remove_if_unused(&self, stem: &str) -> io::Result<bool> {
        let lock_name = format!("{stem}.lock");
        let Some((file, _)) = open_existing(self, &lock_name)? else {
            return Ok(false);
        };
        if !try_flock(&file, libc::LOCK_EX)? {
            return Ok(false);
        }
        let removed = self.exclusively(|| {
            // A replacer may have renamed a new lock file over the name meanwhile.
            if !self.same_file(&lock_name, &file) {
                return Ok(false);
            }
            // Data first: a lock file without data is recreated like a missing pair.
            match self.unlink(&format!("{stem}.data")) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            self.unlink(&lock_name).map(|()| true)
        })?;
        Ok(removed == Some(true))
    }
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(std::ffi::OsStr::new(name).as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn check(status: libc::c_int) -> io::Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens `name` read-write if it exists; `None` if it does not. Refuses anything but a
/// regular file owned by us (a symlink fails in `openat` with `ELOOP`).
fn open_existing(dir: &Dir, name: &str) -> io::Result<Option<(File, u64)>> {
    let file = match dir.open_file(name, libc::O_RDWR | libc::O_NONBLOCK) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    // Only bytes this user alone can write are ever unpickled.
    if !meta.file_type().is_file() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{name} is not a regular file owned by uid {uid} with mode 0600"),
        ));
    }
    Ok(Some((file, meta.len())))
}

/// Maps `len` bytes of `file`, whose size the caller has checked to be exactly `len`.
fn map(file: &File, len: usize) -> io::Result<MmapRaw> {
    let map = MmapOptions::new().len(len).map_raw(file)?;
    not_inherited(&map);
    Ok(map)
}

/// `len` zero bytes of this process's memory, committed as they are touched.
fn anonymous(len: usize) -> io::Result<MmapRaw> {
    let map = MmapRaw::from(MmapOptions::new().len(len).no_reserve_swap().map_anon()?);
    not_inherited(&map);
    Ok(map)
}

/// Keeps `map` out of forked children (Linux), once they can tell (see [`super::process`]).
fn not_inherited(map: &MmapRaw) {
    #[cfg(target_os = "linux")]
    if process::watch_forks() {
        // Should this fail, the child inherits the mapping but still never uses it.
        let _ = map.advise(memmap2::Advice::DontFork);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = map;
}

/// A new file of `len` zero bytes under a fresh temporary name, mapped.
struct Fresh<'d> {
    dir: &'d Dir,
    name: String,
    map: MmapRaw,
}

impl<'d> Fresh<'d> {
    /// A new file of `len` bytes (of which the first `allocated` are allocated now: the
    /// rest is sparse), mapped.
    fn create(dir: &'d Dir, stem: &str, len: usize, allocated: usize) -> io::Result<Self> {
        let mut last_error = None;
        for _ in 0..8 {
            let name = format!(".{stem}.{:016x}.tmp", random_u64());
            let file = match dir.open_file(&name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    last_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            return match reserve(&file, len, allocated).and_then(|()| map(&file, len)) {
                Ok(map) => Ok(Self { dir, name, map }),
                Err(e) => {
                    let _ = dir.unlink(&name);
                    Err(e)
                }
            };
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary name")))
    }

    fn words(&self) -> &[AtomicU64] {
        words(&self.map)
    }

    /// Moves the file to `target`, replacing whatever is there.
    fn replace(self, target: &str) -> io::Result<()> {
        self.dir.rename(&self.name, target)
    }

    /// Links the file as `target` unless something is already there; true if it did.
    fn install_if_absent(self, target: &str) -> io::Result<bool> {
        match self.dir.link(&self.name, target) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            other => other.map(|()| true),
        }
    }
}

impl Drop for Fresh<'_> {
    /// The temporary name goes in every case: after a rename there is nothing left to
    /// remove, after a link the file lives on under its real name.
    fn drop(&mut self) {
        let _ = self.dir.unlink(&self.name);
    }
}

/// Sizes a new file. On Linux the memory is allocated now, so a full `/dev/shm` fails here
/// with an error instead of later with SIGBUS on first touch.
fn reserve(file: &File, len: usize, allocated: usize) -> io::Result<()> {
    file.set_len(len as u64)?;
    allocate(file, 0, allocated as u64)
}

/// Allocates `len` bytes of `file` from `start` (Linux), so that writing them can never
/// fault for want of space: a full filesystem fails here instead.
fn allocate(file: &File, start: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let too_large = |_| io::Error::from(io::ErrorKind::InvalidInput);
        let (start, len) = (
            libc::off_t::try_from(start).map_err(too_large)?,
            libc::off_t::try_from(len).map_err(too_large)?,
        );
        // SAFETY: a valid, open, writable descriptor; offsets within off_t.
        let status = unsafe { libc::posix_fallocate(file.as_raw_fd(), start, len) };
        if status != 0 {
            return Err(io::Error::from_raw_os_error(status));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, start, len);
    Ok(())
}

/// 64 bits that differ between processes and calls, for lock nonces and temporary names.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(crate::clock::monotonic_nanos());
    h.finish()
}

/// The lock file mapped, if valid, with its descriptor holding a shared `flock`; `None`
/// after creating or replacing it, or when it was removed meanwhile (look again).
fn open_lock(
    dir: &Dir,
    stem: &str,
    function: &str,
    created: &mut bool,
) -> io::Result<Option<(MmapRaw, File)>> {
    let name = format!("{stem}.lock");
    let Some((file, len)) = open_existing(dir, &name)? else {
        *created |= new_lock(dir, stem, function)?.install_if_absent(&name)?;
        return Ok(None);
    };
    if len != LOCK_BYTES as u64 {
        replace_lock(dir, stem, function, &file)?;
        return Ok(None);
    }
    if !hold_in_use(dir, &name, &file)? {
        return Ok(None);
    }
    let lock = map(&file, LOCK_BYTES)?;
    if layout::lock_matches(words(&lock)) {
        words(&lock)[lock_word::LAST_USE].store(wall_seconds(), Ordering::Relaxed);
        return Ok(Some((lock, file)));
    }
    if replace_lock(dir, stem, function, &file)? {
        // Anyone still holding the old file learns it is gone.
        words(&lock)[lock_word::RETIRED].store(1, Ordering::Release);
    }
    Ok(None)
}

/// Puts a new lock file in place of the unusable one `old` was opened on, unless the name
/// no longer leads to `old` (another process replaced it first: its file may be in use
/// already, and renaming over it would split the processes between two lock files).
/// True if this call replaced it.
pub(super) fn replace_lock(dir: &Dir, stem: &str, function: &str, old: &File) -> io::Result<bool> {
    let name = format!("{stem}.lock");
    let fresh = new_lock(dir, stem, function)?;
    let replaced = dir.exclusively(|| {
        if dir.same_file(&name, old) {
            fresh.replace(&name).map(|()| true)
        } else {
            Ok(false)
        }
    })?;
    Ok(replaced == Some(true))
}

fn new_lock<'d>(dir: &'d Dir, stem: &str, function: &str) -> io::Result<Fresh<'d>> {
    let fresh = Fresh::create(dir, stem, LOCK_BYTES, LOCK_BYTES)?;
    layout::init_lock(fresh.words(), random_u64(), function);
    Ok(fresh)
}

/// Takes a shared `flock` on the lock file `file` (named `name`), the sign that a live
/// process uses it, and checks that the name still leads to it: a remover holds the
/// exclusive lock while it unlinks, so a file that is still linked once we hold the shared
/// lock will not be removed under us. False: it was removed or is being removed.
fn hold_in_use(dir: &Dir, name: &str, file: &File) -> io::Result<bool> {
    for _ in 0..FLOCK_ATTEMPTS {
        if try_flock(file, libc::LOCK_SH)? {
            return Ok(dir.same_file(name, file));
        }
        // A remover holds it for two unlinks: never long, but never wait unbounded either.
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    Ok(false)
}

/// `flock(fd, how | LOCK_NB)`: true if taken, false if another holder is in the way.
pub(super) fn try_flock(file: &File, how: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: a valid open descriptor; flock has no memory arguments.
        if unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn wall_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Removes the files of `prefix`'s caches (see [`function_prefix`]) other than `keep` that
/// no live process uses: each lock file we can lock exclusively is unused, and is unlinked
/// with its data file while we hold that lock. Returns the stems removed.
pub fn remove_stale(dir: &Path, prefix: &str, keep: Option<&str>) -> io::Result<Vec<String>> {
    let dir = Dir::open(dir)?;
    let mut removed = Vec::new();
    for stem in dir.lock_stems()? {
        if !stem.starts_with(prefix) || Some(stem.as_str()) == keep {
            continue;
        }
        // A file we cannot open or lock (not ours, vanished) is simply not removed.
        if dir.remove_if_unused(&stem).unwrap_or(false) {
            removed.push(stem);
        }
    }
    Ok(removed)
}

/// The data file mapped with its generation, if it matches `layout` and the lock file.
fn open_data(
    dir: &Dir,
    stem: &str,
    layout: &Layout,
    lock: &[AtomicU64],
) -> io::Result<Option<(MmapRaw, u64, File)>> {
    let Some((file, len)) = open_existing(dir, &format!("{stem}.data"))? else {
        return Ok(None);
    };
    if len != layout.total_bytes() as u64 {
        return Ok(None);
    }
    let data = map(&file, layout.total_bytes())?;
    let nonce = lock[lock_word::NONCE].load(Ordering::Acquire);
    let generation = lock[lock_word::GENERATION].load(Ordering::Acquire);
    Ok(layout
        .data_matches(words(&data), nonce, generation)
        .then_some((data, generation, file)))
}

/// Replaces a missing or unusable data file with an empty one of the next generation,
/// unless another process did meanwhile. The new file is allocated before taking the lock,
/// so a peer creating the same large cache never waits on our allocation.
fn recreate_data(
    dir: &Dir,
    stem: &str,
    layout: &Layout,
    lock: &[AtomicU64],
    owner: &impl LockOwner,
) -> io::Result<()> {
    let fresh = match Fresh::create(dir, stem, layout.total_bytes(), layout.initial_words() * 8) {
        Ok(fresh) => fresh,
        Err(e) => return wait_for_peer(dir, stem, layout, lock, e),
    };
    let seqlock = SeqLock::new(&lock[lock_word::SEQ], &lock[lock_word::OWNER]);
    let patience = owner.patience().stretched(RECREATE_PATIENCE);
    let guard = seqlock.lock_with(owner, patience).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("shared cache {stem:?} stays locked"),
        )
    })?;
    if guard.torn() {
        // A dead writer left the current data file half-written: retire it before anything
        // below can fail, so nobody trusts it once the guard is dropped.
        lock[lock_word::GENERATION].fetch_add(1, Ordering::AcqRel);
    } else if open_data(dir, stem, layout, lock)?.is_some() {
        // A peer published first; ours is unlinked when `fresh` drops.
        return Ok(());
    }
    let generation = lock[lock_word::GENERATION]
        .load(Ordering::Relaxed)
        .wrapping_add(1);
    layout.init_data(
        fresh.words(),
        lock[lock_word::NONCE].load(Ordering::Relaxed),
        generation,
        layout.initial_heap(),
    );
    fresh.replace(&format!("{stem}.data"))?;
    lock[lock_word::GENERATION].store(generation, Ordering::Release);
    drop(guard);
    Ok(())
}

/// After failing to allocate a data file with `error`: on `ENOSPC` while a peer is creating
/// the same cache, the space is probably the peer's temporary file, soon the cache's data
/// file: wait for it to be published (then `Ok`: open it), at most [`PEER_PATIENCE`]. With
/// no peer at work, fail at once.
fn wait_for_peer(
    dir: &Dir,
    stem: &str,
    layout: &Layout,
    lock: &[AtomicU64],
    error: io::Error,
) -> io::Result<()> {
    if error.raw_os_error() != Some(libc::ENOSPC) {
        return Err(error);
    }
    let deadline = std::time::Instant::now() + PEER_PATIENCE;
    loop {
        if open_data(dir, stem, layout, lock)?.is_some() {
            return Ok(());
        }
        // A publisher renames its temporary file, then publishes the generation, both
        // under the lock: while the lock is held, a publication may be under way.
        let busy = lock[lock_word::OWNER].load(Ordering::Acquire) != 0;
        if !(busy || dir.peer_creating(stem)) || std::time::Instant::now() >= deadline {
            return Err(error);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
