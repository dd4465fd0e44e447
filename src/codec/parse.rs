//! Reading untrusted bytes: a parser that hands each item to a [`Visitor`] and checks
//! everything the format promises (bounds, lengths, tags, narrowest forms, field ranges,
//! nesting depth, hashable set elements and dict keys) before handing it out.
//!
//! The parser keeps the stack of open containers itself: a visitor recurses only when it is
//! handed a container, and reads its elements by visiting again. Whatever a visitor does, it
//! is never handed an item out of place, and nesting never exceeds [`MAX_DEPTH`]. Each item
//! goes straight from the arm that read it to the visitor's method (no item value in
//! between), so a visitor's `leaf` inlined there dispatches on a known kind: this is the
//! loop that decides how fast a first decode is.

use super::leaf::DAY_US;
use super::{tag, Clock, Container, Date, DateTime, Leaf, Time, TimeDelta, Tz, Uuid};
use super::{UuidSafety, MAX_DEPTH};
use std::fmt;

/// One encoded item, as [`super::put`] writes it: a leaf, a container (whose elements are
/// the next items), or pickle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Item<'a> {
    /// A value holding no other.
    Leaf(Leaf<'a>),
    /// A container and how many elements follow (a dict: how many pairs; twice as many
    /// items follow, key first).
    Open(Container, usize),
    /// Pickle bytes of anything else (the top level only).
    Pickle(&'a [u8]),
}

/// What to do with each item [`Parser::visit`] reads.
pub trait Visitor<'a> {
    /// What a visit makes of an item (the object or value it stands for).
    type Output;
    /// Why a visit failed: the parser's errors convert into it.
    type Error: From<DecodeError>;

    /// A leaf.
    fn leaf(&mut self, leaf: Leaf<'a>) -> Result<Self::Output, Self::Error>;

    /// A container of `count` elements (a dict: `count` pairs, key first). The visitor
    /// reads them by calling `parser.visit` once per element, then builds the container.
    fn container(
        &mut self,
        parser: &mut Parser<'a>,
        container: Container,
        count: usize,
    ) -> Result<Self::Output, Self::Error>;

    /// Pickle bytes (only ever a whole value).
    fn pickle(&mut self, data: &'a [u8]) -> Result<Self::Output, Self::Error>;
}

/// What [`Parser::read_rare`] reads: a leaf, or pickle.
enum Rare<'a> {
    Leaf(Leaf<'a>),
    Pickle(&'a [u8]),
}

/// Why bytes are not a canonical encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ends inside a value.
    Truncated,
    /// A byte where a tag should be is no known tag, or one not allowed where it stands
    /// (pickle inside a container, a narrow form at the top level).
    BadTag(u8),
    /// A str body (or a timezone's name, or a decimal) is not UTF-8 (ASCII).
    InvalidUtf8,
    /// Bytes follow a complete value.
    TrailingBytes,
    /// A number or length in a wider form than it needs.
    NotNarrowest,
    /// A field out of its type's range (a date, a time, an offset, a decimal literal, a
    /// UUID's safety byte, a big int with a redundant byte).
    OutOfRange,
    /// Containers nested more than [`MAX_DEPTH`] deep.
    TooDeep,
    /// An unhashable kind as a set element or a dict key.
    Unhashable,
    /// The caller asked for an item after the value's last one.
    Exhausted,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("encoded value is truncated"),
            DecodeError::BadTag(tag) => write!(f, "unknown or misplaced tag 0x{tag:02x}"),
            DecodeError::InvalidUtf8 => f.write_str("encoded str is not UTF-8"),
            DecodeError::TrailingBytes => f.write_str("bytes after the encoded value"),
            DecodeError::NotNarrowest => f.write_str("a number or length in a wider form"),
            DecodeError::OutOfRange => f.write_str("a field out of its range"),
            DecodeError::TooDeep => write!(f, "containers nested over {MAX_DEPTH} deep"),
            DecodeError::Unhashable => f.write_str("an unhashable set element or dict key"),
            DecodeError::Exhausted => f.write_str("read past the end of the value"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// An open container (or, at the bottom of the stack, the value itself): how many of its
/// items are still to come, and what they may be.
#[derive(Clone, Copy, Debug)]
struct Frame {
    /// Items still to come (a dict's count twice over).
    left: usize,
    /// Its items are elements of a container (the value itself is not).
    nested: bool,
    /// A dict: items alternate key (hashable) and value.
    dict: bool,
    /// Every item must be of a hashable kind (a set's, or a tuple's that is itself a set
    /// element or dict key).
    hashable: bool,
}

impl Frame {
    /// The value itself: one item, at the top level.
    const VALUE: Frame = Frame {
        left: 1,
        nested: false,
        dict: false,
        hashable: false,
    };
}

/// Reads one encoded value item by item, checking each (see the module docs).
pub struct Parser<'a> {
    rest: &'a [u8],
    /// The innermost open container (the value itself before the first item).
    top: Frame,
    /// The containers around `top`, outermost first: `outer[..depth]`. A finished
    /// container (`left == 0`) is closed at the next visit, before anything is read, so
    /// `depth` is the nesting depth of every item read.
    outer: [Frame; MAX_DEPTH],
    depth: usize,
}

impl<'a> Parser<'a> {
    /// A parser over one complete encoding.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            top: Frame::VALUE,
            outer: [Frame::VALUE; MAX_DEPTH],
            depth: 0,
        }
    }

    /// Reads the next item and hands it to `visitor`: the value itself first, then, inside
    /// a container's visit, its elements in order.
    #[inline(always)]
    pub fn visit<V: Visitor<'a>>(&mut self, visitor: &mut V) -> Result<V::Output, V::Error> {
        if self.top.left == 0 {
            self.close_finished()?;
        }
        self.top.left -= 1;
        let nested = self.top.nested;
        let tag = self.byte()?;
        let container = match tag {
            tag::NONE => return visitor.leaf(Leaf::None),
            tag::FALSE => return visitor.leaf(Leaf::Bool(false)),
            tag::TRUE => return visitor.leaf(Leaf::Bool(true)),
            tag::INT8 if nested => {
                let n = i8::from_le_bytes(self.array()?);
                return visitor.leaf(Leaf::Int(n.into()));
            }
            tag::INT16 if nested => {
                let n = i16::from_le_bytes(self.array()?);
                if i8::try_from(n).is_ok() {
                    return Err(DecodeError::NotNarrowest.into());
                }
                return visitor.leaf(Leaf::Int(n.into()));
            }
            tag::INT32 if nested => {
                let n = i32::from_le_bytes(self.array()?);
                if i16::try_from(n).is_ok() {
                    return Err(DecodeError::NotNarrowest.into());
                }
                return visitor.leaf(Leaf::Int(n.into()));
            }
            tag::INT => {
                let n = i64::from_le_bytes(self.array()?);
                if nested && i32::try_from(n).is_ok() {
                    return Err(DecodeError::NotNarrowest.into());
                }
                return visitor.leaf(Leaf::Int(n));
            }
            tag::FLOAT => {
                let bits = u64::from_le_bytes(self.array()?);
                return visitor.leaf(Leaf::Float(f64::from_bits(bits)));
            }
            tag::STR8 if nested => {
                let text = utf8(self.body8()?)?;
                return visitor.leaf(Leaf::Str(text));
            }
            tag::STR => {
                let text = utf8(self.body32(nested)?)?;
                return visitor.leaf(Leaf::Str(text));
            }
            tag::BYTES8 if nested => {
                let data = self.body8()?;
                return visitor.leaf(Leaf::Bytes(data));
            }
            tag::BYTES => {
                let data = self.body32(nested)?;
                return visitor.leaf(Leaf::Bytes(data));
            }
            tag::TUPLE => Container::Tuple,
            tag::FROZENSET => Container::FrozenSet,
            tag::LIST | tag::DICT | tag::SET if self.hashable() => {
                return Err(DecodeError::Unhashable.into())
            }
            tag::LIST => Container::List,
            tag::SET => Container::Set,
            tag::DICT => Container::Dict,
            _ => {
                let hashable = self.hashable();
                return match self.read_rare(tag, nested, hashable)? {
                    Rare::Leaf(leaf) => visitor.leaf(leaf),
                    Rare::Pickle(data) => visitor.pickle(data),
                };
            }
        };
        let hashable = self.hashable();
        let count = self.open(container, hashable)?;
        visitor.container(self, container, count)
    }

    /// Whether the item being read must be of a hashable kind (computed only where a kind
    /// that is not could be read). Dict items alternate key, value: a key leaves an odd
    /// number after it.
    #[inline(always)]
    fn hashable(&self) -> bool {
        self.top.hashable || (self.top.dict && self.top.left % 2 == 1)
    }

    /// Reads a container's count and opens it: its elements are the next items.
    #[inline(always)]
    fn open(&mut self, container: Container, hashable: bool) -> Result<usize, DecodeError> {
        let dict = container == Container::Dict;
        // Each element takes at least one byte: a count the rest of the input cannot hold
        // is refused before anything is sized by it.
        let count = self.len32()?;
        let items = if dict { count.saturating_mul(2) } else { count };
        if items > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        if self.depth == MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        self.outer[self.depth] = self.top;
        self.depth += 1;
        self.top = Frame {
            left: items,
            nested: true,
            dict,
            hashable: matches!(container, Container::Set | Container::FrozenSet)
                || (container == Container::Tuple && hashable),
        };
        Ok(count)
    }

    /// Closes every finished container around the next item; there is none if the value
    /// itself is finished.
    #[cold]
    #[inline(never)]
    fn close_finished(&mut self) -> Result<(), DecodeError> {
        while self.top.left == 0 {
            if self.depth == 0 {
                return Err(DecodeError::Exhausted);
            }
            self.depth -= 1;
            self.top = self.outer[self.depth];
        }
        Ok(())
    }

    /// Succeeds if the whole value has been read and nothing follows it.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        while self.top.left == 0 && self.depth > 0 {
            self.depth -= 1;
            self.top = self.outer[self.depth];
        }
        if self.depth > 0 || self.top.left > 0 {
            Err(DecodeError::Truncated)
        } else if !self.rest.is_empty() {
            Err(DecodeError::TrailingBytes)
        } else {
            Ok(())
        }
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    #[inline(always)]
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    #[inline(always)]
    fn len32(&mut self) -> Result<usize, DecodeError> {
        // u32 always fits usize on the 32- and 64-bit targets this crate supports.
        Ok(self.u32()? as usize)
    }

    /// A `u32`-length body; `narrow`: the length must need the wide form (256 or more).
    #[inline(always)]
    fn body32(&mut self, narrow: bool) -> Result<&'a [u8], DecodeError> {
        let len = self.len32()?;
        if narrow && len < 256 {
            return Err(DecodeError::NotNarrowest);
        }
        self.take(len)
    }

    #[inline(always)]
    fn body8(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.byte()?;
        self.take(len.into())
    }

    /// The rarer leaves (and pickle, and bad tags): out of the visit's hot loop.
    #[inline(never)]
    fn read_rare(
        &mut self,
        tag: u8,
        nested: bool,
        hashable: bool,
    ) -> Result<Rare<'a>, DecodeError> {
        let leaf = match tag {
            tag::BIG_INT => {
                let body = self.body32(false)?;
                if !super::big_int_is_canonical(body) {
                    return Err(DecodeError::OutOfRange);
                }
                Leaf::BigInt(body)
            }
            tag::BYTEARRAY => Leaf::ByteArray(self.body32(false)?),
            tag::DATE => Leaf::Date(self.date()?),
            tag::TIME => Leaf::Time(Time {
                clock: self.clock()?,
                tz: self.tz()?,
            }),
            tag::DATETIME => Leaf::DateTime(DateTime {
                date: self.date()?,
                clock: self.clock()?,
                tz: self.tz()?,
            }),
            tag::TIMEDELTA => {
                let delta = TimeDelta {
                    days: i32::from_le_bytes(self.array()?),
                    seconds: self.u32()?,
                    microseconds: self.u32()?,
                };
                if !delta.is_valid() {
                    return Err(DecodeError::OutOfRange);
                }
                Leaf::TimeDelta(delta)
            }
            tag::DECIMAL => {
                let text = utf8(self.body32(false)?)?;
                if !super::decimal_is_canonical(text) {
                    return Err(DecodeError::OutOfRange);
                }
                Leaf::Decimal(text)
            }
            tag::UUID => {
                let int = u128::from_le_bytes(self.array()?);
                let safety = match self.byte()? {
                    0 => UuidSafety::Unknown,
                    1 => UuidSafety::Safe,
                    2 => UuidSafety::Unsafe,
                    _ => return Err(DecodeError::OutOfRange),
                };
                Leaf::Uuid(Uuid { int, safety })
            }
            tag::PICKLE if !nested => return Ok(Rare::Pickle(self.body32(false)?)),
            other => return Err(DecodeError::BadTag(other)),
        };
        // Of the kinds read here only a bytearray or a signalling NaN cannot be hashed
        // (the common ones all can, and containers are checked where they open).
        if hashable && !leaf.is_hashable() {
            return Err(DecodeError::Unhashable);
        }
        Ok(Rare::Leaf(leaf))
    }

    fn date(&mut self) -> Result<Date, DecodeError> {
        let date = Date {
            year: u16::from_le_bytes(self.array()?),
            month: self.byte()?,
            day: self.byte()?,
        };
        date.is_valid()
            .then_some(date)
            .ok_or(DecodeError::OutOfRange)
    }

    fn clock(&mut self) -> Result<Clock, DecodeError> {
        let [hour, minute, second, fold] = self.array()?;
        let clock = Clock {
            hour,
            minute,
            second,
            fold,
            microsecond: self.u32()?,
        };
        clock
            .is_valid()
            .then_some(clock)
            .ok_or(DecodeError::OutOfRange)
    }

    fn tz(&mut self) -> Result<Tz<'a>, DecodeError> {
        let named = match self.byte()? {
            0 => return Ok(Tz::Naive),
            1 => false,
            2 => true,
            _ => return Err(DecodeError::OutOfRange),
        };
        let offset_us = i64::from_le_bytes(self.array()?);
        let name = if named {
            Some(utf8(self.body32(false)?)?)
        } else {
            None
        };
        if offset_us.unsigned_abs() >= DAY_US.unsigned_abs() {
            return Err(DecodeError::OutOfRange);
        }
        Ok(Tz::Fixed { offset_us, name })
    }
}

/// `bytes` as a str if they are UTF-8. Most cached text is ASCII, which a word-at-a-time
/// scan ([`super::is_ascii`]) tells far faster than a full UTF-8 validation does for short
/// strings.
#[inline(always)]
fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    if super::is_ascii(bytes) {
        // SAFETY: ASCII bytes are valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }
}
