//! The in-process store: shards of (hash table + slots + SIEVE queue).
//!
//! Plain Rust, generic over key and value, so tests, loom models and fuzzers drive it
//! without an interpreter. Keys whose equality needs foreign code (a Python `__eq__`) are
//! never compared here: the store hands such candidates back and the caller compares them
//! outside every lock, then tells the store what it found (see [`Verdict`]).

mod lock;
mod shard;
mod store;

pub use lock::{ShardLock, ShardRead, ShardWrite};
pub use shard::{Candidate, Shard, Verdict};
pub use store::{Get, Insert, Remove, Store};

/// A key the store can hold.
pub trait CacheKey {
    /// Equality when it can be decided without running foreign code, else `None`.
    fn quick_eq(&self, other: &Self) -> Option<bool>;
}

impl CacheKey for u64 {
    fn quick_eq(&self, other: &Self) -> Option<bool> {
        Some(self == other)
    }
}

/// Spreads a hash over all 64 bits. Python hashes of small ints are the ints themselves;
/// an odd multiplier is a bijection, so equal keys still get equal hashes.
#[inline]
pub fn spread_hash(hash: u64) -> u64 {
    hash.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

// Unit tests spawn real threads: models have their own suite in loom_tests/.
#[cfg(all(test, not(any(loom, shuttle))))]
mod tests;
