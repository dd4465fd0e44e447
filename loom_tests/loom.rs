//! loom models of warp_cache's concurrency code, run as written through `warp_cache::sync`.
//!
//! Build with `RUSTFLAGS="--cfg loom"` and `--no-default-features` (`make loom`); without the
//! cfg this test crate is empty. Each model is small (2-3 threads, 2-slot regions) and
//! explored exhaustively up to a preemption bound (`LOOM_MAX_PREEMPTIONS` overrides the
//! per-model default). docs/model-checking.md lists what each covers and what it does not.
//!
//! Files mirror the code they model: `seqlock` (the cross-process seqlock), `shared_store`
//! (the shared store's engine on a heap region), `memory_store` (the in-process sharded
//! store), `takeover` (a lock owner dying or stopping mid-write), `teeth` (broken variants
//! the models must reject).
#![cfg(loom)]

mod memory_store;
mod owner;
mod seqlock;
mod shared_store;
mod takeover;
mod teeth;

pub(crate) use loom::sync::Arc;

/// Explores every interleaving of `f` with at most `preemptions` preemptions, unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise.
pub(crate) fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(f);
}
