//! The chunk encoder.

use bytes::{BufMut, BytesMut};

use super::{DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP, MAX_CHUNK_SIZE, Message};

/// How a [`Writer`] chooses message headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Use the smallest header the previous message on the chunk stream allows (fmt 1, 2 or
    /// 3), as a connection's own writer should.
    Compress,
    /// Start every message with a full fmt 0 header, so the encoding does not depend on what
    /// was sent before and one encoding can be written to many connections.
    Fmt0,
}

/// The last header sent on one chunk stream, as the peer's reader will remember it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    csid: u32,
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last explicit header was fmt 1 or 2, so `delta` means the same to every reader
    /// (readers differ on what a fmt 3 after a fmt 0 adds).
    delta_valid: bool,
}

/// Splits messages into chunks for one connection's outgoing direction.
///
/// The writer keeps the last header it sent per chunk stream to compress the next one. A
/// chunk stream that is also written with shared [`encode_shared`] encodings must be reset
/// with [`Writer::reset`] before this writer uses it again.
#[derive(Debug)]
pub struct Writer {
    chunk_size: u32,
    mode: Mode,
    sent: Vec<Sent>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new(Mode::Compress)
    }
}

impl Writer {
    /// A writer with the initial chunk size of 128.
    pub fn new(mode: Mode) -> Writer {
        Writer {
            chunk_size: DEFAULT_CHUNK_SIZE,
            mode,
            sent: Vec::new(),
        }
    }

    /// The chunk size this writer cuts messages at.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the chunk size for messages written from now on (clamped to
    /// 1..=0x7FFFFFFF). Send the peer a Set Chunk Size message first.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    /// Forgets the header state of chunk stream `csid`: its next message starts with fmt 0.
    pub fn reset(&mut self, csid: u32) {
        self.sent.retain(|s| s.csid != csid);
    }

    /// Appends `msg`, cut into chunks, to `out`.
    pub fn write(&mut self, msg: &Message, out: &mut BytesMut) {
        let prev = self.sent.iter().position(|s| s.csid == msg.csid);
        let length = u32::try_from(msg.payload.len()).unwrap_or(u32::MAX);
        let header = match (self.mode, prev.and_then(|i| self.sent.get(i))) {
            (Mode::Compress, Some(p)) => choose(p, msg, length),
            _ => Header::Full,
        };
        let (delta, delta_valid) = match header {
            Header::Full => (msg.timestamp, false),
            Header::NoStreamId(d) | Header::TimestampOnly(d) => (d, true),
            Header::None(d) => (d, true),
        };
        let sent = Sent {
            csid: msg.csid,
            timestamp: msg.timestamp,
            delta,
            length,
            type_id: msg.type_id,
            stream_id: msg.stream_id,
            delta_valid,
        };
        match prev.and_then(|i| self.sent.get_mut(i)) {
            Some(slot) => *slot = sent,
            None => self.sent.push(sent),
        }
        encode(msg, header, self.chunk_size, out, None);
    }

    /// Like [`Writer::write`], but returns each chunk on its own (tests interleave them).
    #[cfg(test)]
    pub(crate) fn write_chunks(&mut self, msg: &Message) -> Vec<BytesMut> {
        let mut out = BytesMut::new();
        let mut bounds = Vec::new();
        let prev = self.sent.iter().position(|s| s.csid == msg.csid);
        let length = u32::try_from(msg.payload.len()).unwrap_or(u32::MAX);
        let header = match (self.mode, prev.and_then(|i| self.sent.get(i))) {
            (Mode::Compress, Some(p)) => choose(p, msg, length),
            _ => Header::Full,
        };
        // Record state exactly as `write` does, then encode with boundaries.
        self.write(msg, &mut BytesMut::new());
        encode(msg, header, self.chunk_size, &mut out, Some(&mut bounds));
        let mut chunks = Vec::new();
        for w in bounds.windows(2) {
            chunks.push(BytesMut::from(&out[w[0]..w[1]]));
        }
        chunks
    }
}

/// Appends `msg` to `out` as chunks of `chunk_size` that start with a fmt 0 header and
/// depend on no earlier message: the shared encoding that every player of a stream gets.
pub fn encode_shared(msg: &Message, chunk_size: u32, out: &mut BytesMut) {
    encode(
        msg,
        Header::Full,
        chunk_size.clamp(1, MAX_CHUNK_SIZE),
        out,
        None,
    );
}

#[derive(Debug, Clone, Copy)]
enum Header {
    /// fmt 0.
    Full,
    /// fmt 1 with this delta.
    NoStreamId(u32),
    /// fmt 2 with this delta.
    TimestampOnly(u32),
    /// fmt 3 starting a message; the peer adds this (repeated) delta.
    None(u32),
}

fn choose(prev: &Sent, msg: &Message, length: u32) -> Header {
    let delta = msg.timestamp.wrapping_sub(prev.timestamp);
    // A delta with the top bit set is a timestamp going backwards: say it in full.
    if msg.stream_id != prev.stream_id || delta > 0x7FFF_FFFF {
        return Header::Full;
    }
    if length != prev.length || msg.type_id != prev.type_id {
        return Header::NoStreamId(delta);
    }
    if prev.delta_valid && delta == prev.delta {
        Header::None(delta)
    } else {
        Header::TimestampOnly(delta)
    }
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    // RTMP 1.0 §5.3.1.1: ids 2..=63 fit in one byte, 64..=319 in two, up to 65599 in three.
    let fmt = fmt << 6;
    match csid {
        0..=63 => out.put_u8(fmt | csid as u8),
        64..=319 => {
            out.put_u8(fmt);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let id = csid.saturating_sub(64).min(0xFFFF);
            out.put_u8(fmt | 1);
            out.put_u8((id & 0xFF) as u8);
            out.put_u8((id >> 8) as u8);
        }
    }
}

fn put_u24(out: &mut BytesMut, v: u32) {
    out.put_u8((v >> 16) as u8);
    out.put_u8((v >> 8) as u8);
    out.put_u8(v as u8);
}

/// Encodes `msg`; with `bounds`, records the offset in `out` where each chunk starts (and,
/// last, where the message ends).
fn encode(
    msg: &Message,
    header: Header,
    chunk_size: u32,
    out: &mut BytesMut,
    mut bounds: Option<&mut Vec<usize>>,
) {
    let payload = &msg.payload[..];
    let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let (fmt, field) = match header {
        Header::Full => (0, msg.timestamp),
        Header::NoStreamId(d) => (1, d),
        Header::TimestampOnly(d) => (2, d),
        Header::None(d) => (3, d),
    };
    let extended = field >= EXTENDED_TIMESTAMP;
    let basic_len = match msg.csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    };
    let ext_len = if extended { 4 } else { 0 };
    let chunk = chunk_size.max(1) as usize;
    let chunks = payload.len().div_ceil(chunk).max(1);
    out.reserve(payload.len() + 11 + chunks * (basic_len + ext_len));

    if let Some(b) = bounds.as_deref_mut() {
        b.push(out.len());
    }
    put_basic_header(out, fmt, msg.csid);
    let ts = field.min(EXTENDED_TIMESTAMP);
    match fmt {
        0 => {
            put_u24(out, ts);
            put_u24(out, length);
            out.put_u8(msg.type_id);
            out.put_u32_le(msg.stream_id);
        }
        1 => {
            put_u24(out, ts);
            put_u24(out, length);
            out.put_u8(msg.type_id);
        }
        2 => put_u24(out, ts),
        _ => {}
    }
    if extended {
        out.put_u32(field);
    }
    let mut parts = payload.chunks(chunk);
    if let Some(first) = parts.next() {
        out.put_slice(first);
    }
    for part in parts {
        if let Some(b) = bounds.as_deref_mut() {
            b.push(out.len());
        }
        // Continuation chunks repeat the extended timestamp, as librtmp and ffmpeg expect.
        put_basic_header(out, 3, msg.csid);
        if extended {
            out.put_u32(field);
        }
        out.put_slice(part);
    }
    if let Some(b) = bounds {
        b.push(out.len());
    }
}
