//! The bodies of ringcast's fuzz targets, one public function per target.
//!
//! Each `fuzz_targets/NAME.rs` calls the function `NAME` with libFuzzer's input, and the main
//! crate's `tests/fuzz_regressions.rs` includes this same file (with `#[path]`) to replay
//! the committed seeds and regressions on stable Rust, so a crash found here stays fixed.
//! Only `ringcast` and `bytes` are used, so that the include needs nothing the main crate
//! does not already depend on.
//!
//! Every target must never panic on its input, whatever it is: that is the project's rule
//! for peer input. Where a target can also tell right from wrong (an oracle) it asserts it,
//! so a logic bug shows up as a crash too:
//!
//! - feeding bytes in arbitrary pieces gives the same result as feeding them at once;
//! - a reader that asks for more bytes asks for more than it already holds;
//! - what ringcast encodes, ringcast decodes back unchanged;
//! - what a server session sends is a well-formed chunk stream, and its output and state
//!   stay proportional to its input.
//!
//! Most inputs start with a control byte: its low bits pick a mode, its top two bits how the
//! rest is cut into pieces ([`Splitter`]).

use bytes::{Bytes, BytesMut};
use ringcast::flv::{self, codec};
use ringcast::hub::Frame;
use ringcast::rtmp::amf0::{self, Value};
use ringcast::rtmp::chunk::{self, Message, Mode, Reader, ReaderConfig, Writer};
use ringcast::rtmp::handshake::{self, HANDSHAKE_SIZE, Progress};
use ringcast::rtmp::message;
use ringcast::rtmp::session::server::{Event, Server, ServerConfig};
use ringcast::rtmp::session::{Media, MediaKind};

/// C0 + C1: one version byte and one handshake packet.
const C0C1: usize = 1 + HANDSHAKE_SIZE;
/// A whole side of the handshake: C0 + C1 + C2 (or S0 + S1 + S2).
const FULL_HANDSHAKE: usize = 1 + 2 * HANDSHAKE_SIZE;
/// The message stream id frames are encoded for (`ringcast::hub`'s `PLAYER_STREAM_ID`).
const PLAYER_STREAM_ID: u32 = 1;

// ---------------------------------------------------------------------------------------
// Input helpers

/// Cuts a byte stream into pieces, the way reads off a socket would: deterministic for a
/// given control byte, so a crash replays. Its top two bits choose the piece sizes: all at
/// once, 1 byte, 1..=16 bytes or 1..=2048 bytes.
#[derive(Debug, Clone)]
struct Splitter {
    state: u64,
    max: usize,
}

impl Splitter {
    /// Everything in one piece.
    fn whole() -> Splitter {
        Splitter {
            state: 0,
            max: usize::MAX,
        }
    }

    /// Pieces chosen by `ctl` (see the type docs).
    fn new(ctl: u8) -> Splitter {
        let max = match ctl >> 6 {
            0 => usize::MAX,
            1 => 1,
            2 => 16,
            _ => 2048,
        };
        Splitter {
            state: u64::from(ctl).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            max,
        }
    }

    /// The next pseudo-random number (SplitMix64).
    fn rand(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The size of the next piece when `left` bytes remain (at least 1 if `left > 0`).
    fn next(&mut self, left: usize) -> usize {
        if self.max == usize::MAX {
            return left;
        }
        let n = 1 + (self.rand() % self.max as u64) as usize;
        n.min(left)
    }
}

/// Reads numbers off the front of the fuzz input; past its end every read is 0.
#[derive(Debug)]
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

/// Splits off the control byte; an empty input has control byte 0.
fn control(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&ctl, rest)) => (ctl, rest),
        None => (0, data),
    }
}

// ---------------------------------------------------------------------------------------
// chunk_reader

/// What a chunk reader made of a byte stream.
#[derive(Debug, PartialEq, Eq)]
struct ChunkLog {
    messages: Vec<Message>,
    error: Option<chunk::Error>,
    /// Bytes consumed: up to the end of the last whole chunk read.
    consumed: usize,
}

/// The reader limits of the `chunk_reader` target: the defaults, with the message and
/// pending-bytes limits scaled down so that they are reached (and a 16 MiB reassembly
/// buffer is not allocated, under ASan, for every input that declares one).
fn small_reader_config() -> ReaderConfig {
    ReaderConfig {
        max_message_len: 1 << 16,
        max_chunk_streams: 8,
        max_pending_bytes: 1 << 18,
        ..ReaderConfig::default()
    }
}

/// Feeds `bytes` to a fresh reader in `split`'s pieces, reading after each piece.
fn read_chunks(bytes: &[u8], split: &mut Splitter) -> ChunkLog {
    let mut reader = Reader::new(small_reader_config());
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    let mut fed = 0;
    loop {
        let n = split.next(bytes.len() - fed);
        buf.extend_from_slice(&bytes[fed..fed + n]);
        fed += n;
        loop {
            match reader.read(&mut buf) {
                Ok(Some(msg)) => messages.push(msg),
                Ok(None) => {
                    // The hint must ask for more than is there, or a caller that waits for
                    // `wanted` bytes would wait forever.
                    assert!(
                        buf.len() < reader.wanted(),
                        "chunk reader wants {} bytes but holds {} and makes no progress",
                        reader.wanted(),
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    return ChunkLog {
                        messages,
                        error: Some(e),
                        consumed: fed - buf.len(),
                    };
                }
            }
        }
        if fed == bytes.len() {
            return ChunkLog {
                messages,
                error: None,
                consumed: fed - buf.len(),
            };
        }
    }
}

/// The `chunk_reader` target.
///
/// Control byte bit 0 clear: the rest is an arbitrary chunk stream, read at once and in
/// pieces; both readings must agree. Bit 0 set: the rest describes a valid chunk stream
/// (see [`chunk_stream_from`]), which must read back exactly as written.
pub fn chunk_reader(data: &[u8]) {
    let (ctl, rest) = control(data);
    if ctl & 1 == 0 {
        let whole = read_chunks(rest, &mut Splitter::whole());
        let split = read_chunks(rest, &mut Splitter::new(ctl));
        assert_eq!(
            whole, split,
            "the chunk reader depends on how input is split"
        );
    } else {
        let (wire, expected) = chunk_stream_from(ctl, rest);
        let log = read_chunks(&wire, &mut Splitter::new(ctl));
        assert_eq!(log.error, None, "a valid chunk stream was refused");
        assert_eq!(
            log.consumed,
            wire.len(),
            "a valid chunk stream was not read to its end"
        );
        assert_eq!(log.messages.len(), expected.len(), "message count");
        for (i, (got, want)) in log.messages.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "message {i} read back differently");
        }
    }
}

/// The length of the basic header the writer uses for `csid` (RTMP 1.0 §5.3.1.1).
fn basic_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

/// Cuts the encoding of one message (`payload_len` bytes at `chunk_size`) into its chunks,
/// checking that its shape is what RTMP 1.0 §5.3 says it must be.
fn cut_chunks(enc: &[u8], csid: u32, payload_len: usize, chunk_size: u32) -> Vec<Bytes> {
    let basic = basic_len(csid);
    let b0 = enc.first().copied().unwrap_or_default();
    let fmt = b0 >> 6;
    let id = match (b0 & 0x3F, enc.get(1), enc.get(2)) {
        (0, Some(&b1), _) => u32::from(b1) + 64,
        (1, Some(&b1), Some(&b2)) => u32::from(b2) * 256 + u32::from(b1) + 64,
        (c, _, _) => u32::from(c),
    };
    assert_eq!(id, csid, "basic header names the wrong chunk stream");
    let mh = [11, 7, 3, 0][usize::from(fmt)];
    let cs = chunk_size as usize;
    let n = payload_len.div_ceil(cs).max(1);
    let plain = basic + mh + basic * (n - 1) + payload_len;
    let ext = if enc.len() == plain {
        0
    } else {
        assert_eq!(
            enc.len(),
            plain + 4 * n,
            "chunk encoding has the wrong length"
        );
        4
    };
    if fmt < 3 {
        let ts = enc[basic..basic + 3]
            .iter()
            .fold(0u32, |a, &b| (a << 8) | u32::from(b));
        assert_eq!(
            ts == chunk::EXTENDED_TIMESTAMP,
            ext == 4,
            "extended timestamp flag and field disagree"
        );
    }
    let enc = Bytes::copy_from_slice(enc);
    let mut chunks = Vec::with_capacity(n);
    let mut pos = 0;
    let mut left = payload_len;
    for i in 0..n {
        let header = if i == 0 {
            basic + mh + ext
        } else {
            basic + ext
        };
        let body = left.min(cs);
        chunks.push(enc.slice(pos..pos + header + body));
        pos += header + body;
        left -= body;
    }
    assert_eq!(pos, enc.len());
    chunks
}

/// What a [`chunk_stream_from`] message stream remembers per chunk stream, to make the next
/// message compress (or not) against it.
#[derive(Debug, Clone, Copy, Default)]
struct Last {
    timestamp: u32,
    delta: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
}

/// A message queued on one chunk stream: its chunks, how many were sent, and the message.
#[derive(Debug)]
struct Queued {
    chunks: Vec<Bytes>,
    sent: usize,
    msg: Message,
}

/// Encodes a control message (chunk stream 2) at once: its chunks go straight to `wire`.
fn put_control(
    writer: &mut Writer,
    type_id: u8,
    value: u32,
    timestamp: u32,
    wire: &mut Vec<u8>,
    expected: &mut Vec<Message>,
) {
    let msg = Message {
        csid: chunk::csid::CONTROL,
        timestamp,
        type_id,
        stream_id: 0,
        payload: Bytes::copy_from_slice(&value.to_be_bytes()),
    };
    let mut enc = BytesMut::new();
    writer.write(&msg, &mut enc);
    cut_chunks(&enc, msg.csid, 4, writer.chunk_size());
    wire.extend_from_slice(&enc);
    expected.push(msg);
}

/// Builds a valid chunk stream from fuzz input with [`Writer`]: several chunk streams (ids
/// of every basic-header size), messages interleaved chunk by chunk, fmt 0 to 3 headers
/// (with `ctl` bit 1, [`Mode::Fmt0`] instead of compression), timestamps that jump,
/// wrap and go backwards (extended ones included), Set Chunk Size between batches and Abort
/// in the middle of a message. Returns the bytes and the messages a reader must return, in
/// order.
fn chunk_stream_from(ctl: u8, data: &[u8]) -> (Vec<u8>, Vec<Message>) {
    const SIZES: [u32; 12] = [1, 2, 3, 4, 7, 64, 127, 128, 129, 1000, 4096, 0x7FFF_FFFF];
    const TYPES: [u8; 12] = [8, 9, 18, 20, 3, 4, 5, 6, 15, 17, 22, 0x5A];
    let mut input = Input { data };
    let mode = if ctl & 2 == 0 {
        Mode::Compress
    } else {
        Mode::Fmt0
    };
    let mut writer = Writer::new(mode);
    let mut csids: Vec<u32> = Vec::new();
    for _ in 0..1 + input.u8() % 6 {
        let id = match input.u8() % 5 {
            0 => 3 + u32::from(input.u8()) % 61,
            1 => 64 + u32::from(input.u8()),
            2 => 320 + u32::from(input.u16()) % (chunk::MAX_CSID - 319),
            3 => [3, 63, 64, 319, 320, chunk::MAX_CSID][usize::from(input.u8()) % 6],
            _ => 3 + u32::from(input.u8() % 8),
        };
        if !csids.contains(&id) {
            csids.push(id);
        }
    }
    let mut last: Vec<Last> = vec![Last::default(); csids.len()];
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    let mut serial = 0u32;
    let mut control_ts = 0u32;

    // Bounded so that one input stays quick to write and to read byte by byte.
    while !input.is_empty() && expected.len() < 200 && wire.len() < 1 << 13 {
        let op = input.u8();
        if op % 8 == 0 {
            let size = SIZES[usize::from(input.u8()) % SIZES.len()];
            control_ts = control_ts.wrapping_add(input.u32() >> 24);
            put_control(&mut writer, 1, size, control_ts, &mut wire, &mut expected);
            writer.set_chunk_size(size);
            continue;
        }
        // A batch: up to 8 messages, cut into chunks now (at this chunk size), then sent
        // interleaved, each chunk stream's messages in order.
        let mut queues: Vec<Vec<Queued>> = (0..csids.len()).map(|_| Vec::new()).collect();
        for _ in 0..1 + op % 8 {
            let k = usize::from(input.u8()) % csids.len();
            let prev = last[k];
            let shape = input.u8();
            let length = match shape & 3 {
                0 => prev.length,
                1 => usize::from(input.u8()),
                2 => usize::from(input.u16() % 3000),
                _ => 0,
            };
            let type_id = if shape & 4 == 0 {
                prev.type_id
            } else {
                TYPES[usize::from(input.u8()) % TYPES.len()]
            };
            // Types 1 and 2 on stream 0 would act on the reader; they only come from
            // `put_control`, so a first message of "type 0" becomes video instead.
            let type_id = if type_id == 0 { 9 } else { type_id };
            let stream_id = if shape & 8 == 0 {
                prev.stream_id
            } else {
                u32::from_le_bytes(input.u32().to_be_bytes())
            };
            let delta = match (shape >> 4) & 7 {
                0 => prev.delta,
                1 => u32::from(input.u8()),
                2 => u32::from(input.u16()),
                3 => chunk::EXTENDED_TIMESTAMP - 1 + u32::from(input.u8() % 3),
                4 => input.u32(),
                5 => 0u32.wrapping_sub(u32::from(input.u8())),
                _ => 33,
            };
            let timestamp = if shape & 0x80 == 0 {
                prev.timestamp.wrapping_add(delta)
            } else {
                input.u32()
            };
            last[k] = Last {
                timestamp,
                delta: timestamp.wrapping_sub(prev.timestamp),
                length,
                type_id,
                stream_id,
            };
            serial = serial.wrapping_add(1);
            let payload: Vec<u8> = (0..length)
                .map(|i| (i as u32).wrapping_mul(31).wrapping_add(serial) as u8)
                .collect();
            let msg = Message {
                csid: csids[k],
                timestamp,
                type_id,
                stream_id,
                payload: Bytes::from(payload),
            };
            let mut enc = BytesMut::new();
            writer.write(&msg, &mut enc);
            let chunks = cut_chunks(&enc, msg.csid, length, writer.chunk_size());
            queues[k].push(Queued {
                chunks,
                sent: 0,
                msg,
            });
        }
        loop {
            let busy = queues.iter().filter(|q| !q.is_empty()).count();
            if busy == 0 {
                break;
            }
            let pick = input.u8();
            let Some(k) = (0..queues.len())
                .filter(|&k| !queues[k].is_empty())
                .nth(usize::from(pick) % busy)
            else {
                break;
            };
            let q = &mut queues[k][0];
            if pick >= 0xF0 && q.sent > 0 && q.sent < q.chunks.len() {
                // Abort (RTMP 1.0 §5.4.2) the message half sent: the reader drops it, and
                // both sides keep its header for the next message on that chunk stream.
                let csid = q.msg.csid;
                queues[k].remove(0);
                control_ts = control_ts.wrapping_add(1);
                put_control(&mut writer, 2, csid, control_ts, &mut wire, &mut expected);
                continue;
            }
            wire.extend_from_slice(&q.chunks[q.sent]);
            q.sent += 1;
            if q.sent == q.chunks.len() {
                let done = queues[k].remove(0);
                expected.push(done.msg);
            }
        }
    }
    (wire, expected)
}

// ---------------------------------------------------------------------------------------
// handshake_server, handshake_client

/// What one side of a handshake made of its peer's bytes.
#[derive(Debug, PartialEq, Eq)]
struct HandshakeLog {
    result: Result<Progress, handshake::Error>,
    out: Vec<u8>,
    consumed: usize,
    kind: Option<handshake::Kind>,
}

/// Feeds `bytes` in `split`'s pieces to `handle` until it is done or fails.
fn run_handshake(
    bytes: &[u8],
    split: &mut Splitter,
    mut handle: impl FnMut(&mut BytesMut, &mut BytesMut) -> Result<Progress, handshake::Error>,
) -> (Result<Progress, handshake::Error>, Vec<u8>, usize) {
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut fed = 0;
    let mut consumed = 0;
    loop {
        let n = split.next(bytes.len() - fed);
        buf.extend_from_slice(&bytes[fed..fed + n]);
        fed += n;
        let before = buf.len();
        let result = handle(&mut buf, &mut out);
        consumed += before - buf.len();
        match result {
            Ok(Progress::NeedMore) if fed < bytes.len() => {}
            r => {
                if r == Ok(Progress::Done) {
                    // Done is final: nothing more is consumed or sent.
                    let (left, sent) = (buf.len(), out.len());
                    assert_eq!(handle(&mut buf, &mut out), Ok(Progress::Done));
                    assert_eq!((buf.len(), out.len()), (left, sent), "handshake went on");
                }
                return (r, out.to_vec(), consumed);
            }
        }
    }
}

fn server_handshake(ctl: u8, bytes: &[u8], split: &mut Splitter) -> HandshakeLog {
    let mut hs = handshake::Server::new(u64::from(ctl), 7);
    let (result, out, consumed) = run_handshake(bytes, split, |i, o| hs.handle(i, o));
    HandshakeLog {
        result,
        out,
        consumed,
        kind: hs.kind(),
    }
}

/// Checks the version byte rule: versions 3..=31 but RTMPE's 6, 8 and 9 are spoken.
fn check_version_result(result: &Result<Progress, handshake::Error>, version: Option<u8>) {
    if let Err(e) = result {
        assert_eq!(
            Some(e),
            version.map(handshake::Error::UnsupportedVersion).as_ref()
        );
        let v = version.unwrap_or_default();
        assert!(
            !(3..=31).contains(&v) || [6, 8, 9].contains(&v),
            "refused {v}"
        );
    } else if let Some(v) = version {
        assert!(
            (3..=31).contains(&v) && ![6, 8, 9].contains(&v),
            "accepted {v}"
        );
    }
}

/// The `handshake_server` target: arbitrary client bytes (after the control byte, which
/// also seeds S1) to a server handshake, at once and in pieces.
pub fn handshake_server(data: &[u8]) {
    let (ctl, rest) = control(data);
    let whole = server_handshake(ctl, rest, &mut Splitter::whole());
    let split = server_handshake(ctl, rest, &mut Splitter::new(ctl));
    assert_eq!(
        whole, split,
        "the server handshake depends on how input is split"
    );
    check_version_result(&whole.result, rest.first().copied());
    match whole.result {
        Err(_) => assert_eq!((whole.consumed, whole.out.len()), (0, 0)),
        Ok(Progress::NeedMore) if rest.len() < C0C1 => {
            assert_eq!((whole.consumed, whole.out.len()), (0, 0));
        }
        Ok(p) => {
            let done = if p == Progress::Done {
                FULL_HANDSHAKE
            } else {
                C0C1
            };
            assert_eq!(whole.consumed, done);
            assert_eq!(whole.out.len(), FULL_HANDSHAKE, "S0+S1+S2");
            assert_eq!(whole.out[0], handshake::VERSION);
            if whole.kind == Some(handshake::Kind::Simple) {
                assert_eq!(&whole.out[C0C1..], &rest[1..C0C1], "S2 echoes C1");
            }
        }
    }
}

fn client_handshake(ctl: u8, bytes: &[u8], split: &mut Splitter) -> (HandshakeLog, Vec<u8>) {
    let mut hs = handshake::Client::new(u64::from(ctl), 9, ctl & 2 != 0);
    let mut c0c1 = BytesMut::new();
    hs.start(&mut c0c1);
    assert_eq!(c0c1.len(), C0C1);
    let (result, out, consumed) = run_handshake(bytes, split, |i, o| hs.handle(i, o));
    let log = HandshakeLog {
        result,
        out,
        consumed,
        kind: hs.kind(),
    };
    (log, c0c1.to_vec())
}

/// The `handshake_client` target.
///
/// Control byte bit 0 clear: arbitrary server bytes to a client handshake (bit 1: a digest
/// C1), at once and in pieces. Bit 0 set: a real client and server, seeded from the input,
/// shake hands through pieces, with the rest of the input after the last packet each way;
/// it must succeed, agree on the form, and leave those bytes in place.
pub fn handshake_client(data: &[u8]) {
    let (ctl, rest) = control(data);
    if ctl & 1 == 1 {
        return handshake_pair(ctl, rest);
    }
    let (whole, _) = client_handshake(ctl, rest, &mut Splitter::whole());
    let (split, _) = client_handshake(ctl, rest, &mut Splitter::new(ctl));
    assert_eq!(
        whole, split,
        "the client handshake depends on how input is split"
    );
    check_version_result(&whole.result, rest.first().copied());
    match whole.result {
        Err(_) => assert_eq!((whole.consumed, whole.out.len()), (0, 0)),
        Ok(Progress::NeedMore) if rest.len() < C0C1 => {
            assert_eq!((whole.consumed, whole.out.len()), (0, 0));
        }
        Ok(p) => {
            let done = if p == Progress::Done {
                FULL_HANDSHAKE
            } else {
                C0C1
            };
            assert_eq!(whole.consumed, done);
            assert_eq!(whole.out.len(), HANDSHAKE_SIZE, "C2");
            if ctl & 2 == 0 {
                assert_eq!(&whole.out[..], &rest[1..C0C1], "a simple C2 echoes S1");
            }
        }
    }
}

fn handshake_pair(ctl: u8, data: &[u8]) {
    let mut input = Input { data };
    let digest = ctl & 2 != 0;
    let (seed_c, seed_s) = (u64::from(input.u32()), u64::from(input.u32()));
    let tail = input.data;
    let mut client = handshake::Client::new(seed_c, input.u32(), digest);
    let mut server = handshake::Server::new(seed_s, 0);
    let mut split = Splitter::new(ctl);
    let (mut to_server, mut to_client) = (BytesMut::new(), BytesMut::new());
    let (mut c_out, mut s_out) = (BytesMut::new(), BytesMut::new());
    client.start(&mut c_out);
    let (mut c_done, mut s_done) = (false, false);
    let mut appended = (false, false);
    for _ in 0..100_000 {
        if c_done && s_done && c_out.is_empty() && s_out.is_empty() {
            break;
        }
        let n = split.next(c_out.len());
        to_server.extend_from_slice(&c_out.split_to(n));
        // Once the client has read S1 it has written all it will (C2): its next bytes, the
        // chunk stream, follow in the same read.
        if client.kind().is_some() && c_out.is_empty() && !appended.0 {
            to_server.extend_from_slice(tail);
            appended.0 = true;
        }
        if !s_done {
            s_done = server.handle(&mut to_server, &mut s_out).expect("server") == Progress::Done;
        }
        let n = split.next(s_out.len());
        to_client.extend_from_slice(&s_out.split_to(n));
        if server.kind().is_some() && s_out.is_empty() && !appended.1 {
            to_client.extend_from_slice(tail);
            appended.1 = true;
        }
        if !c_done {
            c_done = client.handle(&mut to_client, &mut c_out).expect("client") == Progress::Done;
        }
    }
    assert!(c_done && s_done, "the handshake did not finish");
    let kind = if digest {
        handshake::Kind::Digest { schema: 0 }
    } else {
        handshake::Kind::Simple
    };
    assert_eq!(server.kind(), Some(kind), "server saw the wrong form");
    assert_eq!(client.kind(), Some(kind), "client saw the wrong form");
    assert_eq!(client.s2_verified(), digest.then_some(true), "S2 digest");
    assert_eq!(&to_server[..], tail, "bytes after C2 were eaten");
    assert_eq!(&to_client[..], tail, "bytes after S2 were eaten");
}

// ---------------------------------------------------------------------------------------
// amf0

fn encode_all(values: &[Value]) -> BytesMut {
    let mut out = BytesMut::new();
    for v in values {
        let before = out.len();
        v.encode(&mut out);
        assert_eq!(out.len() - before, v.encoded_len(), "encoded_len of {v:?}");
    }
    out
}

/// Re-encodes `values`, decodes them again, and checks the second encoding equals the
/// first (encodings, not values, are compared: NaN is not equal to itself).
fn round_trip(values: &[Value]) {
    let first = encode_all(values);
    let mut again = first.clone().freeze();
    let decoded = match amf0::decode_all(&mut again) {
        Ok(v) => v,
        Err(e) => panic!("ringcast's own AMF0 encoding does not decode: {e}"),
    };
    assert_eq!(decoded.len(), values.len(), "value count changed");
    assert_eq!(
        encode_all(&decoded),
        first,
        "AMF0 round trip changed the encoding"
    );
}

/// The `amf0` target: [`Value::decode`], [`amf0::decode_all`] and
/// [`amf0::decode_amf3_command`] on the whole input, each result re-encoded and decoded
/// again unchanged, and the three consistent with each other.
pub fn amf0(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);

    let mut buf = bytes.clone();
    let one = Value::decode(&mut buf);
    if let Ok(v) = &one {
        assert!(buf.len() < bytes.len(), "a value was decoded from no bytes");
        round_trip(std::slice::from_ref(v));
    }

    let mut buf = bytes.clone();
    let all = amf0::decode_all(&mut buf);
    if let Ok(values) = &all {
        assert!(buf.is_empty(), "decode_all left bytes");
        round_trip(values);
        if let (Some(first), Ok(v)) = (values.first(), &one) {
            assert_eq!(
                encode_all(std::slice::from_ref(first)),
                encode_all(std::slice::from_ref(v)),
                "decode and decode_all disagree on the first value"
            );
        }
        if values.is_empty() {
            assert!(data.is_empty());
        }
    }

    let mut buf = bytes.clone();
    let amf3 = amf0::decode_amf3_command(&mut buf);
    if let Ok(values) = &amf3 {
        round_trip(values);
    }
    if data.first() != Some(&0) {
        // Without the format byte, an AMF3 command body is read as AMF0 values.
        match (&all, &amf3) {
            (Ok(a), Ok(b)) => assert_eq!(encode_all(a), encode_all(b)),
            (Err(a), Err(b)) => assert_eq!(a, b),
            _ => panic!("decode_all and decode_amf3_command disagree: {all:?} / {amf3:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// server_session

/// C0 + C1 + C2 of a simple handshake, so that the fuzz input reaches the chunk layer.
fn handshake_prefix() -> Vec<u8> {
    let mut out = BytesMut::new();
    handshake::Client::new(3, 0, false).start(&mut out);
    let mut v = out.to_vec();
    v.resize(FULL_HANDSHAKE, 0);
    v
}

/// Checks that everything a server session sent is a well-formed chunk stream of messages
/// ringcast can decode: what a client of ours would read.
#[derive(Debug)]
struct Peer {
    reader: Reader,
    buf: BytesMut,
    messages: usize,
    /// The peer's reader refused a message over its size limits (an answer that echoes a
    /// huge command name can pass the 64 KiB command limit): nothing after it is checked.
    gave_up: bool,
}

impl Peer {
    fn new() -> Peer {
        // Bytes after S0+S1+S2 are the chunk stream.
        Peer {
            reader: Reader::new(ReaderConfig {
                max_chunk_streams: 1024,
                ..ReaderConfig::default()
            }),
            buf: BytesMut::new(),
            messages: 0,
            gave_up: false,
        }
    }

    fn take(&mut self, out: &[u8], skip: &mut usize) {
        if self.gave_up {
            return;
        }
        let n = (*skip).min(out.len());
        *skip -= n;
        self.buf.extend_from_slice(&out[n..]);
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(Some(msg)) => {
                    self.messages += 1;
                    if let Err(e) = message::Message::decode(msg.type_id, msg.payload.clone()) {
                        panic!("the server sent a message it cannot decode: {e}: {msg:?}");
                    }
                }
                Ok(None) => break,
                Err(chunk::Error::MessageTooLarge { .. }) => {
                    self.gave_up = true;
                    break;
                }
                Err(e) => panic!("the server sent a malformed chunk stream: {e}"),
            }
        }
    }
}

/// The `server_session` target: a server session, after a valid simple handshake, gets the
/// rest of the input as its chunk stream, in pieces, with time advancing between pieces
/// and pings due. It answers publishes and plays as a hub would (accepting or refusing,
/// chosen by the control byte), and must never panic, send anything its peer could not
/// read, or send or hold more than a fixed multiple of what it was sent.
///
/// Control byte: bit 0 turns header compression off, bits 1–2 pick how fast time moves,
/// the top bits how the input is cut ([`Splitter`]).
pub fn server_session(data: &[u8]) {
    let (ctl, rest) = control(data);
    let config = ServerConfig {
        ping_interval_ms: 1_000,
        ping_timeout_ms: 5_000,
        compress_headers: ctl & 1 == 0,
        reader: ReaderConfig {
            max_chunk_streams: ReaderConfig::default().max_chunk_streams,
            ..small_reader_config()
        },
        ..ServerConfig::default()
    };
    let mut server = Server::new(config, u64::from(ctl), 0);
    let mut split = Splitter::new(ctl);
    let step_ms = [0, 7, 400, 20_000][usize::from((ctl >> 1) & 3)];
    let mut now = 0u64;
    let mut peer = Peer::new();
    let mut skip = FULL_HANDSHAKE; // S0 + S1 + S2
    let mut buf = BytesMut::new();
    let mut out_total = 0usize;
    let mut events = 0usize;
    let mut actions = 0usize;
    let mut streams: Vec<u32> = Vec::new();

    let prefix = handshake_prefix();
    buf.extend_from_slice(&prefix);
    let mut fed = 0;
    let mut alive = true;
    while alive {
        let n = split.next(rest.len() - fed);
        buf.extend_from_slice(&rest[fed..fed + n]);
        fed += n;
        let result = server.handle_input(&mut buf, now);
        while let Some(e) = server.poll_event() {
            events += 1;
            match e {
                Event::PublishRequested { stream_id, .. } => {
                    actions += 1;
                    if split.rand() % 4 == 0 {
                        server.reject_publish(stream_id, "NetStream.Publish.BadName", "taken");
                    } else {
                        server.accept_publish(stream_id);
                    }
                }
                Event::PlayRequested { stream_id, .. } => {
                    actions += 1;
                    if split.rand() % 4 == 0 {
                        server.reject_play(stream_id, "no such stream");
                    } else {
                        server.accept_play(stream_id);
                        if !streams.contains(&stream_id) {
                            streams.push(stream_id);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(&sid) = streams.get(split.rand() as usize % 64) {
            // What the hub does to a player now and then.
            actions += 1;
            match split.rand() % 4 {
                0 => server.notify_unpublished(sid),
                1 => server.notify_published(sid),
                2 => server.stop_play(sid),
                _ => server.send_media(
                    sid,
                    &Media {
                        kind: MediaKind::Video,
                        timestamp: now as u32,
                        payload: Bytes::from_static(&[0x17, 1, 0, 0, 0, 0x65]),
                    },
                ),
            }
        }
        if result.is_err() {
            alive = false;
        }
        now += step_ms * (split.rand() % 3);
        if alive && server.poll_timeout().is_some_and(|t| t <= now) {
            actions += 1;
            alive = server.handle_timeout(now).is_ok();
        }
        if fed == rest.len() {
            alive = false;
        }
        let out = server.take_output();
        out_total += out.len();
        peer.take(&out, &mut skip);
        let consumed = (prefix.len() + fed).saturating_sub(buf.len());
        // Acknowledgements are sent from these counts.
        assert_eq!(
            server.byte_counts(),
            (consumed as u64, out_total as u64),
            "byte counts (in, out) are off"
        );
        // Every input byte may cost a few dozen output bytes (a command answered with a
        // status object); each of the caller's calls and each ping a few hundred.
        let budget = 64 * consumed + 512 * actions + 8192;
        assert!(
            out_total <= budget,
            "{out_total} bytes out for {consumed} in and {actions} calls"
        );
        assert!(
            events <= consumed + 64,
            "{events} events for {consumed} bytes"
        );
    }
    server.handle_close();
    while server.poll_event().is_some() {}
    let out = server.take_output();
    peer.take(&out, &mut skip);
    // What the session holds (reassembly buffers, strings from commands, streams) is bounded
    // by what it was sent; its Debug text (up to 10 characters a byte) shows it all.
    let held = format!("{server:?}").len();
    let consumed = prefix.len() + rest.len();
    assert!(
        held <= 10 * consumed + 65_536,
        "a session holds {held} bytes of state after {consumed} bytes of input"
    );
}

// ---------------------------------------------------------------------------------------
// flv_reader

/// What an FLV reader made of a byte stream.
#[derive(Debug, PartialEq, Eq)]
struct FlvLog {
    items: Vec<flv::Item>,
    error: Option<flv::Error>,
    /// Bytes consumed (up to the end of the last item).
    consumed: usize,
}

fn read_flv(config: flv::ReaderConfig, bytes: &[u8], split: &mut Splitter) -> FlvLog {
    let mut reader = flv::Reader::new(config);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut fed = 0;
    loop {
        let n = split.next(bytes.len() - fed);
        buf.extend_from_slice(&bytes[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            match reader.read(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    assert!(
                        buf.len() < reader.wanted(),
                        "FLV reader wants {} bytes but holds {}",
                        reader.wanted(),
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    assert_eq!(buf.len(), before, "an error consumed bytes");
                    return FlvLog {
                        items,
                        error: Some(e),
                        consumed: fed - buf.len(),
                    };
                }
            }
        }
        if fed == bytes.len() {
            return FlvLog {
                items,
                error: None,
                consumed: fed - buf.len(),
            };
        }
    }
}

/// The `flv_reader` target: arbitrary bytes to [`flv::Reader`], at once and in pieces (both
/// must agree), and every item read re-encoded and read back unchanged.
///
/// Control byte: bit 0 clear expects a file header, bit 1 sets a small tag size limit.
pub fn flv_reader(data: &[u8]) {
    let (ctl, rest) = control(data);
    let config = flv::ReaderConfig {
        max_tag_size: if ctl & 2 == 0 { 16 << 20 } else { 1000 },
        expect_header: ctl & 1 == 0,
    };
    let whole = read_flv(config, rest, &mut Splitter::whole());
    let split = read_flv(config, rest, &mut Splitter::new(ctl));
    assert_eq!(whole, split, "the FLV reader depends on how input is split");
    for item in &whole.items {
        let mut out = BytesMut::new();
        let config = match item {
            flv::Item::Header {
                has_audio,
                has_video,
            } => {
                flv::encode_header(*has_audio, *has_video, &mut out);
                flv::ReaderConfig::default()
            }
            flv::Item::Tag(tag) => {
                flv::encode_tag(tag, &mut out).expect("a tag read is a tag that can be written");
                flv::ReaderConfig {
                    expect_header: false,
                    ..flv::ReaderConfig::default()
                }
            }
        };
        let again = read_flv(config, &out, &mut Splitter::whole());
        assert_eq!(again.items, std::slice::from_ref(item), "FLV round trip");
        assert_eq!((again.error, again.consumed), (None, out.len()));
    }
}

// ---------------------------------------------------------------------------------------
// codec

/// Reads back a frame's RTMP encoding: exactly one message with these fields.
fn check_encoding(rtmp: &Bytes, chunk_size: u32, want: &Message) {
    let mut reader = Reader::default();
    reader
        .set_chunk_size(chunk_size.clamp(1, chunk::MAX_CHUNK_SIZE))
        .expect("a valid chunk size");
    let mut buf = BytesMut::from(&rtmp[..]);
    let got = reader
        .read(&mut buf)
        .expect("a frame's encoding reads back");
    assert_eq!(
        got.as_ref(),
        Some(want),
        "a frame's encoding reads back differently"
    );
    assert!(
        buf.is_empty(),
        "{} bytes after the frame's message",
        buf.len()
    );
}

/// Reads back a frame's FLV framing (`header`, the shared payload, its trailer): exactly one
/// tag with these fields.
fn check_flv(frame: &Frame, header: &Bytes, tag_type: flv::TagType, timestamp: u32) {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(&frame.payload);
    bytes.extend_from_slice(&frame.flv_trailer());
    let config = flv::ReaderConfig {
        expect_header: false,
        ..flv::ReaderConfig::default()
    };
    let log = read_flv(config, &bytes, &mut Splitter::whole());
    let want = flv::Item::Tag(flv::Tag {
        tag_type,
        timestamp,
        data: frame.payload.clone(),
    });
    assert_eq!(
        log.items,
        [want],
        "a frame's FLV tag reads back differently"
    );
    assert_eq!((log.error, log.consumed), (None, bytes.len()));
}

/// The `codec` target: codec sniffing and [`Frame`] construction on arbitrary tag data.
///
/// Input: a chunk-size selector byte, a 4-byte timestamp, then the tag data. Checked: the
/// sniffers agree with each other, their answers depend only on the first bytes (appending
/// bytes changes nothing they answered), and a frame's RTMP encoding and FLV framing read
/// back as the message and tag it was made from.
pub fn codec(data: &[u8]) {
    const SIZES: [u32; 8] = [0, 1, 2, 127, 128, 4096, 60_000, 0x7FFF_FFFF];
    let mut input = Input { data };
    let chunk_size = SIZES[usize::from(input.u8() % 8)];
    let timestamp = input.u32();
    let payload = Bytes::copy_from_slice(input.data);

    let video = codec::video_info(&payload);
    let audio = codec::audio_info(&payload);
    let (track_v, track_a) = (
        codec::track_id(&payload, true),
        codec::track_id(&payload, false),
    );
    assert_eq!(
        codec::is_video_keyframe(&payload),
        video.is_some_and(|v| v.is_coded_keyframe())
    );
    assert_eq!(
        codec::is_video_sequence_header(&payload),
        video.is_some_and(|v| v.is_sequence_header())
    );
    assert_eq!(
        codec::is_audio_sequence_header(&payload),
        audio.is_some_and(|a| a.is_sequence_header)
    );
    if let Some(v) = video {
        assert!(!v.is_coded_keyframe() || v.is_keyframe());
        assert!(!(v.is_coded_keyframe() && v.is_sequence_header()));
        let _ = v.is_end_of_sequence();
    }
    // Only the first bytes count: more data after them changes no answer already given.
    let mut longer = payload.to_vec();
    for extra in [0x00, 0xFF, 0x07] {
        longer.extend_from_slice(&[extra; 9]);
        if video.is_some() {
            assert_eq!(
                codec::video_info(&longer),
                video,
                "video_info read past its bytes"
            );
        }
        if audio.is_some() {
            assert_eq!(
                codec::audio_info(&longer),
                audio,
                "audio_info read past its bytes"
            );
        }
        if track_v != 0 {
            assert_eq!(codec::track_id(&longer, true), track_v);
        }
        if track_a != 0 {
            assert_eq!(codec::track_id(&longer, false), track_a);
        }
    }

    for kind in [MediaKind::Video, MediaKind::Audio, MediaKind::Data] {
        let frame = Frame::media(kind, timestamp, payload.clone(), chunk_size);
        let (keyframe, sequence_header) = match kind {
            MediaKind::Video => (
                codec::is_video_keyframe(&payload),
                codec::is_video_sequence_header(&payload),
            ),
            MediaKind::Audio => (false, codec::is_audio_sequence_header(&payload)),
            MediaKind::Data => (false, false),
        };
        assert_eq!(
            (frame.keyframe, frame.sequence_header),
            (keyframe, sequence_header)
        );
        let track = match (sequence_header, kind) {
            (false, _) => 0,
            (true, MediaKind::Video) => track_v,
            (true, _) => track_a,
        };
        assert_eq!(frame.track, track);
        let mut want = Message {
            csid: kind.csid(),
            timestamp,
            type_id: kind.type_id(),
            stream_id: PLAYER_STREAM_ID,
            payload: payload.clone(),
        };
        check_encoding(&frame.rtmp, chunk_size, &want);
        want.stream_id = 7;
        check_encoding(&frame.rtmp_for(7, 128), 128, &want);
        let tag_type = flv::TagType::from(kind.type_id());
        check_flv(&frame, &frame.flv_header(), tag_type, timestamp);
        let moved = timestamp ^ 0x8000_0001;
        check_flv(&frame, &frame.flv_header_at(moved), tag_type, moved);
    }
    let meta = Frame::metadata(timestamp, payload.clone(), chunk_size);
    assert!(meta.is_config() && meta.metadata && !meta.clears_metadata);
    let want = Message {
        csid: chunk::csid::DATA,
        timestamp,
        type_id: message::type_id::DATA,
        stream_id: PLAYER_STREAM_ID,
        payload: payload.clone(),
    };
    check_encoding(&meta.rtmp, chunk_size, &want);
    let script = flv::TagType::from(message::type_id::DATA);
    check_flv(&meta, &meta.flv_header(), script, timestamp);
    let clear = Frame::clear_metadata(timestamp, payload, chunk_size);
    assert!(clear.clears_metadata && !clear.metadata);
    check_encoding(&clear.rtmp, chunk_size, &want);
    check_flv(&clear, &clear.flv_header(), script, timestamp);
}

// ---------------------------------------------------------------------------------------
// http_request

/// An HTTP request head: any prefix of a head that parses is "need more", the head alone
/// parses to the same request, and routing it never panics.
pub fn http_request(data: &[u8]) {
    use ringcast::http::request::{parse_head, route};
    let full = parse_head(data);
    if let Ok(Some((req, len))) = &full {
        assert!(*len <= data.len(), "consumed past the input");
        assert_eq!(
            parse_head(&data[..*len]),
            Ok(Some((req.clone(), *len))),
            "the head alone"
        );
        for cut in [0, len / 2, len.saturating_sub(1)] {
            if cut < *len {
                assert_eq!(
                    parse_head(&data[..cut]),
                    Ok(None),
                    "a prefix of {cut} bytes"
                );
            }
        }
        let _ = route(&req.path);
        let _ = req.websocket_key();
        let _ = req.header("host");
    }
}

// ---------------------------------------------------------------------------------------
// websocket

/// What a WebSocket client frame reader made of a byte stream.
#[derive(Debug, PartialEq, Eq)]
struct FrameLog {
    frames: Vec<ringcast::http::websocket::ClientFrame>,
    error: Option<ringcast::http::websocket::FrameError>,
}

fn read_frames(bytes: &[u8], split: &mut Splitter) -> FrameLog {
    use ringcast::http::websocket::read_client_frame;
    let mut buf = BytesMut::new();
    let mut rest = bytes;
    let mut log = FrameLog {
        frames: Vec::new(),
        error: None,
    };
    loop {
        match read_client_frame(&mut buf) {
            Ok(Some(f)) => log.frames.push(f),
            Ok(None) if rest.is_empty() => return log,
            Ok(None) => {
                let n = split.next(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
            Err(e) => {
                log.error = Some(e);
                return log;
            }
        }
    }
}

/// WebSocket client frames: the same frames and the same verdict whether the bytes come
/// at once or in pieces; the server's own frames are well formed.
pub fn websocket(data: &[u8]) {
    use ringcast::http::websocket::{binary_header, close_frame, pong_frame};
    let (ctl, rest) = control(data);
    let whole = read_frames(rest, &mut Splitter::whole());
    let pieces = read_frames(rest, &mut Splitter::new(ctl));
    assert_eq!(whole, pieces, "pieces and whole disagree");
    let n = rest.len();
    let h = binary_header(n);
    let want = 2 + match n {
        0..=125 => 0,
        126..=65535 => 2,
        _ => 8,
    };
    assert_eq!(h.len(), want, "binary header length for {n}");
    assert_eq!(close_frame(1000).len(), 4);
    let p = &rest[..n.min(125)];
    assert_eq!(pong_frame(p).len(), 2 + p.len());
}
