//! The shared cache on real files in a temporary directory: several mappings, damaged
//! files, unsafe directories, other processes.

use super::layout::{lock_word, Layout, LOCK_WORDS};
use super::region::Mapping;
use super::tests::{params, TestOwner};
use super::*;
use crate::sieve::reference::xorshift;
use crate::sync::Ordering;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A directory removed when the test ends; the cache directory inside is made by the store.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("warp_cache_test-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::DirBuilder::new().mode(0o700).create(&path).unwrap();
        Self(path)
    }

    fn cache(&self) -> PathBuf {
        self.0.join("cache")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const STEM: &str = "tests.module.func-0123456789abcdef";

fn open(dir: &Path, capacity: u32) -> SharedStore {
    SharedStore::open(dir, STEM, params(capacity)).unwrap()
}

fn file(dir: &Path, suffix: &str) -> PathBuf {
    dir.join(format!("{STEM}.{suffix}"))
}

#[test]
fn two_mappings_share_entries_and_counters() {
    let tmp = TempDir::new("share");
    let (a, b) = (open(&tmp.cache(), 4), open(&tmp.cache(), 4));
    assert_eq!(a.insert(b"k", b"value", 0, u64::MAX), InsertOutcome::Stored);
    assert_eq!(b.get(b"k", 0).as_deref(), Some(&b"value"[..]));
    assert_eq!(a.get(b"nope", 0), None);
    let info = b.info();
    assert_eq!(
        (info.hits, info.misses, info.current_size, info.max_size),
        (1, 1, 1, 4)
    );
    assert!(b.clear());
    assert_eq!(a.get(b"k", 0), None);
    assert_eq!(a.params(), params(4));
}

#[test]
fn directory_and_files_are_private_and_named_for_the_function() {
    let tmp = TempDir::new("private");
    let _store = open(&tmp.cache(), 2);
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tmp.cache()), 0o700);
    assert_eq!(mode(&file(&tmp.cache(), "data")), 0o600);
    assert_eq!(mode(&file(&tmp.cache(), "lock")), 0o600);
    let mut names: Vec<String> = fs::read_dir(tmp.cache())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![format!("{STEM}.data"), format!("{STEM}.lock")],
        "no temporary files left"
    );
}

#[test]
fn file_stems_are_safe_readable_and_distinct() {
    let stem = file_stem("pkg.mod", "Cls.method.<locals>.f", 7);
    assert!(stem.starts_with("pkg.mod.Cls.method._locals_.f-"), "{stem}");
    assert!(stem
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)));
    assert_ne!(stem, file_stem("pkg.mod", "Cls.method.<locals>.f", 8));
    assert_ne!(
        file_stem("a", "b<", 0),
        file_stem("a", "b>", 0),
        "sanitizing must not merge names"
    );
    assert!(!file_stem("", "x", 0).starts_with('.'));
    assert!(file_stem(&"m".repeat(1000), "f", 0).len() < 200);
}

#[test]
fn other_parameters_recreate_the_file_and_old_mappings_notice() {
    let tmp = TempDir::new("params");
    let a = open(&tmp.cache(), 4);
    a.insert(b"k", b"v", 0, u64::MAX);
    let c = open(&tmp.cache(), 8);
    assert_eq!(c.get(b"k", 0), None, "a new file for new parameters");
    assert_eq!(
        fs::metadata(file(&tmp.cache(), "data")).unwrap().len(),
        Layout::new(params(8)).unwrap().total_bytes() as u64
    );
    // `a` must not keep using its orphaned file: it re-opens (and recreates for its size).
    assert_eq!(a.get(b"k", 0), None);
    assert_eq!(a.insert(b"k2", b"v2", 0, u64::MAX), InsertOutcome::Stored);
    let b = open(&tmp.cache(), 4);
    assert_eq!(b.get(b"k2", 0).as_deref(), Some(&b"v2"[..]));
}

/// Writes `bytes` at `offset` without changing the file's length: truncating a mapped file
/// would fault whoever touches the lost tail, which is not what these tests are about.
fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, offset)
        .unwrap();
}

#[test]
fn generation_change_is_noticed_by_every_mapping() {
    let tmp = TempDir::new("generation");
    let (a, b) = (open(&tmp.cache(), 4), open(&tmp.cache(), 4));
    a.insert(b"k", b"v", 0, u64::MAX);
    // The data file's magic is damaged under both mappings: `a` notices, recreates the file
    // with the next generation; `b` sees the generation move and follows.
    overwrite(&file(&tmp.cache(), "data"), 0, b"garbage!");
    assert_eq!(a.get(b"k", 0), None);
    assert_eq!(a.insert(b"k", b"new", 0, u64::MAX), InsertOutcome::Stored);
    assert_eq!(b.get(b"k", 0).as_deref(), Some(&b"new"[..]));
}

#[test]
fn replaced_lock_file_is_noticed() {
    let tmp = TempDir::new("lock");
    let a = open(&tmp.cache(), 4);
    a.insert(b"k", b"v", 0, u64::MAX);
    overwrite(&file(&tmp.cache(), "lock"), 0, b"garbage!");
    // A newcomer replaces the lock file (and so the data file, which names the old lock).
    let b = open(&tmp.cache(), 4);
    assert_eq!(b.get(b"k", 0), None);
    b.insert(b"k", b"new", 0, u64::MAX);
    assert_eq!(
        a.get(b"k", 0).as_deref(),
        Some(&b"new"[..]),
        "the old lock was retired"
    );
}

/// Stores an entry, damages the files with `damage`, and checks a fresh open works.
fn survives(test: &str, damage: impl FnOnce(&Path)) {
    let tmp = TempDir::new(test);
    open(&tmp.cache(), 4).insert(b"k", b"v", 0, u64::MAX);
    damage(&tmp.cache());
    let store = open(&tmp.cache(), 4);
    if let Some(value) = store.get(b"k", 0) {
        assert_eq!(value, b"v", "{test}");
    }
    assert_eq!(
        store.insert(b"k2", b"v2", 0, u64::MAX),
        InsertOutcome::Stored,
        "{test}"
    );
    assert_eq!(store.get(b"k2", 0).as_deref(), Some(&b"v2"[..]), "{test}");
}

#[test]
fn damaged_files_are_recreated_or_read_as_misses() {
    let data_len = Layout::new(params(4)).unwrap().total_bytes();
    let mut seed = 0xFEED_FACE_u64;
    let noise: Vec<u8> = (0..data_len).map(|_| xorshift(&mut seed) as u8).collect();
    survives("zeroed", |d| {
        fs::write(file(d, "data"), vec![0; data_len]).unwrap()
    });
    survives("random", |d| fs::write(file(d, "data"), &noise).unwrap());
    survives("truncated", |d| {
        fs::write(file(d, "data"), &noise[..data_len / 2]).unwrap()
    });
    survives("empty", |d| fs::write(file(d, "data"), b"").unwrap());
    survives("longer", |d| {
        let mut long = fs::read(file(d, "data")).unwrap();
        long.extend_from_slice(&[0; 8]);
        fs::write(file(d, "data"), long).unwrap();
    });
    survives("body", |d| {
        overwrite(&file(d, "data"), 8 * 12, &noise[..data_len - 8 * 12])
    });
    survives("lock_random", |d| {
        fs::write(file(d, "lock"), &noise[..LOCK_WORDS * 8]).unwrap()
    });
    survives("lock_short", |d| fs::write(file(d, "lock"), b"x").unwrap());
    survives("data_missing", |d| {
        fs::remove_file(file(d, "data")).unwrap()
    });
    survives("lock_missing", |d| {
        fs::remove_file(file(d, "lock")).unwrap()
    });
}

#[test]
fn symlinks_and_open_directories_are_refused() {
    let tmp = TempDir::new("refuse");
    drop(open(&tmp.cache(), 4));
    let victim = tmp.0.join("victim");
    fs::write(&victim, b"precious").unwrap();
    fs::remove_file(file(&tmp.cache(), "data")).unwrap();
    std::os::unix::fs::symlink(&victim, file(&tmp.cache(), "data")).unwrap();
    assert!(
        SharedStore::open(&tmp.cache(), STEM, params(4)).is_err(),
        "symlinked data file"
    );
    assert_eq!(fs::read(&victim).unwrap(), b"precious");

    let link = tmp.0.join("linked_dir");
    std::os::unix::fs::symlink(tmp.cache(), &link).unwrap();
    assert!(
        SharedStore::open(&link, STEM, params(4)).is_err(),
        "symlinked directory"
    );

    let open_dir = tmp.0.join("open_dir");
    fs::DirBuilder::new().mode(0o755).create(&open_dir).unwrap();
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let err = SharedStore::open(&open_dir, STEM, params(4))
        .err()
        .expect("group/other access refused");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);

    assert!(
        SharedStore::open(&tmp.cache(), "../escape", params(4)).is_err(),
        "bad stem"
    );
}

#[test]
fn threads_with_their_own_mappings_never_see_a_wrong_value() {
    let tmp = TempDir::new("threads");
    let dir = tmp.cache();
    drop(open(&dir, 8));
    let expected = |key: u64| -> Vec<u8> {
        (0..(key % 60) as u8 + 1)
            .map(|i| i.wrapping_mul(31) ^ key as u8)
            .collect()
    };
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let dir = &dir;
            s.spawn(move || {
                let store = open(dir, 8);
                let mut seed = 0xABCD_0000 + t;
                for _ in 0..5_000 {
                    let key = (xorshift(&mut seed) % 24).to_le_bytes();
                    match store.get(&key, 0) {
                        Some(value) => assert_eq!(value, expected(u64::from_le_bytes(key))),
                        None => {
                            store.insert(&key, &expected(u64::from_le_bytes(key)), 0, u64::MAX);
                        }
                    }
                }
            });
        }
    });
    let info = open(&dir, 8).info();
    assert_eq!(info.hits + info.misses, 20_000);
    assert!(info.hits > 0 && info.current_size == 8);
}

#[test]
fn store_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<SharedStore>();
}

#[test]
fn lock_owner_liveness_follows_real_processes() {
    let me = ProcessOwner;
    assert!(me.is_alive(me.id()));
    assert!(!me.is_alive(0), "0 is never a pid");
    assert!(!me.is_alive(u64::MAX), "garbage is never a pid");
    assert!(!me.is_alive(1 << 40));
}

/// Forks; the child runs `child` and exits with 0 if it returned true. Returns the child's
/// exit status once it has been reaped (so its pid is dead).
fn in_child(child: impl FnOnce() -> bool) -> i32 {
    // SAFETY: the child only runs `child` (plain Rust on fresh objects: allocation, file
    // operations) and then `_exit`s without unwinding or running the parent's destructors.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(false);
        // SAFETY: _exit ends this forked child immediately; nothing else runs in it.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    status
}

#[test]
fn another_process_writes_what_this_one_reads() {
    let tmp = TempDir::new("fork");
    let dir = tmp.cache();
    let parent = open(&dir, 4);
    let status = in_child(|| {
        open(&dir, 4).insert(b"from child", b"hello", 0, u64::MAX) == InsertOutcome::Stored
    });
    assert_eq!(status, 0);
    assert_eq!(parent.get(b"from child", 0).as_deref(), Some(&b"hello"[..]));
}

#[test]
fn a_process_killed_inside_a_write_does_not_wedge_the_others() {
    let tmp = TempDir::new("killed");
    let dir = tmp.cache();
    let parent = open(&dir, 4);
    parent.insert(b"before", b"v", 0, u64::MAX);
    // The child takes the lock, opens a write section and dies there.
    let status = in_child(|| {
        let Ok(mapping) = Mapping::open(
            Some(&dir),
            STEM,
            STEM,
            &Layout::new(params(4)).unwrap(),
            &ProcessOwner,
        ) else {
            return false;
        };
        let lock = mapping.lock_words();
        lock[lock_word::OWNER].store(u64::from(std::process::id()), Ordering::SeqCst);
        lock[lock_word::SEQ].fetch_add(1, Ordering::SeqCst);
        true
    });
    assert_eq!(status, 0);
    assert_eq!(
        parent.get(b"before", 0).as_deref(),
        Some(&b"v"[..]),
        "readers check slots, not the lock: the dead writer touched no slot"
    );
    assert_eq!(
        parent.insert(b"after", b"v", 0, u64::MAX),
        InsertOutcome::Stored,
        "the dead owner is taken over"
    );
    assert_eq!(parent.get(b"after", 0).as_deref(), Some(&b"v"[..]));
    assert_eq!(
        parent.get(b"before", 0).as_deref(),
        Some(&b"v"[..]),
        "the repair keeps whole slots"
    );
}

#[test]
fn a_live_owner_is_waited_for_not_robbed() {
    let tmp = TempDir::new("live_owner");
    let dir = tmp.cache();
    drop(open(&dir, 4));
    // Another "process" of this one (id 2, alive) holds the lock: writers give up, readers
    // still read.
    let holder = TestOwner::new(2);
    let quick = TestOwner::new(3);
    let store = SharedStore::open_with_owner(&dir, STEM, params(4), quick).unwrap();
    store.insert(b"k", b"v", 0, u64::MAX);
    let mapping = Mapping::open(
        Some(&dir),
        STEM,
        STEM,
        &Layout::new(params(4)).unwrap(),
        &holder,
    )
    .unwrap();
    mapping.lock_words()[lock_word::OWNER].store(holder.id(), Ordering::SeqCst);
    assert_eq!(
        store.insert(b"k2", b"v", 0, u64::MAX),
        InsertOutcome::NotCached
    );
    assert!(!store.clear());
    assert_eq!(store.get(b"k", 0).as_deref(), Some(&b"v"[..]));
    mapping.lock_words()[lock_word::OWNER].store(0, Ordering::SeqCst);
    assert_eq!(
        store.insert(b"k2", b"v", 0, u64::MAX),
        InsertOutcome::Stored
    );
}

#[test]
fn stale_identities_are_removed_unless_a_mapping_holds_them() {
    let tmp = TempDir::new("stale");
    let dir = tmp.cache();
    let prefix = function_prefix("pkg.mod", "f");
    let other = function_prefix("pkg.mod", "g");
    let stem = |p: &str, identity: u64| format!("{p}{identity:016x}");
    let opened = |s: &str| SharedStore::open(&dir, s, params(4)).unwrap();
    let first = opened(&stem(&prefix, 1));
    assert!(first.created_in().is_some());
    assert!(
        opened(&stem(&prefix, 1)).created_in().is_none(),
        "a second open creates nothing"
    );
    drop(first);
    let held = opened(&stem(&prefix, 2));
    drop(opened(&stem(&other, 3)));
    let keep = stem(&prefix, 4);
    let _current = opened(&keep);
    let removed = remove_stale(&dir, &prefix, Some(&keep)).unwrap();
    assert_eq!(
        removed,
        vec![stem(&prefix, 1)],
        "only the unused old identity goes"
    );
    let left: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for gone in [".lock", ".data"].map(|s| format!("{}{s}", stem(&prefix, 1))) {
        assert!(!left.contains(&gone), "{gone} left behind");
    }
    for kept in [stem(&prefix, 2), stem(&other, 3), keep] {
        assert!(left.contains(&format!("{kept}.data")), "{kept} removed");
    }
    drop(held);
    assert_eq!(
        remove_stale(&dir, &prefix, None).unwrap(),
        vec![stem(&prefix, 2)],
        "a released identity is stale; the open one stays"
    );
}

#[test]
fn lock_files_name_their_function() {
    let tmp = TempDir::new("named");
    let store: SharedStore = SharedStore::open_named(
        Some(&tmp.cache()),
        STEM,
        "pkg.mod.Cls.f",
        params(4),
        ProcessOwner,
    )
    .unwrap();
    let bytes = fs::read(file(&tmp.cache(), "lock")).unwrap();
    let words: Vec<crate::sync::AtomicU64> = bytes
        .chunks(8)
        .map(|c| crate::sync::AtomicU64::new(u64::from_le_bytes(c.try_into().unwrap())))
        .collect();
    assert_eq!(layout::lock_name(&words), "pkg.mod.Cls.f");
    assert!(words[lock_word::LAST_USE].load(Ordering::Relaxed) > 1_700_000_000);
    drop(store);
}

#[test]
fn inventory_lists_clears_and_purges() {
    let tmp = TempDir::new("inventory");
    let dir = tmp.cache();
    let prefix = function_prefix("pkg.mod", "f");
    let stem = |identity: u64| format!("{prefix}{identity:016x}");
    let named = |s: &str| -> SharedStore {
        SharedStore::open_named(Some(&dir), s, "pkg.mod.f", params(4), ProcessOwner).unwrap()
    };
    drop(named(&stem(1)));
    std::thread::sleep(std::time::Duration::from_millis(1100)); // last use is in seconds
    let live = named(&stem(2));
    live.insert(b"k", b"v", 0, u64::MAX);
    live.get(b"k", 0);
    live.get(b"other", 0);
    let rows = inventory::list(&dir).unwrap();
    assert_eq!(rows.len(), 2);
    let row = rows.iter().find(|r| r.stem == stem(2)).unwrap();
    assert_eq!(row.function, "pkg.mod.f");
    assert_eq!(row.identity, format!("{:016x}", 2));
    assert!(row.valid && row.in_use);
    assert_eq!(
        (row.entries, row.hits, row.misses, row.max_size),
        (1, 1, 1, 4)
    );
    assert!(row.bytes > 0);
    assert!(!rows.iter().find(|r| r.stem == stem(1)).unwrap().in_use);

    assert!(inventory::clear(&dir, &stem(2)).unwrap());
    assert_eq!(
        live.get(b"k", 0),
        None,
        "cleared for the process that has it open"
    );
    assert!(!inventory::clear(&dir, "no-such-cache").unwrap());

    assert_eq!(inventory::purge(&dir, false).unwrap(), vec![stem(1)]);
    assert!(
        inventory::purge(&dir, true).unwrap().is_empty(),
        "in use: kept"
    );
    drop(live);
    assert_eq!(inventory::purge(&dir, true).unwrap(), vec![stem(2)]);
    assert!(inventory::list(&dir).unwrap().is_empty());
}

#[test]
fn files_that_cannot_be_opened_leave_a_private_cache_and_say_why_once() {
    let tmp = TempDir::new("private");
    fs::write(tmp.cache(), b"not a directory").unwrap();
    let store: SharedStore =
        SharedStore::open_or_private(Some(&tmp.cache()), STEM, STEM, params(4), ProcessOwner)
            .unwrap();
    let why = store.take_unusable().expect("the reason is kept");
    assert!(
        why.to_string().contains("cache"),
        "names the directory: {why}"
    );
    assert!(store.take_unusable().is_none(), "said once");
    assert_eq!(store.insert(b"k", b"v", 0, u64::MAX), InsertOutcome::Stored);
    assert_eq!(store.get(b"k", 0).as_deref(), Some(&b"v"[..]));
    assert_eq!(store.info().current_size, 1);
    assert!(store.clear());
    assert_eq!(fs::read(tmp.cache()).unwrap(), b"not a directory");
}

#[test]
fn threads_creating_one_large_cache_at_once_all_open_it() {
    let tmp = TempDir::new("race");
    let dir = tmp.cache();
    let stores: Vec<SharedStore> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| SharedStore::open(&dir, STEM, params(200_000))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert_eq!(
        stores[0].insert(b"k", b"v", 0, u64::MAX),
        InsertOutcome::Stored
    );
    for store in &stores {
        assert_eq!(store.get(b"k", 0).as_deref(), Some(&b"v"[..]), "one file");
    }
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [format!("{STEM}.data"), format!("{STEM}.lock")]);
}

#[test]
fn a_forked_child_reopens_instead_of_touching_the_parents_mapping() {
    let tmp = TempDir::new("fork");
    let store = open(&tmp.cache(), 4);
    assert_eq!(
        store.insert(b"k", b"parent", 0, u64::MAX),
        InsertOutcome::Stored
    );
    let mut fds = [0; 2];
    // SAFETY: a pipe, then a fork whose child uses the store (its own files, no locks held
    // by other threads: this test has none), writes 8 bytes and exits.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let child = libc::fork();
        assert!(child >= 0, "fork failed");
        if child == 0 {
            let hit = store.get(b"k", 0).as_deref() == Some(&b"parent"[..]);
            let stored = store.insert(b"c", b"child", 0, u64::MAX) == InsertOutcome::Stored;
            drop(store); // must not unmap what the child never had
            let ok = u64::from(hit && stored);
            libc::write(fds[1], (&ok as *const u64).cast(), 8);
            libc::_exit(0);
        }
        let mut ok = 0u64;
        assert_eq!(libc::read(fds[0], (&mut ok as *mut u64).cast(), 8), 8);
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
        libc::close(fds[0]);
        libc::close(fds[1]);
        assert!(libc::WIFEXITED(status), "the child crashed: {status}");
        assert_eq!(ok, 1, "the child reopened the files and shared the entries");
    }
    assert_eq!(store.get(b"c", 0).as_deref(), Some(&b"child"[..]));
}

#[test]
fn a_late_replacer_never_renames_over_a_lock_file_others_already_use() {
    let tmp = TempDir::new("late_replacer");
    let dir = tmp.cache();
    drop(open(&dir, 4));
    // A lock file of the wrong size, which process A opens to inspect...
    fs::write(file(&dir, "lock"), b"short").unwrap();
    let inspected = fs::File::open(file(&dir, "lock")).unwrap();
    // ...while process B replaces it and starts using the new one.
    let b = open(&dir, 4);
    b.insert(b"k", b"v", 0, u64::MAX);
    let in_use = fs::metadata(file(&dir, "lock")).unwrap().ino();
    // A, late, must not put yet another lock file in place of B's.
    let checked = super::region::Dir::open(&dir).unwrap();
    assert!(!super::region::replace_lock(&checked, STEM, STEM, &inspected).unwrap());
    assert_eq!(fs::metadata(file(&dir, "lock")).unwrap().ino(), in_use);
    let a = open(&dir, 4);
    assert_eq!(
        a.get(b"k", 0).as_deref(),
        Some(&b"v"[..]),
        "A joins B's cache"
    );
}

#[test]
fn a_stuck_holder_never_stops_others_from_opening_when_the_data_file_must_be_replaced() {
    let tmp = TempDir::new("stuck_open");
    let dir = tmp.cache();
    let holder = TestOwner::new(2);
    let stuck = SharedStore::open_with_owner(&dir, STEM, params(4), TestOwner::new(2)).unwrap();
    let mapping = Mapping::open(
        Some(&dir),
        STEM,
        STEM,
        &Layout::new(params(4)).unwrap(),
        &holder,
    )
    .unwrap();
    // Process 2 (alive) stops inside a section, and the data file is gone.
    mapping.lock_words()[lock_word::OWNER].store(holder.id(), Ordering::SeqCst);
    mapping.lock_words()[lock_word::SEQ].fetch_add(1, Ordering::SeqCst);
    fs::remove_file(file(&dir, "data")).unwrap();
    let opener = SharedStore::open_with_owner(&dir, STEM, params(4), TestOwner::new(3))
        .expect("opening does not depend on a stuck holder");
    assert_eq!(
        opener.insert(b"k", b"v", 0, u64::MAX),
        InsertOutcome::Stored,
        "a new pair of files, free of the stuck holder"
    );
    assert_eq!(
        mapping.lock_words()[lock_word::RETIRED].load(Ordering::SeqCst),
        1,
        "the old lock file is retired"
    );
    // The stuck process, resumed, follows to the new files.
    mapping.lock_words()[lock_word::OWNER].store(0, Ordering::SeqCst);
    assert_eq!(stuck.get(b"k", 0).as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_large_cache_allocates_little_and_grows_as_entries_land() {
    let tmp = TempDir::new("sparse");
    let dir = tmp.cache();
    let params = Params {
        capacity: 100_000,
        max_key_size: 256,
        max_value_size: 65_536,
        ttl_ns: None,
        max_bytes: None,
    };
    let early = SharedStore::open(&dir, STEM, params).unwrap();
    let allocated = || fs::metadata(file(&dir, "data")).unwrap().blocks() * 512;
    let at_open = allocated();
    assert!(at_open < 16 << 20, "{at_open} bytes allocated at open");
    let writer = SharedStore::open(&dir, STEM, params).unwrap();
    for k in 0..100u32 {
        let value = vec![k as u8; 60_000];
        assert_eq!(
            writer.insert(&k.to_le_bytes(), &value, 0, u64::MAX),
            InsertOutcome::Stored
        );
    }
    let grown = allocated() - at_open;
    assert!(
        (6_000_000..12_000_000).contains(&grown),
        "{grown} bytes for 6 MB of values"
    );
    // A mapping opened before the growth reads the new entries, and writes into the heap
    // too; one opened after sees everything.
    for k in 0..100u32 {
        assert_eq!(early.get(&k.to_le_bytes(), 0), Some(vec![k as u8; 60_000]));
    }
    assert_eq!(
        early.insert(b"late", &vec![7; 50_000], 0, u64::MAX),
        InsertOutcome::Stored
    );
    let late = SharedStore::open(&dir, STEM, params).unwrap();
    assert_eq!(late.get(b"late", 0), Some(vec![7; 50_000]));
    assert_eq!(late.get(&5u32.to_le_bytes(), 0), Some(vec![5; 60_000]));
    assert!(late.info().current_bytes >= 100 * 60_000);
}
