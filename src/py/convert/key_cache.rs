//! Dict keys decoded before: the str objects of short ASCII dict keys, kept per process and
//! handed out again (orjson does the same). Cached values are mostly records whose keys
//! repeat from entry to entry; a key found here costs no allocation, no copy, and no
//! hashing when it goes into the dict (a str caches its hash). Equal strs are
//! interchangeable, so sharing them changes nothing a program can rely on.
//!
//! Bounded: [`SLOTS`] keys of at most [`MAX_LEN`] bytes, direct-mapped by a hash of their
//! bytes (a new key evicts the one in its slot). Dropping an evicted str runs no Python
//! code, so it is dropped in place. The table is guarded by a borrow flag on GIL builds
//! and by a mutex on free-threaded ones; a thread that finds it busy builds its own str.

use super::super::object::{PyObj, PyResult};
use crate::py::ffi;
use std::sync::OnceLock;

/// Keys kept (a power of two).
const SLOTS: usize = 1024;
/// Longer keys are built every time: they rarely repeat, and would hold more memory.
const MAX_LEN: usize = 32;

/// The cached strs, by slot.
struct Table {
    slots: Box<[Option<PyObj>]>,
}

#[cfg(not(Py_GIL_DISABLED))]
type Guarded = super::super::gil_lock::GilLock<Table>;
#[cfg(Py_GIL_DISABLED)]
type Guarded = crate::sync::Mutex<Table>;

static TABLE: OnceLock<Guarded> = OnceLock::new();

fn table() -> &'static Guarded {
    TABLE.get_or_init(|| {
        let table = Table {
            slots: (0..SLOTS).map(|_| None).collect(),
        };
        #[cfg(not(Py_GIL_DISABLED))]
        {
            use crate::memory::ShardLock;
            Guarded::new(table)
        }
        #[cfg(Py_GIL_DISABLED)]
        {
            Guarded::new(table)
        }
    })
}

/// The slot of a key's bytes: an FxHash-style mix of its words.
#[inline(always)]
fn slot(bytes: &[u8]) -> usize {
    let mut hash = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let word = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        hash = (hash.rotate_left(5) ^ word).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
    }
    for &byte in words.remainder() {
        hash = (hash.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
    }
    (hash >> 32) as usize & (SLOTS - 1)
}

/// Whether the one-byte str `obj` (`ffi::str_is_one_byte`) holds exactly `text`.
///
/// # Safety
/// `obj` is a valid str of one byte per character.
#[inline(always)]
unsafe fn holds(obj: &PyObj, text: &str) -> bool {
    // SAFETY: a one-byte str's data is its length in bytes, one per character.
    unsafe {
        let len = ffi::PyUnicode_GET_LENGTH(obj.as_ptr()) as usize;
        len == text.len()
            && std::slice::from_raw_parts(ffi::PyUnicode_1BYTE_DATA(obj.as_ptr()), len)
                == text.as_bytes()
    }
}

/// The str of a dict key: a cached one if `text` is short ASCII seen before, else one
/// built by `build` (and cached if short ASCII).
#[inline(always)]
pub fn key_str(text: &str, build: impl FnOnce(&str) -> PyResult<PyObj>) -> PyResult<PyObj> {
    if text.len() > MAX_LEN || !crate::codec::is_ascii(text.as_bytes()) {
        return build(text);
    }
    #[cfg(not(Py_GIL_DISABLED))]
    let table = table().try_write();
    #[cfg(Py_GIL_DISABLED)]
    let table = table().try_lock().ok();
    let Some(mut table) = table else {
        return build(text);
    };
    let slot = &mut table.slots[slot(text.as_bytes())];
    if let Some(cached) = slot {
        // SAFETY: only one-byte strs built by `build` from ASCII text are cached.
        if unsafe { holds(cached, text) } {
            return Ok(cached.clone());
        }
    }
    let obj = build(text)?;
    // SAFETY: `obj` is a valid object; `str_is_one_byte` is asked of exact strs only.
    let one_byte = unsafe {
        ffi::PyUnicode_CheckExact(obj.as_ptr()) != 0 && ffi::str_is_one_byte(obj.as_ptr())
    };
    if one_byte {
        *slot = Some(obj.clone());
    }
    Ok(obj)
}
