//! Structured values through the codec: a value generated from the input (every tag, valid
//! by construction: real dates, canonical big ints and decimals, hashable set elements and
//! dict keys, at most MAX_DEPTH deep) encodes, decodes to a structurally equal value (floats
//! by bit pattern), and re-encodes to the same bytes; no proper prefix of the encoding
//! decodes.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use warp_cache::codec::{
    decode, encode, Clock, Date, DateTime, Leaf, Time, TimeDelta, Tz, Uuid, UuidSafety, Value,
    MAX_DEPTH,
};

/// Microseconds in a day: a timezone offset lies strictly within one.
const DAY_US: i64 = 86_400_000_000;

/// How many elements a generated container gets at most (the input bounds the total).
const MAX_WIDTH: usize = 6;

/// Generated big ints and decimals, made before the value (which borrows them).
struct Pool {
    big_ints: Vec<Vec<u8>>,
    decimals: Vec<String>,
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(pool) = pool(&mut u) else {
        return;
    };
    let Ok(value) = top_value(&mut u, &pool) else {
        return;
    };
    let mut bytes = Vec::new();
    encode(&value, &mut bytes);
    let back = decode(&bytes).unwrap_or_else(|e| panic!("{value:?} does not decode: {e}"));
    assert_eq!(back, value, "decoded differently from {bytes:?}");
    let mut again = Vec::with_capacity(bytes.len());
    encode(&back, &mut again);
    assert_eq!(again, bytes, "re-encodes differently");
    // A few proper prefixes (all of them would be quadratic in the size).
    for cut in [0, bytes.len() / 2, bytes.len().saturating_sub(1)] {
        if cut < bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "a prefix of {cut} bytes decodes");
        }
    }
});

fn pool(u: &mut Unstructured<'_>) -> Result<Pool> {
    let big_ints = (0..u.int_in_range(0..=3)?)
        .map(|_| big_int(u))
        .collect::<Result<_>>()?;
    let decimals = (0..u.int_in_range(0..=3)?)
        .map(|_| decimal(u))
        .collect::<Result<_>>()?;
    Ok(Pool { big_ints, decimals })
}

fn top_value<'a>(u: &mut Unstructured<'a>, pool: &'a Pool) -> Result<Value<'a>> {
    if u.ratio(1, 16)? {
        return Ok(Value::Pickle(u.arbitrary()?));
    }
    value(u, pool, 0, false)
}

/// A value nested in `depth` containers; `hashable`: a set element or dict key (or inside
/// one), so no list, dict, set, bytearray or signalling NaN.
fn value<'a>(
    u: &mut Unstructured<'a>,
    pool: &'a Pool,
    depth: usize,
    hashable: bool,
) -> Result<Value<'a>> {
    // Kinds 0..=13 are leaves; an exhausted input picks 0 (None), so generation ends.
    let kind = u.int_in_range(0..=18u8)?;
    let container = depth < MAX_DEPTH;
    let width = |u: &mut Unstructured<'a>| u.int_in_range(0..=MAX_WIDTH);
    Ok(match kind {
        14 if container => {
            let n = width(u)?;
            Value::Tuple(elements(u, pool, n, depth, hashable)?)
        }
        15 if container && !hashable => {
            let n = width(u)?;
            Value::List(elements(u, pool, n, depth, false)?)
        }
        16 if container && !hashable => {
            let n = width(u)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                pairs.push((
                    value(u, pool, depth + 1, true)?,
                    value(u, pool, depth + 1, false)?,
                ));
            }
            Value::Dict(pairs)
        }
        17 if container && !hashable => {
            let n = width(u)?;
            Value::Set(elements(u, pool, n, depth, true)?)
        }
        18 if container => {
            let n = width(u)?;
            Value::FrozenSet(elements(u, pool, n, depth, true)?)
        }
        _ => Value::Leaf(leaf(u, pool, kind, hashable)?),
    })
}

fn elements<'a>(
    u: &mut Unstructured<'a>,
    pool: &'a Pool,
    n: usize,
    depth: usize,
    hashable: bool,
) -> Result<Vec<Value<'a>>> {
    (0..n).map(|_| value(u, pool, depth + 1, hashable)).collect()
}

fn leaf<'a>(
    u: &mut Unstructured<'a>,
    pool: &'a Pool,
    kind: u8,
    hashable: bool,
) -> Result<Leaf<'a>> {
    Ok(match kind {
        1 => Leaf::Bool(u.arbitrary()?),
        2 => Leaf::Int(small_or_any(u)?),
        3 if !pool.big_ints.is_empty() => Leaf::BigInt(u.choose(&pool.big_ints)?),
        4 => Leaf::Float(f64::from_bits(u.arbitrary()?)),
        5 => Leaf::Str(u.arbitrary()?),
        6 => Leaf::Bytes(u.arbitrary()?),
        7 if !hashable => Leaf::ByteArray(u.arbitrary()?),
        8 => Leaf::Date(date(u)?),
        9 => Leaf::Time(Time {
            clock: clock(u)?,
            tz: tz(u)?,
        }),
        10 => Leaf::DateTime(DateTime {
            date: date(u)?,
            clock: clock(u)?,
            tz: tz(u)?,
        }),
        11 => Leaf::TimeDelta(TimeDelta {
            days: u.int_in_range(-999_999_999..=999_999_999)?,
            seconds: u.int_in_range(0..=86_399)?,
            microseconds: u.int_in_range(0..=999_999)?,
        }),
        12 => {
            // A signalling NaN cannot be hashed: only elsewhere.
            let usable: Vec<&String> = (pool.decimals.iter())
                .filter(|d| !hashable || !d.trim_start_matches('-').starts_with("sNaN"))
                .collect();
            match usable.is_empty() {
                true => Leaf::None,
                false => Leaf::Decimal(u.choose(&usable)?),
            }
        }
        13 => Leaf::Uuid(Uuid {
            int: u.arbitrary()?,
            safety: *u.choose(&[UuidSafety::Unknown, UuidSafety::Safe, UuidSafety::Unsafe])?,
        }),
        _ => Leaf::None,
    })
}

/// Mostly ints near the narrow forms' edges, sometimes any `i64`.
fn small_or_any(u: &mut Unstructured<'_>) -> Result<i64> {
    let edges = [0, 127, -128, 128, -129, 32_767, -32_768, 32_768, i32::MAX as i64 + 1];
    if u.ratio(1, 3)? {
        Ok(*u.choose(&edges)? + i64::from(u.int_in_range(-2..=2i8)?))
    } else {
        u.arbitrary()
    }
}

/// An int outside `i64`, canonical: 9 to 24 bytes, the top one neither `0x00` nor `0xFF`
/// (so it is needed whatever the sign).
fn big_int(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let len = u.int_in_range(9..=24)?;
    let mut bytes = u.bytes(len - 1)?.to_vec();
    bytes.push(u.int_in_range(1..=0xFEu8)?);
    Ok(bytes)
}

fn date(u: &mut Unstructured<'_>) -> Result<Date> {
    let date = Date {
        year: u.int_in_range(1..=9999)?,
        month: u.int_in_range(1..=12)?,
        day: u.int_in_range(1..=31)?,
    };
    Ok(if date.is_valid() {
        date
    } else {
        Date { day: 28, ..date }
    })
}

fn clock(u: &mut Unstructured<'_>) -> Result<Clock> {
    Ok(Clock {
        hour: u.int_in_range(0..=23)?,
        minute: u.int_in_range(0..=59)?,
        second: u.int_in_range(0..=59)?,
        microsecond: u.int_in_range(0..=999_999)?,
        fold: u.int_in_range(0..=1)?,
    })
}

fn tz<'a>(u: &mut Unstructured<'a>) -> Result<Tz<'a>> {
    Ok(match u.int_in_range(0..=2u8)? {
        0 => Tz::Naive,
        kind => Tz::Fixed {
            offset_us: u.int_in_range(-(DAY_US - 1)..=DAY_US - 1)?,
            name: if kind == 2 { Some(u.arbitrary()?) } else { None },
        },
    })
}

/// A decimal as `str(Decimal)` prints it, rendered here by `to_sci_string`'s rules
/// (independently of the codec's check, which must accept it).
fn decimal(u: &mut Unstructured<'_>) -> Result<String> {
    let sign = if u.arbitrary()? { "-" } else { "" };
    let digits = |u: &mut Unstructured<'_>, n: usize| -> Result<String> {
        (0..n)
            .map(|_| Ok(char::from(b'0' + u.int_in_range(0..=9u8)?)))
            .collect()
    };
    let body = match u.int_in_range(0..=5u8)? {
        0 => "Infinity".to_owned(),
        kind @ (1 | 2) => {
            let n = u.int_in_range(0..=5)?;
            let payload = digits(u, n)?.trim_start_matches('0').to_owned();
            format!("{}NaN{payload}", if kind == 2 { "s" } else { "" })
        }
        _ => {
            let n = u.int_in_range(1..=30)?;
            let raw = digits(u, n)?;
            let trimmed = raw.trim_start_matches('0');
            let coefficient = if trimmed.is_empty() { "0" } else { trimmed };
            let exponent: i64 = if u.ratio(1, 8)? {
                *u.choose(&[999_999_999_999_999_999, -999_999_999_999_999_999])?
            } else {
                u.int_in_range(-40..=40)?
            };
            sci_string(coefficient, exponent)
        }
    };
    Ok(format!("{sign}{body}"))
}

/// `Decimal.__str__` of a finite coefficient and exponent (the General Decimal Arithmetic
/// specification's to-scientific-string).
fn sci_string(coefficient: &str, exponent: i64) -> String {
    let adjusted = exponent + coefficient.len() as i64 - 1;
    if exponent <= 0 && adjusted >= -6 {
        let point = coefficient.len() as i64 + exponent;
        if exponent == 0 {
            coefficient.to_owned()
        } else if point > 0 {
            format!("{}.{}", &coefficient[..point as usize], &coefficient[point as usize..])
        } else {
            format!("0.{}{coefficient}", "0".repeat((-point) as usize))
        }
    } else {
        let rest = &coefficient[1..];
        let point = if rest.is_empty() { "" } else { "." };
        format!("{}{point}{rest}E{adjusted:+}", &coefficient[..1])
    }
}
