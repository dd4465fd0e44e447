//! How a shard is guarded. The store is generic over it: a read/write lock from the sync
//! seam on free-threaded builds and in models; the Python layer supplies a GIL-backed cell
//! on GIL builds, where the interpreter lock already serializes every access.

use std::ops::{Deref, DerefMut};

/// Shared access to a shard.
pub trait ShardRead<'a, T: 'a>: Deref<Target = T> {}
impl<'a, T: 'a, G: Deref<Target = T>> ShardRead<'a, T> for G {}

/// Exclusive access to a shard.
pub trait ShardWrite<'a, T: 'a>: DerefMut<Target = T> {}
impl<'a, T: 'a, G: DerefMut<Target = T>> ShardWrite<'a, T> for G {}

/// A guard around one shard.
pub trait ShardLock<T> {
    /// The guard for shared access.
    type Read<'a>: ShardRead<'a, T>
    where
        Self: 'a,
        T: 'a;
    /// The guard for exclusive access.
    type Write<'a>: ShardWrite<'a, T>
    where
        Self: 'a,
        T: 'a;

    /// Wraps a shard.
    fn new(value: T) -> Self;
    /// Shared access; many readers may hold it at once.
    fn read(&self) -> Self::Read<'_>;
    /// Exclusive access.
    fn write(&self) -> Self::Write<'_>;
    /// Shared access if nobody holds exclusive access now (for the garbage collector's
    /// traversal, which must never block).
    fn try_read(&self) -> Option<Self::Read<'_>>;
}

/// Implements [`ShardLock`] for a std-style lock (`read`/`write`/`try_read` returning
/// poisonable results). A panic while a guard is held leaves the shard consistent (every
/// mutation is completed before anything that can panic), so poisoning carries no meaning.
macro_rules! impl_shard_lock {
    ($lock:ident, $read:ident, $write:ident) => {
        impl<T> ShardLock<T> for crate::sync::$lock<T> {
            type Read<'a>
                = crate::sync::$read<'a, T>
            where
                T: 'a;
            type Write<'a>
                = crate::sync::$write<'a, T>
            where
                T: 'a;

            fn new(value: T) -> Self {
                crate::sync::$lock::new(value)
            }

            fn read(&self) -> Self::Read<'_> {
                self.read().unwrap_or_else(|poisoned| poisoned.into_inner())
            }

            fn write(&self) -> Self::Write<'_> {
                self.write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            }

            fn try_read(&self) -> Option<Self::Read<'_>> {
                self.try_read().ok()
            }
        }
    };
}

impl_shard_lock!(RwLock, RwLockReadGuard, RwLockWriteGuard);

// A reader-sharded lock: each reading thread locks its own cache-padded shard, so hits from
// many threads never write a shared cache line; a writer locks every shard. Free-threaded
// builds guard memory-store shards with it. (Models use plain `RwLock`s instead.)
#[cfg(not(any(loom, shuttle)))]
impl_shard_lock!(ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard);
