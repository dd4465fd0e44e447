//! The byte format of shared-backend keys and values, and the key hash every process agrees on.
//!
//! One tag byte opens every encoded value; lengths and counts are `u32`, numbers are
//! little-endian:
//!
//! | tag    | value                    | body                               |
//! |--------|--------------------------|------------------------------------|
//! | `0x00` | None                     | —                                  |
//! | `0x01` | False                    | —                                  |
//! | `0x02` | True                     | —                                  |
//! | `0x03` | int fitting `i64`        | 8 bytes                            |
//! | `0x04` | float                    | 8 bytes, the IEEE-754 bits as is   |
//! | `0x05` | str                      | `u32` length + UTF-8               |
//! | `0x06` | bytes                    | `u32` length + data                |
//! | `0x07` | flat tuple of the above  | `u32` count + encoded elements     |
//! | `0x08` | anything else (pickled)  | `u32` length + opaque pickle bytes |
//!
//! The format is canonical: [`decode`] accepts exactly the outputs of [`encode`] (no trailing
//! bytes, valid UTF-8, no nested tuples), so equal byte strings mean equal values and a key's
//! bytes can be compared and hashed directly. The pickle payload is opaque here: the Python
//! layer pickles and unpickles, this module only frames it.

use crate::inline_buf::ByteSink;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

const TAG_NONE: u8 = 0x00;
const TAG_FALSE: u8 = 0x01;
const TAG_TRUE: u8 = 0x02;
const TAG_INT: u8 = 0x03;
const TAG_FLOAT: u8 = 0x04;
const TAG_STR: u8 = 0x05;
const TAG_BYTES: u8 = 0x06;
const TAG_TUPLE: u8 = 0x07;
const TAG_PICKLE: u8 = 0x08;

/// A value that may appear inside a flat tuple.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar<'a> {
    /// Python `None`.
    None,
    /// Python `bool` (kept apart from `int`).
    Bool(bool),
    /// Python `int` that fits an `i64`.
    Int(i64),
    /// Python `float`; the bit pattern survives (-0.0, NaN payloads).
    Float(f64),
    /// Python `str`.
    Str(&'a str),
    /// Python `bytes`.
    Bytes(&'a [u8]),
}

/// An encoded value, borrowing its strings and bytes from the buffer it came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// A single scalar.
    Scalar(Scalar<'a>),
    /// A tuple whose elements are all scalars.
    Tuple(Vec<Scalar<'a>>),
    /// Pickle bytes of anything else, produced and consumed by the Python layer.
    Pickle(&'a [u8]),
}

/// Why bytes are not a canonical encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ends inside a value.
    Truncated,
    /// A byte where a tag should be is no known tag (or a tuple or pickle inside a tuple).
    BadTag(u8),
    /// A str body is not UTF-8.
    InvalidUtf8,
    /// Bytes follow a complete value.
    TrailingBytes,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("encoded value is truncated"),
            DecodeError::BadTag(tag) => write!(f, "unknown or misplaced tag 0x{tag:02x}"),
            DecodeError::InvalidUtf8 => f.write_str("encoded str is not UTF-8"),
            DecodeError::TrailingBytes => f.write_str("bytes after the encoded value"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Appends the encoding of `value` to `out`.
///
/// # Panics
/// If a str, bytes or pickle body or a tuple is longer than `u32::MAX`: the shared store
/// caps sizes far lower, so the caller checks lengths before building such a value.
#[inline(always)]
pub fn encode(value: &Value<'_>, out: &mut (impl ByteSink + ?Sized)) {
    match value {
        Value::Scalar(scalar) => encode_scalar(scalar, out),
        Value::Tuple(items) => {
            out.push(TAG_TUPLE);
            push_len(items.len(), out);
            for item in items {
                encode_scalar(item, out);
            }
        }
        Value::Pickle(data) => push_body(TAG_PICKLE, data, out),
    }
}

/// Appends `prefix` and then the encoding of the int `n` (what [`encode`] would write after
/// pushing `prefix`), as one whole 8-byte store and one 2-byte store. A key is hashed and
/// compared a word at a time right after it is written; a word load that spans several
/// smaller stores cannot be forwarded from the store buffer and stalls, so the common
/// one-int key is written in the shape it is read in.
#[inline(always)]
pub fn encode_int_after(prefix: u8, n: i64, out: &mut (impl ByteSink + ?Sized)) {
    let n = n as u64;
    let first = u64::from(prefix) | u64::from(TAG_INT) << 8 | n << 16;
    let rest = (n >> 48) as u16;
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&rest.to_le_bytes());
}

#[inline(always)]
fn encode_scalar(scalar: &Scalar<'_>, out: &mut (impl ByteSink + ?Sized)) {
    match *scalar {
        Scalar::None => out.push(TAG_NONE),
        Scalar::Bool(false) => out.push(TAG_FALSE),
        Scalar::Bool(true) => out.push(TAG_TRUE),
        Scalar::Int(i) => {
            out.push(TAG_INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Scalar::Float(x) => {
            out.push(TAG_FLOAT);
            out.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        Scalar::Str(s) => push_body(TAG_STR, s.as_bytes(), out),
        Scalar::Bytes(b) => push_body(TAG_BYTES, b, out),
    }
}

fn push_body(tag: u8, body: &[u8], out: &mut (impl ByteSink + ?Sized)) {
    out.push(tag);
    push_len(body.len(), out);
    out.extend_from_slice(body);
}

fn push_len(len: usize, out: &mut (impl ByteSink + ?Sized)) {
    let len = u32::try_from(len).expect("encoded lengths fit in u32 (callers cap sizes)");
    out.extend_from_slice(&len.to_le_bytes());
}

/// The int `bytes` encode, if they are exactly an encoded int: the common value decoded
/// without building a [`Value`] (the same answer [`decode`] gives).
#[inline(always)]
pub fn decode_int(bytes: &[u8]) -> Option<i64> {
    match bytes {
        [TAG_INT, rest @ ..] => Some(i64::from_le_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// Decodes a complete encoding. Never panics; rejects anything [`encode`] would not produce.
pub fn decode(bytes: &[u8]) -> Result<Value<'_>, DecodeError> {
    let mut reader = Reader { rest: bytes };
    let value = match reader.byte()? {
        TAG_TUPLE => {
            let count = reader.len()?;
            // Every element takes at least one byte: a bigger count cannot be satisfied, and
            // checking first keeps a forged count from reserving a huge vector.
            if count > reader.rest.len() {
                return Err(DecodeError::Truncated);
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let tag = reader.byte()?;
                items.push(reader.scalar(tag)?);
            }
            Value::Tuple(items)
        }
        TAG_PICKLE => {
            let len = reader.len()?;
            Value::Pickle(reader.take(len)?)
        }
        tag => Value::Scalar(reader.scalar(tag)?),
    };
    if reader.rest.is_empty() {
        Ok(value)
    } else {
        Err(DecodeError::TrailingBytes)
    }
}

/// A cursor over the unread input.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array8(&mut self) -> Result<[u8; 8], DecodeError> {
        let mut out = [0; 8];
        out.copy_from_slice(self.take(8)?);
        Ok(out)
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let mut raw = [0; 4];
        raw.copy_from_slice(self.take(4)?);
        // u32 always fits usize on the 32- and 64-bit targets this crate supports.
        Ok(u32::from_le_bytes(raw) as usize)
    }

    fn scalar(&mut self, tag: u8) -> Result<Scalar<'a>, DecodeError> {
        Ok(match tag {
            TAG_NONE => Scalar::None,
            TAG_FALSE => Scalar::Bool(false),
            TAG_TRUE => Scalar::Bool(true),
            TAG_INT => Scalar::Int(i64::from_le_bytes(self.array8()?)),
            TAG_FLOAT => Scalar::Float(f64::from_bits(u64::from_le_bytes(self.array8()?))),
            TAG_STR => {
                let len = self.len()?;
                let body = self.take(len)?;
                Scalar::Str(std::str::from_utf8(body).map_err(|_| DecodeError::InvalidUtf8)?)
            }
            TAG_BYTES => {
                let len = self.len()?;
                Scalar::Bytes(self.take(len)?)
            }
            other => return Err(DecodeError::BadTag(other)),
        })
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

    fn bytes_of(value: &Value<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(value, &mut out);
        out
    }

    fn samples() -> Vec<Value<'static>> {
        let scalars = [
            Scalar::None,
            Scalar::Bool(false),
            Scalar::Bool(true),
            Scalar::Int(0),
            Scalar::Int(1),
            Scalar::Int(-1),
            Scalar::Int(i64::MIN),
            Scalar::Int(i64::MAX),
            Scalar::Float(0.0),
            Scalar::Float(-0.0),
            Scalar::Float(1.5),
            Scalar::Float(f64::INFINITY),
            Scalar::Float(f64::from_bits(0x7FF8_0000_0000_1234)),
            Scalar::Str(""),
            Scalar::Str("héllo, 世界"),
            Scalar::Bytes(b""),
            Scalar::Bytes(b"\x00\xff\x80"),
        ];
        let mut out: Vec<Value<'static>> = scalars.iter().map(|s| Value::Scalar(*s)).collect();
        out.push(Value::Tuple(Vec::new()));
        out.push(Value::Tuple(scalars.to_vec()));
        out.push(Value::Pickle(b""));
        out.push(Value::Pickle(b"\x80\x05K\x01."));
        out
    }

    #[test]
    fn round_trips_every_sample_bit_for_bit() {
        for value in samples() {
            let bytes = bytes_of(&value);
            let back = decode(&bytes).unwrap_or_else(|e| panic!("{value:?}: {e}"));
            // PartialEq on f64 says NaN != NaN and -0.0 == 0.0: compare encodings instead.
            assert_eq!(bytes_of(&back), bytes, "{value:?}");
        }
    }

    #[test]
    fn bool_and_int_have_distinct_encodings() {
        assert_eq!(bytes_of(&Value::Scalar(Scalar::Bool(true))), vec![TAG_TRUE]);
        let one = bytes_of(&Value::Scalar(Scalar::Int(1)));
        assert_eq!(one, [&[TAG_INT][..], &1i64.to_le_bytes()].concat());
        assert_eq!(decode(&one), Ok(Value::Scalar(Scalar::Int(1))));
        assert_eq!(decode(&[TAG_TRUE]), Ok(Value::Scalar(Scalar::Bool(true))));
    }

    #[test]
    fn float_sign_and_nan_payload_survive() {
        for bits in [
            (-0.0f64).to_bits(),
            0x7FF8_0000_0000_1234,
            0xFFF0_0000_0000_0001,
        ] {
            let bytes = bytes_of(&Value::Scalar(Scalar::Float(f64::from_bits(bits))));
            match decode(&bytes) {
                Ok(Value::Scalar(Scalar::Float(x))) => assert_eq!(x.to_bits(), bits),
                other => panic!("{bits:#x} decoded as {other:?}"),
            }
        }
    }

    #[test]
    fn every_proper_prefix_is_rejected() {
        for value in samples() {
            let bytes = bytes_of(&value);
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "{value:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        for value in samples() {
            let mut bytes = bytes_of(&value);
            bytes.push(TAG_NONE);
            assert_eq!(decode(&bytes), Err(DecodeError::TrailingBytes), "{value:?}");
        }
    }

    #[test]
    fn non_canonical_inputs_are_rejected() {
        assert_eq!(
            decode(&[TAG_STR, 2, 0, 0, 0, 0xC3, 0x28]),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(decode(&[0x09]), Err(DecodeError::BadTag(0x09)));
        // Tuples are flat: no tuple or pickle inside.
        assert_eq!(
            decode(&[TAG_TUPLE, 1, 0, 0, 0, TAG_TUPLE, 0, 0, 0, 0]),
            Err(DecodeError::BadTag(TAG_TUPLE))
        );
        assert_eq!(
            decode(&[TAG_TUPLE, 1, 0, 0, 0, TAG_PICKLE, 0, 0, 0, 0]),
            Err(DecodeError::BadTag(TAG_PICKLE))
        );
    }

    #[test]
    fn forged_lengths_fail_without_allocating() {
        assert_eq!(
            decode(&[TAG_BYTES, 0xFF, 0xFF, 0xFF, 0xFF, 1]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(&[TAG_PICKLE, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(&[TAG_TUPLE, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
            Err(DecodeError::Truncated)
        );
    }

    /// A small deterministic generator: tests need no extra crates.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_ones_are_canonical() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut accepted = 0;
        for _ in 0..200_000 {
            let len = (xorshift(&mut seed) % 24) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut seed) as u8).collect();
            // Bias toward plausible shapes: a real tag, small lengths.
            if let Some(first) = bytes.first_mut() {
                *first %= 10;
            }
            for b in bytes.iter_mut().skip(1).take(4) {
                if xorshift(&mut seed) % 2 == 0 {
                    *b %= 4;
                }
            }
            if let Ok(value) = decode(&bytes) {
                accepted += 1;
                assert_eq!(bytes_of(&value), bytes, "{value:?}");
            }
        }
        assert!(
            accepted > 1000,
            "the generator should hit valid encodings, got {accepted}"
        );
    }

    #[test]
    fn key_hash_is_deterministic_and_discriminating() {
        assert_eq!(key_hash(b"spam"), key_hash(b"spam"));
        assert_ne!(key_hash(b"spam"), key_hash(b"spam\0"));
        assert_ne!(
            key_hash(&[TAG_TRUE]),
            key_hash(&[TAG_INT, 1, 0, 0, 0, 0, 0, 0, 0])
        );
    }

    #[test]
    fn decode_int_agrees_with_decode() {
        let mut inputs: Vec<Vec<u8>> = samples().iter().map(bytes_of).collect();
        inputs.extend([vec![TAG_INT], vec![TAG_INT; 10], vec![TAG_FLOAT; 9], vec![]]);
        for bytes in inputs {
            let general = match decode(&bytes) {
                Ok(Value::Scalar(Scalar::Int(n))) => Some(n),
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
            encode(&Value::Scalar(Scalar::Int(n)), &mut general);
            assert_eq!(fast, general, "{n}");
        }
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
