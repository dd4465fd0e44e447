//! This process's decoded copies of shared entries, so a repeated hit returns the object it
//! returned before instead of decoding the bytes again.
//!
//! A copy is filed under the slot it came from and remembers the entry it was decoded from
//! ([`Found`]: the mapping's epoch and the slot's version). A lookup still probes the shared
//! table, compares the key and checks the expiry inside its validated read; only the copying
//! and decoding of the value are skipped, and only when the slot's version is the one the
//! copy was made from. Any write to the slot in any process (overwrite, eviction, repair)
//! changes the version, a clear empties the table, and re-opening the files changes the
//! epoch: a copy of an entry that is gone can never be returned.
//!
//! At most one copy per slot, so at most `max_size` objects per process. Objects replaced or
//! cleared are released after the table's guard is dropped: their finalizers may call back.

use super::object::PyObj;
use crate::memory::ShardLock;
use crate::shared::Found;

/// The table's guard: a borrow flag under the GIL, a reader-sharded lock without it (hits
/// from many threads then never write one cache line).
#[cfg(not(Py_GIL_DISABLED))]
type Guard<T> = super::gil_lock::GilLock<T>;
#[cfg(Py_GIL_DISABLED)]
type Guard<T> = crate::sync::ShardedLock<T>;

struct Copy {
    found: Found,
    value: PyObj,
}

/// Decoded values of one shared cache, by slot.
pub struct Decoded {
    slots: Guard<Vec<Option<Copy>>>,
    capacity: u32,
}

impl Decoded {
    /// An empty table for a cache of `capacity` slots (grown as slots are decoded).
    pub fn new(capacity: u32) -> Self {
        Self {
            slots: Guard::new(Vec::new()),
            capacity,
        }
    }

    /// Whether this process holds the entry `found` decoded.
    #[inline(always)]
    pub fn holds(&self, found: Found) -> bool {
        let slots = ShardLock::read(&self.slots);
        matches!(slots.get(found.slot as usize), Some(Some(copy)) if copy.found == found)
    }

    /// The decoded entry `found`, if this process holds it.
    #[inline(always)]
    pub fn get(&self, found: Found) -> Option<PyObj> {
        let slots = ShardLock::read(&self.slots);
        match slots.get(found.slot as usize) {
            Some(Some(copy)) if copy.found == found => Some(copy.value.clone()),
            _ => None,
        }
    }

    /// Files `value` as the decoded entry `found`, replacing the slot's older copy.
    pub fn put(&self, found: Found, value: PyObj) {
        if found.slot >= self.capacity {
            return;
        }
        let old = {
            let mut slots = ShardLock::write(&self.slots);
            let i = found.slot as usize;
            if slots.len() <= i {
                slots.resize_with(i + 1, || None);
            }
            slots[i].replace(Copy { found, value })
        };
        drop(old);
    }

    /// Forgets every copy (after this process cleared the cache, or to break cycles).
    pub fn clear(&self) {
        let old = std::mem::take(&mut *ShardLock::write(&self.slots));
        drop(old);
    }

    /// Calls `f` on every copy unless the table is being written right now (the garbage
    /// collector's traversal must not block).
    pub fn for_each_unlocked(&self, mut f: impl FnMut(&PyObj)) {
        if let Some(slots) = ShardLock::try_read(&self.slots) {
            slots.iter().flatten().for_each(|copy| f(&copy.value));
        }
    }
}
