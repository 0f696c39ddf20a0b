//! The RTMP chunk stream (RTMP 1.0 §5.3): messages cut into chunks and back.
//!
//! [`Reader`] reassembles whole [`Message`]s from the bytes read off a connection, slicing
//! payloads out of the receive buffer where a message arrived in one chunk. [`Writer`] splits
//! messages into chunks for the peer, compressing headers where the previous header on the
//! chunk stream allows it, or always starting with a full header so that one encoding can be
//! shared by many connections.

mod reader;
mod writer;

pub use reader::{PREALLOC_LEN, Reader, ReaderConfig};
pub use writer::{Mode, Writer, encode_shared};

use bytes::Bytes;

/// The chunk size each direction starts with (RTMP 1.0 §5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// The largest chunk size a peer may set: the top bit of Set Chunk Size must be zero.
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// The largest chunk stream id the 3-byte basic header can express.
pub const MAX_CSID: u32 = 65_599;
/// A 24-bit timestamp field with this value means a 32-bit extended timestamp follows.
pub const EXTENDED_TIMESTAMP: u32 = 0x00FF_FFFF;

/// Chunk stream ids ringcast uses when it sends. Any id works on the wire; these keep each
/// kind of traffic on its own chunk stream, which keeps headers small, and keep the ids that
/// carry shared ([`Mode::Fmt0`]) encodings apart from those a connection's own [`Writer`]
/// compresses.
pub mod csid {
    /// Protocol control messages and user control events (the spec reserves 2 for them).
    pub const CONTROL: u32 = 2;
    /// Commands on message stream 0 (`connect`, `createStream`, their `_result`s).
    pub const COMMAND: u32 = 3;
    /// Commands and status messages on a media stream (`publish`, `play`, `onStatus`).
    pub const STREAM: u32 = 5;
    /// Audio messages.
    pub const AUDIO: u32 = 6;
    /// Video messages.
    pub const VIDEO: u32 = 7;
    /// Data messages on a media stream (`onMetaData`, cue points, captions).
    pub const DATA: u32 = 8;
}

/// A whole RTMP message as the chunk stream carries it: the header fields and the payload.
///
/// `timestamp` is the absolute message timestamp in milliseconds, reconstructed from deltas
/// modulo 2^32. `payload` is a slice of the receive buffer when the message arrived in a
/// single chunk, and one fresh buffer otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The chunk stream the message travelled on.
    pub csid: u32,
    /// Absolute timestamp, milliseconds, wrapping at 2^32.
    pub timestamp: u32,
    /// The message type id (1 Set Chunk Size ... 22 aggregate).
    pub type_id: u8,
    /// The message stream id (0 for connection-level messages).
    pub stream_id: u32,
    /// The message body.
    pub payload: Bytes,
}

/// What went wrong reading the chunk stream. Every variant ends the connection: after an
/// error the reader's state no longer matches the peer's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A message header declared a length above the configured maximum.
    #[error("message of {length} bytes on chunk stream {csid} exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The chunk stream id.
        csid: u32,
        /// The declared length.
        length: u32,
        /// The configured maximum.
        max: u32,
    },
    /// The peer opened more chunk streams than the configured maximum.
    #[error("chunk stream {csid} would exceed the limit of {max} chunk streams")]
    TooManyChunkStreams {
        /// The chunk stream id that would have been added.
        csid: u32,
        /// The configured maximum.
        max: usize,
    },
    /// A compressed header (fmt 1, 2 or 3) on a chunk stream that has had no full header.
    #[error("fmt {fmt} chunk on chunk stream {csid} with no previous header")]
    NoPreviousHeader {
        /// The header format (1, 2 or 3).
        fmt: u8,
        /// The chunk stream id.
        csid: u32,
    },
    /// A new message header arrived on a chunk stream while a message was still incomplete.
    #[error(
        "new message header on chunk stream {csid} while {missing} bytes of a message are missing"
    )]
    HeaderInsideMessage {
        /// The chunk stream id.
        csid: u32,
        /// Bytes still missing from the incomplete message.
        missing: u32,
    },
    /// Set Chunk Size with zero or with the top bit set.
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
    /// A protocol control message whose body is too short.
    #[error("protocol control message type {type_id} with a {len}-byte body")]
    ShortControlMessage {
        /// The message type.
        type_id: u8,
        /// The body length received.
        len: usize,
    },
    /// The in-progress messages of all chunk streams together declare more bytes than allowed.
    #[error("incomplete messages would hold {pending} bytes, over the limit of {max}")]
    TooMuchPending {
        /// Bytes the incomplete messages would hold.
        pending: u64,
        /// The configured maximum.
        max: u64,
    },
}

#[cfg(test)]
mod tests;
