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
//! the lock it names.

use super::layout::{self, lock_word, Layout, LOCK_WORDS};
use super::seqlock::{LockOwner, SeqLock};
use crate::sync::{AtomicU64, Ordering};
use memmap2::{MmapOptions, MmapRaw};
use std::ffi::CString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
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

/// The directory caches live in unless told otherwise: `/dev/shm/warp_cache-<uid>` on Linux,
/// `$TMPDIR/warp_cache` on macOS, `<temp dir>/warp_cache-<uid>` elsewhere.
pub fn default_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if cfg!(target_os = "linux") && Path::new("/dev/shm").is_dir() {
        return PathBuf::from(format!("/dev/shm/warp_cache-{uid}"));
    }
    match std::env::var_os("TMPDIR") {
        Some(tmp) if cfg!(target_os = "macos") => PathBuf::from(tmp).join("warp_cache"),
        _ => std::env::temp_dir().join(format!("warp_cache-{uid}")),
    }
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

/// A pair of mapped cache files. The lock file stays open with a shared `flock` for as long
/// as the mapping lives: that is how other processes tell a file in use from a stale one
/// ([`remove_stale`], the operator CLI).
pub(crate) struct Mapping {
    lock: MmapRaw,
    data: MmapRaw,
    generation: u64,
    _in_use: File,
    /// This open made the lock file: the cache's identity is new in this directory.
    created: bool,
}

impl Mapping {
    /// Opens (creating or recreating as needed) the files of cache `stem` in `dir`;
    /// `function` names the cache's function in a new lock file.
    pub(crate) fn open(
        dir: &Path,
        stem: &str,
        function: &str,
        layout: &Layout,
        owner: &impl LockOwner,
    ) -> io::Result<Self> {
        check_stem(stem)?;
        let dir = Dir::open(dir)?;
        let mut created = false;
        for _ in 0..OPEN_ATTEMPTS {
            let Some((lock, in_use)) = open_lock(&dir, stem, function, &mut created)? else {
                continue;
            };
            if let Some((data, generation)) = open_data(&dir, stem, layout, words(&lock))? {
                return Ok(Self {
                    lock,
                    data,
                    generation,
                    _in_use: in_use,
                    created,
                });
            }
            recreate_data(&dir, stem, layout, words(&lock), owner)?;
        }
        Err(io::Error::other(format!(
            "shared cache files for {stem:?} kept changing while opening"
        )))
    }

    /// The lock file's words.
    pub(crate) fn lock_words(&self) -> &[AtomicU64] {
        words(&self.lock)
    }

    /// The data file's words.
    pub(crate) fn data_words(&self) -> &[AtomicU64] {
        words(&self.data)
    }

    /// The generation the data file was made for.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether this open created the cache's lock file.
    pub(crate) fn created(&self) -> bool {
        self.created
    }
}

/// The mapped bytes as atomic words.
fn words(map: &MmapRaw) -> &[AtomicU64] {
    // SAFETY: the mapping is page-aligned, so 8-aligned, and `len` bytes long (a multiple of
    // 8: we map exactly LOCK_BYTES or a layout's total_bytes); it stays mapped while `map`
    // is borrowed; AtomicU64 has the size and alignment of u64 and every process touches
    // these bytes only through atomics. The file was fstat-checked to cover the mapping.
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

/// The cache directory, held open so every file operation is relative to the checked inode.
pub(super) struct Dir {
    file: File,
    path: PathBuf,
}

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
                format!(
                    "{} must be a directory owned by uid {uid} with mode 0700",
                    path.display()
                ),
            ));
        }
        Ok(Self {
            file: dir,
            path: path.to_owned(),
        })
    }

    fn fd(&self) -> libc::c_int {
        self.file.as_raw_fd()
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
        for entry in std::fs::read_dir(&self.path)? {
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
        if !try_flock(&file, libc::LOCK_EX)? || !self.same_file(&lock_name, &file) {
            return Ok(false);
        }
        // Data first: a lock file without data is recreated like a missing pair.
        match self.unlink(&format!("{stem}.data")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.unlink(&lock_name)?;
        Ok(true)
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
    if !meta.file_type().is_file() || meta.uid() != uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{name} is not a regular file owned by uid {uid}"),
        ));
    }
    Ok(Some((file, meta.len())))
}

/// Maps `len` bytes of `file`, whose size the caller has checked to be exactly `len`.
fn map(file: &File, len: usize) -> io::Result<MmapRaw> {
    MmapOptions::new().len(len).map_raw(file)
}

/// A new file of `len` zero bytes under a fresh temporary name, mapped.
struct Fresh<'d> {
    dir: &'d Dir,
    name: String,
    map: MmapRaw,
}

impl<'d> Fresh<'d> {
    fn create(dir: &'d Dir, stem: &str, len: usize) -> io::Result<Self> {
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
            return match reserve(&file, len).and_then(|()| map(&file, len)) {
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
fn reserve(file: &File, len: usize) -> io::Result<()> {
    file.set_len(len as u64)?;
    #[cfg(target_os = "linux")]
    {
        let len =
            libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid, open, writable descriptor; offsets within off_t.
        let status = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        if status != 0 {
            return Err(io::Error::from_raw_os_error(status));
        }
    }
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
        new_lock(dir, stem, function)?.replace(&name)?;
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
    new_lock(dir, stem, function)?.replace(&name)?;
    // Anyone still holding the old file learns it is gone.
    words(&lock)[lock_word::RETIRED].store(1, Ordering::Release);
    Ok(None)
}

fn new_lock<'d>(dir: &'d Dir, stem: &str, function: &str) -> io::Result<Fresh<'d>> {
    let fresh = Fresh::create(dir, stem, LOCK_BYTES)?;
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
) -> io::Result<Option<(MmapRaw, u64)>> {
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
        .then_some((data, generation)))
}

/// Under the lock: unless another process fixed it meanwhile, replaces the data file with an
/// empty one of the next generation.
fn recreate_data(
    dir: &Dir,
    stem: &str,
    layout: &Layout,
    lock: &[AtomicU64],
    owner: &impl LockOwner,
) -> io::Result<()> {
    let seqlock = SeqLock::new(&lock[lock_word::SEQ], &lock[lock_word::OWNER]);
    let guard = seqlock.lock(owner).ok_or_else(|| {
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
        return Ok(());
    }
    let generation = lock[lock_word::GENERATION]
        .load(Ordering::Relaxed)
        .wrapping_add(1);
    let fresh = Fresh::create(dir, stem, layout.total_bytes())?;
    layout.init_data(
        fresh.words(),
        lock[lock_word::NONCE].load(Ordering::Relaxed),
        generation,
    );
    fresh.replace(&format!("{stem}.data"))?;
    lock[lock_word::GENERATION].store(generation, Ordering::Release);
    drop(guard);
    Ok(())
}
