//! AMF0 values, as carried by RTMP command messages (type 20) and data messages (type 18),
//! and, behind the AVM+ switch marker, by their AMF3 variants (types 17 and 15).
//!
//! [`Value::decode`] reads one value from the front of a [`Bytes`]; [`decode_all`] reads
//! values until the buffer is empty (a command body is a sequence of values: name,
//! transaction id, command object, arguments). [`Value::encode`] writes one value and
//! [`Value::encoded_len`] says how many bytes that takes. Encoding only ever emits AMF0.
//!
//! The decoder is written for peer input: it never panics, it bounds nesting by
//! [`MAX_DEPTH`], it never preallocates from a count on the wire beyond what the remaining
//! bytes could hold, and it decodes invalid UTF-8 lossily rather than failing (interop
//! first). AMF3 values reached through the switch marker (0x11) are converted into the
//! equivalent AMF0 [`Value`]; AMF3 references are resolved by copying, and the total
//! amount copied is bounded by a multiple of the input length, so reference tricks cannot
//! blow up memory.
//!
//! Spec: "Action Message Format -- AMF 0" (Adobe, 2006) and "Action Message Format --
//! AMF 3" (Adobe, 2013).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// How deeply containers (objects, ECMA arrays, strict arrays, typed objects, and AMF3
/// arrays and objects) may nest. A top-level container is at depth 0; a container at depth
/// `MAX_DEPTH` is refused with [`Error::TooDeep`].
pub const MAX_DEPTH: usize = 64;

/// How many values one decode call ([`Value::decode`], [`decode_all`],
/// [`decode_amf3_command`]) may produce, counting every element of every container. A value
/// costs tens of bytes of memory for as little as one byte of input (a null in a strict
/// array), so the count bounds what one message can make the decoder hold. Metadata with a
/// keyframe index of an hour of video needs a few thousand.
pub const MAX_VALUES: usize = 16 * 1024;

/// AMF0 type markers (AMF0 spec 2.1).
mod marker {
    pub(super) const NUMBER: u8 = 0x00;
    pub(super) const BOOLEAN: u8 = 0x01;
    pub(super) const STRING: u8 = 0x02;
    pub(super) const OBJECT: u8 = 0x03;
    pub(super) const MOVIECLIP: u8 = 0x04;
    pub(super) const NULL: u8 = 0x05;
    pub(super) const UNDEFINED: u8 = 0x06;
    pub(super) const REFERENCE: u8 = 0x07;
    pub(super) const ECMA_ARRAY: u8 = 0x08;
    pub(super) const OBJECT_END: u8 = 0x09;
    pub(super) const STRICT_ARRAY: u8 = 0x0A;
    pub(super) const DATE: u8 = 0x0B;
    pub(super) const LONG_STRING: u8 = 0x0C;
    pub(super) const UNSUPPORTED: u8 = 0x0D;
    pub(super) const RECORDSET: u8 = 0x0E;
    pub(super) const XML_DOCUMENT: u8 = 0x0F;
    pub(super) const TYPED_OBJECT: u8 = 0x10;
    pub(super) const AVMPLUS: u8 = 0x11;
}

/// An AMF0 value. Object-like values keep key order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number (marker 0x00): an IEEE 754 double.
    Number(f64),
    /// A boolean (marker 0x01).
    Boolean(bool),
    /// A string of at most 65535 UTF-8 bytes (marker 0x02). Longer strings are encoded as
    /// long strings (marker 0x0C), so they decode as [`Value::LongString`].
    String(String),
    /// An anonymous object (marker 0x03): properties in wire order.
    Object(Vec<(String, Value)>),
    /// Null (marker 0x05).
    Null,
    /// Undefined (marker 0x06). The "unsupported" marker (0x0D) also decodes to this.
    Undefined,
    /// A reference to an earlier complex value by its index (marker 0x07). The decoder keeps
    /// it as is and does not resolve it.
    Reference(u16),
    /// An ECMA (associative) array (marker 0x08): properties in wire order. The count on the
    /// wire is a hint only and is written as the number of properties.
    EcmaArray(Vec<(String, Value)>),
    /// A strict (dense) array (marker 0x0A).
    StrictArray(Vec<Value>),
    /// A date (marker 0x0B).
    Date {
        /// Milliseconds since the Unix epoch, UTC.
        millis: f64,
        /// Time-zone offset in minutes; the spec reserves it and writers send 0.
        timezone: i16,
    },
    /// A string of up to 2^32 - 1 UTF-8 bytes (marker 0x0C). Always encoded with marker 0x0C,
    /// even when short, so it round-trips.
    LongString(String),
    /// An XML document, as text (marker 0x0F).
    Xml(String),
    /// An object with a registered class name (marker 0x10).
    TypedObject {
        /// The class name the object was registered under.
        class: String,
        /// Properties in wire order.
        properties: Vec<(String, Value)>,
    },
}

/// Why a buffer could not be decoded as AMF.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum Error {
    /// The input ended in the middle of a value.
    #[error("AMF input truncated: needed {needed} bytes, only {remaining} remain")]
    Truncated {
        /// Bytes the next field needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// An AMF0 type marker outside the spec.
    #[error("unknown AMF0 type marker {0:#04x}")]
    UnknownMarker(u8),
    /// An AMF0 type marker from the spec that cannot appear here or is not supported
    /// (movieclip, recordset, an object-end marker where a value belongs).
    #[error("unsupported AMF0 type marker {marker:#04x} ({name})")]
    UnsupportedMarker {
        /// The marker byte.
        marker: u8,
        /// What the marker stands for.
        name: &'static str,
    },
    /// Containers nest deeper than [`MAX_DEPTH`].
    #[error("AMF value nested deeper than {max} levels")]
    TooDeep {
        /// The bound that was hit ([`MAX_DEPTH`]).
        max: usize,
    },
    /// One decode call would produce more than [`MAX_VALUES`] values.
    #[error("AMF input holds more than {max} values")]
    TooManyValues {
        /// The bound that was hit ([`MAX_VALUES`]).
        max: usize,
    },
    /// A count on the wire promises more elements than the remaining bytes could hold.
    #[error("{what} declares {declared} elements but only {remaining} bytes remain")]
    TooLarge {
        /// What carried the count.
        what: &'static str,
        /// The count on the wire.
        declared: u64,
        /// Bytes that were left.
        remaining: usize,
    },
    /// Resolving AMF3 references would copy more than the bound allowed for this input.
    #[error("AMF3 references expand past the limit of {limit} bytes for this input")]
    ExpansionLimit {
        /// The bound, in approximate bytes of decoded values.
        limit: usize,
    },
    /// An AMF3 reference points past the end of its reference table.
    #[error("AMF3 {table} reference {index} is out of range")]
    BadReference {
        /// Which table: "string", "object" or "traits".
        table: &'static str,
        /// The index on the wire.
        index: u32,
    },
    /// An AMF3 type marker outside the spec.
    #[error("unknown AMF3 type marker {0:#04x}")]
    Amf3UnknownMarker(u8),
    /// An AMF3 construct this decoder does not turn into an AMF0 value.
    #[error("AMF3: {0}")]
    Amf3(&'static str),
}

impl Value {
    /// Decodes one value from the front of `buf`, advancing it past the bytes consumed.
    ///
    /// A value behind the AVM+ switch marker (0x11) is decoded as AMF3 and converted (see
    /// the module docs). On error, `buf` may have been advanced by any amount.
    pub fn decode(buf: &mut Bytes) -> Result<Value, Error> {
        let mut limits = Limits::for_input(buf.len());
        decode_value(buf, &mut limits, 0)
    }

    /// Appends the AMF0 encoding of this value to `out`.
    ///
    /// A [`Value::String`] longer than 65535 bytes is written as a long string (marker
    /// 0x0C) so the output stays valid. Property keys and typed-object class names longer
    /// than 65535 bytes are truncated to the longest prefix that fits and ends on a char
    /// boundary (AMF0 gives them a 16-bit length); long strings and XML are truncated the
    /// same way at 2^32 - 1 bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        self.encode_into(out);
    }

    /// The number of bytes [`Value::encode`] writes for this value.
    pub fn encoded_len(&self) -> usize {
        match self {
            Value::Number(_) => 9,
            Value::Boolean(_) => 2,
            Value::String(s) => {
                if s.len() <= usize::from(u16::MAX) {
                    3 + s.len()
                } else {
                    5 + clamp_long(s).len()
                }
            }
            Value::Object(props) => 1 + props_len(props),
            Value::Null | Value::Undefined => 1,
            Value::Reference(_) => 3,
            Value::EcmaArray(props) => 5 + props_len(props),
            Value::StrictArray(items) => {
                5 + items
                    .iter()
                    .take(strict_count(items.len()))
                    .map(Value::encoded_len)
                    .sum::<usize>()
            }
            Value::Date { .. } => 11,
            Value::LongString(s) | Value::Xml(s) => 5 + clamp_long(s).len(),
            Value::TypedObject { class, properties } => {
                3 + clamp_short(class).len() + props_len(properties)
            }
        }
    }

    /// The text of a [`Value::String`] or [`Value::LongString`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The number in a [`Value::Number`].
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The flag in a [`Value::Boolean`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The value of the first property named `key` of an object, ECMA array or typed
    /// object; `None` for other values or when there is no such property.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(props)
            | Value::EcmaArray(props)
            | Value::TypedObject {
                properties: props, ..
            } => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Builds a [`Value::Object`] from `(key, value)` pairs, keeping their order.
    ///
    /// ```
    /// use ringcast::rtmp::amf0::Value;
    /// let v = Value::object([("level", Value::from("status")), ("code", "ok".into())]);
    /// assert_eq!(v.get("code").and_then(Value::as_str), Some("ok"));
    /// ```
    pub fn object<I, K>(props: I) -> Value
    where
        I: IntoIterator<Item = (K, Value)>,
        K: Into<String>,
    {
        Value::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    fn encode_into(&self, out: &mut BytesMut) {
        match self {
            Value::Number(n) => {
                out.put_u8(marker::NUMBER);
                out.put_f64(*n);
            }
            Value::Boolean(b) => {
                out.put_u8(marker::BOOLEAN);
                out.put_u8(u8::from(*b));
            }
            Value::String(s) => {
                if s.len() <= usize::from(u16::MAX) {
                    out.put_u8(marker::STRING);
                    put_short_str(s, out);
                } else {
                    out.put_u8(marker::LONG_STRING);
                    put_long_str(s, out);
                }
            }
            Value::Object(props) => {
                out.put_u8(marker::OBJECT);
                put_props(props, out);
            }
            Value::Null => out.put_u8(marker::NULL),
            Value::Undefined => out.put_u8(marker::UNDEFINED),
            Value::Reference(index) => {
                out.put_u8(marker::REFERENCE);
                out.put_u16(*index);
            }
            Value::EcmaArray(props) => {
                out.put_u8(marker::ECMA_ARRAY);
                out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
                put_props(props, out);
            }
            Value::StrictArray(items) => {
                let count = strict_count(items.len());
                out.put_u8(marker::STRICT_ARRAY);
                out.put_u32(u32::try_from(count).unwrap_or(u32::MAX));
                for item in items.iter().take(count) {
                    item.encode_into(out);
                }
            }
            Value::Date { millis, timezone } => {
                out.put_u8(marker::DATE);
                out.put_f64(*millis);
                out.put_i16(*timezone);
            }
            Value::LongString(s) => {
                out.put_u8(marker::LONG_STRING);
                put_long_str(s, out);
            }
            Value::Xml(s) => {
                out.put_u8(marker::XML_DOCUMENT);
                put_long_str(s, out);
            }
            Value::TypedObject { class, properties } => {
                out.put_u8(marker::TYPED_OBJECT);
                put_short_str(class, out);
                put_props(properties, out);
            }
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Number(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Boolean(b)
    }
}

/// Decodes values from `buf` until it is empty, as for the body of an AMF0 command (type
/// 20) or data message (type 18).
pub fn decode_all(buf: &mut Bytes) -> Result<Vec<Value>, Error> {
    // One expansion budget for the whole body, so many small AMF3 values cannot each
    // claim a budget sized for the whole input.
    let mut limits = Limits::for_input(buf.len());
    let mut values = Vec::new();
    while !buf.is_empty() {
        values.push(decode_value(buf, &mut limits, 0)?);
    }
    Ok(values)
}

/// Decodes the body of an AMF3 command message (type 17): an optional format byte 0x00,
/// then values as [`decode_all`] decodes them, some of which may be AMF3 values behind the
/// switch marker 0x11. If the first byte is not 0x00, decoding starts at the first byte.
pub fn decode_amf3_command(buf: &mut Bytes) -> Result<Vec<Value>, Error> {
    if buf.first() == Some(&0x00) {
        buf.advance(1);
    }
    decode_all(buf)
}

// ---------------------------------------------------------------------------------------
// Encoding helpers

/// The end of an object's properties: an empty key and the object-end marker (AMF0 2.11).
const OBJECT_END: [u8; 3] = [0x00, 0x00, marker::OBJECT_END];

/// The longest prefix of `s` that has at most `max` bytes and ends on a char boundary.
fn clamp_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn clamp_short(s: &str) -> &str {
    clamp_str(s, usize::from(u16::MAX))
}

fn clamp_long(s: &str) -> &str {
    clamp_str(s, usize::try_from(u32::MAX).unwrap_or(usize::MAX))
}

/// How many strict-array items fit the 32-bit count; the rest are not written.
fn strict_count(len: usize) -> usize {
    len.min(usize::try_from(u32::MAX).unwrap_or(usize::MAX))
}

fn put_short_str(s: &str, out: &mut BytesMut) {
    let s = clamp_short(s);
    out.put_u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
    out.put_slice(s.as_bytes());
}

fn put_long_str(s: &str, out: &mut BytesMut) {
    let s = clamp_long(s);
    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(s.as_bytes());
}

fn put_props(props: &[(String, Value)], out: &mut BytesMut) {
    for (key, value) in props {
        put_short_str(key, out);
        value.encode_into(out);
    }
    out.put_slice(&OBJECT_END);
}

fn props_len(props: &[(String, Value)]) -> usize {
    props
        .iter()
        .map(|(k, v)| 2 + clamp_short(k).len() + v.encoded_len())
        .sum::<usize>()
        + OBJECT_END.len()
}

// ---------------------------------------------------------------------------------------
// Decoding helpers

fn need(buf: &Bytes, n: usize) -> Result<(), Error> {
    if buf.len() < n {
        return Err(Error::Truncated {
            needed: n,
            remaining: buf.len(),
        });
    }
    Ok(())
}

fn read_u8(buf: &mut Bytes) -> Result<u8, Error> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

fn read_u16(buf: &mut Bytes) -> Result<u16, Error> {
    need(buf, 2)?;
    Ok(buf.get_u16())
}

fn read_i16(buf: &mut Bytes) -> Result<i16, Error> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

fn read_u32(buf: &mut Bytes) -> Result<u32, Error> {
    need(buf, 4)?;
    Ok(buf.get_u32())
}

fn read_f64(buf: &mut Bytes) -> Result<f64, Error> {
    need(buf, 8)?;
    Ok(buf.get_f64())
}

/// Reads `len` bytes as text, replacing invalid UTF-8 with U+FFFD.
fn read_text(buf: &mut Bytes, len: usize) -> Result<String, Error> {
    need(buf, len)?;
    let bytes = buf.split_to(len);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn read_short_text(buf: &mut Bytes) -> Result<String, Error> {
    let len = read_u16(buf)?;
    read_text(buf, usize::from(len))
}

fn read_long_text(buf: &mut Bytes) -> Result<String, Error> {
    let len = read_u32(buf)?;
    read_text(buf, to_usize(len))
}

fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Refuses a container at `depth` if that would nest deeper than [`MAX_DEPTH`].
fn enter(depth: usize) -> Result<(), Error> {
    if depth >= MAX_DEPTH {
        return Err(Error::TooDeep { max: MAX_DEPTH });
    }
    Ok(())
}

/// Refuses a count of elements that each take at least one byte when fewer bytes remain.
fn check_count(what: &'static str, count: u32, buf: &Bytes) -> Result<usize, Error> {
    let n = to_usize(count);
    if n > buf.len() {
        return Err(Error::TooLarge {
            what,
            declared: u64::from(count),
            remaining: buf.len(),
        });
    }
    Ok(n)
}

/// Decoded bytes AMF3 values may expand to, per input byte (plus [`MIN_EXPANSION`]).
///
/// Materialising AMF3 references copies the referenced value, so a small input could
/// otherwise expand exponentially. Plain decoding already costs up to about 80 bytes of
/// [`Value`] per input byte (a one-byte null inside an array), so this leaves room for
/// honest use of references while keeping memory O(input length).
const EXPANSION_PER_INPUT_BYTE: usize = 128;

/// The expansion allowed for any input, however short.
const MIN_EXPANSION: usize = 1 << 20;

/// The budget for copies made while resolving AMF3 references, shared by every value
/// decoded in one call.
struct Limits {
    left: usize,
    limit: usize,
    /// Values that may still be produced ([`MAX_VALUES`] in all).
    values_left: usize,
}

impl Limits {
    fn for_input(len: usize) -> Limits {
        let limit = len
            .saturating_mul(EXPANSION_PER_INPUT_BYTE)
            .max(MIN_EXPANSION);
        Limits {
            left: limit,
            limit,
            values_left: MAX_VALUES,
        }
    }

    /// Counts one more value against [`MAX_VALUES`].
    fn count_value(&mut self) -> Result<(), Error> {
        self.values_left = self
            .values_left
            .checked_sub(1)
            .ok_or(Error::TooManyValues { max: MAX_VALUES })?;
        Ok(())
    }

    fn charge(&mut self, bytes: usize) -> Result<(), Error> {
        self.left = self
            .left
            .checked_sub(bytes)
            .ok_or(Error::ExpansionLimit { limit: self.limit })?;
        Ok(())
    }
}

fn decode_value(buf: &mut Bytes, limits: &mut Limits, depth: usize) -> Result<Value, Error> {
    let m = read_u8(buf)?;
    // An AMF3 value is counted as it is materialised.
    if m != marker::AVMPLUS {
        limits.count_value()?;
    }
    match m {
        marker::NUMBER => Ok(Value::Number(read_f64(buf)?)),
        marker::BOOLEAN => Ok(Value::Boolean(read_u8(buf)? != 0)),
        marker::STRING => Ok(Value::String(read_short_text(buf)?)),
        marker::OBJECT => {
            enter(depth)?;
            Ok(Value::Object(decode_props(buf, limits, depth, 0, false)?))
        }
        marker::MOVIECLIP => Err(Error::UnsupportedMarker {
            marker: m,
            name: "movieclip",
        }),
        marker::NULL => Ok(Value::Null),
        marker::UNDEFINED | marker::UNSUPPORTED => Ok(Value::Undefined),
        marker::REFERENCE => Ok(Value::Reference(read_u16(buf)?)),
        marker::ECMA_ARRAY => {
            enter(depth)?;
            let hint = to_usize(read_u32(buf)?);
            // Some encoders leave out the end marker of a trailing ECMA array.
            Ok(Value::EcmaArray(decode_props(
                buf, limits, depth, hint, true,
            )?))
        }
        marker::OBJECT_END => Err(Error::UnsupportedMarker {
            marker: m,
            name: "object end outside an object",
        }),
        marker::STRICT_ARRAY => {
            enter(depth)?;
            let count = read_u32(buf)?;
            let n = check_count("AMF0 strict array", count, buf)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(decode_value(buf, limits, depth + 1)?);
            }
            Ok(Value::StrictArray(items))
        }
        marker::DATE => {
            let millis = read_f64(buf)?;
            let timezone = read_i16(buf)?;
            Ok(Value::Date { millis, timezone })
        }
        marker::LONG_STRING => Ok(Value::LongString(read_long_text(buf)?)),
        marker::RECORDSET => Err(Error::UnsupportedMarker {
            marker: m,
            name: "recordset",
        }),
        marker::XML_DOCUMENT => Ok(Value::Xml(read_long_text(buf)?)),
        marker::TYPED_OBJECT => {
            enter(depth)?;
            let class = read_short_text(buf)?;
            let properties = decode_props(buf, limits, depth, 0, false)?;
            Ok(Value::TypedObject { class, properties })
        }
        marker::AVMPLUS => amf3::decode(buf, limits, depth),
        _ => Err(Error::UnknownMarker(m)),
    }
}

/// Reads `key, value` pairs up to the object-end marker (AMF0 2.5). The container itself is
/// at `depth`. `hint` sizes the first allocation, bounded by what the remaining bytes could
/// hold (3 bytes per property at least). With `end_optional`, the end of the buffer where a
/// key belongs also ends the properties.
fn decode_props(
    buf: &mut Bytes,
    limits: &mut Limits,
    depth: usize,
    hint: usize,
    end_optional: bool,
) -> Result<Vec<(String, Value)>, Error> {
    let mut props = Vec::with_capacity(hint.min(buf.len() / 3));
    loop {
        if end_optional && buf.is_empty() {
            return Ok(props);
        }
        let key = read_short_text(buf)?;
        if key.is_empty() && buf.first() == Some(&marker::OBJECT_END) {
            buf.advance(1);
            return Ok(props);
        }
        let value = decode_value(buf, limits, depth + 1)?;
        props.push((key, value));
    }
}

/// The AMF3 decoder behind the AVM+ switch marker (AMF0 3.1; AMF3 spec section 3).
///
/// Decoding happens in two passes. The first parses the wire into [`Item`]s, where every
/// complex value (array, object, date, XML) sits in the object reference table behind an
/// `Rc`, so a reference costs one pointer. The second materialises the result as a
/// [`Value`], copying shared parts and charging every copy to the [`Limits`] budget.
/// Heights are tracked in the first pass, so a reference that would nest past
/// [`MAX_DEPTH`] is refused before anything recursive (materialising, dropping) sees it.
///
/// Each switch marker starts a fresh AMF3 context: the string, object and traits reference
/// tables are empty at every 0x11 and are dropped after its value.
mod amf3 {
    use std::rc::Rc;

    use bytes::Bytes;

    use super::{
        Error, Limits, MAX_DEPTH, Value, check_count, enter, read_f64, read_text, read_u8, to_usize,
    };

    const UNDEFINED: u8 = 0x00;
    const NULL: u8 = 0x01;
    const FALSE: u8 = 0x02;
    const TRUE: u8 = 0x03;
    const INTEGER: u8 = 0x04;
    const DOUBLE: u8 = 0x05;
    const STRING: u8 = 0x06;
    const XML_DOC: u8 = 0x07;
    const DATE: u8 = 0x08;
    const ARRAY: u8 = 0x09;
    const OBJECT: u8 = 0x0A;
    const XML: u8 = 0x0B;
    const BYTE_ARRAY: u8 = 0x0C;
    const VECTOR_INT: u8 = 0x0D;
    const VECTOR_OBJECT: u8 = 0x10;
    const DICTIONARY: u8 = 0x11;

    /// Approximate cost, in bytes, of one decoded value or one property key.
    const VALUE_COST: usize = size_of::<Value>();
    const KEY_COST: usize = size_of::<String>();

    /// Decodes the AMF3 value after a switch marker, as a value at `depth`.
    pub(super) fn decode(
        buf: &mut Bytes,
        limits: &mut Limits,
        depth: usize,
    ) -> Result<Value, Error> {
        let mut parser = Parser {
            buf,
            limits,
            strings: Vec::new(),
            objects: Vec::new(),
            traits: Vec::new(),
        };
        let item = parser.value(depth)?;
        let Parser { limits, .. } = parser;
        materialize(&item, depth, limits)
    }

    /// A parsed AMF3 value: a scalar or string, or a complex value from the object table.
    enum Item {
        Leaf(Value),
        Shared(Rc<Complex>),
    }

    impl Item {
        fn height(&self) -> usize {
            match self {
                Item::Leaf(_) => 0,
                Item::Shared(c) => c.height,
            }
        }
    }

    /// A complex value and how many container levels it spans.
    struct Complex {
        height: usize,
        body: Body,
    }

    enum Body {
        /// A date or an XML text: referencable, but not a container.
        Leaf(Value),
        Array {
            dense: Vec<Item>,
            assoc: Vec<(String, Item)>,
        },
        Object {
            traits: Rc<Traits>,
            sealed: Vec<Item>,
            dynamic: Vec<(String, Item)>,
        },
    }

    /// Class name, sealed member names and dynamic flag of an object (AMF3 3.12).
    struct Traits {
        class: String,
        sealed: Vec<String>,
        dynamic: bool,
    }

    struct Parser<'a> {
        buf: &'a mut Bytes,
        limits: &'a mut Limits,
        strings: Vec<String>,
        /// The object reference table; `None` while that object is still being parsed.
        objects: Vec<Option<Rc<Complex>>>,
        traits: Vec<Rc<Traits>>,
    }

    impl Parser<'_> {
        fn value(&mut self, depth: usize) -> Result<Item, Error> {
            let m = read_u8(self.buf)?;
            let leaf = match m {
                UNDEFINED => Value::Undefined,
                NULL => Value::Null,
                FALSE => Value::Boolean(false),
                TRUE => Value::Boolean(true),
                INTEGER => {
                    // AMF3 3.6: a U29 holding a two's complement 29-bit integer.
                    let raw = self.u29()?;
                    // Shift the sign bit (bit 28) to bit 31, reinterpret, shift back.
                    let signed = ((raw << 3) as i32) >> 3;
                    Value::Number(f64::from(signed))
                }
                DOUBLE => Value::Number(read_f64(self.buf)?),
                STRING => Value::String(self.string()?),
                XML_DOC | XML => return self.xml(depth),
                DATE => return self.date(depth),
                ARRAY => return self.array(depth),
                OBJECT => return self.object(depth),
                BYTE_ARRAY => return Err(Error::Amf3("ByteArray is not supported")),
                VECTOR_INT..=VECTOR_OBJECT => return Err(Error::Amf3("Vector is not supported")),
                DICTIONARY => return Err(Error::Amf3("Dictionary is not supported")),
                _ => return Err(Error::Amf3UnknownMarker(m)),
            };
            Ok(Item::Leaf(leaf))
        }

        /// AMF3 1.3.1: a variable-length unsigned 29-bit integer. The first three bytes
        /// carry 7 bits each with a continuation flag; a fourth byte carries 8 bits.
        fn u29(&mut self) -> Result<u32, Error> {
            let mut n = 0u32;
            for _ in 0..3 {
                let b = read_u8(self.buf)?;
                n = (n << 7) | u32::from(b & 0x7F);
                if b & 0x80 == 0 {
                    return Ok(n);
                }
            }
            let b = read_u8(self.buf)?;
            Ok((n << 8) | u32::from(b))
        }

        /// AMF3 1.3.2 UTF-8-vr: a string-table reference or an inline string. The empty
        /// string is never added to the table.
        fn string(&mut self) -> Result<String, Error> {
            let header = self.u29()?;
            let n = header >> 1;
            if header & 1 == 0 {
                let s = self.strings.get(to_usize(n)).ok_or(Error::BadReference {
                    table: "string",
                    index: n,
                })?;
                self.limits.charge(KEY_COST + s.len())?;
                return Ok(s.clone());
            }
            let s = read_text(self.buf, to_usize(n))?;
            if !s.is_empty() {
                self.strings.push(s.clone());
            }
            Ok(s)
        }

        /// An object-table reference placed at `depth`.
        fn reference(&self, index: u32, depth: usize) -> Result<Item, Error> {
            let slot = self
                .objects
                .get(to_usize(index))
                .ok_or(Error::BadReference {
                    table: "object",
                    index,
                })?;
            let complex = slot
                .as_ref()
                .ok_or(Error::Amf3("cyclic object reference"))?;
            if depth.saturating_add(complex.height) > MAX_DEPTH {
                return Err(Error::TooDeep { max: MAX_DEPTH });
            }
            Ok(Item::Shared(Rc::clone(complex)))
        }

        /// Reserves the next object-table slot for a complex value being parsed.
        fn begin(&mut self) -> usize {
            self.objects.push(None);
            self.objects.len() - 1
        }

        fn finish(&mut self, index: usize, complex: Complex) -> Item {
            let rc = Rc::new(complex);
            if let Some(slot) = self.objects.get_mut(index) {
                *slot = Some(Rc::clone(&rc));
            }
            Item::Shared(rc)
        }

        fn leaf_object(&mut self, value: Value) -> Item {
            let index = self.begin();
            self.finish(
                index,
                Complex {
                    height: 0,
                    body: Body::Leaf(value),
                },
            )
        }

        /// AMF3 3.9 / 3.13: XMLDocument and XML, both kept as text.
        fn xml(&mut self, depth: usize) -> Result<Item, Error> {
            let header = self.u29()?;
            if header & 1 == 0 {
                return self.reference(header >> 1, depth);
            }
            let text = read_text(self.buf, to_usize(header >> 1))?;
            Ok(self.leaf_object(Value::Xml(text)))
        }

        /// AMF3 3.10: a date, milliseconds since the epoch in UTC.
        fn date(&mut self, depth: usize) -> Result<Item, Error> {
            let header = self.u29()?;
            if header & 1 == 0 {
                return self.reference(header >> 1, depth);
            }
            let millis = read_f64(self.buf)?;
            Ok(self.leaf_object(Value::Date {
                millis,
                timezone: 0,
            }))
        }

        /// AMF3 3.11: an array, its associative part (up to an empty key) then its dense
        /// part.
        fn array(&mut self, depth: usize) -> Result<Item, Error> {
            let header = self.u29()?;
            if header & 1 == 0 {
                return self.reference(header >> 1, depth);
            }
            enter(depth)?;
            let index = self.begin();
            let mut height = 0;
            let mut assoc = Vec::new();
            loop {
                let key = self.string()?;
                if key.is_empty() {
                    break;
                }
                let item = self.value(depth + 1)?;
                height = height.max(item.height());
                assoc.push((key, item));
            }
            let n = check_count("AMF3 array", header >> 1, self.buf)?;
            let mut dense = Vec::with_capacity(n);
            for _ in 0..n {
                let item = self.value(depth + 1)?;
                height = height.max(item.height());
                dense.push(item);
            }
            let complex = Complex {
                height: height + 1,
                body: Body::Array { dense, assoc },
            };
            Ok(self.finish(index, complex))
        }

        /// AMF3 3.12: an object, with inline or referenced traits, sealed member values in
        /// trait order, then dynamic members up to an empty key.
        fn object(&mut self, depth: usize) -> Result<Item, Error> {
            let header = self.u29()?;
            if header & 1 == 0 {
                return self.reference(header >> 1, depth);
            }
            enter(depth)?;
            let traits = if header & 0b10 == 0 {
                // U29O-traits-ref. Only traits that passed the checks below are stored.
                let index = header >> 2;
                let traits = self
                    .traits
                    .get(to_usize(index))
                    .ok_or(Error::BadReference {
                        table: "traits",
                        index,
                    })?;
                Rc::clone(traits)
            } else {
                if header & 0b100 != 0 {
                    return Err(Error::Amf3("externalizable objects are not supported"));
                }
                let dynamic = header & 0b1000 != 0;
                let class = self.string()?;
                let n = check_count("AMF3 traits", header >> 4, self.buf)?;
                let mut sealed = Vec::with_capacity(n);
                for _ in 0..n {
                    sealed.push(self.string()?);
                }
                let traits = Rc::new(Traits {
                    class,
                    sealed,
                    dynamic,
                });
                self.traits.push(Rc::clone(&traits));
                traits
            };
            let index = self.begin();
            let mut height = 0;
            let count = traits.sealed.len();
            if count > self.buf.len() {
                return Err(Error::TooLarge {
                    what: "AMF3 object",
                    declared: u64::try_from(count).unwrap_or(u64::MAX),
                    remaining: self.buf.len(),
                });
            }
            let mut sealed = Vec::with_capacity(count);
            for _ in 0..count {
                let item = self.value(depth + 1)?;
                height = height.max(item.height());
                sealed.push(item);
            }
            let mut members = Vec::new();
            if traits.dynamic {
                loop {
                    let key = self.string()?;
                    if key.is_empty() {
                        break;
                    }
                    let item = self.value(depth + 1)?;
                    height = height.max(item.height());
                    members.push((key, item));
                }
            }
            let complex = Complex {
                height: height + 1,
                body: Body::Object {
                    traits,
                    sealed,
                    dynamic: members,
                },
            };
            Ok(self.finish(index, complex))
        }
    }

    /// Charges for a property key and hands it back.
    fn key(k: String, limits: &mut Limits) -> Result<String, Error> {
        limits.charge(KEY_COST + k.len())?;
        Ok(k)
    }

    fn leaf_cost(value: &Value) -> usize {
        VALUE_COST
            + match value {
                Value::String(s) | Value::LongString(s) | Value::Xml(s) => s.len(),
                _ => 0,
            }
    }

    /// Builds the AMF0 value for `item` placed at `depth`, charging every copy.
    fn materialize(item: &Item, depth: usize, limits: &mut Limits) -> Result<Value, Error> {
        limits.count_value()?;
        let complex = match item {
            Item::Leaf(value) => {
                limits.charge(leaf_cost(value))?;
                return Ok(value.clone());
            }
            Item::Shared(complex) => complex,
        };
        match &complex.body {
            Body::Leaf(value) => {
                limits.charge(leaf_cost(value))?;
                Ok(value.clone())
            }
            Body::Array { dense, assoc } => {
                enter(depth)?;
                limits.charge(VALUE_COST)?;
                if assoc.is_empty() {
                    let mut items = Vec::with_capacity(dense.len());
                    for d in dense {
                        items.push(materialize(d, depth + 1, limits)?);
                    }
                    return Ok(Value::StrictArray(items));
                }
                let mut props = Vec::with_capacity(dense.len() + assoc.len());
                for (i, d) in dense.iter().enumerate() {
                    let k = key(i.to_string(), limits)?;
                    props.push((k, materialize(d, depth + 1, limits)?));
                }
                for (k, a) in assoc {
                    let k = key(k.clone(), limits)?;
                    props.push((k, materialize(a, depth + 1, limits)?));
                }
                Ok(Value::EcmaArray(props))
            }
            Body::Object {
                traits,
                sealed,
                dynamic,
            } => {
                enter(depth)?;
                limits.charge(VALUE_COST + traits.class.len())?;
                let mut props = Vec::with_capacity(sealed.len() + dynamic.len());
                for (name, s) in traits.sealed.iter().zip(sealed) {
                    let k = key(name.clone(), limits)?;
                    props.push((k, materialize(s, depth + 1, limits)?));
                }
                for (name, d) in dynamic {
                    let k = key(name.clone(), limits)?;
                    props.push((k, materialize(d, depth + 1, limits)?));
                }
                if traits.class.is_empty() {
                    Ok(Value::Object(props))
                } else {
                    Ok(Value::TypedObject {
                        class: traits.class.clone(),
                        properties: props,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Concatenates byte slices.
    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn encode(v: &Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        v.encode(&mut out);
        assert_eq!(out.len(), v.encoded_len(), "encoded_len of {v:?}");
        out.to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Value, Error> {
        let mut buf = Bytes::copy_from_slice(bytes);
        let v = Value::decode(&mut buf)?;
        assert!(buf.is_empty(), "{} bytes left after {v:?}", buf.len());
        Ok(v)
    }

    /// Encoding gives exactly `bytes`, and decoding `bytes` gives the value back.
    fn check(v: Value, bytes: &[u8]) {
        assert_eq!(encode(&v), bytes, "encoding {v:?}");
        assert_eq!(decode(bytes), Ok(v));
    }

    fn nested(depth: usize, open: &[u8], close: &[u8], leaf: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for _ in 0..depth {
            b.extend_from_slice(open);
        }
        b.extend_from_slice(leaf);
        for _ in 0..depth {
            b.extend_from_slice(close);
        }
        b
    }

    // --- AMF0 byte literals, one per marker -------------------------------------------

    #[test]
    fn number() {
        check(Value::Number(1.5), &[0x00, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0]);
        check(Value::Number(-0.0), &[0x00, 0x80, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn boolean() {
        check(Value::Boolean(true), &[0x01, 0x01]);
        check(Value::Boolean(false), &[0x01, 0x00]);
        assert_eq!(decode(&[0x01, 0x7F]), Ok(Value::Boolean(true)));
    }

    #[test]
    fn string() {
        check(Value::from("hi"), &[0x02, 0x00, 0x02, b'h', b'i']);
        check(Value::from(""), &[0x02, 0x00, 0x00]);
        check(
            Value::from("é"),
            &[0x02, 0x00, 0x02, 0xC3, 0xA9], // UTF-8, length in bytes
        );
    }

    #[test]
    fn invalid_utf8_decodes_lossily() {
        assert_eq!(
            decode(&[0x02, 0x00, 0x03, 0xFF, b'a', 0xC3]),
            Ok(Value::from("\u{FFFD}a\u{FFFD}"))
        );
    }

    #[test]
    fn object() {
        check(
            Value::object([("a", Value::Number(1.0)), ("b", Value::Null)]),
            &[
                0x03, 0x00, 0x01, b'a', 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, //
                0x00, 0x01, b'b', 0x05, //
                0x00, 0x00, 0x09,
            ],
        );
        check(Value::Object(vec![]), &[0x03, 0x00, 0x00, 0x09]);
        // An empty key that is not followed by the end marker is a property.
        check(
            Value::object([("", Value::Null)]),
            &[0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x09],
        );
    }

    #[test]
    fn movieclip_recordset_and_stray_end_are_errors() {
        assert!(matches!(
            decode(&[0x04]),
            Err(Error::UnsupportedMarker { marker: 0x04, .. })
        ));
        assert!(matches!(
            decode(&[0x0E]),
            Err(Error::UnsupportedMarker { marker: 0x0E, .. })
        ));
        assert!(matches!(
            decode(&[0x09]),
            Err(Error::UnsupportedMarker { marker: 0x09, .. })
        ));
        assert_eq!(decode(&[0x12]), Err(Error::UnknownMarker(0x12)));
        assert_eq!(decode(&[0xFF]), Err(Error::UnknownMarker(0xFF)));
    }

    #[test]
    fn null_undefined_unsupported() {
        check(Value::Null, &[0x05]);
        check(Value::Undefined, &[0x06]);
        assert_eq!(decode(&[0x0D]), Ok(Value::Undefined));
    }

    #[test]
    fn reference() {
        check(Value::Reference(0x0102), &[0x07, 0x01, 0x02]);
    }

    #[test]
    fn ecma_array() {
        let bytes = [
            0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b'x', 0x01, 0x01, 0x00, 0x00, 0x09,
        ];
        let v = Value::EcmaArray(vec![("x".into(), Value::Boolean(true))]);
        check(v.clone(), &bytes);
        // The count is only a hint.
        let mut wrong_hint = bytes;
        wrong_hint[1..5].copy_from_slice(&[0xFF; 4]);
        assert_eq!(decode(&wrong_hint), Ok(v.clone()));
        // A missing end marker at the end of the buffer is tolerated...
        assert_eq!(decode(&bytes[..10]), Ok(v.clone()));
        // ...but not a partial one.
        assert!(decode(&bytes[..11]).is_err());
        assert!(decode(&bytes[..12]).is_err());
    }

    #[test]
    fn strict_array() {
        check(
            Value::StrictArray(vec![Value::Number(1.0), Value::Null]),
            &[
                0x0A, 0x00, 0x00, 0x00, 0x02, //
                0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, //
                0x05,
            ],
        );
        check(Value::StrictArray(vec![]), &[0x0A, 0, 0, 0, 0]);
    }

    #[test]
    fn date() {
        check(
            Value::Date {
                millis: 1.0,
                timezone: -2,
            },
            &[0x0B, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFE],
        );
    }

    #[test]
    fn long_string() {
        check(
            Value::LongString("hi".into()),
            &[0x0C, 0x00, 0x00, 0x00, 0x02, b'h', b'i'],
        );
        assert_eq!(Value::LongString("hi".into()).as_str(), Some("hi"));
    }

    #[test]
    fn xml() {
        check(
            Value::Xml("<a/>".into()),
            &[0x0F, 0x00, 0x00, 0x00, 0x04, b'<', b'a', b'/', b'>'],
        );
    }

    #[test]
    fn typed_object() {
        check(
            Value::TypedObject {
                class: "Foo".into(),
                properties: vec![("x".into(), Value::Null)],
            },
            &[
                0x10, 0x00, 0x03, b'F', b'o', b'o', 0x00, 0x01, b'x', 0x05, 0x00, 0x00, 0x09,
            ],
        );
    }

    /// The body of `connect` as ffmpeg (Lavf 59) sends it when publishing.
    fn ffmpeg_connect_bytes() -> Vec<u8> {
        let flash_ver = b"FMLE/3.0 (compatible; Lavf59.27.100)";
        let tc_url = b"rtmp://127.0.0.1:1935/live";
        assert_eq!((flash_ver.len(), tc_url.len()), (0x24, 0x1A));
        cat(&[
            &[0x02, 0x00, 0x07],
            b"connect",
            &[0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0],
            &[0x03],
            &[0x00, 0x03],
            b"app",
            &[0x02, 0x00, 0x04],
            b"live",
            &[0x00, 0x04],
            b"type",
            &[0x02, 0x00, 0x0A],
            b"nonprivate",
            &[0x00, 0x08],
            b"flashVer",
            &[0x02, 0x00, 0x24],
            flash_ver,
            &[0x00, 0x05],
            b"tcUrl",
            &[0x02, 0x00, 0x1A],
            tc_url,
            &[0x00, 0x00, 0x09],
        ])
    }

    fn connect_values() -> Vec<Value> {
        vec![
            "connect".into(),
            1.0.into(),
            Value::object([
                ("app", "live".into()),
                ("type", "nonprivate".into()),
                ("flashVer", "FMLE/3.0 (compatible; Lavf59.27.100)".into()),
                ("tcUrl", "rtmp://127.0.0.1:1935/live".into()),
            ]),
        ]
    }

    #[test]
    fn ffmpeg_connect() {
        let bytes = ffmpeg_connect_bytes();
        let values = connect_values();
        let mut out = BytesMut::new();
        for v in &values {
            v.encode(&mut out);
        }
        assert_eq!(&out[..], &bytes[..]);
        let decoded = decode_all(&mut Bytes::from(bytes)).unwrap();
        assert_eq!(decoded, values);
        assert_eq!(decoded[0].as_str(), Some("connect"));
        assert_eq!(decoded[1].as_f64(), Some(1.0));
        assert_eq!(
            decoded[2].get("tcUrl").and_then(Value::as_str),
            Some("rtmp://127.0.0.1:1935/live")
        );
        assert_eq!(decoded[2].get("missing"), None);
        assert_eq!(decoded[0].get("app"), None);
    }

    #[test]
    fn accessors() {
        assert_eq!(Value::from(true).as_bool(), Some(true));
        assert_eq!(Value::Null.as_bool(), None);
        assert_eq!(Value::from(String::from("x")).as_f64(), None);
        let dup = Value::EcmaArray(vec![
            ("k".into(), Value::Number(1.0)),
            ("k".into(), Value::Number(2.0)),
        ]);
        assert_eq!(dup.get("k"), Some(&Value::Number(1.0)));
        let typed = Value::TypedObject {
            class: "C".into(),
            properties: vec![("k".into(), Value::Null)],
        };
        assert_eq!(typed.get("k"), Some(&Value::Null));
    }

    #[test]
    fn decode_leaves_the_rest() {
        let mut buf = Bytes::from_static(&[0x05, 0x06, 0x01]);
        assert_eq!(Value::decode(&mut buf), Ok(Value::Null));
        assert_eq!(&buf[..], &[0x06, 0x01]);
    }

    // --- Encoding limits --------------------------------------------------------------

    #[test]
    fn long_string_value_is_encoded_as_long_string() {
        let s = "a".repeat(70_000);
        let bytes = encode(&Value::String(s.clone()));
        assert_eq!(&bytes[..5], &[0x0C, 0x00, 0x01, 0x11, 0x70]);
        assert_eq!(decode(&bytes), Ok(Value::LongString(s)));
        // Exactly 65535 bytes still fits a short string.
        let s = "b".repeat(65_535);
        let bytes = encode(&Value::String(s.clone()));
        assert_eq!(&bytes[..3], &[0x02, 0xFF, 0xFF]);
        assert_eq!(decode(&bytes), Ok(Value::String(s)));
    }

    #[test]
    fn long_keys_are_truncated_at_a_char_boundary() {
        let key = "é".repeat(40_000); // 80,000 bytes, 2 per char
        let v = Value::object([(key.clone(), Value::Null)]);
        let bytes = encode(&v);
        // 65535 is odd, so the last whole char ends at 65534.
        assert_eq!(&bytes[1..3], &65_534u16.to_be_bytes());
        let expected = Value::object([("é".repeat(32_767), Value::Null)]);
        assert_eq!(decode(&bytes), Ok(expected));
        let typed = Value::TypedObject {
            class: key,
            properties: vec![],
        };
        assert_eq!(encode(&typed).len(), 1 + 2 + 65_534 + 3);
    }

    // --- Malformed input --------------------------------------------------------------

    #[test]
    fn truncated_connect_is_an_error_everywhere() {
        let bytes = ffmpeg_connect_bytes();
        // The command object alone: every strict prefix fails.
        let object = encode(&connect_values()[2]);
        for end in 0..object.len() {
            let mut buf = Bytes::copy_from_slice(&object[..end]);
            assert!(Value::decode(&mut buf).is_err(), "prefix of {end} bytes");
        }
        // The whole body: every prefix that does not end between values fails.
        let boundaries = [0, 10, 19, bytes.len()];
        for end in 0..bytes.len() {
            let result = decode_all(&mut Bytes::copy_from_slice(&bytes[..end]));
            assert_eq!(result.is_ok(), boundaries.contains(&end), "prefix {end}");
        }
    }

    #[test]
    fn truncation_reports_sizes() {
        assert_eq!(
            decode(&[0x00, 0x3F]),
            Err(Error::Truncated {
                needed: 8,
                remaining: 1
            })
        );
        assert_eq!(
            decode(&[0x02, 0x00, 0x05, b'a']),
            Err(Error::Truncated {
                needed: 5,
                remaining: 1
            })
        );
        assert_eq!(
            decode(&[]),
            Err(Error::Truncated {
                needed: 1,
                remaining: 0
            })
        );
    }

    #[test]
    fn depth_limit_is_exact() {
        let open = [0x0A, 0x00, 0x00, 0x00, 0x01];
        let ok = nested(MAX_DEPTH, &open, &[], &[0x05]);
        assert!(decode(&ok).is_ok());
        let too_deep = nested(MAX_DEPTH + 1, &open, &[], &[0x05]);
        assert_eq!(decode(&too_deep), Err(Error::TooDeep { max: MAX_DEPTH }));
    }

    #[test]
    fn depth_bombs_are_refused() {
        let bombs = [
            // objects: {a: {a: ...}}
            nested(
                10_000,
                &[0x03, 0x00, 0x01, b'a'],
                &[0x00, 0x00, 0x09],
                &[0x05],
            ),
            // strict arrays: [[[...]]]
            nested(10_000, &[0x0A, 0x00, 0x00, 0x00, 0x01], &[], &[0x05]),
            // ECMA arrays and typed objects
            nested(
                10_000,
                &[0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b'a'],
                &[],
                &[],
            ),
            nested(10_000, &[0x10, 0x00, 0x00, 0x00, 0x01, b'a'], &[], &[]),
            // AMF3 arrays behind one switch: 0x11 then [ [ [ ... ] ] ]
            cat(&[&[0x11], &nested(10_000, &[0x09, 0x03, 0x01], &[], &[0x01])]),
            // AMF3 dynamic objects: {a: {a: ...}}
            cat(&[
                &[0x11],
                &nested(10_000, &[0x0A, 0x0B, 0x01, 0x03, b'a'], &[], &[0x01]),
            ]),
        ];
        for bomb in bombs {
            assert_eq!(
                Value::decode(&mut Bytes::from(bomb)),
                Err(Error::TooDeep { max: MAX_DEPTH })
            );
        }
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        assert_eq!(
            decode(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05, 0x05, 0x05]),
            Err(Error::TooLarge {
                what: "AMF0 strict array",
                declared: 0xFFFF_FFFF,
                remaining: 3
            })
        );
        // An ECMA count is only a hint: decoding goes on and fails on the real data.
        assert!(matches!(
            decode(&[0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x01, b'a']),
            Err(Error::Truncated { .. })
        ));
        // AMF3 dense array of 2^28 - 1 items.
        assert!(matches!(
            decode(&[0x11, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x01]),
            Err(Error::TooLarge { .. })
        ));
        // AMF3 traits with 2^24 sealed members.
        assert!(matches!(
            decode(&[0x11, 0x0A, 0xC0, 0x80, 0x80, 0x03, 0x01]),
            Err(Error::TooLarge { .. })
        ));
        // Long string and XML lengths past the end.
        assert!(matches!(
            decode(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'a']),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            decode(&[0x0F, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(Error::Truncated { .. })
        ));
    }

    // --- AMF3 ---------------------------------------------------------------------------

    fn amf3(bytes: &[u8]) -> Result<Value, Error> {
        decode(&cat(&[&[0x11], bytes]))
    }

    #[test]
    fn amf3_command() {
        let body = cat(&[
            &[0x00], // format selector
            &[0x02, 0x00, 0x07],
            b"connect",
            &[0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0],
            &[0x11],             // switch to AMF3
            &[0x0A, 0x0B, 0x01], // object, inline dynamic traits, no sealed, class ""
            &[0x07],
            b"app",
            &[0x06, 0x09],
            b"live",
            &[0x01], // end of dynamic members
            &[0x05], // AMF0 null after the AMF3 value
        ]);
        let values = decode_amf3_command(&mut Bytes::from(body.clone())).unwrap();
        assert_eq!(
            values,
            vec![
                "connect".into(),
                1.0.into(),
                Value::object([("app", "live".into())]),
                Value::Null,
            ]
        );
        // Without the format byte, decoding starts at the first byte.
        let values = decode_amf3_command(&mut Bytes::copy_from_slice(&body[1..])).unwrap();
        assert_eq!(values.len(), 4);
    }

    #[test]
    fn amf3_scalars() {
        assert_eq!(amf3(&[0x00]), Ok(Value::Undefined));
        assert_eq!(amf3(&[0x01]), Ok(Value::Null));
        assert_eq!(amf3(&[0x02]), Ok(Value::Boolean(false)));
        assert_eq!(amf3(&[0x03]), Ok(Value::Boolean(true)));
        assert_eq!(
            amf3(&[0x05, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0]),
            Ok(Value::Number(1.5))
        );
        assert_eq!(
            amf3(&[0x08, 0x01, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]),
            Ok(Value::Date {
                millis: 1.0,
                timezone: 0
            })
        );
        assert_eq!(
            amf3(&[0x0B, 0x09, b'<', b'a', b'/', b'>']),
            Ok(Value::Xml("<a/>".into()))
        );
        assert_eq!(amf3(&[0x07, 0x03, b'x']), Ok(Value::Xml("x".into())));
    }

    #[test]
    fn amf3_integers() {
        let cases: [(&[u8], f64); 8] = [
            (&[0x00], 0.0),
            (&[0x7F], 127.0),
            (&[0x81, 0x00], 128.0),
            (&[0xFF, 0x7F], 16_383.0),
            (&[0x81, 0x80, 0x00], 16_384.0),
            (&[0xBF, 0xFF, 0xFF, 0xFF], 268_435_455.0), // 2^28 - 1
            (&[0xC0, 0x80, 0x80, 0x00], -268_435_456.0), // -2^28
            (&[0xFF, 0xFF, 0xFF, 0xFF], -1.0),
        ];
        for (u29, n) in cases {
            assert_eq!(
                amf3(&cat(&[&[0x04], u29])),
                Ok(Value::Number(n)),
                "{u29:02x?}"
            );
        }
        assert!(matches!(
            amf3(&[0x04, 0xFF, 0xFF, 0xFF]),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn amf3_string_references() {
        // ["ab", "ab", "", "cd", "ab", "cd"]: the empty string is not in the table.
        let bytes = [
            0x09, 0x0D, 0x01, // dense array of 6, no associative part
            0x06, 0x05, b'a', b'b', // "ab" inline -> string 0
            0x06, 0x00, // string ref 0
            0x06, 0x01, // ""
            0x06, 0x05, b'c', b'd', // "cd" inline -> string 1
            0x06, 0x00, // ref 0
            0x06, 0x02, // ref 1
        ];
        let s = |t: &str| Value::from(t);
        assert_eq!(
            amf3(&bytes),
            Ok(Value::StrictArray(vec![
                s("ab"),
                s("ab"),
                s(""),
                s("cd"),
                s("ab"),
                s("cd")
            ]))
        );
        assert_eq!(
            amf3(&[0x06, 0x04]),
            Err(Error::BadReference {
                table: "string",
                index: 2
            })
        );
    }

    #[test]
    fn amf3_traits_and_object_references() {
        let bytes = [
            0x09, 0x07, 0x01, // dense array of 3 (object 0)
            // object 1: inline traits, sealed, 1 member, class "" ; x = 1
            0x0A, 0x13, 0x01, 0x03, b'x', 0x04, 0x01, //
            // object 2: traits ref 0; x = 2
            0x0A, 0x01, 0x04, 0x02, //
            // object ref 1
            0x0A, 0x02,
        ];
        let x = |n: f64| Value::object([("x", Value::Number(n))]);
        assert_eq!(
            amf3(&bytes),
            Ok(Value::StrictArray(vec![x(1.0), x(2.0), x(1.0)]))
        );
    }

    #[test]
    fn amf3_typed_object_with_sealed_and_dynamic_members() {
        let bytes = cat(&[
            &[0x0A, 0x1B, 0x07], // inline traits, dynamic, 1 sealed; class name of 3
            b"Foo",
            &[0x03, b'a'],             // sealed name "a"
            &[0x02],                   // a = false
            &[0x03, b'b', 0x06, 0x02], // b = "a" (string ref 1: "Foo" is 0)
            &[0x01],
        ]);
        assert_eq!(
            amf3(&bytes),
            Ok(Value::TypedObject {
                class: "Foo".into(),
                properties: vec![
                    ("a".into(), Value::Boolean(false)),
                    ("b".into(), Value::from("a")),
                ],
            })
        );
    }

    #[test]
    fn amf3_associative_array() {
        let bytes = [
            0x09, 0x05, // dense 2
            0x03, b'k', 0x03, // k = true
            0x01, // end of associative part
            0x04, 0x05, 0x01, // 5, null
        ];
        assert_eq!(
            amf3(&bytes),
            Ok(Value::EcmaArray(vec![
                ("0".into(), Value::Number(5.0)),
                ("1".into(), Value::Null),
                ("k".into(), Value::Boolean(true)),
            ]))
        );
    }

    #[test]
    fn amf3_unsupported_and_bad_input() {
        assert!(matches!(amf3(&[0x0C, 0x03, 0x00]), Err(Error::Amf3(_))));
        assert!(matches!(amf3(&[0x0D, 0x01, 0x00]), Err(Error::Amf3(_))));
        assert!(matches!(amf3(&[0x11, 0x01, 0x00]), Err(Error::Amf3(_))));
        // externalizable traits
        assert!(matches!(amf3(&[0x0A, 0x07, 0x01]), Err(Error::Amf3(_))));
        assert_eq!(amf3(&[0x14]), Err(Error::Amf3UnknownMarker(0x14)));
        // an array that contains itself
        assert_eq!(
            amf3(&[0x09, 0x03, 0x01, 0x09, 0x00]),
            Err(Error::Amf3("cyclic object reference"))
        );
        assert_eq!(
            amf3(&[0x09, 0x03, 0x01, 0x09, 0x02]),
            Err(Error::BadReference {
                table: "object",
                index: 1
            })
        );
        assert_eq!(
            amf3(&[0x0A, 0x05]),
            Err(Error::BadReference {
                table: "traits",
                index: 1
            })
        );
    }

    /// AMF3 array of `levels + 1` arrays where array k holds `fanout` references to array
    /// k - 1.
    fn reference_chain(levels: u8, fanout: u8) -> Vec<u8> {
        assert!(levels < 63 && fanout < 64, "every U29 must fit one byte");
        let mut b = vec![0x11, 0x09, ((levels + 1) << 1) | 1, 0x01];
        b.extend_from_slice(&[0x09, 0x03, 0x01, 0x01]); // array 1: [null]
        for k in 1..=levels {
            b.extend_from_slice(&[0x09, (fanout << 1) | 1, 0x01]);
            for _ in 0..fanout {
                b.extend_from_slice(&[0x09, k << 1]); // ref to object k (array k - 1)
            }
        }
        b
    }

    #[test]
    fn amf3_reference_expansion_is_bounded() {
        // 40 levels of doubling: 2^40 nulls if materialised naively.
        let bomb = reference_chain(40, 2);
        assert!(bomb.len() < 300);
        assert!(matches!(
            Value::decode(&mut Bytes::from(bomb)),
            Err(Error::ExpansionLimit { .. } | Error::TooManyValues { .. })
        ));
        // A modest amount of sharing is fine.
        let ok = reference_chain(5, 2);
        assert!(Value::decode(&mut Bytes::from(ok)).is_ok());
    }

    #[test]
    fn amf3_references_cannot_nest_past_the_limit() {
        // Array k is one level deeper than array k - 1, so the last of 62 levels, inside
        // the outer array, spans exactly MAX_DEPTH levels.
        let chain = reference_chain(62, 1);
        assert!(Value::decode(&mut Bytes::from(chain.clone())).is_ok());
        // Inside one more (AMF0) array, the reference to the deepest array nests too deep.
        let wrapped = cat(&[&[0x0A, 0x00, 0x00, 0x00, 0x01], &chain]);
        assert_eq!(
            Value::decode(&mut Bytes::from(wrapped)),
            Err(Error::TooDeep { max: MAX_DEPTH })
        );
    }

    #[test]
    fn one_decode_produces_at_most_max_values() {
        // A strict array (one value) of n nulls (n values).
        let array = |n: u32| {
            let mut b = vec![0x0A];
            b.extend_from_slice(&n.to_be_bytes());
            b.resize(5 + n as usize, 0x05);
            Bytes::from(b)
        };
        let fits = (MAX_VALUES - 1) as u32;
        assert!(Value::decode(&mut array(fits)).is_ok());
        assert_eq!(
            Value::decode(&mut array(fits + 1)),
            Err(Error::TooManyValues { max: MAX_VALUES })
        );
        // The count spans every value of a command body, not each value alone.
        let mut body = BytesMut::new();
        body.extend_from_slice(&array(fits / 2 + 1));
        body.extend_from_slice(&array(fits / 2 + 1));
        assert!(matches!(
            decode_all(&mut body.freeze()),
            Err(Error::TooManyValues { .. })
        ));
        // AMF3 values count as they are materialised: an AMF3 array of nulls.
        let n = MAX_VALUES; // with the array itself, one value too many
        let len = (n << 1) | 1; // a U29: a dense count, not a reference
        let mut amf3 = vec![
            0x11,
            0x09,
            0x80 | (len >> 14) as u8,
            0x80 | ((len >> 7) & 0x7F) as u8,
            (len & 0x7F) as u8,
            0x01, // no associative part
        ];
        amf3.resize(amf3.len() + n, 0x01);
        assert_eq!(
            Value::decode(&mut Bytes::from(amf3)),
            Err(Error::TooManyValues { max: MAX_VALUES })
        );
    }

    // --- Property tests -----------------------------------------------------------------

    fn finite() -> impl Strategy<Value = f64> {
        any::<f64>().prop_filter("NaN != NaN", |n| !n.is_nan())
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let text = ".{0,12}";
        let leaf = prop_oneof![
            finite().prop_map(Value::Number),
            any::<bool>().prop_map(Value::Boolean),
            text.prop_map(Value::String),
            Just(Value::Null),
            Just(Value::Undefined),
            any::<u16>().prop_map(Value::Reference),
            (finite(), any::<i16>())
                .prop_map(|(millis, timezone)| Value::Date { millis, timezone }),
            text.prop_map(Value::LongString),
            text.prop_map(Value::Xml),
        ];
        leaf.prop_recursive(6, 96, 6, move |inner| {
            let props = prop::collection::vec((text, inner.clone()), 0..6);
            prop_oneof![
                props.clone().prop_map(Value::Object),
                props.clone().prop_map(Value::EcmaArray),
                prop::collection::vec(inner, 0..6).prop_map(Value::StrictArray),
                (text, props)
                    .prop_map(|(class, properties)| Value::TypedObject { class, properties }),
            ]
        })
    }

    fn has_ecma_array(v: &Value) -> bool {
        match v {
            Value::EcmaArray(_) => true,
            Value::Object(p) | Value::TypedObject { properties: p, .. } => {
                p.iter().any(|(_, v)| has_ecma_array(v))
            }
            Value::StrictArray(items) => items.iter().any(has_ecma_array),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn round_trip(v in arb_value()) {
            let mut out = BytesMut::new();
            v.encode(&mut out);
            prop_assert_eq!(out.len(), v.encoded_len());
            out.put_u8(0x05); // a trailing value must be left alone
            let mut buf = out.freeze();
            prop_assert_eq!(Value::decode(&mut buf), Ok(v));
            prop_assert_eq!(&buf[..], &[0x05]);
        }

        #[test]
        fn truncations_fail_without_panicking(v in arb_value()) {
            let bytes = encode(&v);
            for end in 0..bytes.len() {
                let result = Value::decode(&mut Bytes::copy_from_slice(&bytes[..end]));
                // A trailing ECMA array may legitimately end early (missing end marker).
                if !has_ecma_array(&v) {
                    prop_assert!(result.is_err(), "prefix {} of {:?}", end, v);
                }
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_all(&mut Bytes::from(bytes.clone()));
            let _ = decode_amf3_command(&mut Bytes::from(bytes.clone()));
            let _ = decode_all(&mut Bytes::from(cat(&[&[0x11], &bytes])));
        }

        #[test]
        fn random_amf3_containers_never_panic(
            kind in prop::sample::select(vec![0x09u8, 0x0A]),
            bytes in prop::collection::vec(
                prop_oneof![0u8..0x12, any::<u8>()], 0..256),
        ) {
            // Bias towards AMF3 markers and small U29s so the decoder gets deep.
            let _ = decode_all(&mut Bytes::from(cat(&[&[0x11, kind], &bytes])));
        }
    }
}
