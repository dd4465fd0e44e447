//! The items that hold no other items ([`Leaf`]), and the rules their fields obey.
//!
//! The rules are those of the Python types: a [`Date`] is a real calendar date, a
//! [`Clock`] a time of day, a [`Tz`] offset lies strictly within a day, a decimal literal
//! is what `str(Decimal)` prints. The parser rejects anything outside them, so the Python
//! layer builds objects only from fields their constructors accept.

/// A value holding no other value.
#[derive(Clone, Copy, Debug)]
pub enum Leaf<'a> {
    /// `None`.
    None,
    /// `bool` (kept apart from `int`).
    Bool(bool),
    /// `int` that fits an `i64`.
    Int(i64),
    /// `int` outside `i64`: little-endian two's complement in the fewest bytes
    /// ([`big_int_is_canonical`]).
    BigInt(&'a [u8]),
    /// `float`; the bit pattern survives (-0.0, NaN payloads).
    Float(f64),
    /// `str`.
    Str(&'a str),
    /// `bytes`.
    Bytes(&'a [u8]),
    /// `bytearray`.
    ByteArray(&'a [u8]),
    /// `datetime.date`.
    Date(Date),
    /// `datetime.time`.
    Time(Time<'a>),
    /// `datetime.datetime`.
    DateTime(DateTime<'a>),
    /// `datetime.timedelta`.
    TimeDelta(TimeDelta),
    /// `decimal.Decimal`, as `str()` prints it with an upper-case exponent
    /// ([`decimal_is_canonical`]).
    Decimal(&'a str),
    /// `uuid.UUID`.
    Uuid(Uuid),
}

/// Structural equality: floats compare by bit pattern, so NaN equals itself and -0.0
/// differs from 0.0 (what an exact round trip must keep).
impl PartialEq for Leaf<'_> {
    fn eq(&self, other: &Self) -> bool {
        use Leaf::*;
        match (self, other) {
            (None, None) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (BigInt(a), BigInt(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Str(a), Str(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (ByteArray(a), ByteArray(b)) => a == b,
            (Date(a), Date(b)) => a == b,
            (Time(a), Time(b)) => a == b,
            (DateTime(a), DateTime(b)) => a == b,
            (TimeDelta(a), TimeDelta(b)) => a == b,
            (Decimal(a), Decimal(b)) => a == b,
            (Uuid(a), Uuid(b)) => a == b,
            _ => false,
        }
    }
}

impl Leaf<'_> {
    /// Whether a Python object of this kind can be hashed (a set element or dict key).
    /// `Decimal('sNaN')` cannot: hashing a signalling NaN raises.
    pub fn is_hashable(&self) -> bool {
        match self {
            Leaf::ByteArray(_) => false,
            Leaf::Decimal(text) => !text.trim_start_matches('-').starts_with("sNaN"),
            _ => true,
        }
    }
}

/// A calendar date (`datetime.date`, or a datetime's date).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date {
    /// 1..=9999.
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=the month's length.
    pub day: u8,
}

impl Date {
    /// Whether this is a date `datetime.date` accepts.
    pub fn is_valid(&self) -> bool {
        (1..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A time of day (a `datetime.time` or a datetime's time, without the tz).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
    /// 0..=999_999.
    pub microsecond: u32,
    /// Which of two repeated wall times (PEP 495): 0 or 1.
    pub fold: u8,
}

impl Clock {
    /// Whether `datetime.time` accepts these fields.
    pub fn is_valid(&self) -> bool {
        self.hour < 24
            && self.minute < 60
            && self.second < 60
            && self.microsecond < 1_000_000
            && self.fold <= 1
    }
}

/// A datetime's or time's `tzinfo`: none, or a fixed-offset `datetime.timezone`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tz<'a> {
    /// Naive (`tzinfo is None`).
    Naive,
    /// `datetime.timezone(timedelta(microseconds=offset_us)[, name])`. The offset 0 without
    /// a name is `timezone.utc`, the singleton Python returns for it.
    Fixed {
        /// The UTC offset in microseconds, strictly within a day.
        offset_us: i64,
        /// The name given to the constructor, if one was.
        name: Option<&'a str>,
    },
}

/// Microseconds in a day: a timezone offset lies strictly within one.
pub(super) const DAY_US: i64 = 86_400_000_000;

impl Tz<'_> {
    /// Whether `datetime.timezone` accepts this offset.
    pub fn is_valid(&self) -> bool {
        match self {
            Tz::Naive => true,
            Tz::Fixed { offset_us, .. } => offset_us.unsigned_abs() < DAY_US.unsigned_abs(),
        }
    }
}

/// `datetime.time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time<'a> {
    /// The time of day.
    pub clock: Clock,
    /// Its tzinfo.
    pub tz: Tz<'a>,
}

/// `datetime.datetime`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime<'a> {
    /// The date.
    pub date: Date,
    /// The time of day.
    pub clock: Clock,
    /// Its tzinfo.
    pub tz: Tz<'a>,
}

/// `datetime.timedelta`, in the normalized fields Python keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeDelta {
    /// -999_999_999..=999_999_999.
    pub days: i32,
    /// 0..86_400.
    pub seconds: u32,
    /// 0..1_000_000.
    pub microseconds: u32,
}

impl TimeDelta {
    /// Whether these are a normalized timedelta's fields.
    pub fn is_valid(&self) -> bool {
        self.days.unsigned_abs() <= 999_999_999
            && self.seconds < 86_400
            && self.microseconds < 1_000_000
    }
}

/// `uuid.UUID`: its 128-bit `int` and its `is_safe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uuid {
    /// `UUID.int`.
    pub int: u128,
    /// `UUID.is_safe`.
    pub safety: UuidSafety,
}

/// `uuid.SafeUUID`: whether the UUID was generated in a multiprocessing-safe way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UuidSafety {
    /// `SafeUUID.unknown` (byte 0).
    Unknown,
    /// `SafeUUID.safe` (byte 1).
    Safe,
    /// `SafeUUID.unsafe` (byte 2).
    Unsafe,
}

/// Whether `bytes` are all ASCII: eight at a time, then the rest. For the short strings of
/// cached values (names, keys of a few bytes) this is several times faster than the
/// standard library's `is_ascii`, whose alignment handling dominates at these lengths.
#[inline(always)]
pub fn is_ascii(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut high = 0u64;
    for w in &mut words {
        high |= u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    }
    for &byte in words.remainder() {
        high |= u64::from(byte);
    }
    high & 0x8080_8080_8080_8080 == 0
}

/// Whether `bytes` are an int outside `i64` in the form the format stores it: little-endian
/// two's complement, no redundant sign byte at the top. Such ints take at least 9 bytes.
pub fn big_int_is_canonical(bytes: &[u8]) -> bool {
    bytes.len() > 8 && trim_big_int(bytes).len() == bytes.len()
}

/// The shortest prefix of a little-endian two's complement int that still holds its value:
/// the top bytes that only repeat the sign are dropped.
pub fn trim_big_int(bytes: &[u8]) -> &[u8] {
    let mut len = bytes.len();
    while len > 1 {
        let (top, below) = (bytes[len - 1], bytes[len - 2]);
        let redundant = (top == 0x00 && below & 0x80 == 0) || (top == 0xFF && below & 0x80 != 0);
        if !redundant {
            break;
        }
        len -= 1;
    }
    &bytes[..len]
}

/// Whether `text` is exactly what `str(Decimal)` prints for some decimal (with an
/// upper-case exponent): an optional `-`, then `Infinity`, `NaN` or `sNaN` with an optional
/// payload (no leading zero), or a finite number spelled as `to_sci_string` spells it.
/// Whatever passes, `decimal.Decimal(text)` accepts and prints back the same.
pub fn decimal_is_canonical(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    if body == "Infinity" {
        return true;
    }
    if let Some(payload) = body
        .strip_prefix("sNaN")
        .or_else(|| body.strip_prefix("NaN"))
    {
        return payload.bytes().all(|b| b.is_ascii_digit()) && !payload.starts_with('0');
    }
    finite_decimal(body)
        .is_some_and(|(coefficient, exponent)| sci_string_matches(&coefficient, exponent, body))
}

/// The coefficient's digits (no leading zeros; `"0"` for zero) and the exponent of a
/// finite literal `digits[.digits][E(+|-)digits]`, or `None` if it is not one.
fn finite_decimal(body: &str) -> Option<(String, i64)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (mantissa, exponent) = match body.split_once('E') {
        Some((m, e)) => {
            let (negative, magnitude) = match e.as_bytes().first()? {
                b'+' => (false, &e[1..]),
                b'-' => (true, &e[1..]),
                _ => return None,
            };
            // Python's decimals keep exponents within 19 digits (and an i64); no others are ours.
            if !digits(magnitude) || magnitude.len() > 19 {
                return None;
            }
            let value: i64 = magnitude.parse().ok()?;
            (m, if negative { -value } else { value })
        }
        None => (body, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) || mantissa.ends_with('.') {
        return None;
    }
    let all: String = [whole, fraction].concat();
    let trimmed = all.trim_start_matches('0');
    let coefficient = if trimmed.is_empty() { "0" } else { trimmed };
    let exponent = exponent.checked_sub(i64::try_from(fraction.len()).ok()?)?;
    Some((coefficient.to_owned(), exponent))
}

/// Whether `body` is how `Decimal.__str__` (`to_sci_string`) prints the coefficient and
/// exponent: plain notation when the exponent is at most 0 and the adjusted exponent at
/// least -6, else one digit, the rest after a point, and `E` with the signed adjusted exponent.
fn sci_string_matches(coefficient: &str, exponent: i64, body: &str) -> bool {
    let Some(adjusted) = i64::try_from(coefficient.len())
        .ok()
        .and_then(|n| exponent.checked_add(n - 1))
    else {
        return false;
    };
    let printed = if exponent <= 0 && adjusted >= -6 {
        // The point goes `-exponent` digits from the right (left of every digit: zeros first).
        let point = coefficient.len() as i64 + exponent;
        if exponent == 0 {
            coefficient.to_owned()
        } else if point > 0 {
            let (a, b) = coefficient.split_at(point as usize);
            format!("{a}.{b}")
        } else {
            format!(
                "0.{}{coefficient}",
                "0".repeat(point.unsigned_abs() as usize)
            )
        }
    } else {
        let (first, rest) = coefficient.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        let sign = if adjusted >= 0 { '+' } else { '-' };
        format!("{first}{point}{rest}E{sign}{}", adjusted.unsigned_abs())
    };
    printed == body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_follow_the_calendar() {
        let d = |year, month, day| Date { year, month, day }.is_valid();
        assert!(d(2024, 2, 29) && d(2000, 2, 29) && d(1, 1, 1) && d(9999, 12, 31));
        assert!(!d(2023, 2, 29) && !d(1900, 2, 29) && !d(0, 1, 1) && !d(10000, 1, 1));
        assert!(!d(2024, 4, 31) && !d(2024, 13, 1) && !d(2024, 0, 1) && !d(2024, 1, 0));
    }

    #[test]
    fn big_ints_are_stored_in_the_fewest_bytes() {
        assert_eq!(trim_big_int(&[5, 0, 0]), &[5]);
        assert_eq!(trim_big_int(&[0x80, 0]), &[0x80, 0]);
        assert_eq!(trim_big_int(&[0x80, 0xFF, 0xFF]), &[0x80]);
        assert_eq!(trim_big_int(&[0x7F, 0xFF]), &[0x7F, 0xFF]);
        // 2**63: nine bytes, the top one a zero that keeps it positive.
        let two_63 = [0, 0, 0, 0, 0, 0, 0, 0x80, 0];
        assert!(big_int_is_canonical(&two_63));
        assert!(!big_int_is_canonical(&[0, 0, 0, 0, 0, 0, 0, 0x80])); // fits i64
        assert!(!big_int_is_canonical(&[1, 0, 0, 0, 0, 0, 0, 0, 0])); // 1, padded
        assert!(!big_int_is_canonical(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0]));
    }

    #[test]
    fn decimal_literals_are_what_str_prints() {
        // Each as `str(Decimal(...))` prints it (checked against CPython).
        for ok in [
            "0",
            "-0",
            "1.10",
            "123",
            "1E+2",
            "1.5E-7",
            "-0E+1",
            "Infinity",
            "-Infinity",
            "NaN",
            "-NaN",
            "NaN123",
            "sNaN",
            "-sNaN45",
            "0.000001",
            "0E-10",
            "1.00E+5",
            "1.23E-7",
            "0.0000012345",
            "0E+3",
            "0.000",
            "-0E-10",
            "1E+999999999999999999",
            "1E-7",
        ] {
            assert!(decimal_is_canonical(ok), "{ok}");
        }
        for bad in [
            "",
            "-",
            "1e+2",
            "1E2",
            "1E+",
            ".5",
            "5.",
            "1.2.3",
            "inf",
            "Inf",
            "nan",
            "NaN0",
            "NaN01",
            "01",
            "1E+02",
            "+1",
            "--1",
            "1 ",
            "١",
            "Infinity1",
            "sNaNx",
            "1E+0",
            "1E0",
            "0.0000001",
            "123E-9",
            "12E+1",
            "0E+0",
            "1E+10000000000000000000",
        ] {
            assert!(!decimal_is_canonical(bad), "{bad}");
        }
    }

    #[test]
    fn is_ascii_agrees_with_the_standard_library() {
        let mut bytes = *b"abcdefghijklmnopqrstuvwxyz0123456789";
        for len in 0..bytes.len() {
            for at in 0..len {
                assert!(is_ascii(&bytes[..len]));
                bytes[at] |= 0x80;
                assert!(!is_ascii(&bytes[..len]), "{len} {at}");
                bytes[at] &= 0x7F;
            }
        }
    }

    #[test]
    fn float_leaves_compare_by_bits() {
        assert_eq!(Leaf::Float(f64::NAN), Leaf::Float(f64::NAN));
        assert_ne!(Leaf::Float(0.0), Leaf::Float(-0.0));
        assert_ne!(Leaf::Int(1), Leaf::Bool(true));
    }
}
