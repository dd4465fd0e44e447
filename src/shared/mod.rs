//! The cross-process store: a SIEVE cache in memory-mapped files that every process running
//! the same function opens.
//!
//! - [`layout`]: the file formats, word by word.
//! - [`flights`]: single-flight between processes, on a board in the lock file.
//! - [`seqlock`]: lock-free reads, a spin lock for writers that survives a dead holder.
//! - `table`: the hash table, slots and SIEVE queue as operations on words.
//! - [`Engine`]: get / insert / clear / info over a lock region and a data region, wherever
//!   they live; [`HeapRegion`] puts them on the heap for tests and models.
//! - `region`: the files (directory, create, check, map, recreate), [`default_dirs`],
//!   [`file_stem`], [`ProcessOwner`] (unix, real atomics only).
//! - `process`: which process image (fork generation, credentials) made a mapping.
//! - [`SharedStore`]: the API the Python layer calls; re-opens the files when they change.
//! - [`inventory`]: the caches of a directory for the operator CLI (list, clear, purge).
//!
//! Keys and values arrive already encoded (see [`crate::codec`]); this module stores bytes.

mod engine;
pub mod flights;
#[cfg(all(unix, not(any(loom, shuttle))))]
pub mod inventory;
pub mod layout;
#[cfg(all(unix, not(any(loom, shuttle))))]
mod process;
#[cfg(all(unix, not(any(loom, shuttle))))]
mod region;
pub mod seqlock;
#[cfg(all(unix, not(any(loom, shuttle))))]
mod store;
mod stripe;
mod table;

pub use engine::{Engine, HeapBacking, HeapRegion, Info, InsertOutcome, Stale};
pub use layout::{Params, TooLarge};
#[cfg(all(unix, not(any(loom, shuttle))))]
pub use process::{ancestors, flight_me, ProcessLiveness};
#[cfg(all(unix, not(any(loom, shuttle))))]
pub(crate) use process::{forks, watch_forks};
#[cfg(all(unix, not(any(loom, shuttle))))]
pub use region::{
    default_dir, default_dirs, file_stem, function_prefix, remove_stale, ProcessOwner,
};
pub use seqlock::{LockOwner, Patience};

/// A value copied out of the cache: up to 256 bytes stay in the buffer itself (make it on
/// the stack), longer values go to the heap.
pub type ValueBuf = crate::inline_buf::InlineWords<32>;
#[cfg(all(unix, not(any(loom, shuttle))))]
pub use store::{Current, Found, SharedStore};
pub use table::{Backing, Read};

#[cfg(all(test, unix, not(any(loom, shuttle))))]
mod file_tests;
// Unit tests spawn real threads: models have their own suite in loom_tests/.
#[cfg(all(test, not(any(loom, shuttle))))]
mod tests;
