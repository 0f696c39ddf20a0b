//! RTMP sessions: the server and client state machines over handshake, chunks and messages.
//!
//! A session is driven the same way on both sides (quinn-proto style):
//!
//! 1. feed it every byte read from the connection with `handle_input(&mut buf, now_ms)`;
//!    it consumes what it can and leaves a trailing partial chunk in `buf`;
//! 2. drain `poll_event()` until it returns `None`, acting on each event (for the server:
//!    accept or reject publishes and plays);
//! 3. write out everything `take_output()` returns;
//! 4. call `handle_timeout(now_ms)` when `poll_timeout()` says so (pings; an `Err` there
//!    means the peer went silent past the ping timeout).
//!
//! An `Err` from `handle_input` means the peer broke the protocol: log it and close the
//! connection. Nothing in here panics on peer input.

mod conn;
mod rate;

pub use rate::RATE_WINDOW_MS;
pub mod client;
pub mod server;

pub use conn::{Error, MIN_ACK_WINDOW};

use bytes::Bytes;

use super::amf0::Value;
use super::message::type_id;

/// The three kinds of stream traffic a publisher sends and a player receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Audio messages (type 8).
    Audio,
    /// Video messages (type 9).
    Video,
    /// AMF0 data messages (type 18) other than `onMetaData`: cue points, captions, text.
    Data,
}

impl MediaKind {
    /// The RTMP message type id of this kind.
    pub fn type_id(self) -> u8 {
        match self {
            MediaKind::Audio => type_id::AUDIO,
            MediaKind::Video => type_id::VIDEO,
            MediaKind::Data => type_id::DATA,
        }
    }

    /// The chunk stream ringcast sends this kind on.
    pub fn csid(self) -> u32 {
        match self {
            MediaKind::Audio => super::chunk::csid::AUDIO,
            MediaKind::Video => super::chunk::csid::VIDEO,
            MediaKind::Data => super::chunk::csid::DATA,
        }
    }
}

/// One message of a stream: what a publisher sends and a player receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Audio, video or data.
    pub kind: MediaKind,
    /// Absolute timestamp in milliseconds.
    pub timestamp: u32,
    /// The message body (an FLV tag body), shared with the receive buffer.
    pub payload: Bytes,
}

/// Splits `name?query` into the name and the query (without the `?`).
pub fn split_query(name: &str) -> (String, Option<String>) {
    match name.split_once('?') {
        Some((n, q)) => (n.to_owned(), Some(q.to_owned())),
        None => (name.to_owned(), None),
    }
}

/// The info object of an `onStatus` message: `{level, code, description}`.
pub fn status_object(level: &str, code: &str, description: &str) -> Value {
    Value::object([
        ("level", Value::from(level)),
        ("code", Value::from(code)),
        ("description", Value::from(description)),
    ])
}

/// `onStatus` codes ringcast sends and understands (PROTOCOL.md, "Command flows").
pub mod status {
    /// `connect` succeeded.
    pub const CONNECT_SUCCESS: &str = "NetConnection.Connect.Success";
    /// `connect` was refused.
    pub const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";
    /// A call the server does not know or could not carry out.
    pub const CALL_FAILED: &str = "NetConnection.Call.Failed";
    /// Publishing started.
    pub const PUBLISH_START: &str = "NetStream.Publish.Start";
    /// The stream name is already being published.
    pub const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";
    /// Publishing was refused for another reason (e.g. authorization).
    pub const PUBLISH_REJECTED: &str = "NetStream.Publish.Rejected";
    /// Publishing stopped.
    pub const UNPUBLISH_SUCCESS: &str = "NetStream.Unpublish.Success";
    /// The play list was reset.
    pub const PLAY_RESET: &str = "NetStream.Play.Reset";
    /// Playback started.
    pub const PLAY_START: &str = "NetStream.Play.Start";
    /// Playback stopped.
    pub const PLAY_STOP: &str = "NetStream.Play.Stop";
    /// A play (or a command on a playing stream) could not be carried out.
    pub const PLAY_FAILED: &str = "NetStream.Play.Failed";
    /// The requested stream does not exist.
    pub const PLAY_STREAM_NOT_FOUND: &str = "NetStream.Play.StreamNotFound";
    /// The publisher of the stream being played left.
    pub const PLAY_UNPUBLISH_NOTIFY: &str = "NetStream.Play.UnpublishNotify";
    /// A publisher (re)started the stream being played.
    pub const PLAY_PUBLISH_NOTIFY: &str = "NetStream.Play.PublishNotify";
    /// Playback paused.
    pub const PAUSE_NOTIFY: &str = "NetStream.Pause.Notify";
    /// Playback resumed.
    pub const UNPAUSE_NOTIFY: &str = "NetStream.Unpause.Notify";
    /// Data (as opposed to media) started flowing.
    pub const DATA_START: &str = "NetStream.Data.Start";
}
