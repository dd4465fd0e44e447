//! Byte buffers reused across calls on the same thread, so the shared backend's hit path
//! (encode the key, copy the value out) allocates nothing once warm.
//!
//! Each thread keeps one spare buffer per role. A buffer is moved out while in use and moved
//! back when dropped; a nested call (recursion, a pickle hook calling the cache) finds the
//! spare taken and simply uses a new buffer.

use std::cell::Cell;
use std::thread::LocalKey;

/// Buffers larger than this go back to the allocator instead of being kept.
const KEEP_AT_MOST: usize = 64 * 1024;

thread_local! {
    static SPARE_KEY: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static SPARE_VALUE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// An empty buffer borrowed from this thread's spares, returned when dropped.
pub struct PooledBuf {
    buf: Vec<u8>,
    home: &'static LocalKey<Cell<Vec<u8>>>,
}

impl PooledBuf {
    fn take(home: &'static LocalKey<Cell<Vec<u8>>>) -> Self {
        // During thread teardown the spare may be gone: then start from a new buffer.
        let buf = home.try_with(Cell::take).unwrap_or_default();
        PooledBuf { buf, home }
    }

    /// A buffer for a key.
    pub fn for_key() -> Self {
        Self::take(&SPARE_KEY)
    }

    /// A buffer for a value.
    pub fn for_value() -> Self {
        Self::take(&SPARE_VALUE)
    }

    /// The bytes, to fill.
    pub fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() > KEEP_AT_MOST {
            return;
        }
        buf.clear();
        let _ = self.home.try_with(|spare| spare.set(buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_come_back_empty() {
        let ptr = {
            let mut a = PooledBuf::for_key();
            a.vec().extend_from_slice(b"hello");
            a.bytes().as_ptr()
        };
        let mut b = PooledBuf::for_key();
        assert!(b.bytes().is_empty());
        assert_eq!(
            b.vec().as_ptr(),
            ptr,
            "the dropped buffer is handed out again"
        );
        let nested = PooledBuf::for_key();
        assert!(
            nested.bytes().is_empty(),
            "a nested user gets its own buffer"
        );
    }
}
