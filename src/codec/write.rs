//! Writing items: [`put`] appends one [`Item`] in the form its position asks for. Both
//! encoders use it: [`super::encode`] for a [`super::Value`] tree, and the Python layer,
//! which walks Python objects and puts each as it goes (no tree in between).

use super::{tag, Clock, Container, Date, Form, Item, Leaf, Tz, UuidSafety};
use crate::inline_buf::ByteSink;

/// Appends `item` as it is written in `form`. A container's elements are not part of its
/// item: the caller puts them next, each in [`Form::Nested`].
///
/// The item must be one the parser could hand out (a real date, a canonical big int or
/// decimal, pickle at the top level only): anything else is written as given and fails to
/// decode.
///
/// # Panics
/// If a length or count exceeds `u32::MAX`: the shared store caps sizes far lower, so the
/// callers check lengths before encoding such a value.
#[inline(always)]
pub fn put(item: &Item<'_>, form: Form, out: &mut (impl ByteSink + ?Sized)) {
    match *item {
        Item::Leaf(ref leaf) => put_leaf(leaf, form, out),
        Item::Open(container, count) => {
            out.push(match container {
                Container::Tuple => tag::TUPLE,
                Container::List => tag::LIST,
                Container::Dict => tag::DICT,
                Container::Set => tag::SET,
                Container::FrozenSet => tag::FROZENSET,
            });
            push_u32(count, out);
        }
        Item::Pickle(data) => {
            debug_assert_eq!(form, Form::Top, "pickle is only ever a whole value");
            push_body32(tag::PICKLE, data, out);
        }
    }
}

/// The common leaves inline (in the encoders' loops), the rest out of line.
#[inline(always)]
fn put_leaf(leaf: &Leaf<'_>, form: Form, out: &mut (impl ByteSink + ?Sized)) {
    let nested = form == Form::Nested;
    match *leaf {
        Leaf::None => out.push(tag::NONE),
        Leaf::Bool(false) => out.push(tag::FALSE),
        Leaf::Bool(true) => out.push(tag::TRUE),
        Leaf::Int(n) => put_int(n, nested, out),
        Leaf::Float(x) => {
            let [a, b, c, d, e, f, g, h] = x.to_bits().to_le_bytes();
            out.extend_from_slice(&[tag::FLOAT, a, b, c, d, e, f, g, h]);
        }
        Leaf::Str(text) => push_sized(tag::STR8, tag::STR, text.as_bytes(), nested, out),
        Leaf::Bytes(data) => push_sized(tag::BYTES8, tag::BYTES, data, nested, out),
        _ => put_rare_leaf(leaf, form, out),
    }
}

/// The rarer leaves (whose width never depends on the form): out of the encoders' loops.
#[inline(never)]
fn put_rare_leaf(leaf: &Leaf<'_>, form: Form, out: &mut (impl ByteSink + ?Sized)) {
    match *leaf {
        Leaf::None
        | Leaf::Bool(_)
        | Leaf::Int(_)
        | Leaf::Float(_)
        | Leaf::Str(_)
        | Leaf::Bytes(_) => put_leaf(leaf, form, out),
        Leaf::BigInt(data) => push_body32(tag::BIG_INT, data, out),
        Leaf::ByteArray(data) => push_body32(tag::BYTEARRAY, data, out),
        Leaf::Date(date) => {
            out.push(tag::DATE);
            push_date(&date, out);
        }
        Leaf::Time(time) => {
            out.push(tag::TIME);
            push_clock(&time.clock, out);
            push_tz(&time.tz, out);
        }
        Leaf::DateTime(datetime) => {
            out.push(tag::DATETIME);
            push_date(&datetime.date, out);
            push_clock(&datetime.clock, out);
            push_tz(&datetime.tz, out);
        }
        Leaf::TimeDelta(delta) => {
            out.push(tag::TIMEDELTA);
            out.extend_from_slice(&delta.days.to_le_bytes());
            out.extend_from_slice(&delta.seconds.to_le_bytes());
            out.extend_from_slice(&delta.microseconds.to_le_bytes());
        }
        Leaf::Decimal(text) => push_body32(tag::DECIMAL, text.as_bytes(), out),
        Leaf::Uuid(uuid) => {
            out.push(tag::UUID);
            out.extend_from_slice(&uuid.int.to_le_bytes());
            out.push(match uuid.safety {
                UuidSafety::Unknown => 0,
                UuidSafety::Safe => 1,
                UuidSafety::Unsafe => 2,
            });
        }
    }
}

/// An int: 8 bytes at the top level, else the narrowest of 1, 2, 4 and 8.
#[inline(always)]
fn put_int(n: i64, nested: bool, out: &mut (impl ByteSink + ?Sized)) {
    if nested {
        if let Ok(n) = i8::try_from(n) {
            out.extend_from_slice(&[tag::INT8, n as u8]);
            return;
        }
        if let Ok(n) = i16::try_from(n) {
            let [a, b] = n.to_le_bytes();
            out.extend_from_slice(&[tag::INT16, a, b]);
            return;
        }
        if let Ok(n) = i32::try_from(n) {
            let [a, b, c, d] = n.to_le_bytes();
            out.extend_from_slice(&[tag::INT32, a, b, c, d]);
            return;
        }
    }
    let [a, b, c, d, e, f, g, h] = n.to_le_bytes();
    out.extend_from_slice(&[tag::INT, a, b, c, d, e, f, g, h]);
}

/// A str or bytes body: a `u8` length when nested and short enough, else a `u32` one.
#[inline(always)]
fn push_sized(narrow: u8, wide: u8, body: &[u8], nested: bool, out: &mut (impl ByteSink + ?Sized)) {
    if nested && body.len() < 256 {
        out.extend_from_slice(&[narrow, body.len() as u8]);
        out.extend_from_slice(body);
    } else {
        push_body32(wide, body, out);
    }
}

fn push_body32(tag: u8, body: &[u8], out: &mut (impl ByteSink + ?Sized)) {
    out.push(tag);
    push_u32(body.len(), out);
    out.extend_from_slice(body);
}

#[inline(always)]
fn push_u32(len: usize, out: &mut (impl ByteSink + ?Sized)) {
    let len = u32::try_from(len).expect("encoded lengths fit in u32 (callers cap sizes)");
    out.extend_from_slice(&len.to_le_bytes());
}

fn push_date(date: &Date, out: &mut (impl ByteSink + ?Sized)) {
    let [y0, y1] = date.year.to_le_bytes();
    out.extend_from_slice(&[y0, y1, date.month, date.day]);
}

fn push_clock(clock: &Clock, out: &mut (impl ByteSink + ?Sized)) {
    out.extend_from_slice(&[clock.hour, clock.minute, clock.second, clock.fold]);
    out.extend_from_slice(&clock.microsecond.to_le_bytes());
}

fn push_tz(tz: &Tz<'_>, out: &mut (impl ByteSink + ?Sized)) {
    match *tz {
        Tz::Naive => out.push(0),
        Tz::Fixed { offset_us, name } => {
            out.push(if name.is_some() { 2 } else { 1 });
            out.extend_from_slice(&offset_us.to_le_bytes());
            if let Some(name) = name {
                push_u32(name.len(), out);
                out.extend_from_slice(name.as_bytes());
            }
        }
    }
}
