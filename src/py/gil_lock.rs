//! The shard guard on GIL builds: the interpreter lock already serializes every access,
//! so a borrow flag is all that is needed. It turns a re-entrancy bug (a borrow held across
//! a call into Python) into a Python exception instead of undefined behaviour.

use crate::memory::ShardLock;
use std::cell::{Ref, RefCell, RefMut};

/// A shard accessed only by threads holding the GIL.
pub struct GilLock<T>(RefCell<T>);

// SAFETY: on GIL builds (this type is only compiled without `Py_GIL_DISABLED`) every access
// comes from Python-facing code, which runs with the GIL held, and no borrow outlives a
// stretch of code that cannot release the GIL: so no two threads ever touch the cell at once.
unsafe impl<T: Send> Sync for GilLock<T> {}

impl<T> GilLock<T> {
    /// The value, mutably, unless it is borrowed already (re-entered): then `None`.
    #[inline]
    pub fn try_write(&self) -> Option<RefMut<'_, T>> {
        self.0.try_borrow_mut().ok()
    }
}

impl<T> ShardLock<T> for GilLock<T> {
    type Read<'a>
        = Ref<'a, T>
    where
        T: 'a;
    type Write<'a>
        = RefMut<'a, T>
    where
        T: 'a;

    fn new(value: T) -> Self {
        GilLock(RefCell::new(value))
    }

    #[inline]
    fn read(&self) -> Ref<'_, T> {
        self.0.borrow()
    }

    #[inline]
    fn write(&self) -> RefMut<'_, T> {
        self.0.borrow_mut()
    }

    fn try_read(&self) -> Option<Ref<'_, T>> {
        self.0.try_borrow().ok()
    }
}
