//! The cross-process seqlock (`src/shared/seqlock.rs`) on four words: `SEQ`, `OWNER` and
//! two data words that every write section sets to one value. A reader that returns two
//! different values returned a mix of two write sections.

use crate::owner::Processes;
use crate::{model, Arc};
use loom::thread;
use warp_cache::shared::seqlock::SeqLock;
use warp_cache::sync::{AtomicU64, Ordering, UnsafeCell};

/// `SEQ`, `OWNER`, and the two data words.
pub(crate) struct Words {
    pub(crate) seq: AtomicU64,
    pub(crate) owner: AtomicU64,
    pub(crate) a: AtomicU64,
    pub(crate) b: AtomicU64,
}

impl Words {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            seq: AtomicU64::new(0),
            owner: AtomicU64::new(0),
            a: AtomicU64::new(0),
            b: AtomicU64::new(0),
        })
    }

    pub(crate) fn lock(&self) -> SeqLock<'_> {
        SeqLock::new(&self.seq, &self.owner)
    }

    /// Both data words, relaxed, as the store's copies read slot words.
    pub(crate) fn copy(&self) -> (u64, u64) {
        (
            self.a.load(Ordering::Relaxed),
            self.b.load(Ordering::Relaxed),
        )
    }

    /// A whole write section's data stores.
    pub(crate) fn write(&self, value: u64) {
        self.a.store(value, Ordering::Relaxed);
        self.b.store(value, Ordering::Relaxed);
    }
}

/// One read through `lock`; panics on a torn result.
pub(crate) fn read_checked(words: &Words, lock: SeqLock<'_>) -> Option<u64> {
    let (a, b) = lock.read(|| words.copy())?;
    assert_eq!(
        a, b,
        "torn read: the reader returned words of two write sections"
    );
    Some(a)
}

/// The only writer (process 1): write sections 1 then 2.
pub(crate) fn spawn_sole_writer(words: &Arc<Words>) -> thread::JoinHandle<()> {
    let words = Arc::clone(words);
    let owner = Processes::new(1).owner(1);
    thread::spawn(move || {
        for value in 1..=2 {
            let _section = words.lock().lock(&owner).expect("no other writer");
            words.write(value);
        }
    })
}

#[test]
fn one_writer_two_readers_never_read_a_mix() {
    model(2, || {
        let words = Words::new();
        let writer = spawn_sole_writer(&words);
        let reader = {
            let words = Arc::clone(&words);
            thread::spawn(move || read_checked(&words, words.lock()))
        };
        let mine = read_checked(&words, words.lock());
        let theirs = reader.join().unwrap();
        writer.join().unwrap();
        // Readers may give up (a miss), but what they return was really written.
        for value in [mine, theirs].into_iter().flatten() {
            assert!(value <= 2);
        }
        assert_eq!(read_checked(&words, words.lock()), Some(2));
        assert_eq!(words.seq.load(Ordering::Relaxed), 4);
    });
}

#[test]
fn two_writers_exclude_each_other_and_one_reader_never_reads_a_mix() {
    model(2, || {
        let words = Words::new();
        // loom reports a race if two write sections touch this cell without being ordered.
        let sections = Arc::new(UnsafeCell::new(0u32));
        let processes = Processes::new(2);
        let writers: Vec<_> = (1..=2)
            .map(|id| {
                let words = Arc::clone(&words);
                let sections = Arc::clone(&sections);
                let owner = processes.owner(id);
                thread::spawn(move || {
                    let Some(_section) = words.lock().lock(&owner) else {
                        return false; // the other writer kept the lock all our patience
                    };
                    // SAFETY: the write section is exclusive; loom checks exactly that.
                    sections.with_mut(|n| unsafe { *n += 1 });
                    words.write(id);
                    assert_eq!(words.copy(), (id, id), "another writer inside our section");
                    true
                })
            })
            .collect();
        let read = read_checked(&words, words.lock());
        let wrote: u32 = writers
            .into_iter()
            .map(|w| u32::from(w.join().unwrap()))
            .sum();
        assert!(read.is_none_or(|v| v <= 2));
        // SAFETY: every writer has been joined.
        assert_eq!(sections.with(|n| unsafe { *n }), wrote);
        assert_eq!(words.seq.load(Ordering::Relaxed), 2 * u64::from(wrote));
        assert_eq!(words.owner.load(Ordering::Relaxed), 0, "lock left held");
    });
}
