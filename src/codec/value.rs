//! A whole encoded value as a tree ([`Value`]), for code without Python: tests, the fuzz
//! targets, the Rust benchmarks. The Python layer reads and writes items directly
//! ([`Parser`], [`put`]) and never builds this tree.

use super::{put, Container, DecodeError, Form, Item, Leaf, Parser, Visitor};
use crate::inline_buf::ByteSink;

/// An encoded value, borrowing its strings and bytes from the buffer it came from.
/// Equality is structural, floats by bit pattern ([`Leaf`]'s `PartialEq`).
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// A value holding no other.
    Leaf(Leaf<'a>),
    /// `tuple`.
    Tuple(Vec<Value<'a>>),
    /// `list`.
    List(Vec<Value<'a>>),
    /// `dict`, in insertion order.
    Dict(Vec<(Value<'a>, Value<'a>)>),
    /// `set`, in the order written.
    Set(Vec<Value<'a>>),
    /// `frozenset`, in the order written.
    FrozenSet(Vec<Value<'a>>),
    /// Pickle bytes of anything else, produced and consumed by the Python layer.
    Pickle(&'a [u8]),
}

/// Appends the encoding of `value` to `out`.
///
/// `value` must be one [`decode`] could return (see [`put`]: real dates, canonical big
/// ints, hashable set elements, pickle only at the top, at most [`super::MAX_DEPTH`]
/// deep); anything else is written as given and fails to decode.
///
/// # Panics
/// If a length or count exceeds `u32::MAX` (see [`put`]).
pub fn encode(value: &Value<'_>, out: &mut (impl ByteSink + ?Sized)) {
    put_value(value, Form::Top, out);
}

fn put_value(value: &Value<'_>, form: Form, out: &mut (impl ByteSink + ?Sized)) {
    let items = |container, elements: &[Value<'_>], out: &mut _| {
        put(&Item::Open(container, elements.len()), form, out);
        for element in elements {
            put_value(element, Form::Nested, out);
        }
    };
    match value {
        Value::Leaf(leaf) => put(&Item::Leaf(*leaf), form, out),
        Value::Tuple(elements) => items(Container::Tuple, elements, out),
        Value::List(elements) => items(Container::List, elements, out),
        Value::Set(elements) => items(Container::Set, elements, out),
        Value::FrozenSet(elements) => items(Container::FrozenSet, elements, out),
        Value::Dict(pairs) => {
            put(&Item::Open(Container::Dict, pairs.len()), form, out);
            for (key, element) in pairs {
                put_value(key, Form::Nested, out);
                put_value(element, Form::Nested, out);
            }
        }
        Value::Pickle(data) => put(&Item::Pickle(data), form, out),
    }
}

/// Decodes a complete encoding. Never panics; rejects anything [`encode`] would not produce.
pub fn decode(bytes: &[u8]) -> Result<Value<'_>, DecodeError> {
    let mut parser = Parser::new(bytes);
    let value = parser.visit(&mut TreeBuilder)?;
    parser.finish()?;
    Ok(value)
}

/// Builds the [`Value`] of each item. Recursion is bounded: the parser refuses to open
/// containers deeper than [`super::MAX_DEPTH`].
struct TreeBuilder;

impl<'a> Visitor<'a> for TreeBuilder {
    type Output = Value<'a>;
    type Error = DecodeError;

    fn leaf(&mut self, leaf: Leaf<'a>) -> Result<Value<'a>, DecodeError> {
        Ok(Value::Leaf(leaf))
    }

    fn container(
        &mut self,
        parser: &mut Parser<'a>,
        container: Container,
        count: usize,
    ) -> Result<Value<'a>, DecodeError> {
        // The parser checked that the input can hold `count` elements.
        let mut elements = || {
            (0..count)
                .map(|_| parser.visit(self))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(match container {
            Container::Tuple => Value::Tuple(elements()?),
            Container::List => Value::List(elements()?),
            Container::Set => Value::Set(elements()?),
            Container::FrozenSet => Value::FrozenSet(elements()?),
            Container::Dict => {
                let mut pairs = Vec::with_capacity(count);
                for _ in 0..count {
                    pairs.push((parser.visit(self)?, parser.visit(self)?));
                }
                Value::Dict(pairs)
            }
        })
    }

    fn pickle(&mut self, data: &'a [u8]) -> Result<Value<'a>, DecodeError> {
        Ok(Value::Pickle(data))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tag, Clock, Date, DateTime, Time, TimeDelta, Tz, Uuid, UuidSafety};
    use super::super::{CODEC_VERSION, MAX_DEPTH};
    use super::*;

    fn bytes_of(value: &Value<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(value, &mut out);
        out
    }

    fn leaves() -> Vec<Leaf<'static>> {
        let clock = Clock {
            hour: 23,
            minute: 59,
            second: 58,
            microsecond: 999_999,
            fold: 1,
        };
        let date = Date {
            year: 2024,
            month: 2,
            day: 29,
        };
        let named = Tz::Fixed {
            offset_us: -(5 * 3600 + 30 * 60) * 1_000_000 - 7,
            name: Some("Somewhere"),
        };
        vec![
            Leaf::None,
            Leaf::Bool(false),
            Leaf::Bool(true),
            Leaf::Int(0),
            Leaf::Int(1),
            Leaf::Int(-1),
            Leaf::Int(127),
            Leaf::Int(-128),
            Leaf::Int(128),
            Leaf::Int(-32_769),
            Leaf::Int(1 << 31),
            Leaf::Int(i64::MIN),
            Leaf::Int(i64::MAX),
            Leaf::BigInt(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0]),
            Leaf::BigInt(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0x80]),
            Leaf::Float(0.0),
            Leaf::Float(-0.0),
            Leaf::Float(1.5),
            Leaf::Float(f64::INFINITY),
            Leaf::Float(f64::from_bits(0x7FF8_0000_0000_1234)),
            Leaf::Str(""),
            Leaf::Str("héllo, 世界"),
            Leaf::Str(LONG),
            Leaf::Bytes(b""),
            Leaf::Bytes(b"\x00\xff\x80"),
            Leaf::Bytes(LONG.as_bytes()),
            Leaf::ByteArray(b"mutable"),
            Leaf::Date(date),
            Leaf::Time(Time {
                clock,
                tz: Tz::Naive,
            }),
            Leaf::Time(Time { clock, tz: named }),
            Leaf::DateTime(DateTime {
                date,
                clock,
                tz: Tz::Fixed {
                    offset_us: 0,
                    name: None,
                },
            }),
            Leaf::DateTime(DateTime {
                date,
                clock,
                tz: named,
            }),
            Leaf::TimeDelta(TimeDelta {
                days: -999_999_999,
                seconds: 86_399,
                microseconds: 999_999,
            }),
            Leaf::Decimal("-1.10E-7"),
            Leaf::Decimal("sNaN12"),
            Leaf::Uuid(Uuid {
                int: u128::MAX - 5,
                safety: UuidSafety::Unsafe,
            }),
        ]
    }

    const LONG: &str = "a str of more than two hundred and fifty-five bytes, so that it needs \
        the wide form even when nested inside a container; padding padding padding padding \
        padding padding padding padding padding padding padding padding padding padding pad";

    fn samples() -> Vec<Value<'static>> {
        let leaves = leaves();
        let mut out: Vec<Value<'static>> = leaves.iter().map(|l| Value::Leaf(*l)).collect();
        let hashable: Vec<Value<'static>> = leaves
            .iter()
            .filter(|l| l.is_hashable())
            .map(|l| Value::Leaf(*l))
            .collect();
        let all: Vec<Value<'static>> = leaves.iter().map(|l| Value::Leaf(*l)).collect();
        out.push(Value::Tuple(Vec::new()));
        out.push(Value::Tuple(all.clone()));
        out.push(Value::List(all.clone()));
        out.push(Value::Set(hashable.clone()));
        out.push(Value::FrozenSet(vec![Value::Tuple(hashable.clone())]));
        out.push(Value::Dict(
            hashable
                .iter()
                .cloned()
                .zip(all.iter().cloned().rev())
                .collect(),
        ));
        out.push(Value::List(vec![
            Value::Dict(vec![(
                Value::Tuple(vec![Value::FrozenSet(vec![])]),
                Value::List(vec![Value::Set(vec![])]),
            )]),
            Value::Tuple(vec![Value::List(vec![Value::Leaf(Leaf::Int(3))])]),
        ]));
        out.push(nested(MAX_DEPTH));
        out.push(Value::Pickle(b""));
        out.push(Value::Pickle(b"\x80\x05K\x01."));
        out
    }

    /// Lists nested `depth` deep, the innermost empty.
    fn nested(depth: usize) -> Value<'static> {
        (1..depth).fold(Value::List(vec![]), |inner, _| Value::List(vec![inner]))
    }

    #[test]
    fn round_trips_every_sample_exactly() {
        for value in samples() {
            let bytes = bytes_of(&value);
            let back = decode(&bytes).unwrap_or_else(|e| panic!("{value:?}: {e}"));
            assert_eq!(back, value);
            assert_eq!(bytes_of(&back), bytes, "{value:?}");
        }
    }

    #[test]
    fn top_level_scalars_keep_the_wide_forms() {
        let int = bytes_of(&Value::Leaf(Leaf::Int(1)));
        assert_eq!(int, [&[tag::INT][..], &1i64.to_le_bytes()].concat());
        assert_eq!(bytes_of(&Value::Leaf(Leaf::Bool(true))), [tag::TRUE]);
        assert_eq!(
            bytes_of(&Value::Leaf(Leaf::Str("ab"))),
            [tag::STR, 2, 0, 0, 0, b'a', b'b']
        );
        assert_eq!(super::super::decode_int(&int), Some(1));
        // The version 1 format's flat tuples are unchanged but for their elements' widths.
        let tuple = Value::Tuple(vec![
            Value::Leaf(Leaf::Int(1)),
            Value::Leaf(Leaf::Str("ab")),
        ]);
        assert_eq!(
            bytes_of(&tuple),
            [
                tag::TUPLE,
                2,
                0,
                0,
                0,
                tag::INT8,
                1,
                tag::STR8,
                2,
                b'a',
                b'b'
            ]
        );
        assert_eq!(CODEC_VERSION, 2);
    }

    #[test]
    fn nested_ints_take_the_narrowest_width() {
        for (n, tag, len) in [
            (0, tag::INT8, 2),
            (-128, tag::INT8, 2),
            (128, tag::INT16, 3),
            (-32_768, tag::INT16, 3),
            (32_768, tag::INT32, 5),
            (i64::from(i32::MIN), tag::INT32, 5),
            (1 << 31, tag::INT, 9),
        ] {
            let bytes = bytes_of(&Value::List(vec![Value::Leaf(Leaf::Int(n))]));
            assert_eq!((bytes[5], bytes.len() - 5), (tag, len), "{n}");
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
            bytes.push(tag::NONE);
            assert_eq!(decode(&bytes), Err(DecodeError::TrailingBytes), "{value:?}");
        }
    }

    fn in_list(item: &[u8]) -> Vec<u8> {
        [&[tag::LIST, 1, 0, 0, 0][..], item].concat()
    }

    #[test]
    fn wider_forms_than_needed_are_rejected() {
        let wide_int = [&[tag::INT][..], &5i64.to_le_bytes()].concat();
        assert_eq!(decode(&in_list(&wide_int)), Err(DecodeError::NotNarrowest));
        assert_eq!(
            decode(&in_list(&[tag::INT16, 5, 0])),
            Err(DecodeError::NotNarrowest)
        );
        assert_eq!(
            decode(&in_list(&[tag::INT32, 0, 1, 0, 0])),
            Err(DecodeError::NotNarrowest)
        );
        assert_eq!(
            decode(&in_list(&[tag::STR, 1, 0, 0, 0, b'x'])),
            Err(DecodeError::NotNarrowest)
        );
        assert_eq!(
            decode(&in_list(&[tag::BYTES, 0, 0, 0, 0])),
            Err(DecodeError::NotNarrowest)
        );
        // Narrow forms exist only inside containers.
        assert_eq!(decode(&[tag::INT8, 5]), Err(DecodeError::BadTag(tag::INT8)));
        assert_eq!(decode(&[tag::STR8, 0]), Err(DecodeError::BadTag(tag::STR8)));
    }

    #[test]
    fn out_of_range_fields_are_rejected() {
        let date = |y: u16, m, d| [&[tag::DATE][..], &y.to_le_bytes(), &[m, d]].concat();
        assert!(decode(&date(2024, 2, 29)).is_ok());
        assert_eq!(decode(&date(2023, 2, 29)), Err(DecodeError::OutOfRange));
        let time = |h, fold, us: u32, tz: &[u8]| {
            [&[tag::TIME, h, 0, 0, fold][..], &us.to_le_bytes(), tz].concat()
        };
        assert!(decode(&time(23, 1, 999_999, &[0])).is_ok());
        assert_eq!(decode(&time(24, 0, 0, &[0])), Err(DecodeError::OutOfRange));
        assert_eq!(decode(&time(0, 2, 0, &[0])), Err(DecodeError::OutOfRange));
        assert_eq!(
            decode(&time(0, 0, 1_000_000, &[0])),
            Err(DecodeError::OutOfRange)
        );
        assert_eq!(decode(&time(0, 0, 0, &[3])), Err(DecodeError::OutOfRange));
        let day = 86_400_000_000i64;
        let tz = |offset: i64| [&[1][..], &offset.to_le_bytes()].concat();
        assert!(decode(&time(0, 0, 0, &tz(day - 1))).is_ok());
        assert_eq!(
            decode(&time(0, 0, 0, &tz(-day))),
            Err(DecodeError::OutOfRange)
        );
        assert_eq!(
            decode(&time(0, 0, 0, &tz(i64::MIN))),
            Err(DecodeError::OutOfRange)
        );
        let delta = |d: i32, s: u32, us: u32| {
            [
                &[tag::TIMEDELTA][..],
                &d.to_le_bytes(),
                &s.to_le_bytes(),
                &us.to_le_bytes(),
            ]
            .concat()
        };
        assert!(decode(&delta(-999_999_999, 0, 0)).is_ok());
        assert_eq!(
            decode(&delta(1_000_000_000, 0, 0)),
            Err(DecodeError::OutOfRange)
        );
        assert_eq!(decode(&delta(0, 86_400, 0)), Err(DecodeError::OutOfRange));
        let decimal = |s: &str| {
            [
                &[tag::DECIMAL][..],
                &(s.len() as u32).to_le_bytes(),
                s.as_bytes(),
            ]
            .concat()
        };
        assert!(decode(&decimal("1.5E+3")).is_ok());
        assert_eq!(decode(&decimal("1.5e+3")), Err(DecodeError::OutOfRange));
        let uuid = |safety| [&[tag::UUID][..], &[0; 16], &[safety]].concat();
        assert!(decode(&uuid(2)).is_ok());
        assert_eq!(decode(&uuid(3)), Err(DecodeError::OutOfRange));
        let big = |b: &[u8]| [&[tag::BIG_INT][..], &(b.len() as u32).to_le_bytes(), b].concat();
        assert!(decode(&big(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0])).is_ok());
        assert_eq!(
            decode(&big(&[1, 0, 0, 0, 0, 0, 0, 0])),
            Err(DecodeError::OutOfRange)
        );
        assert_eq!(
            decode(&big(&[1, 0, 0, 0, 0, 0, 0, 0, 0])),
            Err(DecodeError::OutOfRange)
        );
    }

    #[test]
    fn bad_utf8_and_misplaced_tags_are_rejected() {
        assert_eq!(
            decode(&[tag::STR, 2, 0, 0, 0, 0xC3, 0x28]),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(decode(&[0x1A]), Err(DecodeError::BadTag(0x1A)));
        assert_eq!(
            decode(&[tag::TUPLE, 1, 0, 0, 0, tag::PICKLE, 0, 0, 0, 0]),
            Err(DecodeError::BadTag(tag::PICKLE))
        );
    }

    #[test]
    fn set_elements_and_dict_keys_are_hashable_kinds() {
        let set_of = |item: &[u8]| [&[tag::SET, 1, 0, 0, 0][..], item].concat();
        for unhashable in [
            &[tag::LIST, 0, 0, 0, 0][..],
            &[tag::DICT, 0, 0, 0, 0],
            &[tag::SET, 0, 0, 0, 0],
            &[tag::BYTEARRAY, 0, 0, 0, 0],
            &[tag::TUPLE, 1, 0, 0, 0, tag::LIST, 0, 0, 0, 0],
            &[tag::DECIMAL, 4, 0, 0, 0, b's', b'N', b'a', b'N'],
        ] {
            assert_eq!(decode(&set_of(unhashable)), Err(DecodeError::Unhashable));
            let dict = [&[tag::DICT, 1, 0, 0, 0][..], unhashable, &[tag::NONE]].concat();
            assert_eq!(decode(&dict), Err(DecodeError::Unhashable));
            // As a dict's value, or in a list, they are fine.
            let dict = [&[tag::DICT, 1, 0, 0, 0, tag::NONE][..], unhashable].concat();
            assert!(decode(&dict).is_ok());
        }
        // A tuple in a set may hold a frozenset, but not a list inside that.
        let ok = set_of(&[tag::TUPLE, 1, 0, 0, 0, tag::FROZENSET, 0, 0, 0, 0]);
        assert!(decode(&ok).is_ok());
        let bad = set_of(&[tag::FROZENSET, 1, 0, 0, 0, tag::LIST, 0, 0, 0, 0]);
        assert_eq!(decode(&bad), Err(DecodeError::Unhashable));
    }

    #[test]
    fn nesting_deeper_than_the_bound_is_rejected() {
        assert!(decode(&bytes_of(&nested(MAX_DEPTH))).is_ok());
        assert_eq!(
            decode(&bytes_of(&nested(MAX_DEPTH + 1))),
            Err(DecodeError::TooDeep)
        );
        // A container that is the last element of its parent still counts as inside it.
        let mut tail_nested = Vec::new();
        for _ in 0..MAX_DEPTH + 1 {
            tail_nested.extend_from_slice(&[tag::TUPLE, 2, 0, 0, 0, tag::NONE]);
        }
        tail_nested.extend_from_slice(&[tag::NONE]);
        assert_eq!(decode(&tail_nested), Err(DecodeError::TooDeep));
    }

    #[test]
    fn forged_lengths_fail_without_allocating() {
        for tag in [
            tag::BYTES,
            tag::PICKLE,
            tag::TUPLE,
            tag::LIST,
            tag::DICT,
            tag::BIG_INT,
        ] {
            assert_eq!(
                decode(&[tag, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
                Err(DecodeError::Truncated),
                "{tag:#x}"
            );
        }
        // A dict's count is of pairs: two bytes at least per pair.
        assert_eq!(
            decode(&[tag::DICT, 2, 0, 0, 0, tag::NONE, tag::NONE, tag::NONE]),
            Err(DecodeError::Truncated)
        );
    }

    /// Hands out each leaf's variant and counts nothing: a visitor that stops early.
    struct Shallow;

    impl<'a> Visitor<'a> for Shallow {
        type Output = Option<Container>;
        type Error = DecodeError;

        fn leaf(&mut self, _: Leaf<'a>) -> Result<Self::Output, DecodeError> {
            Ok(None)
        }

        fn container(
            &mut self,
            _: &mut Parser<'a>,
            container: Container,
            _: usize,
        ) -> Result<Self::Output, DecodeError> {
            Ok(Some(container))
        }

        fn pickle(&mut self, _: &'a [u8]) -> Result<Self::Output, DecodeError> {
            Ok(None)
        }
    }

    #[test]
    fn a_parser_hands_out_no_item_past_the_value() {
        let bytes = bytes_of(&Value::List(vec![Value::Leaf(Leaf::None)]));
        let mut parser = Parser::new(&bytes);
        assert_eq!(parser.visit(&mut Shallow), Ok(Some(Container::List)));
        assert_eq!(parser.visit(&mut Shallow), Ok(None));
        assert_eq!(parser.visit(&mut Shallow), Err(DecodeError::Exhausted));
        assert_eq!(parser.finish(), Ok(()));
        // A visitor that reads too few elements leaves the value unfinished.
        let mut parser = Parser::new(&bytes);
        assert_eq!(parser.visit(&mut Shallow), Ok(Some(Container::List)));
        assert_eq!(parser.finish(), Err(DecodeError::Truncated));
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
        for _ in 0..300_000 {
            let len = (xorshift(&mut seed) % 24) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut seed) as u8).collect();
            // Bias toward plausible shapes: real tags, small lengths.
            for (i, b) in bytes.iter_mut().enumerate() {
                match xorshift(&mut seed) % 4 {
                    0 if i == 0 => *b %= 0x1A,
                    1 => *b %= 0x1A,
                    2 => *b %= 3,
                    _ => {}
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
}
