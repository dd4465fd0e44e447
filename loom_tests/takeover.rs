//! A lock owner that dies holding the lock (`src/shared/seqlock.rs`, `engine.rs`).
//!
//! The dying process is a thread that takes the lock, writes part of a section, then
//! returns without releasing anything (`mem::forget` of its guard: a killed process runs no
//! destructor) and is marked dead. A waiter asks for its liveness, takes the lock over, and
//! must learn that the last section was torn; readers never return torn data meanwhile.

use crate::owner::Processes;
use crate::seqlock::{read_checked, Words};
use crate::shared_store::{insert, lookup, tiny_region};
use crate::{model, Arc};
use loom::thread;
use warp_cache::shared::layout::{header, lock_word, slot, HEADER_WORDS};
use warp_cache::shared::seqlock::{SeqLock, Version};
use warp_cache::sync::{AtomicBool, Ordering};

const DYING: u64 = 1;

/// Takes the lock as process [`DYING`], runs `half_write`, notes that it holds the lock,
/// and dies without releasing it; false if it never got the lock (then it just exits).
fn die_holding(
    lock: SeqLock<'_>,
    processes: &Processes,
    held: &AtomicBool,
    half_write: impl FnOnce(),
) -> bool {
    let owner = processes.owner(DYING);
    let got = match lock.lock(&owner) {
        Some(section) => {
            half_write();
            held.store(true, Ordering::Relaxed);
            std::mem::forget(section);
            true
        }
        None => false,
    };
    processes.die(DYING);
    got
}

#[test]
fn seqlock_owner_dies_mid_write_is_taken_over_and_never_read_torn() {
    model(2, || {
        let words = Words::new();
        let processes = Processes::new(3);
        let held = Arc::new(AtomicBool::new(false));
        let dying = {
            let (words, processes, held) =
                (Arc::clone(&words), processes.clone(), Arc::clone(&held));
            thread::spawn(move || {
                die_holding(words.lock(), &processes, &held, || {
                    words.a.store(9, Ordering::Relaxed); // b never gets its 9
                })
            })
        };
        let waiter = {
            let (words, held) = (Arc::clone(&words), Arc::clone(&held));
            let owner = processes.owner(2);
            thread::spawn(move || {
                let section = words.lock().lock(&owner)?;
                // Taking over needs the owner dead, which it declares after `held`.
                if held.load(Ordering::Relaxed) {
                    assert!(section.torn(), "took over a torn section unawares");
                }
                if section.torn() {
                    words.write(0); // the reset
                }
                words.write(2);
                Some(())
            })
        };
        read_checked(&words, words.lock());
        dying.join().unwrap();
        waiter.join().unwrap();
        // Everyone else has finished: whatever the dying process left, a writer recovers.
        let section = words
            .lock()
            .lock(&processes.owner(3))
            .expect("a dead owner never wedges the lock");
        if section.torn() {
            assert!(held.load(Ordering::Relaxed));
            words.write(0);
        }
        drop(section);
        let value = read_checked(&words, words.lock()).expect("no writer left");
        assert!(value == 0 || value == 2);
    });
}

#[test]
fn store_owner_dies_mid_insert_and_only_its_entry_is_lost() {
    model(2, || {
        let region = tiny_region();
        let processes = Processes::new(3);
        assert!(insert(&region, b"p", &processes.owner(3)));
        let held = Arc::new(AtomicBool::new(false));
        let dying = {
            let (region, processes, held) =
                (Arc::clone(&region), processes.clone(), Arc::clone(&held));
            thread::spawn(move || {
                let lock_words = region.lock_words();
                let lock = SeqLock::new(&lock_words[lock_word::SEQ], &lock_words[lock_word::OWNER]);
                die_holding(lock, &processes, &held, || {
                    // Half an insert, as garbage: a length past capacity, a table word
                    // naming a slot that holds nothing, slot 1 opened for writing.
                    let data = region.data_words();
                    let layout = region.layout();
                    data[header::LEN].store(77, Ordering::Relaxed);
                    data[HEADER_WORDS].store(u64::MAX, Ordering::Relaxed);
                    Version::new(&data[layout.slot_word(1, slot::VERSION)]).begin_write();
                    data[layout.slot_word(1, slot::DATA)].store(7, Ordering::Relaxed);
                })
            })
        };
        let writer = {
            let region = Arc::clone(&region);
            let owner = processes.owner(2);
            thread::spawn(move || insert(&region, b"k", &owner))
        };
        lookup(&region, b"p");
        lookup(&region, b"k");
        let died_holding = dying.join().unwrap();
        let stored = writer.join().unwrap();
        assert!(died_holding || stored, "a live writer was robbed");
        // The survivors carry on after the death. Re-storing p (two slots: nothing was
        // evicted) repairs the region if it was torn, and p, in the slot the dead writer
        // never touched, survives the repair.
        assert!(insert(&region, b"p", &processes.owner(3)), "lock wedged");
        region.check_invariants();
        assert!(lookup(&region, b"p"), "the repair lost a whole entry");
        assert!(insert(&region, b"m", &processes.owner(3)));
        region.check_invariants();
        assert!(lookup(&region, b"m"));
    });
}

/// A writer stopped (alive) inside a section rewriting slot 1: readers of slot 0 never
/// notice, writers give up within their patience, nobody reads a wrong value.
#[test]
fn a_stopped_writer_costs_readers_only_the_slot_it_is_writing() {
    model(2, || {
        let region = tiny_region();
        let processes = Processes::new(3);
        assert!(insert(&region, b"p", &processes.owner(3)));
        assert!(insert(&region, b"q", &processes.owner(3)));
        let stopped = {
            let (region, processes) = (Arc::clone(&region), processes.clone());
            thread::spawn(move || {
                let lock_words = region.lock_words();
                let lock = SeqLock::new(&lock_words[lock_word::SEQ], &lock_words[lock_word::OWNER]);
                let section = lock.lock(&processes.owner(1)).expect("the lock is free");
                let data = region.data_words();
                let layout = region.layout();
                Version::new(&data[layout.slot_word(1, slot::VERSION)]).begin_write();
                data[layout.slot_word(1, slot::DATA)].store(7, Ordering::Relaxed);
                std::mem::forget(section); // stopped: holds on, never dies
            })
        };
        let writer = {
            let region = Arc::clone(&region);
            let owner = processes.owner(2);
            // Stored before the stop, or given up on: never a wrong or lost entry.
            thread::spawn(move || insert(&region, b"q", &owner))
        };
        lookup(&region, b"q");
        stopped.join().unwrap();
        writer.join().unwrap();
        assert!(lookup(&region, b"p"), "a slot nobody writes kept hitting");
        assert!(
            !lookup(&region, b"q"),
            "the slot being written reads as a miss"
        );
        assert!(
            !insert(&region, b"r", &processes.owner(3)),
            "a live holder is never robbed"
        );
    });
}
