//! Proof the models have teeth: each test runs a model on a deliberately broken variant and
//! expects the model to fail with the message of the property it breaks. If one of these
//! starts passing, the model it mirrors has stopped checking anything.

use crate::seqlock::{read_checked, spawn_sole_writer, Words};
use crate::{model, Arc};
use loom::thread;
use warp_cache::shared::seqlock::SeqLock;
use warp_cache::shared::{LockOwner, Patience};
use warp_cache::sync::UnsafeCell;

/// `SeqLock::broken_without_read_fence` (loom builds only): the reader's re-check of the
/// sequence is no longer ordered after its copy, so it can pass a copy that mixes a newer
/// section's first word with an older section's second word.
#[test]
#[should_panic(expected = "torn read")]
fn seqlock_reader_without_its_fence_is_caught_reading_a_mix() {
    model(2, || {
        let words = Words::new();
        let writer = spawn_sole_writer(&words);
        read_checked(
            &words,
            SeqLock::broken_without_read_fence(&words.seq, &words.owner),
        );
        writer.join().unwrap();
    });
}

/// An owner that declares every holder dead (a `kill(pid, 0)` that lied, or a reused id):
/// writers take the lock over from live ones and two write sections overlap.
struct EveryoneIsDead(u64);

impl LockOwner for EveryoneIsDead {
    fn id(&self) -> u64 {
        self.0
    }
    fn is_alive(&self, _owner: u64) -> bool {
        false
    }
    // Asks at the first failed attempt: loom does not preempt a thread between its own
    // spins, so a takeover that needs several attempts is hard for it to reach.
    fn patience(&self) -> Patience {
        Patience {
            spins: 1,
            attempts: 2,
            check_every: 1,
            budget_ns: 0,
        }
    }
}

#[test]
#[should_panic(expected = "Concurrent write accesses to `UnsafeCell`")]
fn takeover_from_a_live_owner_is_caught_as_overlapping_writers() {
    model(2, || {
        let words = Words::new();
        let sections = Arc::new(UnsafeCell::new(0u32));
        let writers: Vec<_> = (1..=2)
            .map(|id| {
                let (words, sections) = (Arc::clone(&words), Arc::clone(&sections));
                thread::spawn(move || {
                    if let Some(_section) = words.lock().lock(&EveryoneIsDead(id)) {
                        // SAFETY: claimed exclusive by the write section; loom checks it.
                        sections.with_mut(|n| unsafe { *n += 1 });
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
    });
}
