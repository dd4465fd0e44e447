//! loom models of the seqlock and of a lookup racing an insert, on heap regions.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --no-default-features --lib loom_`.
//! Scope: one writer and one reader thread, tiny regions, a preemption bound of 2. What they
//! show: a reader that returns a result never mixes two write sections, and a lookup racing
//! an insert returns nothing or exactly the inserted value.

use super::seqlock::SeqLock;
use super::tests::{params, TestOwner};
use super::*;
use crate::sync::{AtomicU64, Ordering};
use loom::sync::Arc;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(f);
}

#[test]
fn loom_seqlock_reader_never_mixes_two_writes() {
    model(|| {
        let words = Arc::new([
            AtomicU64::new(0),
            AtomicU64::new(0),
            AtomicU64::new(0),
            AtomicU64::new(0),
        ]);
        let writer = {
            let words = words.clone();
            loom::thread::spawn(move || {
                let lock = SeqLock::new(&words[0], &words[1]);
                for round in 1..=2 {
                    let _guard = lock.lock(&TestOwner::new(1)).expect("no one else writes");
                    words[2].store(round, Ordering::Relaxed);
                    words[3].store(round, Ordering::Relaxed);
                }
            })
        };
        let lock = SeqLock::new(&words[0], &words[1]);
        if let Some((a, b)) = lock.read(|| {
            (
                words[2].load(Ordering::Relaxed),
                words[3].load(Ordering::Relaxed),
            )
        }) {
            assert_eq!(a, b, "a torn read was returned");
        }
        writer.join().unwrap();
    });
}

#[test]
fn loom_lookup_racing_an_insert_sees_nothing_or_the_value() {
    model(|| {
        let region = Arc::new(
            HeapRegion::new(Params {
                max_key_size: 8,
                max_value_size: 16,
                ..params(1)
            })
            .unwrap(),
        );
        let writer = {
            let region = region.clone();
            loom::thread::spawn(move || {
                let owner = TestOwner::new(1);
                region
                    .engine()
                    .insert(b"key", b"sixteen bytes!!!", 0, u64::MAX, &owner)
                    .unwrap();
            })
        };
        let mut out = Vec::new();
        if region.engine().get(b"key", 0, &mut out).unwrap() {
            assert_eq!(out, b"sixteen bytes!!!");
        }
        writer.join().unwrap();
    });
}
