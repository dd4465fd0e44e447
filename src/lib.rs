//! warp_cache: a SIEVE caching engine for Python, in-process and across processes.
//!
//! Layers, top to bottom: `py` (the only code that touches Python), `memory` (in-process
//! store), `sieve` (the eviction policy), `sync` (the concurrency seam swapped by loom and
//! shuttle builds).
#![warn(missing_docs)]

pub mod clock;
pub mod codec;
// Real fork generations only: the models have no processes to fork.
#[cfg(not(any(loom, shuttle)))]
pub mod fork;
pub mod inline_buf;
pub mod memory;
pub mod shared;
pub mod sieve;
pub mod sync;

#[cfg(feature = "python")]
mod py;
