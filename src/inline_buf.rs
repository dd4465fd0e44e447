//! Buffers that keep small contents inline (on the caller's stack) and move to the heap only
//! when they outgrow that. The shared backend's hit path encodes the key into one and copies
//! the value into another, so a hit allocates nothing, touches no thread-local, and never
//! moves a buffer (both are made in the calling frame and lent out by reference).

use std::mem::MaybeUninit;

/// Where encoded bytes are appended: a `Vec<u8>` or an [`InlineBytes`].
pub trait ByteSink {
    /// Appends one byte.
    fn push(&mut self, byte: u8);
    /// Appends a slice.
    fn extend_from_slice(&mut self, bytes: &[u8]);
    /// How many bytes have been appended.
    fn written(&self) -> usize;
    /// Drops every byte after the first `len` (an encoder that gives up on a value takes
    /// back what it wrote of it).
    fn truncate(&mut self, len: usize);
    /// A hint that about `additional` more bytes are coming (a container's elements).
    fn reserve(&mut self, additional: usize);
}

impl ByteSink for Vec<u8> {
    #[inline]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }

    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes);
    }

    #[inline]
    fn written(&self) -> usize {
        self.len()
    }

    #[inline]
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }

    #[inline]
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }
}

/// A byte buffer holding up to `N` bytes inline, all of them on the heap beyond that.
pub struct InlineBytes<const N: usize> {
    /// Bytes used in `inline` (`inline[..len]` is initialized); unused once spilled.
    len: usize,
    inline: [MaybeUninit<u8>; N],
    /// Every byte, once the contents outgrew `inline`.
    heap: Option<Vec<u8>>,
}

impl<const N: usize> Default for InlineBytes<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> InlineBytes<N> {
    /// An empty buffer (nothing is zeroed).
    #[inline(always)]
    pub fn new() -> Self {
        Self {
            len: 0,
            inline: [const { MaybeUninit::uninit() }; N],
            heap: None,
        }
    }

    /// The bytes appended so far.
    #[inline(always)]
    pub fn bytes(&self) -> &[u8] {
        match &self.heap {
            Some(heap) => heap,
            // SAFETY: `inline[..len]` was initialized by the appends (`len <= N`).
            None => unsafe { std::slice::from_raw_parts(self.inline.as_ptr().cast(), self.len) },
        }
    }

    /// Moves the contents to the heap and appends `bytes` there.
    #[cold]
    #[inline(never)]
    fn spill(&mut self, bytes: &[u8]) {
        let heap = match &mut self.heap {
            Some(heap) => heap,
            None => {
                let mut heap = Vec::with_capacity((self.len + bytes.len()).max(2 * N));
                heap.extend_from_slice(self.bytes());
                self.heap.insert(heap)
            }
        };
        heap.extend_from_slice(bytes);
    }
}

impl<const N: usize> ByteSink for InlineBytes<N> {
    #[inline(always)]
    fn push(&mut self, byte: u8) {
        if self.heap.is_none() && self.len < N {
            self.inline[self.len].write(byte);
            self.len += 1;
        } else {
            self.spill(&[byte]);
        }
    }

    #[inline(always)]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        if self.heap.is_none() && bytes.len() <= N - self.len {
            // SAFETY: `len + bytes.len() <= N`, so the destination range lies inside
            // `inline`; source and destination are distinct buffers.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    self.inline.as_mut_ptr().add(self.len).cast(),
                    bytes.len(),
                );
            }
            self.len += bytes.len();
        } else {
            self.spill(bytes);
        }
    }

    #[inline]
    fn written(&self) -> usize {
        match &self.heap {
            Some(heap) => heap.len(),
            None => self.len,
        }
    }

    #[inline]
    fn truncate(&mut self, len: usize) {
        match &mut self.heap {
            Some(heap) => heap.truncate(len),
            // `inline[..len]` stays initialized: it is a prefix of what was.
            None => self.len = self.len.min(len),
        }
    }

    /// Keys are small: they stay inline, or spill once to twice the inline size.
    #[inline]
    fn reserve(&mut self, _additional: usize) {}
}

/// Bytes filled a whole little-endian word at a time: up to `N` words inline, on the heap
/// beyond that. Filled only as a whole, by [`InlineWords::fill`].
pub struct InlineWords<const N: usize> {
    /// Bytes held (`inline` words `..len.div_ceil(8)` are initialized unless on the heap).
    len: usize,
    inline: [MaybeUninit<u64>; N],
    heap: Vec<u64>,
}

impl<const N: usize> Default for InlineWords<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> InlineWords<N> {
    /// An empty buffer (nothing is zeroed).
    #[inline(always)]
    pub fn new() -> Self {
        Self {
            len: 0,
            inline: [const { MaybeUninit::uninit() }; N],
            heap: Vec::new(),
        }
    }

    /// Replaces the contents with `len` bytes whose `n`th little-endian word is `word(n)`
    /// (bytes of the last word beyond `len` are dropped). Words are stored little-endian,
    /// so the byte view is the same on every target.
    #[inline(always)]
    pub fn fill(&mut self, len: usize, mut word: impl FnMut(usize) -> u64) {
        let words = len.div_ceil(8);
        self.len = 0;
        if words <= N {
            self.heap.clear();
            for (n, slot) in self.inline[..words].iter_mut().enumerate() {
                slot.write(word(n).to_le());
            }
        } else {
            self.heap.clear();
            self.heap.extend((0..words).map(|n| word(n).to_le()));
        }
        self.len = len;
    }

    /// The bytes of the last [`InlineWords::fill`] (none before the first).
    #[inline(always)]
    pub fn bytes(&self) -> &[u8] {
        let words: *const u64 = if self.len.div_ceil(8) <= N {
            self.inline.as_ptr().cast()
        } else {
            self.heap.as_ptr()
        };
        // SAFETY: `fill` initialized `len.div_ceil(8)` words in the buffer chosen by the
        // same test (inline up to N words, else the heap vector of exactly that many), and
        // those words span at least `len` bytes. `len` is 0 (a dangling but aligned, valid
        // empty slice) before the first fill.
        unsafe { std::slice::from_raw_parts(words.cast::<u8>(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_bytes_spill_keeps_every_byte() {
        let mut buf = InlineBytes::<4>::new();
        buf.push(1);
        buf.extend_from_slice(&[2, 3]);
        assert_eq!(buf.bytes(), &[1, 2, 3]);
        buf.extend_from_slice(&[4, 5]);
        buf.push(6);
        assert_eq!(buf.bytes(), &[1, 2, 3, 4, 5, 6]);
        let mut full = InlineBytes::<2>::new();
        full.extend_from_slice(&[7, 8]);
        full.push(9);
        assert_eq!(full.bytes(), &[7, 8, 9]);
    }

    #[test]
    fn inline_bytes_truncate_inline_and_spilled() {
        let mut buf = InlineBytes::<4>::new();
        buf.extend_from_slice(&[1, 2, 3]);
        buf.truncate(5);
        assert_eq!((buf.bytes(), buf.written()), (&[1, 2, 3][..], 3));
        buf.truncate(1);
        buf.push(9);
        assert_eq!(buf.bytes(), &[1, 9]);
        buf.extend_from_slice(&[4, 5, 6]);
        buf.truncate(3);
        assert_eq!((buf.bytes(), buf.written()), (&[1, 9, 4][..], 3));
    }

    #[test]
    fn inline_words_fill_inline_and_on_the_heap() {
        let mut buf = InlineWords::<2>::new();
        assert!(buf.bytes().is_empty());
        buf.fill(11, |n| {
            0x0807_0605_0403_0201 + (n as u64) * 0x0808_0808_0808_0808
        });
        assert_eq!(buf.bytes(), &(1..=11).collect::<Vec<u8>>()[..]);
        buf.fill(20, |n| u64::from_le_bytes([n as u8; 8]));
        let expected: Vec<u8> = (0..20).map(|i| (i / 8) as u8).collect();
        assert_eq!(buf.bytes(), &expected[..]);
        buf.fill(3, |_| u64::MAX);
        assert_eq!(buf.bytes(), &[0xFF; 3]);
    }
}
