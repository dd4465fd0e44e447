//! The byte format of shared-backend keys and values, and the key hash every process agrees on.
//!
//! One tag byte opens every encoded item; lengths and counts are `u32`, numbers are
//! little-endian. A value is one item, or a container item followed by its elements (a dict:
//! key, value, key, value, ...), each of them an item again:
//!
//! | tag    | item                      | body                                                  |
//! |--------|---------------------------|-------------------------------------------------------|
//! | `0x00` | None                      | —                                                     |
//! | `0x01` | False                     | —                                                     |
//! | `0x02` | True                      | —                                                     |
//! | `0x03` | int fitting `i64`         | 8 bytes                                               |
//! | `0x04` | float                     | 8 bytes, the IEEE-754 bits as is                      |
//! | `0x05` | str                       | `u32` length + UTF-8                                  |
//! | `0x06` | bytes                     | `u32` length + data                                   |
//! | `0x07` | tuple                     | `u32` count + elements                                |
//! | `0x08` | anything else (pickled)   | `u32` length + opaque pickle bytes                    |
//! | `0x09` | list                      | `u32` count + elements                                |
//! | `0x0A` | dict                      | `u32` count of pairs + key, value, key, value, ...   |
//! | `0x0B` | set                       | `u32` count + elements                                |
//! | `0x0C` | frozenset                 | `u32` count + elements                                |
//! | `0x0D` | int outside `i64`         | `u32` length + two's complement, fewest bytes (≥ 9)   |
//! | `0x0E` | bytearray                 | `u32` length + data                                   |
//! | `0x0F` | `datetime.date`           | year `u16`, month, day                                |
//! | `0x10` | `datetime.time`           | clock + tz                                            |
//! | `0x11` | `datetime.datetime`       | year `u16`, month, day + clock + tz                   |
//! | `0x12` | `datetime.timedelta`      | days `i32`, seconds `u32`, microseconds `u32`         |
//! | `0x13` | `decimal.Decimal`         | `u32` length + its ASCII `str()` (exponent as `E`)    |
//! | `0x14` | `uuid.UUID`               | the 128-bit int (16 bytes) + `is_safe` (0 unknown, 1 safe, 2 unsafe) |
//! | `0x15` | int fitting `i8`          | 1 byte (elements only)                                |
//! | `0x16` | int fitting `i16`         | 2 bytes (elements only)                               |
//! | `0x17` | int fitting `i32`         | 4 bytes (elements only)                               |
//! | `0x18` | str under 256 bytes       | `u8` length + UTF-8 (elements only)                   |
//! | `0x19` | bytes under 256 bytes     | `u8` length + data (elements only)                    |
//!
//! A clock is hour, minute, second, fold (one byte each) and microseconds (`u32`); a tz is
//! one byte, `0` for naive, `1` for `datetime.timezone(offset)`, `2` for
//! `datetime.timezone(offset, name)`, then (for 1 and 2) the offset in microseconds (`i64`,
//! strictly within a day) and (for 2) the name as `u32` length + UTF-8.
//!
//! Two forms ([`Form`]): the value itself (the top level) is written in the wide forms of
//! the first rows, so a lone int is always 9 bytes and a lone str 5 + length; elements of
//! containers use the narrowest fitting form (`0x15`-`0x19` before `0x03`/`0x05`/`0x06`).
//! Pickle appears only at the top level: a value with any part the tags do not cover is
//! pickled whole. Containers nest at most [`MAX_DEPTH`] deep. Set elements and dict keys
//! are of hashable kinds only (no list, dict, set or bytearray, at any depth of a tuple).
//!
//! The format is canonical: [`decode`] accepts exactly the outputs of [`encode`] (no trailing
//! bytes, valid UTF-8, the narrowest form, fields in range), so equal bytes mean equal
//! values and a key's bytes can be compared and hashed directly. Untrusted bytes are checked
//! here, in plain Rust ([`Parser`]), before any Python object is built from them. The
//! pickle payload is opaque: the Python layer pickles and unpickles, this module frames it.

mod leaf;
mod parse;
mod value;
mod write;

pub use leaf::{
    big_int_is_canonical, decimal_is_canonical, is_ascii, trim_big_int, Clock, Date, DateTime,
    Leaf, Time, TimeDelta, Tz, Uuid, UuidSafety,
};
pub use parse::{DecodeError, Item, Parser, Visitor};
pub use value::{decode, encode, Value};
pub use write::put;

use crate::inline_buf::ByteSink;
use std::hash::{BuildHasher, Hasher};

/// The version of this byte format: part of every shared cache's identity, so a file
/// written in another format is never read. Version 1 had scalars, flat tuples and pickle.
pub const CODEC_VERSION: u64 = 2;

/// How many containers deep a value may nest (the value itself, if a container, is depth
/// 1). Deeper values, and values that hold a mutable container twice (or inside itself),
/// are pickled whole.
pub const MAX_DEPTH: usize = 32;

/// Where an item sits, which decides the width of ints, str and bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The value itself: wide forms (ints in 8 bytes, `u32` lengths); pickle allowed.
    Top,
    /// An element of a container: the narrowest form that fits.
    Nested,
}

/// The containers, whose items are followed by their elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// `tuple`.
    Tuple,
    /// `list`.
    List,
    /// `dict`: its count is of pairs (twice as many elements follow).
    Dict,
    /// `set`.
    Set,
    /// `frozenset`.
    FrozenSet,
}

/// Tag bytes, as in the table above.
mod tag {
    pub const NONE: u8 = 0x00;
    pub const FALSE: u8 = 0x01;
    pub const TRUE: u8 = 0x02;
    pub const INT: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const STR: u8 = 0x05;
    pub const BYTES: u8 = 0x06;
    pub const TUPLE: u8 = 0x07;
    pub const PICKLE: u8 = 0x08;
    pub const LIST: u8 = 0x09;
    pub const DICT: u8 = 0x0A;
    pub const SET: u8 = 0x0B;
    pub const FROZENSET: u8 = 0x0C;
    pub const BIG_INT: u8 = 0x0D;
    pub const BYTEARRAY: u8 = 0x0E;
    pub const DATE: u8 = 0x0F;
    pub const TIME: u8 = 0x10;
    pub const DATETIME: u8 = 0x11;
    pub const TIMEDELTA: u8 = 0x12;
    pub const DECIMAL: u8 = 0x13;
    pub const UUID: u8 = 0x14;
    pub const INT8: u8 = 0x15;
    pub const INT16: u8 = 0x16;
    pub const INT32: u8 = 0x17;
    pub const STR8: u8 = 0x18;
    pub const BYTES8: u8 = 0x19;
}

/// Appends `prefix` and then the encoding of the int `n` (what [`encode`] would write after
/// pushing `prefix`), as one whole 8-byte store and one 2-byte store. A key is hashed and
/// compared a word at a time right after it is written; a word load that spans several
/// smaller stores cannot be forwarded from the store buffer and stalls, so the common
/// one-int key is written in the shape it is read in.
#[inline(always)]
pub fn encode_int_after(prefix: u8, n: i64, out: &mut (impl ByteSink + ?Sized)) {
    let n = n as u64;
    let first = u64::from(prefix) | u64::from(tag::INT) << 8 | n << 16;
    let rest = (n >> 48) as u16;
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&rest.to_le_bytes());
}

/// The int `bytes` encode, if they are exactly an encoded int: the common value decoded
/// without a [`Parser`] (the same answer [`decode`] gives).
#[inline(always)]
pub fn decode_int(bytes: &[u8]) -> Option<i64> {
    match bytes {
        [tag::INT, rest @ ..] => Some(i64::from_le_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// The hasher of encoded keys. Fixed seeds: every process, whatever its `PYTHONHASHSEED`,
/// must put a key in the same table position.
static KEY_HASHER: ahash::RandomState = ahash::RandomState::with_seeds(
    0x243F_6A88_85A3_08D3,
    0x1319_8A2E_0370_7344,
    0xA409_3822_299F_31D0,
    0x082E_FA98_EC4E_6C89,
);

/// The hash of an encoded key, identical in every process running this build: its length,
/// then its [`words`]. Fed a word at a time because a key is hashed right after it is
/// written byte by byte: an 8-byte load spanning several smaller stores cannot be forwarded
/// from the store buffer and stalls, so the tail is read byte by byte instead.
#[inline]
pub fn key_hash(bytes: &[u8]) -> u64 {
    key_hash_of_words(bytes.len(), words(bytes))
}

/// [`key_hash`] of a key of `len` bytes given as its [`words`] (as the shared store keeps
/// it): no need to rebuild the bytes.
#[inline]
pub fn key_hash_of_words(len: usize, words: impl Iterator<Item = u64>) -> u64 {
    let mut hasher = KEY_HASHER.build_hasher();
    hasher.write_usize(len);
    for word in words {
        hasher.write_u64(word);
    }
    hasher.finish()
}

/// `bytes` as little-endian words, the last one zero-padded (the shared store keeps keys
/// and values in this form).
#[inline(always)]
pub fn words(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let whole = bytes.chunks_exact(8);
    let tail = whole.remainder();
    // Built byte by byte: a variable-length copy would be a memcpy call per key.
    let last = (!tail.is_empty()).then(|| {
        tail.iter()
            .enumerate()
            .fold(0u64, |word, (i, &b)| word | u64::from(b) << (8 * i))
    });
    whole
        .map(|chunk| u64::from_le_bytes(chunk.try_into().expect("chunks of eight")))
        .chain(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_int_agrees_with_decode() {
        let mut inputs: Vec<Vec<u8>> = [0, 1, -1, i64::MIN, i64::MAX]
            .iter()
            .map(|&n| {
                let mut out = Vec::new();
                encode(&Value::Leaf(Leaf::Int(n)), &mut out);
                out
            })
            .collect();
        inputs.extend([
            vec![tag::INT],
            vec![tag::INT; 10],
            vec![tag::FLOAT; 9],
            vec![tag::INT8, 1],
            vec![],
        ]);
        for bytes in inputs {
            let general = match decode(&bytes) {
                Ok(Value::Leaf(Leaf::Int(n))) => Some(n),
                _ => None,
            };
            assert_eq!(decode_int(&bytes), general, "{bytes:?}");
        }
    }

    #[test]
    fn int_after_prefix_matches_the_general_encoding() {
        for n in [
            0,
            1,
            -1,
            255,
            256,
            -256,
            i64::MIN,
            i64::MAX,
            0x0102_0304_0506_0708,
        ] {
            let mut fast = Vec::new();
            encode_int_after(7, n, &mut fast);
            let mut general = vec![7];
            encode(&Value::Leaf(Leaf::Int(n)), &mut general);
            assert_eq!(fast, general, "{n}");
        }
    }

    #[test]
    fn key_hash_is_deterministic_and_discriminating() {
        assert_eq!(key_hash(b"spam"), key_hash(b"spam"));
        assert_ne!(key_hash(b"spam"), key_hash(b"spam\0"));
        assert_ne!(
            key_hash(&[tag::TRUE]),
            key_hash(&[tag::INT, 1, 0, 0, 0, 0, 0, 0, 0])
        );
    }

    /// Every key of up to 2 bytes, and many longer ones that differ in one byte or in
    /// length, hash differently; the low bits (the table position) spread evenly.
    #[test]
    fn key_hash_has_no_collisions_among_short_and_near_keys() {
        let mut keys: Vec<Vec<u8>> = vec![vec![]];
        for len in 1..=2usize {
            for n in 0..1u32 << (8 * len) {
                keys.push(n.to_le_bytes()[..len].to_vec());
            }
        }
        for len in 3..=64 {
            for pos in 0..len {
                for byte in [1u8, 2, 0x10, 0x80, 0xFF] {
                    let mut key = vec![0u8; len];
                    key[pos] = byte;
                    keys.push(key);
                }
            }
        }
        let mut hashes: Vec<u64> = keys.iter().map(|k| key_hash(k)).collect();
        let mut buckets = [0u32; 64];
        for h in &hashes {
            buckets[(h & 63) as usize] += 1;
        }
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), keys.len(), "a 64-bit collision");
        let mean = keys.len() as u32 / 64;
        assert!(
            buckets
                .iter()
                .all(|&b| b > mean * 9 / 10 && b < mean * 11 / 10),
            "uneven low bits: {buckets:?}"
        );
    }
}
