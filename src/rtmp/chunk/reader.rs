//! The chunk reassembler.

use bytes::{Buf, BytesMut};

use super::{DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP, Error, MAX_CHUNK_SIZE, Message};

/// The most bytes the reader sets aside for an incomplete message before its chunks arrive:
/// a peer's declared length is only a claim, so the buffer grows with what it sends.
pub const PREALLOC_LEN: usize = 64 << 10;

/// Limits the [`Reader`] enforces on what a peer may make it hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderConfig {
    /// The largest message length accepted, in bytes. Default 16 MiB.
    pub max_message_len: u32,
    /// The most chunk streams one connection may use. Default 64.
    pub max_chunk_streams: usize,
    /// The most bytes all incomplete messages together may declare. Default 32 MiB.
    pub max_pending_bytes: u64,
    /// The largest command or shared-object message (types 16, 17, 19, 20) accepted.
    /// Default 64 KiB: a command is decoded whole before its name is known, and each byte of
    /// AMF may cost tens of bytes of decoded values.
    pub max_command_len: u32,
    /// The largest data message (types 15, 18: metadata, cue points) accepted. Default
    /// 512 KiB, room for a metadata object with a keyframe index.
    pub max_data_len: u32,
}

impl ReaderConfig {
    /// The largest message of `type_id` this configuration accepts.
    pub fn max_len_for(&self, type_id: u8) -> u32 {
        let cap = match type_id {
            16 | 17 | 19 | 20 => self.max_command_len,
            15 | 18 => self.max_data_len,
            _ => u32::MAX,
        };
        cap.min(self.max_message_len)
    }
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            max_message_len: 16 << 20,
            max_chunk_streams: 64,
            max_pending_bytes: 32 << 20,
            max_command_len: 64 << 10,
            max_data_len: 512 << 10,
        }
    }
}

/// What the reader remembers per chunk stream: the last header (for fmt 1/2/3 chunks to
/// inherit from) and the message being reassembled.
#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    /// Absolute timestamp of the last message that started on this chunk stream.
    timestamp: u32,
    /// The timestamp field of the last fmt 0/1/2 header (absolute for fmt 0, a delta
    /// otherwise); a fmt 3 chunk that starts a message adds it (RTMP 1.0 §5.3.1.2.4).
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Whether the last fmt 0/1/2 header carried an extended timestamp, which fmt 3 chunks
    /// then repeat (RTMP 1.0 §5.3.1.3).
    extended: bool,
    /// The payload of the incomplete message, if one is in progress.
    partial: Option<BytesMut>,
}

/// Reassembles RTMP messages from the chunk stream.
///
/// Feed it the receive buffer with [`Reader::read`]; it consumes whole chunks from the front
/// and returns each message as soon as its last chunk arrived. A message that arrives in a
/// single chunk is split out of the receive buffer without a copy; a message cut into several
/// chunks is copied into a buffer that grows with what has arrived (at most
/// [`PREALLOC_LEN`] at first, then doubling up to the declared length), so a header that
/// declares 16 MiB and brings 128 bytes costs 64 KiB, not 16 MiB.
///
/// Set Chunk Size and Abort messages take effect inside the reader as soon as they are read
/// (so the very next chunk is parsed correctly) and are still returned to the caller.
#[derive(Debug)]
pub struct Reader {
    config: ReaderConfig,
    chunk_size: u32,
    streams: Vec<ChunkStream>,
    pending: u64,
    wanted: usize,
}

impl Default for Reader {
    fn default() -> Self {
        Reader::new(ReaderConfig::default())
    }
}

fn u24(b: &[u8]) -> u32 {
    b.iter()
        .take(3)
        .fold(0, |acc, &x| (acc << 8) | u32::from(x))
}

fn be32(b: &[u8]) -> u32 {
    b.iter()
        .take(4)
        .fold(0, |acc, &x| (acc << 8) | u32::from(x))
}

fn le32(b: &[u8]) -> u32 {
    b.iter()
        .take(4)
        .rev()
        .fold(0, |acc, &x| (acc << 8) | u32::from(x))
}

/// Makes room in `partial` for `more` bytes of a message of `length`: the capacity doubles
/// (never past `length`), in one exact allocation, so a finished message holds no more than
/// its own length and the copies add up to less than the message.
fn grow(partial: &mut BytesMut, more: usize, length: usize) {
    let need = partial.len() + more;
    if need <= partial.capacity() {
        return;
    }
    let cap = need.max(partial.capacity() * 2).min(length).max(need);
    let mut bigger = BytesMut::with_capacity(cap);
    bigger.extend_from_slice(partial);
    *partial = bigger;
}

impl Reader {
    /// A reader with the given limits and the initial chunk size of 128.
    pub fn new(config: ReaderConfig) -> Reader {
        Reader {
            config,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            pending: 0,
            wanted: 1,
        }
    }

    /// The chunk size the peer sends with.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Sets the peer's chunk size. [`Reader::read`] does this itself when it reads a Set
    /// Chunk Size message.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), Error> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(Error::InvalidChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Drops the incomplete message on chunk stream `csid`, if any (the Abort message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid) {
            if let Some(p) = s.partial.take() {
                self.pending = self.pending.saturating_sub(u64::from(s.length));
                drop(p);
            }
        }
    }

    /// How many bytes, counted from the start of the buffer, the reader needs before
    /// [`Reader::read`] can make progress again. A caller that reserves this much before its
    /// next socket read avoids growing its buffer in many small steps for a large chunk.
    pub fn wanted(&self) -> usize {
        self.wanted
    }

    /// Consumes whole chunks from the front of `buf` until one message is complete.
    ///
    /// Returns `Ok(None)` when `buf` holds no complete chunk; the partial chunk stays in
    /// `buf`. On `Err` the connection must be closed.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, Error> {
        loop {
            match self.read_chunk(buf)? {
                Step::NeedMore => return Ok(None),
                Step::Partial => continue,
                Step::Complete(msg) => {
                    self.apply_control(&msg)?;
                    return Ok(Some(msg));
                }
            }
        }
    }

    fn apply_control(&mut self, msg: &Message) -> Result<(), Error> {
        if msg.stream_id != 0 || !(msg.type_id == 1 || msg.type_id == 2) {
            return Ok(());
        }
        if msg.payload.len() < 4 {
            return Err(Error::ShortControlMessage {
                type_id: msg.type_id,
                len: msg.payload.len(),
            });
        }
        let value = be32(&msg.payload);
        if msg.type_id == 1 {
            self.set_chunk_size(value)
        } else {
            self.abort(value);
            Ok(())
        }
    }

    /// Parses one chunk. Nothing is consumed and no state changes unless the whole chunk
    /// (header and payload) is in `buf`.
    fn read_chunk(&mut self, buf: &mut BytesMut) -> Result<Step, Error> {
        let avail = buf.len();
        let Some(&b0) = buf.first() else {
            self.wanted = 1;
            return Ok(Step::NeedMore);
        };
        let fmt = b0 >> 6;
        // RTMP 1.0 §5.3.1.1 Chunk Basic Header: 1, 2 or 3 bytes.
        let (csid, mut pos) = match b0 & 0x3F {
            0 => match buf.get(1) {
                Some(&b1) => (u32::from(b1) + 64, 2),
                None => return Ok(self.need(2)),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&b1), Some(&b2)) => (u32::from(b2) * 256 + u32::from(b1) + 64, 3),
                _ => return Ok(self.need(3)),
            },
            c => (u32::from(c), 1),
        };
        // RTMP 1.0 §5.3.1.2 Chunk Message Header: 11, 7, 3 or 0 bytes.
        let mh_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(h) = buf.get(pos..pos + mh_len) else {
            return Ok(self.need(pos + mh_len));
        };
        let ts_field = if fmt <= 2 { u24(h) } else { 0 };
        pos += mh_len;

        let idx = self.streams.iter().position(|s| s.csid == csid);
        let prev = idx.and_then(|i| self.streams.get(i));
        if prev.is_none() {
            if fmt != 0 {
                return Err(Error::NoPreviousHeader { fmt, csid });
            }
            if self.streams.len() >= self.config.max_chunk_streams {
                return Err(Error::TooManyChunkStreams {
                    csid,
                    max: self.config.max_chunk_streams,
                });
            }
        }
        let in_progress = prev.and_then(|s| s.partial.as_ref().map(|p| (s.length, p.len())));
        if let (Some((length, have)), true) = (in_progress, fmt != 3) {
            return Err(Error::HeaderInsideMessage {
                csid,
                missing: length.saturating_sub(u32::try_from(have).unwrap_or(u32::MAX)),
            });
        }

        // The header fields this chunk declares or inherits.
        let (length, type_id, stream_id) = match (fmt, prev) {
            (0, _) => (u24(&h[3..6]), h[6], le32(&h[7..11])),
            (1, Some(p)) => (u24(&h[3..6]), h[6], p.stream_id),
            (_, Some(p)) => (p.length, p.type_id, p.stream_id),
            (_, None) => return Err(Error::NoPreviousHeader { fmt, csid }),
        };
        let max = self.config.max_len_for(type_id);
        if length > max {
            return Err(Error::MessageTooLarge { csid, length, max });
        }

        // RTMP 1.0 §5.3.1.3 Extended Timestamp.
        let extended = match (fmt, prev) {
            (0..=2, _) => ts_field == EXTENDED_TIMESTAMP,
            (_, Some(p)) => p.extended,
            _ => false,
        };
        let mut field = match (fmt, prev) {
            (0..=2, _) => ts_field,
            (_, Some(p)) => p.delta,
            _ => 0,
        };
        if extended {
            let Some(ext) = buf.get(pos..pos + 4) else {
                return Ok(self.need(pos + 4));
            };
            let ext = be32(ext);
            match in_progress {
                // A continuation chunk repeats the extended field (librtmp, ffmpeg and FMS
                // do); a few encoders omit it, so take the four bytes only if they match.
                Some(_) => {
                    if ext == field {
                        pos += 4;
                    }
                }
                None => {
                    field = ext;
                    pos += 4;
                }
            }
        }

        let have = in_progress.map_or(0, |(_, have)| have);
        let remaining = (length as usize).saturating_sub(have);
        let chunk_len = remaining.min(self.chunk_size as usize);
        if avail < pos + chunk_len {
            return Ok(self.need(pos + chunk_len));
        }

        // The whole chunk is here: commit.
        if in_progress.is_none() && chunk_len < remaining {
            let pending = self.pending + u64::from(length);
            if pending > self.config.max_pending_bytes {
                return Err(Error::TooMuchPending {
                    pending,
                    max: self.config.max_pending_bytes,
                });
            }
        }
        let i = match idx {
            Some(i) => i,
            None => {
                self.streams.push(ChunkStream {
                    csid,
                    timestamp: 0,
                    delta: 0,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    extended: false,
                    partial: None,
                });
                self.streams.len() - 1
            }
        };
        let Some(s) = self.streams.get_mut(i) else {
            return Err(Error::NoPreviousHeader { fmt, csid });
        };
        buf.advance(pos);
        self.wanted = 1;

        if in_progress.is_none() {
            s.timestamp = if fmt == 0 {
                field
            } else {
                s.timestamp.wrapping_add(field)
            };
            s.delta = field;
            s.length = length;
            s.type_id = type_id;
            s.stream_id = stream_id;
            s.extended = extended;
            if chunk_len == remaining {
                // Zero-copy: the whole message is this chunk's payload.
                let payload = buf.split_to(chunk_len).freeze();
                return Ok(Step::Complete(Message {
                    csid,
                    timestamp: s.timestamp,
                    type_id,
                    stream_id,
                    payload,
                }));
            }
            self.pending += u64::from(length);
            let mut partial =
                BytesMut::with_capacity((length as usize).min(PREALLOC_LEN.max(chunk_len)));
            partial.extend_from_slice(&buf[..chunk_len]);
            buf.advance(chunk_len);
            s.partial = Some(partial);
            return Ok(Step::Partial);
        }

        let Some(partial) = s.partial.as_mut() else {
            return Ok(Step::Partial);
        };
        grow(partial, chunk_len, length as usize);
        partial.extend_from_slice(&buf[..chunk_len]);
        buf.advance(chunk_len);
        if partial.len() < length as usize {
            return Ok(Step::Partial);
        }
        let payload = s.partial.take().map(BytesMut::freeze).unwrap_or_default();
        self.pending = self.pending.saturating_sub(u64::from(length));
        Ok(Step::Complete(Message {
            csid,
            timestamp: s.timestamp,
            type_id: s.type_id,
            stream_id: s.stream_id,
            payload,
        }))
    }

    fn need(&mut self, n: usize) -> Step {
        self.wanted = n;
        Step::NeedMore
    }
}

enum Step {
    NeedMore,
    Partial,
    Complete(Message),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial_capacity(r: &Reader) -> usize {
        r.streams
            .iter()
            .filter_map(|s| s.partial.as_ref())
            .map(BytesMut::capacity)
            .sum()
    }

    /// A fmt 0 header on csid 6 for a video message of `length`, then `body`.
    fn video_chunk(length: u32, body: &[u8]) -> BytesMut {
        let mut v = BytesMut::new();
        v.extend_from_slice(&[6, 0, 0, 0]);
        v.extend_from_slice(&length.to_be_bytes()[1..]);
        v.extend_from_slice(&[9, 1, 0, 0, 0]);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn a_declared_length_is_not_reserved_before_it_arrives() {
        let mut r = Reader::default();
        let mut buf = video_chunk(0xFF_FFFF, &[7; 128]);
        assert!(r.read(&mut buf).expect("valid").is_none());
        let cap = partial_capacity(&r);
        assert!((128..=PREALLOC_LEN).contains(&cap), "capacity {cap}");
    }

    #[test]
    fn a_long_message_grows_to_exactly_its_length() {
        let mut r = Reader::default();
        r.set_chunk_size(4096).expect("valid size");
        let len = 300_000u32;
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut buf = video_chunk(len, &body[..4096]);
        for piece in body[4096..].chunks(4096) {
            buf.extend_from_slice(&[0xC6]);
            buf.extend_from_slice(piece);
        }
        let mut got = None;
        let mut peak = 0;
        while !buf.is_empty() {
            if let Some(m) = r.read(&mut buf).expect("valid") {
                got = Some(m);
            }
            peak = peak.max(partial_capacity(&r));
        }
        let m = got.expect("the message");
        assert_eq!(&m.payload[..], &body[..]);
        assert!(peak <= len as usize, "peak capacity {peak}");
    }
}
