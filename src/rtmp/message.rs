//! Typed RTMP messages over the chunk-level [`chunk::Message`](super::chunk::Message).
//!
//! Media and data bodies stay as the [`Bytes`] the reader produced, so relaying them never
//! copies; commands and control messages are decoded into their fields.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::amf0::{self, Value};
use super::chunk;

/// RTMP message type ids (RTMP 1.0 §5.4, §6.2, §7.1).
pub mod type_id {
    /// Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message.
    pub const ABORT: u8 = 2;
    /// Acknowledgement.
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data.
    pub const AUDIO: u8 = 8;
    /// Video data.
    pub const VIDEO: u8 = 9;
    /// Data message, AMF3 encoding.
    pub const DATA_AMF3: u8 = 15;
    /// Shared object message, AMF3 encoding.
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// Command message, AMF3 encoding.
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message, AMF0 encoding.
    pub const DATA: u8 = 18;
    /// Shared object message, AMF0 encoding.
    pub const SHARED_OBJECT: u8 = 19;
    /// Command message, AMF0 encoding.
    pub const COMMAND: u8 = 20;
    /// Aggregate message: a run of FLV tags.
    pub const AGGREGATE: u8 = 22;
}

/// What went wrong decoding a message body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A fixed-layout body shorter than its layout.
    #[error("message type {type_id} needs {need} bytes, got {got}")]
    Short {
        /// The message type.
        type_id: u8,
        /// The bytes its layout needs.
        need: usize,
        /// The bytes received.
        got: usize,
    },
    /// A command body that is not AMF, or lacks its name or transaction id.
    #[error("malformed command: {0}")]
    Command(String),
    /// An AMF0 decoding error.
    #[error("AMF0: {0}")]
    Amf0(#[from] amf0::Error),
    /// An aggregate message whose FLV tags run past its end.
    #[error("malformed aggregate message at byte {0}")]
    Aggregate(usize),
    /// An aggregate message with more tags than [`MAX_AGGREGATE_TAGS`].
    #[error("aggregate message of more than {0} tags")]
    AggregateTooLong(usize),
}

/// User control events (RTMP 1.0 §7.1.7; PROTOCOL.md lists them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControl {
    /// 0: the stream is ready to carry data.
    StreamBegin(u32),
    /// 1: playback of the stream ended.
    StreamEof(u32),
    /// 2: no more data on the stream for now.
    StreamDry(u32),
    /// 3: the client's buffer length, milliseconds.
    SetBufferLength {
        /// The stream.
        stream_id: u32,
        /// Buffer length in milliseconds.
        millis: u32,
    },
    /// 4: the stream is recorded.
    StreamIsRecorded(u32),
    /// 6: ping; the peer answers with a `PingResponse` carrying the same value.
    PingRequest(u32),
    /// 7: answer to a ping.
    PingResponse(u32),
    /// 31: the client's buffer ran empty.
    BufferEmpty(u32),
    /// 32: the client's buffer is full again.
    BufferReady(u32),
    /// Any other event, kept as received.
    Other {
        /// The event type.
        event: u16,
        /// The event data.
        data: Bytes,
    },
}

impl UserControl {
    fn decode(mut body: Bytes) -> Result<UserControl, Error> {
        let short = |need: usize, got: usize| Error::Short {
            type_id: type_id::USER_CONTROL,
            need,
            got,
        };
        if body.len() < 2 {
            return Err(short(2, body.len()));
        }
        let event = body.get_u16();
        if event == 3 {
            if body.len() < 8 {
                return Err(short(10, body.len() + 2));
            }
            let stream_id = body.get_u32();
            return Ok(UserControl::SetBufferLength {
                stream_id,
                millis: body.get_u32(),
            });
        }
        let known = matches!(event, 0 | 1 | 2 | 4 | 6 | 7 | 31 | 32);
        if !known {
            return Ok(UserControl::Other { event, data: body });
        }
        if body.len() < 4 {
            return Err(short(6, body.len() + 2));
        }
        let v = body.get_u32();
        Ok(match event {
            0 => UserControl::StreamBegin(v),
            1 => UserControl::StreamEof(v),
            2 => UserControl::StreamDry(v),
            4 => UserControl::StreamIsRecorded(v),
            6 => UserControl::PingRequest(v),
            7 => UserControl::PingResponse(v),
            31 => UserControl::BufferEmpty(v),
            _ => UserControl::BufferReady(v),
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        let (event, v) = match self {
            UserControl::StreamBegin(v) => (0, *v),
            UserControl::StreamEof(v) => (1, *v),
            UserControl::StreamDry(v) => (2, *v),
            UserControl::SetBufferLength { stream_id, millis } => {
                out.put_u16(3);
                out.put_u32(*stream_id);
                out.put_u32(*millis);
                return;
            }
            UserControl::StreamIsRecorded(v) => (4, *v),
            UserControl::PingRequest(v) => (6, *v),
            UserControl::PingResponse(v) => (7, *v),
            UserControl::BufferEmpty(v) => (31, *v),
            UserControl::BufferReady(v) => (32, *v),
            UserControl::Other { event, data } => {
                out.put_u16(*event);
                out.put_slice(data);
                return;
            }
        };
        out.put_u16(event);
        out.put_u32(v);
    }
}

/// A command message: `name(transaction id, command object, args...)` (RTMP 1.0 §7.1.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command name, e.g. `connect`, `publish`, `_result`, `onStatus`.
    pub name: String,
    /// The transaction id the answer repeats; 0 for commands that expect none.
    pub transaction_id: f64,
    /// The command object (an object, or null).
    pub object: Value,
    /// The remaining arguments.
    pub args: Vec<Value>,
}

impl Command {
    /// A command with the given name, transaction id, command object and arguments.
    pub fn new(name: &str, transaction_id: f64, object: Value, args: Vec<Value>) -> Command {
        Command {
            name: name.to_owned(),
            transaction_id,
            object,
            args,
        }
    }

    /// Decodes an AMF0 command body (type 20), or an AMF3 one (type 17) when `amf3`.
    pub fn decode(body: Bytes, amf3: bool) -> Result<Command, Error> {
        let mut body = body;
        let values = if amf3 {
            amf0::decode_amf3_command(&mut body)?
        } else {
            amf0::decode_all(&mut body)?
        };
        let mut values = values.into_iter();
        let name = match values.next() {
            Some(Value::String(s) | Value::LongString(s)) => s,
            other => return Err(Error::Command(format!("name is {other:?}"))),
        };
        // Some clients omit the transaction id and object of notifications: default them.
        let transaction_id = values.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let object = values.next().unwrap_or(Value::Null);
        Ok(Command {
            name,
            transaction_id,
            object,
            args: values.collect(),
        })
    }

    /// Appends the AMF0 encoding of the command to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        Value::String(self.name.clone()).encode(out);
        Value::Number(self.transaction_id).encode(out);
        self.object.encode(out);
        for a in &self.args {
            a.encode(out);
        }
    }

    /// The `i`th argument after the command object, if present.
    pub fn arg(&self, i: usize) -> Option<&Value> {
        self.args.get(i)
    }
}

/// A typed RTMP message body.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Set Chunk Size (1): the sender's new chunk size.
    SetChunkSize(u32),
    /// Abort (2): drop the incomplete message on this chunk stream.
    Abort(u32),
    /// Acknowledgement (3): bytes received so far (wrapping).
    Acknowledgement(u32),
    /// User Control (4).
    UserControl(UserControl),
    /// Window Acknowledgement Size (5).
    WindowAckSize(u32),
    /// Set Peer Bandwidth (6): window and limit type (0 hard, 1 soft, 2 dynamic).
    SetPeerBandwidth {
        /// The window size.
        window: u32,
        /// The limit type.
        limit: u8,
    },
    /// Audio (8): an FLV audio tag body, untouched.
    Audio(Bytes),
    /// Video (9): an FLV video tag body, untouched.
    Video(Bytes),
    /// AMF0 data (18) or AMF3 data (15): kept as received, so it reaches players intact.
    Data {
        /// The body, as received.
        body: Bytes,
        /// True for type 15 (a leading format byte before AMF0 values).
        amf3: bool,
    },
    /// A command (20, or 17 decoded through its AMF3 switch).
    Command(Command),
    /// Aggregate (22): a run of FLV tags; see [`split_aggregate`].
    Aggregate(Bytes),
    /// Anything else (shared objects, unknown types), kept as received.
    Other {
        /// The message type.
        type_id: u8,
        /// The body.
        body: Bytes,
    },
}

fn u32_body(type_id: u8, body: &Bytes) -> Result<u32, Error> {
    match body.get(..4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(Error::Short {
            type_id,
            need: 4,
            got: body.len(),
        }),
    }
}

impl Message {
    /// Decodes the body of a message of type `type_id`.
    pub fn decode(kind: u8, body: Bytes) -> Result<Message, Error> {
        use type_id as t;
        Ok(match kind {
            t::SET_CHUNK_SIZE => Message::SetChunkSize(u32_body(kind, &body)? & 0x7FFF_FFFF),
            t::ABORT => Message::Abort(u32_body(kind, &body)?),
            t::ACKNOWLEDGEMENT => Message::Acknowledgement(u32_body(kind, &body)?),
            t::USER_CONTROL => Message::UserControl(UserControl::decode(body)?),
            t::WINDOW_ACK_SIZE => Message::WindowAckSize(u32_body(kind, &body)?),
            t::SET_PEER_BANDWIDTH => {
                let window = u32_body(kind, &body)?;
                // The limit type byte is missing in some implementations: default to dynamic.
                let limit = body.get(4).copied().unwrap_or(2);
                Message::SetPeerBandwidth { window, limit }
            }
            t::AUDIO => Message::Audio(body),
            t::VIDEO => Message::Video(body),
            t::DATA => Message::Data { body, amf3: false },
            t::DATA_AMF3 => Message::Data { body, amf3: true },
            t::COMMAND => Message::Command(Command::decode(body, false)?),
            t::COMMAND_AMF3 => Message::Command(Command::decode(body, true)?),
            t::AGGREGATE => Message::Aggregate(body),
            _ => Message::Other {
                type_id: kind,
                body,
            },
        })
    }

    /// The type id this message is sent with.
    pub fn type_id(&self) -> u8 {
        use type_id as t;
        match self {
            Message::SetChunkSize(_) => t::SET_CHUNK_SIZE,
            Message::Abort(_) => t::ABORT,
            Message::Acknowledgement(_) => t::ACKNOWLEDGEMENT,
            Message::UserControl(_) => t::USER_CONTROL,
            Message::WindowAckSize(_) => t::WINDOW_ACK_SIZE,
            Message::SetPeerBandwidth { .. } => t::SET_PEER_BANDWIDTH,
            Message::Audio(_) => t::AUDIO,
            Message::Video(_) => t::VIDEO,
            Message::Data { amf3: false, .. } => t::DATA,
            Message::Data { amf3: true, .. } => t::DATA_AMF3,
            Message::Command(_) => t::COMMAND,
            Message::Aggregate(_) => t::AGGREGATE,
            Message::Other { type_id, .. } => *type_id,
        }
    }

    /// The message body. Media and data bodies are returned without a copy.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Message::SetChunkSize(v)
            | Message::Abort(v)
            | Message::Acknowledgement(v)
            | Message::WindowAckSize(v) => out.put_u32(*v),
            Message::UserControl(uc) => uc.encode(&mut out),
            Message::SetPeerBandwidth { window, limit } => {
                out.put_u32(*window);
                out.put_u8(*limit);
            }
            Message::Audio(b)
            | Message::Video(b)
            | Message::Data { body: b, .. }
            | Message::Aggregate(b)
            | Message::Other { body: b, .. } => return b.clone(),
            Message::Command(c) => c.encode(&mut out),
        }
        out.freeze()
    }

    /// The chunk-level message that carries this one.
    pub fn into_chunk(&self, csid: u32, timestamp: u32, stream_id: u32) -> chunk::Message {
        chunk::Message {
            csid,
            timestamp,
            type_id: self.type_id(),
            stream_id,
            payload: self.encode(),
        }
    }
}

/// One message carried inside an aggregate message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubMessage {
    /// The FLV tag type: 8 audio, 9 video, 18 data.
    pub type_id: u8,
    /// Absolute timestamp: the aggregate's timestamp plus the tag's offset from the first tag.
    pub timestamp: u32,
    /// The tag body, a slice of the aggregate's body.
    pub payload: Bytes,
}

/// The most tags one aggregate message may carry. Servers that send aggregates put a few
/// hundred milliseconds of media in one (tens of tags); a megabyte of empty tags would
/// otherwise become tens of thousands of messages for every player.
pub const MAX_AGGREGATE_TAGS: usize = 1024;

/// Splits an aggregate message (type 22) into its tags, without copying their bodies.
///
/// Each tag is an FLV tag (11-byte header, body, 4-byte previous tag size). Tag timestamps are
/// rebased so the first tag has the aggregate's `timestamp` (as FMS and nginx-rtmp do). An
/// aggregate of more than [`MAX_AGGREGATE_TAGS`] tags is refused.
pub fn split_aggregate(timestamp: u32, body: &Bytes) -> Result<Vec<SubMessage>, Error> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut first_ts: Option<u32> = None;
    while pos < body.len() {
        if out.len() == MAX_AGGREGATE_TAGS {
            return Err(Error::AggregateTooLong(MAX_AGGREGATE_TAGS));
        }
        let Some(h) = body.get(pos..pos + 11) else {
            return Err(Error::Aggregate(pos));
        };
        let type_id = h[0] & 0x1F;
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let ts = (u32::from(h[7]) << 24)
            | (u32::from(h[4]) << 16)
            | (u32::from(h[5]) << 8)
            | u32::from(h[6]);
        let start = pos + 11;
        let end = start + size;
        if end > body.len() {
            return Err(Error::Aggregate(pos));
        }
        let base = *first_ts.get_or_insert(ts);
        out.push(SubMessage {
            type_id,
            timestamp: timestamp.wrapping_add(ts.wrapping_sub(base)),
            payload: body.slice(start..end),
        });
        // The trailing previous-tag-size is optional at the very end in some encoders.
        pos = (end + 4).min(body.len());
    }
    Ok(out)
}

/// The name of a data message (its first AMF0 value, e.g. `@setDataFrame`, `onMetaData`,
/// `onCuePoint`), if it has one. Looks at the first value only.
pub fn data_name(body: &Bytes) -> Option<String> {
    let mut b = body.clone();
    match Value::decode(&mut b) {
        Ok(Value::String(s) | Value::LongString(s)) => Some(s),
        _ => None,
    }
}

/// For a `@setDataFrame` data message, the body a player should receive: the same bytes
/// without the leading `@setDataFrame` string (a slice, no copy). Other bodies come back
/// unchanged.
pub fn strip_set_data_frame(body: &Bytes) -> Bytes {
    let mut b = body.clone();
    match Value::decode(&mut b) {
        Ok(Value::String(s)) if s == "@setDataFrame" => b,
        _ => body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(type_id: u8, body: &[u8], want: Message) {
        let got = Message::decode(type_id, Bytes::copy_from_slice(body)).expect("decodes");
        assert_eq!(got, want);
        assert_eq!(got.type_id(), type_id);
        assert_eq!(&got.encode()[..], body, "re-encodes to the same bytes");
    }

    #[test]
    fn protocol_control_messages_byte_for_byte() {
        roundtrip(1, &[0, 0, 0x10, 0], Message::SetChunkSize(4096));
        roundtrip(2, &[0, 0, 0, 4], Message::Abort(4));
        roundtrip(
            3,
            &[0, 0x26, 0x25, 0xA0],
            Message::Acknowledgement(2_500_000),
        );
        roundtrip(5, &[0, 0x26, 0x25, 0xA0], Message::WindowAckSize(2_500_000));
        roundtrip(
            6,
            &[0, 0x26, 0x25, 0xA0, 2],
            Message::SetPeerBandwidth {
                window: 2_500_000,
                limit: 2,
            },
        );
    }

    #[test]
    fn user_control_events_byte_for_byte() {
        use UserControl as U;
        let cases = [
            (vec![0, 0, 0, 0, 0, 1], U::StreamBegin(1)),
            (vec![0, 1, 0, 0, 0, 1], U::StreamEof(1)),
            (vec![0, 2, 0, 0, 0, 1], U::StreamDry(1)),
            (
                vec![0, 3, 0, 0, 0, 1, 0, 0, 0x0B, 0xB8],
                U::SetBufferLength {
                    stream_id: 1,
                    millis: 3000,
                },
            ),
            (vec![0, 4, 0, 0, 0, 1], U::StreamIsRecorded(1)),
            (
                vec![0, 6, 0x12, 0x34, 0x56, 0x78],
                U::PingRequest(0x1234_5678),
            ),
            (
                vec![0, 7, 0x12, 0x34, 0x56, 0x78],
                U::PingResponse(0x1234_5678),
            ),
            (vec![0, 31, 0, 0, 0, 1], U::BufferEmpty(1)),
            (vec![0, 32, 0, 0, 0, 1], U::BufferReady(1)),
            (
                vec![0, 99, 1, 2],
                U::Other {
                    event: 99,
                    data: Bytes::from_static(&[1, 2]),
                },
            ),
        ];
        for (body, want) in cases {
            roundtrip(4, &body, Message::UserControl(want));
        }
    }

    #[test]
    fn short_control_bodies_are_errors() {
        assert_eq!(
            Message::decode(5, Bytes::from_static(&[0, 1])),
            Err(Error::Short {
                type_id: 5,
                need: 4,
                got: 2
            })
        );
        assert!(Message::decode(4, Bytes::from_static(&[0])).is_err());
        assert!(Message::decode(4, Bytes::from_static(&[0, 3, 0, 0, 0, 1])).is_err());
        assert!(Message::decode(4, Bytes::from_static(&[0, 6, 0])).is_err());
        // A Set Peer Bandwidth without its limit byte is read as dynamic.
        assert_eq!(
            Message::decode(6, Bytes::from_static(&[0, 0, 1, 0])),
            Ok(Message::SetPeerBandwidth {
                window: 256,
                limit: 2
            })
        );
    }

    #[test]
    fn connect_command_byte_for_byte() {
        let mut body = BytesMut::new();
        body.extend_from_slice(b"\x02\x00\x07connect");
        body.extend_from_slice(&[0, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(b"\x03\x00\x03app\x02\x00\x04live\x00\x00\x09");
        let want = Message::Command(Command::new(
            "connect",
            1.0,
            Value::object([("app", Value::from("live"))]),
            vec![],
        ));
        roundtrip(20, &body, want.clone());
        // The same command as type 17: a leading format byte, then AMF0.
        let mut amf3 = vec![0u8];
        amf3.extend_from_slice(&body);
        assert_eq!(Message::decode(17, Bytes::from(amf3)), Ok(want));
    }

    #[test]
    fn command_without_a_name_is_an_error() {
        let err = Message::decode(20, Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert!(matches!(err, Err(Error::Command(_))), "{err:?}");
        assert!(matches!(
            Message::decode(20, Bytes::from_static(&[0xEE])),
            Err(Error::Amf0(_))
        ));
    }

    #[test]
    fn media_and_data_bodies_are_not_copied() {
        let body = Bytes::from(vec![0x17, 1, 0, 0, 0, 9, 9]);
        let Message::Video(v) = Message::decode(9, body.clone()).expect("video") else {
            panic!("not video");
        };
        assert_eq!(v.as_ptr(), body.as_ptr());
        let m = Message::Video(v);
        assert_eq!(m.encode().as_ptr(), body.as_ptr());
    }

    fn tag(type_id: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let len = body.len() as u32;
        let mut t = vec![type_id];
        t.extend_from_slice(&len.to_be_bytes()[1..]);
        t.extend_from_slice(&ts.to_be_bytes()[1..]);
        t.push((ts >> 24) as u8);
        t.extend_from_slice(&[0, 0, 0]);
        t.extend_from_slice(body);
        t.extend_from_slice(&(11 + len).to_be_bytes());
        t
    }

    #[test]
    fn aggregate_splits_into_rebased_tags() {
        let mut body = tag(9, 0x0100_0000, &[0x17, 1, 0, 0, 0]);
        body.extend(tag(8, 0x0100_0017, &[0xAF, 1, 5]));
        body.extend(tag(9, 0x0100_0021, &[0x27, 1, 0, 0, 0]));
        let subs = split_aggregate(1000, &Bytes::from(body)).expect("valid");
        let got: Vec<(u8, u32, usize)> = subs
            .iter()
            .map(|s| (s.type_id, s.timestamp, s.payload.len()))
            .collect();
        assert_eq!(got, vec![(9, 1000, 5), (8, 1023, 3), (9, 1033, 5)]);
        // A tag that runs past the end is an error, not a panic.
        let mut bad = tag(9, 0, &[1, 2, 3]);
        bad[3] = 200;
        assert_eq!(
            split_aggregate(0, &Bytes::from(bad)),
            Err(Error::Aggregate(0))
        );
    }

    #[test]
    fn set_data_frame_is_stripped_without_a_copy() {
        let mut b = BytesMut::new();
        Value::from("@setDataFrame").encode(&mut b);
        Value::from("onMetaData").encode(&mut b);
        Value::object([("width", Value::Number(640.0))]).encode(&mut b);
        let body = b.freeze();
        let stripped = strip_set_data_frame(&body);
        assert_eq!(data_name(&stripped).as_deref(), Some("onMetaData"));
        assert_eq!(stripped.as_ptr(), body[16..].as_ptr());
        let again = strip_set_data_frame(&stripped);
        assert_eq!(again, stripped);
    }
}
